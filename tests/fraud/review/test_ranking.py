"""Collusion-aware ranking, Louvain refinement and the quality figures, on hand-built alerts."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from fraud.errors import ConfigError
from fraud.review.clusters import cluster_alerts, collusion_risk, colluding_customers, quality

from .helpers import hand_built_alerts

T0 = pd.Timestamp("2024-05-01", tz="UTC")


def _rows(spec):
    """spec: (customer, terminal, score, amount, scenario) tuples -> an alerts frame, one hour apart."""
    return pd.DataFrame([{"tx_id": f"x{i:03d}", "timestamp": T0 + pd.Timedelta(hours=i), "customer_id": c,
                          "terminal_id": t, "amount": amt, "score": s, "reasons": [], "scenario": sc}
                         for i, (c, t, s, amt, sc) in enumerate(spec)])


def three_patterns():
    """Three separate flagged components, every amount 90: a ring (6 mules x 3 terminals, one
    alert per pair) whose scores sit near the threshold (0.02), a compromised terminal (12 victims,
    one terminal) scored 0.9, and one compromised customer (12 alerts at 12 terminals) scored 0.9."""
    ring = [(f"M{i}", f"R{j}", 0.02, 90.0, 4) for i in range(6) for j in range(3)]
    star = [(f"V{i}", "T9", 0.9, 90.0, 2) for i in range(12)]
    single = [("S0", f"U{j}", 0.9, 90.0, 3) for j in range(12)]
    return _rows(ring + star + single)


def test_colluding_customers_by_hand():
    # R0, R1 shared by A and B; C only at R0 (one shared terminal); D alone at X (not shared)
    cust = ["A", "A", "B", "B", "C", "D", "A"]
    term = ["R0", "R1", "R0", "R1", "R0", "X", "R0"]
    assert colluding_customers(cust, term) == ["A", "B"]
    assert colluding_customers(["V1", "V2", "V3"], ["T9", "T9", "T9"]) == []      # a star: one terminal
    assert colluding_customers(["S", "S", "S"], ["U1", "U2", "U3"]) == []         # one customer: nothing shared
    assert colluding_customers([], []) == []


def test_collusion_risk_formula_by_hand():
    # pairs (A,R0): best of .5*log10(100)=1 and .25*1 -> 1; (B,R0): 1*log10(10)=1; (A,R1): .5*log10(10)=.5;
    # (B,R1): .5*log10(100)=1 -> base 3.5; 2 customers, both colluding (R0 and R1 shared by both)
    risk = collusion_risk(["A", "A", "B", "A", "B"], ["R0", "R0", "R0", "R1", "R1"],
                          [0.5, 0.25, 1.0, 0.5, 0.5], [90.0, 90.0, 0.0, 0.0, 90.0])
    assert risk == pytest.approx(3.5 * (1 + math.log2(2)) * (1 + math.log2(3)))
    # a customer's repeated alerts at one terminal count once (its best alert)
    once = collusion_risk(["A"], ["T"], [0.8], [90.0])
    assert collusion_risk(["A"] * 10, ["T"] * 10, [0.8] * 10, [90.0] * 10) == pytest.approx(once) == pytest.approx(1.6)
    assert collusion_risk([], [], [], []) == 0.0


def test_ring_outranks_star_and_single_customer_despite_lower_scores():
    a = three_patterns()
    # refinement is not the subject here: every component stays whole
    col = cluster_alerts(a, seed=0, map_coords=False, min_refine_nodes=100)
    dom = [c.dominant_scenario for c in col.clusters]
    assert dom == [4, 2, 3]                            # collusion: ring, then the star, then one customer
    ring, star, single = col.clusters
    assert len(ring.colluding_customers) == 6 and star.colluding_customers == [] == single.colluding_customers
    # score percentiles (ties averaged): ring 9.5 / 42, the 24 others (18 + 12.5) / 42
    lo, hi = 9.5 / 42, 30.5 / 42
    assert ring.risk == pytest.approx(18 * lo * 2 * (1 + math.log2(6)) * (1 + math.log2(7)), rel=1e-5)
    assert star.risk == pytest.approx(12 * hi * 2 * (1 + math.log2(12)), rel=1e-5)
    assert single.risk == pytest.approx(12 * hi * 2, rel=1e-5)
    # the raw-score formula ranks the ring last: its raw scores are 45 times lower
    sc = cluster_alerts(a, seed=0, map_coords=False, min_refine_nodes=100, risk="score")
    assert [c.dominant_scenario for c in sc.clusters] == [2, 3, 4]
    q = quality(col, top_k=1, ring_total=36)
    assert q["ring_share_top_k"] == 1.0 and q["ring_share_top_k_of_all"] == 0.5
    assert q["top_k_load"] == pytest.approx(18 / 42, abs=1e-4) and q["top_k_lift"] == pytest.approx(42 / 18, abs=1e-3)
    assert quality(sc, top_k=1)["ring_share_top_k"] == 0.0


def test_single_customer_does_not_outrank_colluding_customers_of_same_total():
    # same 12 alerts, same scores and amounts: 4 customers x 3 shared terminals vs one customer x 12 terminals
    ring = [(f"M{i}", f"R{j}", 0.5, 50.0, 4) for i in range(4) for j in range(3)]
    single = [("S0", f"U{j}", 0.5, 50.0, 3) for j in range(12)]
    r = cluster_alerts(_rows(ring + single), seed=0, map_coords=False, min_refine_nodes=100)
    assert [c.dominant_scenario for c in r.clusters] == [4, 3]
    assert r.clusters[0].risk == pytest.approx(r.clusters[1].risk * (1 + math.log2(4)) * (1 + math.log2(5)))


def test_louvain_refinement_splits_ring_from_star_and_keeps_terminals_whole():
    r = cluster_alerts(hand_built_alerts(), seed=0, refine="louvain", map_coords=False)
    assert r.meta["refine"] == "louvain" and r.meta["n_refined_components"] == 1
    mixes = sorted((c.scenario_mix for c in r.clusters if c.n_tx > 1), key=lambda m: -sum(m.values()))
    # the stray legit alert M0-T9 goes with its terminal's community (the star), not with the ring
    assert mixes == [{"4": 48}, {"0": 1, "2": 20}]
    # a transaction follows its terminal: every terminal sits in exactly one cluster
    assert (r.alerts.groupby("terminal_id")["cluster_id"].nunique() == 1).all()
    assert sum(c.n_tx for c in r.clusters) == len(r.alerts)
    again = cluster_alerts(hand_built_alerts().sample(frac=1.0, random_state=5), seed=0, refine="louvain",
                           map_coords=False)
    assert [c.id for c in again.clusters] == [c.id for c in r.clusters]
    # a higher resolution gives smaller communities: the complete 8 x 3 ring falls apart by terminal
    fine = cluster_alerts(hand_built_alerts(), seed=0, refine="louvain", resolution=2.0, map_coords=False)
    assert sorted(c.scenario_mix.get("4", 0) for c in fine.clusters if c.n_tx > 1) == [0, 16, 16, 16]


def test_bad_options_are_refused():
    a = hand_built_alerts()
    with pytest.raises(ConfigError, match="refine: 'kmeans'"):
        cluster_alerts(a, refine="kmeans")
    with pytest.raises(ConfigError, match="risk: 'sum'"):
        cluster_alerts(a, risk="sum")
    with pytest.raises(ConfigError, match="resolution: 0"):
        cluster_alerts(a, refine="louvain", resolution=0)


def test_quality_without_ground_truth_or_ring():
    a = hand_built_alerts().drop(columns=["scenario"])
    q = quality(cluster_alerts(a, map_coords=False))
    assert q["purity"] is None and q["ring_share_top_k"] is None
    no_ring = hand_built_alerts()
    no_ring = no_ring[no_ring["scenario"] != 4]
    q = quality(cluster_alerts(no_ring, map_coords=False), ring_total=0)
    assert q["ring_alerts"] == 0 and q["ring_share_top_k"] is None and q["ring_share_top_k_of_all"] is None
    assert q["top_k_lift"] is None and 0 < q["top_k_load"] <= 1
    assert np.isfinite(q["purity"])
