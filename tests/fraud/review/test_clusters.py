"""Clustering of flagged activity on a hand-built graph."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from fraud.errors import ConfigError
from fraud.review.clusters import cluster_alerts, cluster_id_for, collusion_risk, flagged_graph, quality, risk_of

from .helpers import hand_built_alerts


@pytest.fixture(scope="module")
def result():
    return cluster_alerts(hand_built_alerts(), seed=0)


def test_flagged_graph_is_bipartite_with_prefixed_ids():
    g = flagged_graph(hand_built_alerts())
    assert all(n.startswith(("c:", "t:")) for n in g.nodes)
    assert all(u[:2] != v[:2] for u, v in g.edges)
    assert g.edges["c:M0", "t:R0"]["n"] == 2 and len(g.edges["c:M0", "t:R0"]["tx_ids"]) == 2


def test_hdbscan_splits_ring_from_compromised_terminal(result):
    # the ring and the terminal's victims share ONE component (via a stray alert) but two clusters
    assert result.meta["n_refined_components"] == 1
    by_dominant = {c.dominant_scenario: c for c in result.clusters}
    ring, star = by_dominant[4], by_dominant[2]
    assert ring.id != star.id
    assert ring.scenario_mix["4"] == 48 and "2" not in ring.scenario_mix
    assert star.scenario_mix == {"2": 20}
    assert set(ring.customers) == {f"M{i}" for i in range(8)}
    assert set(ring.terminals) >= {"R0", "R1", "R2"}
    assert star.terminals == ["T9"] and len(star.customers) == 10
    assert star.shared_terminals == ["T9"]
    # every alert lands in exactly one cluster
    assert sum(c.n_tx for c in result.clusters) == len(result.alerts)
    assert result.alerts["cluster_id"].notna().all()


def test_ranking_and_summary(result):
    risks = [c.risk for c in result.clusters]
    assert risks == sorted(risks, reverse=True)
    assert [c.rank for c in result.clusters] == list(range(1, len(result.clusters) + 1))
    top = result.clusters[0]
    assert top.dominant_scenario == 4                  # the ring outranks the star and the one-offs
    all_pct = result.alerts["score"].rank(pct=True)
    a = result.alerts[result.alerts["cluster_id"] == top.id]
    assert top.risk == pytest.approx(collusion_risk(a["customer_id"], a["terminal_id"], all_pct[a.index], a["amount"]),
                                     rel=1e-6)
    assert len(top.colluding_customers) == 8           # every mule used all three ring terminals
    assert top.amount_at_risk == pytest.approx(a["amount"].sum())
    assert top.score_max == pytest.approx(a["score"].max()) and top.score_min == pytest.approx(a["score"].min())
    assert top.first_seen == a["timestamp"].min().isoformat()
    assert top.reasons[0][0] in ("graph_density", "shared_terminal") and top.reasons[0][1] == 48
    singles = [c for c in result.clusters if c.n_tx == 1]
    assert len(singles) == 5 and all(c.scenario_mix == {"1": 1} for c in singles)


def test_score_risk_is_still_available():
    r = cluster_alerts(hand_built_alerts(), seed=0, risk="score", map_coords=False)
    assert r.meta["risk"] == "score" and "score_i" in r.meta["risk_formula"]
    for c in r.clusters:
        a = r.alerts[r.alerts["cluster_id"] == c.id]
        assert c.risk == pytest.approx(risk_of(a["score"], a["amount"], a["customer_id"].nunique()), rel=1e-6)


def test_risk_formula_by_hand():
    # two alerts, scores .5 and 1, amounts 90 and 0, two customers
    expected = (0.5 * np.log10(100.0) + 1.0 * np.log10(10.0)) * (1 + np.log2(2))
    assert risk_of(np.array([0.5, 1.0]), np.array([90.0, 0.0]), 2) == pytest.approx(expected)
    assert expected == pytest.approx(4.0)


def test_ids_are_stable_and_deterministic(result):
    again = cluster_alerts(hand_built_alerts().sample(frac=1.0, random_state=3), seed=0)
    assert [c.id for c in again.clusters] == [c.id for c in result.clusters]
    for c in result.clusters:
        assert c.id == cluster_id_for(c.tx_ids)
    assert cluster_id_for(["b", "a"]) == cluster_id_for(["a", "b"]) != cluster_id_for(["a"])


def test_quality_purity_and_ring_share(result):
    q = quality(result, top_k=1)
    assert q["ring_alerts"] == 48 and q["ring_in_top_k"] == 48 and q["ring_share_top_k"] == 1.0
    assert q["ring_clusters"] == 1
    # the only impure alert is the stray legit bridge M0-T9 (it joins the ring: its customer is a mule)
    assert q["purity"] == pytest.approx(73 / 74, abs=1e-4)


def test_time_window_and_bad_input():
    a = hand_built_alerts()
    r = cluster_alerts(a, since="2024-03-09", until="2024-03-10")
    ts = r.alerts["timestamp"]
    assert len(r.alerts) > 0 and ts.min() >= pd.Timestamp("2024-03-09", tz="UTC")
    assert ts.max() < pd.Timestamp("2024-03-10", tz="UTC")
    with pytest.raises(ConfigError, match="--since"):
        cluster_alerts(a, since="not a date")
    with pytest.raises(ConfigError, match="score"):
        cluster_alerts(a.drop(columns=["score"]))
    empty = cluster_alerts(a.iloc[:0])
    assert empty.clusters == [] and empty.meta["n_alerts"] == 0


def test_project_node2vec_embedder_gives_the_same_split():
    pytest.importorskip("models.node2vec", reason="models.node2vec (graph issue) is not available")
    r = cluster_alerts(hand_built_alerts(), embedder="node2vec", seed=0)
    assert r.meta["n_refined_components"] == 1
    mixes = sorted((c.scenario_mix for c in r.clusters if c.n_tx > 1), key=lambda m: -sum(m.values()))
    assert mixes == [{"0": 1, "4": 48}, {"2": 20}]


def test_a_large_web_of_noise_alerts_is_split_into_its_communities():
    """Alerts between HDBSCAN-noise entities are grouped by the components they form; a component of at least
    ``min_nodes`` entities (two dense groups joined by one stray alert here) is split by Louvain, a small one
    stays whole (docs/review.md: one 737-alert web on a 75-day world before)."""
    from fraud.review.clusters import _noise_groups

    cn, tn = [], []
    for g in range(2):  # two groups of 5 customers x 3 terminals, every pair alerted twice
        for c in range(5):
            for t in range(3):
                cn += [f"c:{g}{c}"] * 2
                tn += [f"t:{g}{t}"] * 2
    cn.append("c:00")
    tn.append("t:10")  # the stray alert between them
    cn += ["c:x", "c:y"]  # a separate small web: one terminal, two customers
    tn += ["t:x", "t:x"]
    keys = _noise_groups(np.array(cn), np.array(tn), min_nodes=12, seed=0)
    by = pd.Series(keys, index=[f"{c}|{t}" for c, t in zip(cn, tn)])
    first = {k for k, c in zip(keys, cn) if c[2] == "0" and c != "c:x"}
    second = {k for k, c in zip(keys, cn) if c[2] == "1"}
    assert len(first) == 1 and len(second) == 1 and first != second  # two communities, each whole
    assert all(k.startswith("noise0.") for k in first | second)  # of the same web
    assert by["c:x|t:x"] == by["c:y|t:x"] == "noise1"  # the small web: one group, not split
    # the same input gives the same keys (seeded)
    assert _noise_groups(np.array(cn), np.array(tn), min_nodes=12, seed=0) == keys
