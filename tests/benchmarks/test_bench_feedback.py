"""``fraud bench feedback``: the arms score the same events; chargebacks sent back one day before the features'
delay give exactly the scores of events that carried their labels (the feedback path equals the label column),
and no feedback gives other scores."""
from __future__ import annotations

import json
import warnings

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from benchmarks.feedback import ARMS, run_feedback, score_days


@pytest.fixture(scope="module")
def model(drift_world):
    from fraud.training import TrainConfig, train

    cut = drift_world["timestamp"].min().floor("D") + pd.Timedelta(days=30)
    light = dict(featurizers=("tabular", "behaviour"), unsupervised=("hbos",), eval_days=3, baseline_trees=20,
                 ensemble_params={"supervised_params": {"n_estimators": 40, "n_jobs": 1}})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return train(drift_world[drift_world["timestamp"] < cut], TrainConfig(**light), train_until=cut).bundle, cut


def test_chargebacks_a_day_before_the_delay_equal_labels_in_the_events(model, drift_world):
    bundle, cut = model
    delay = int(bundle.config["feedback_delay_days"])
    res = run_feedback(bundle, drift_world, cut, budget=5, chargeback_days=delay - 1, delay_days=delay)
    assert set(res["arms"]) == set(ARMS) and res["days"] == 15 and res["frauds"] > 0
    arms = res["arms"]
    for r in arms.values():
        assert all(0.0 <= v <= 1.0 for v in r.values()), r
    assert arms["analyst_chargebacks"] == arms["labels_in_events"]
    test = drift_world[drift_world["timestamp"] >= cut]
    days = [g for _, g in test.groupby(test["timestamp"].dt.floor("D"))]
    scores = {arm: score_days(bundle, days, arm, 5, delay - 1) for arm in ARMS}
    np.testing.assert_array_equal(scores["analyst_chargebacks"], scores["labels_in_events"])
    assert not np.array_equal(scores["no_feedback"], scores["labels_in_events"])
    assert not np.array_equal(scores["analyst"], scores["no_feedback"])  # the day's decisions count


def test_cli_json(monkeypatch, model, drift_world, tmp_path):
    from fraud import registry
    from fraud.cli import main

    bundle, cut = model
    path = tmp_path / "world.parquet"
    drift_world.to_parquet(path)
    monkeypatch.setattr(registry, "load_bundle", lambda uri, **kw: bundle)
    r = CliRunner().invoke(main, ["bench", "feedback", "--data", str(path), "--model", "models:/m/1", "--budget", "5",
                                  "--json"])
    assert r.exit_code == 0, r.output
    res = json.loads(r.output)
    assert res["since"] == str(cut) and res["budget"] == 5 and set(res["arms"]) == set(ARMS)
    r = CliRunner().invoke(main, ["bench", "feedback", "--data", str(path), "--model", "models:/m/1"])
    assert r.exit_code == 0 and r.output.splitlines()[1].split()[:2] == ["arm", "AP"]
    assert [ln.split()[0] for ln in r.output.splitlines()[2:]] == list(ARMS)
