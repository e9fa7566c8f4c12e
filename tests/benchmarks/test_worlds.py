"""``fraud bench worlds`` on two tiny worlds: the result's structure and invariants (not the goals)."""
from __future__ import annotations

import math

import pytest

from benchmarks.worlds import DEV_SEEDS, REPORT_SEEDS, WorldsConfig, run_worlds

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def result():
    cfg = WorldsConfig(seeds=(1000, 1002), customers=150, terminals=300, days=49, test_days=14,
                       train={"featurizers": ("tabular", "behaviour", "collusion"), "unsupervised": ("hbos",),
                              "ensemble_params": {"supervised_params": {"n_estimators": 60}},
                              "baseline_trees": 20})  # a small head and guard forest: the structure only
    return run_worlds(cfg)


def test_structure_and_invariants(result):
    assert set(DEV_SEEDS).isdisjoint(REPORT_SEEDS) and len(REPORT_SEEDS) >= 20
    assert [w["seed"] for w in result["worlds"]] == [1000, 1002]
    assert result["config"]["budget"] == 5 and result["dev_seeds"] == list(DEV_SEEDS)
    for w in result["worlds"]:
        assert 0 < w["n_test_fraud"] < w["n_test"] <= w["n"]
        assert 0 < w["ap"] <= 1 and 0 < w["baseline_ap"] <= 1
        assert w["ratio"] == pytest.approx(w["ap"] / w["baseline_ap"])
        assert "aged_ring" in w["patterns"] and 0 <= w["ring_recall"] <= 1
        assert 0 <= w["recall"]["all"] <= 1 and w["recall"]["aged_ring"] == w["ring_recall"]
        assert w["choice"].startswith(("pipeline", "baseline", "blend"))
    s = result["summary"]
    assert s["n_worlds"] == 2 and s["ratio_worst"] <= s["ratio_mean"]
    assert s["ap_mean"] == pytest.approx(sum(w["ap"] for w in result["worlds"]) / 2)
    assert s["ring_recall_worst"] <= s["ring_recall_mean"] and not math.isnan(s["ring_recall_mean"])
    assert set(s["goals"]) == {"ap_ge_baseline_every_world", "mean_ap_ge_1.5x_baseline", "ring_recall_mean_ge_0.5"}
