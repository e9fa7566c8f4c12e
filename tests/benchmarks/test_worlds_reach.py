"""``fraud bench worlds --reach-back`` on a tiny world: the card-day queue's recall beside the model's, AP unchanged."""
from __future__ import annotations

import json
import math

import pytest
from click.testing import CliRunner

from fraud.cli import main

pytestmark = pytest.mark.slow


def test_reach_back_reports_the_queues_recall_and_leaves_ap_alone():
    args = ["bench", "worlds", "--seeds", "1000", "--customers", "120", "--terminals", "240", "--days", "42",
            "--budget", "10", "--set", 'featurizers=["tabular","behaviour","collusion"]', "--set",
            'unsupervised=["hbos"]', "--set", 'ensemble_params={"supervised_params":{"n_estimators":60}}',
            "--set", "baseline_trees=20", "--json"]
    runs = [json.loads(CliRunner().invoke(main, args + extra, catch_exceptions=False).output)
            for extra in ([], ["--reach-back"])]
    (before,), (after,) = (r["worlds"] for r in runs)
    assert after["ap"] == pytest.approx(before["ap"]) and after["recall"] == pytest.approx(before["recall"], nan_ok=True)
    assert "recall_reach" not in before and set(after["recall_reach"]) == set(after["recall"])
    assert all(math.isnan(v) or 0 <= v <= 1 for v in after["recall_reach"].values())
    s = runs[1]["summary"]
    assert s["recall_all_reach_mean"] == pytest.approx(after["recall_reach"]["all"])
    assert s["recall_all_mean"] == pytest.approx(after["recall"]["all"])
