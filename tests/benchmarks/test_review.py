"""fraud bench review over several seeds (small worlds, the IForest detector), with the score cache."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from fraud.cli import main
from fraud.errors import ConfigError
from benchmarks.review import SUMMARY_KEYS, run_bench_seeds

SMALL = dict(customers=150, terminals=300, days=48, test_days=30, detector="iforest", alerts_per_day=10)


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("review_bench_cache")


@pytest.fixture(scope="module")
def two_seeds(cache):
    return run_bench_seeds([1, 2], progress=False, cache_dir=str(cache), **SMALL)


def test_per_seed_figures_and_summary(two_seeds):
    runs, sm = two_seeds["runs"], two_seeds["summary"]
    assert [r["world"]["seed"] for r in runs] == [1, 2] == sm["seeds"]
    for r in runs:
        assert r["cap_budget"] is True and r["alerts"] <= 10 * 30 < r["model_alerts"]
        ring_tx, ring_alerted, in_top = r["world"]["test_ring_transactions"], r["ring_alerts"], r["ring_in_top_k"]
        assert 0 <= in_top <= ring_alerted <= ring_tx and ring_tx > 0
        assert r["ring_recall_of_detector"] == pytest.approx(ring_alerted / ring_tx, abs=1e-4)
        assert r["ring_share_top_k_of_all"] == pytest.approx(in_top / ring_tx, abs=1e-4)
        if ring_alerted:
            assert r["ring_share_top_k"] == pytest.approx(in_top / ring_alerted, abs=1e-4)
        assert 0 < r["top_k_load"] <= 1 and r["top_k_alerts"] == round(r["top_k_load"] * r["alerts"])
        assert r["cluster_meta"]["risk"] == "collusion" and r["cluster_meta"]["refine"] == "hdbscan"
    for k in SUMMARY_KEYS:
        vals = [r[k] for r in runs if r[k] is not None]
        assert sm[k]["n"] == len(vals)
        if vals:
            assert sm[k]["mean"] == pytest.approx(np.mean(vals), abs=1e-4) and sm[k]["min"] == min(vals)


def test_cache_reuses_the_scored_alerts_and_the_cli_compares_options(two_seeds, cache):
    assert len(list(cache.glob("*.parquet"))) == 2 and len(list(cache.glob("*.json"))) == 2
    args = ["bench", "review", "--seeds", "1,2", "--customers", "150", "--terminals", "300", "--days", "48",
            "--detector", "iforest", "--alerts-per-day", "10", "--cache", str(cache), "--json"]
    r = CliRunner().invoke(main, args, catch_exceptions=False)
    assert r.exit_code == 0, r.output
    again = json.loads(r.output)
    for a, b in zip(again["runs"], two_seeds["runs"]):
        assert a["seconds"]["train_and_score"] == 0.0           # read back from the cache
        for k in ("alerts", "model_alerts", "ring_alerts", "world"):
            assert a[k] == b[k]
        # the CLI clusters with context by default and reports the context-free figures beside them
        assert a["context"] is True and b["context"] is False
        for k in ("ring_in_top_k", "purity", "top_k_load"):
            assert a["without_context"][k] == b[k]
    old = CliRunner().invoke(main, args + ["--risk", "score", "--refine", "louvain", "--no-cap-budget"])
    assert old.exit_code == 0, old.output
    o = json.loads(old.output)["runs"][0]
    assert o["cluster_meta"]["risk"] == "score" and o["cluster_meta"]["refine"] == "louvain"
    assert o["cap_budget"] is False and o["alerts"] == o["model_alerts"] == two_seeds["runs"][0]["model_alerts"]
    table = CliRunner().invoke(main, args[:-1])
    assert table.exit_code == 0 and "share (alerted)" in table.output and "mean" in table.output


def test_bad_seed_lists_are_refused():
    with pytest.raises(ConfigError, match="--seeds"):
        run_bench_seeds([], progress=False, **SMALL)
    r = CliRunner().invoke(main, ["bench", "review", "--seeds", "1,x"])
    assert r.exit_code != 0 and isinstance(r.exception, ConfigError) and "'1,x'" in str(r.exception)


def test_context_reports_both_on_the_same_cached_alerts(two_seeds, cache):
    out = run_bench_seeds([1, 2], progress=False, cache_dir=str(cache), context=True, **SMALL)
    for with_ctx, plain in zip(out["runs"], two_seeds["runs"]):
        assert with_ctx["seconds"]["train_and_score"] == 0.0 and with_ctx["alerts"] == plain["alerts"]
        assert with_ctx["context"] is True and with_ctx["cluster_meta"]["context"] is True
        wc = with_ctx["without_context"]
        # "without context" is exactly the plain run
        for k in ("ring_in_top_k", "ring_share_top_k", "purity", "top_k_load", "n_clusters"):
            assert wc[k] == plain[k]
        assert 0 < with_ctx["top_k_load"] <= 1 and with_ctx["ring_alerts"] == plain["ring_alerts"]
    assert plain["context"] is False and plain["without_context"] is None
    sm = out["summary"]["without_context"]
    assert sm["purity"]["mean"] == two_seeds["summary"]["purity"]["mean"]
    args = ["bench", "review", "--seeds", "1,2", "--customers", "150", "--terminals", "300", "--days", "48",
            "--detector", "iforest", "--alerts-per-day", "10", "--cache", str(cache), "--context"]
    table = CliRunner().invoke(main, args)
    assert table.exit_code == 0, table.output
    assert "share no ctx" in table.output and "with context" in table.output


def test_continuing_counts_a_pattern_kept_by_the_case_or_a_linked_one():
    from benchmarks.review import _continuing

    t0 = pd.Timestamp("2026-01-01", tz="UTC")
    rows = [("a1", 0, "C1", "R1", 4), ("a2", 0, "C2", "R1", 4), ("n1", 0, "C9", "T9", 0),  # day 0
            ("b1", 1, "C3", "R1", 4), ("b2", 1, "C1", "R2", 4), ("b3", 1, "C4", "R1", 2)]  # day 1
    a = pd.DataFrame([{"tx_id": t, "timestamp": t0 + pd.Timedelta(days=d, hours=1), "customer_id": c,
                       "terminal_id": m, "scenario": s} for t, d, c, m, s in rows])
    days = [t0, t0 + pd.Timedelta(days=1)]
    first = {"CASE-1": ({"a1", "a2"}, 0), "CASE-2": ({"n1"}, 0)}          # CASE-2 is a false alarm: not counted
    owner = {"a1": "CASE-1", "a2": "CASE-1", "n1": "CASE-2", "b1": "CASE-1", "b2": "CASE-3", "b3": "CASE-4"}
    # b1, b2 continue the ring (b3 is another scenario); b2 went to CASE-3, linked or not
    assert _continuing(first, a, days, owner, {}) == (1, 1, 2, 1, 1)
    assert _continuing(first, a, days, owner, {"CASE-1": {"CASE-3"}}) == (1, 1, 2, 1, 2)
    moved = {**owner, "a1": "CASE-3", "a2": "CASE-3"}                      # its first alerts left it: not kept
    assert _continuing(first, a, days, moved, {"CASE-1": {"CASE-3"}})[:2] == (1, 0)


def test_cases_stream_keeps_ids_and_reports_the_pattern_figures(cache):
    out = run_bench_seeds([1], progress=False, cache_dir=str(cache), context=True, cases=True, **SMALL)
    c = out["runs"][0]["cases"]
    assert c["days"] == 30 and c["cases"] >= c["cases_fraud_continuing"] >= c["cases_surviving"] >= 0
    assert c["merged"] == 0                                 # cases are linked as related, never merged away
    if c["later_pattern_alerts"]:
        assert 0 <= c["later_in_case"] <= c["later_in_case_or_linked"] <= 1
    assert c["ring_live_cases"] <= c["live_cases"] <= c["cases"]
    assert out["summary"]["cases"]["case_stability"]["n"] == (1 if c["cases_fraud_continuing"] else 0)
