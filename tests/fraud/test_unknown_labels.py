"""Unknown labels (``fraud.training.data.UNKNOWN`` = -1) in training: the supervised head, the baseline guard and the
evaluation (hence the promotion gate) skip those rows; the featurizers read them as not fraud. ``fraud retrain
--unreviewed unknown`` gives them to the events no analyst decided and nobody reported."""
from __future__ import annotations

import json
import warnings

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from sklearn.metrics import average_precision_score

from fraud.cli import main
from fraud.errors import ConfigError

from fraud.training import TrainConfig, train
from fraud.training.baseline import _ap
from fraud.training.data import UNKNOWN, apply_labels, known_labels, windows_for
from fraud.training.detector import head_labels, training_rows
from fraud.training.evaluation import window_metrics

LIGHT = dict(featurizers=("tabular",), unsupervised=("hbos",),
             ensemble_params={"supervised_params": {"n_estimators": 30, "n_jobs": 1}}, baseline_trees=20)


@pytest.fixture(scope="module")
def world() -> pd.DataFrame:
    from fraud.simulate import simulate

    return simulate(customers=120, terminals=240, days=35, seed=11)


def _hide(df: pd.DataFrame, share: float, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    """``df`` with a random ``share`` of its genuine rows and of its frauds labelled UNKNOWN; the mask."""
    rng = np.random.default_rng(seed)
    hid = rng.random(len(df)) < share
    out = df.copy()
    out["label"] = np.where(hid, UNKNOWN, out["label"]).astype(np.int8)
    return out, hid


def test_known_labels_keeps_0_and_1_only():
    got = known_labels(pd.Series([1, 0, UNKNOWN, np.nan, 2]))
    assert np.array_equal(got[:2], [1.0, 0.0]) and np.isnan(got[2:]).all()


def test_head_skips_unknown_rows(world):
    cfg = TrainConfig(**LIGHT)
    df, hid = _hide(world, 0.3)
    w = windows_for(df, cfg)
    rows = training_rows(df, w)
    y = head_labels(df, cfg, w, rows, False, lambda m: None)
    y_all = head_labels(world, cfg, w, rows, False, lambda m: None)
    usable = np.isfinite(y_all)
    assert np.isnan(y[hid[rows]]).all() and (hid[rows] & usable).any()
    assert np.array_equal(y[usable & ~hid[rows]], y_all[usable & ~hid[rows]])


def test_evaluation_and_guard_score_known_rows_only(world):
    df, hid = _hide(world, 0.5, seed=1)
    frame = df.assign(score=np.random.default_rng(2).random(len(df)))
    assert window_metrics(frame) == window_metrics(frame[~hid])
    y = known_labels(frame["label"])
    assert _ap(y, frame["score"].to_numpy()) == pytest.approx(
        average_precision_score(world["label"][~hid], frame["score"][~hid]))


def test_training_with_unknown_labels_evaluates_on_the_known_ones(world):
    df, hid = _hide(world, 0.5, seed=3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = train(df, TrainConfig(**LIGHT))
    w = res.windows
    ev = ((df["timestamp"] >= w["eval_from"]) & (df["timestamp"] < w["eval_until"])).to_numpy()
    assert res.metrics["n"] == int((ev & ~hid).sum()) and res.metrics["n_fraud"] == int(df["label"][ev & ~hid].sum())
    assert np.isfinite(res.metrics["ap"])
    assert res.tags["baseline.choice"] != "pipeline (no labelled fraud to compare on)"


def test_apply_labels_unreviewed_unknown_keeps_decisions_and_reported_frauds():
    df = pd.DataFrame({"tx_id": ["a", "b", "c", "d"], "label": [1, 0, 0, 1]})
    labels = pd.DataFrame({"tx_id": ["b", "d"], "label": [1, 0]})
    assert apply_labels(df, labels)["label"].tolist() == [1, 1, 0, 0]
    assert apply_labels(df, labels, unreviewed="unknown")["label"].tolist() == [1, 1, UNKNOWN, 0]
    assert apply_labels(df, None, unreviewed="unknown")["label"].tolist() == [1, UNKNOWN, UNKNOWN, 1]
    with pytest.raises(ConfigError, match="unreviewed='maybe'"):
        apply_labels(df, labels, unreviewed="maybe")


def test_retrain_cli_unreviewed_unknown_gates_on_decided_events_only(world, tmp_path):
    """``fraud retrain --unreviewed unknown``: the first challenger's evaluation (the gate's window) scores only the
    events an analyst decided or that are labelled fraud; "genuine" scores every event of the window."""
    data, labels = tmp_path / "world.csv", tmp_path / "labels.csv"
    world.assign(label=0).to_csv(data, index=False)  # an archive-like file: nothing reported
    decided = world.sample(frac=0.3, random_state=0)
    decided[["tx_id", "label"]].to_csv(labels, index=False)
    out = {}
    for policy in ("genuine", "unknown"):
        env = {"MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / policy}.db",
               "FRAUD_ARTIFACT_ROOT": str(tmp_path / policy)}
        r = CliRunner().invoke(main, ["retrain", "--data", str(data), "--labels", str(labels), "--unreviewed", policy,
                                      "--features", "tabular", "--detectors", "hbos", "--head-trees", "30",
                                      "--baseline-trees", "20", "--json"],
                               env=env)
        assert r.exit_code == 0, r.output
        out[policy] = json.loads(r.output.strip().splitlines()[-1])
    start, end = (pd.Timestamp(t) for t in out["genuine"]["window"])
    ts = world["timestamp"]
    window = (ts >= start) & (ts < end)
    assert out["unknown"]["window"] == out["genuine"]["window"]
    assert out["genuine"]["challenger"]["n"] == int(window.sum())
    assert out["unknown"]["challenger"]["n"] == int((window & world["tx_id"].isin(decided["tx_id"])).sum())
    assert out["unknown"]["challenger"]["n_fraud"] == int(decided.loc[window[decided.index], "label"].sum())
