"""Training pipeline: windows and the information rule, determinism, fallbacks, errors, the gate."""
from __future__ import annotations

import json
import warnings

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from fraud.errors import ConfigError, SchemaError
from fraud.training import FraudTrainingWarning, TrainConfig, train
from fraud.training.data import apply_labels, hide_recent_labels, windows_for
from fraud.training.gate import gate_window, promotion_decision

LIGHT = dict(featurizers=("tabular",), unsupervised=("iforest", "hbos"),
             ensemble_params={"detector_params": {"iforest": {"n_estimators": 50}},
                              "supervised_params": {"n_estimators": 40, "n_jobs": 1}}, baseline_trees=20)
LIGHT_CLI = ["--features", "tabular", "--detectors", "iforest,hbos", "--head-trees", "40", "--baseline-trees", "20"]


@pytest.fixture(scope="module")
def world() -> pd.DataFrame:
    from fraud.simulate import simulate

    return simulate(customers=150, terminals=300, days=40, seed=7)


def test_windows_follow_the_documented_rule(world):
    cfg = TrainConfig(**LIGHT)
    w = windows_for(world, cfg)
    last = world["timestamp"].iloc[-1]
    assert w["train_until"] == last.floor("D") + pd.Timedelta(days=1)
    assert w["labels_known_before"] == w["train_until"] - pd.Timedelta(days=7)
    assert w["eval_from"] == w["label_cutoff"] == w["labels_known_before"] - pd.Timedelta(days=7)
    assert w["eval_until"] == w["labels_known_before"]
    assert w["train_from"] == world["timestamp"].iloc[0] + pd.Timedelta(days=7)  # warm-up history


def test_same_seed_same_scores_and_eval_uses_unseen_labels(world):
    cfg = TrainConfig(**LIGHT, seed=3)
    a = train(world, cfg)
    b = train(world, cfg)
    df = world.iloc[-2000:]
    np.testing.assert_array_equal(a.bundle.score_batch(df, explain="none")["score"].to_numpy(),
                                  b.bundle.score_batch(df, explain="none")["score"].to_numpy())
    assert a.bundle.threshold == b.bundle.threshold
    assert a.metrics["ap"] == b.metrics["ap"]
    assert a.bundle.config["supervised"] is True
    ev = a.eval_frame
    assert len(ev) and (ev["timestamp"] >= a.windows["label_cutoff"]).all()
    assert (ev["timestamp"] < a.windows["labels_known_before"]).all()
    assert 0.0 <= a.metrics["ap"] <= 1.0 and 0.5 < a.metrics["auc"] <= 1.0
    assert np.isfinite(a.metrics["cp@100"])


def test_the_default_configuration_trains_every_stage_and_scores(world):
    """``fraud train`` without options: every default featurizer and detector, the head, the guard at the book's
    size; the bundle scores the next days (the other tests train light configurations for speed)."""
    from fraud.training.config import DEFAULT_FEATURIZERS, DEFAULT_UNSUPERVISED

    until = world["timestamp"].min().normalize() + pd.Timedelta(days=33)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = train(world[world["timestamp"] < until], TrainConfig(), train_until=until)
    b = res.bundle
    assert len(b.featurizers) == len(DEFAULT_FEATURIZERS) and "baseline.choice" in res.tags
    ens = b.detector.base                                  # under the collusion alarm; the pipeline of a blend
    ens = getattr(ens, "pipeline", ens)
    assert tuple(ens.detectors_) == DEFAULT_UNSUPERVISED and ens.supervised_ is not None
    scored = b.score_frame(world[world["timestamp"] >= until].drop(columns=["label", "scenario"]), batch_size=500)
    assert len(scored) > 0 and scored["score"].between(0, 1).all()


def test_training_refuses_rows_at_or_after_train_until(world):
    until = world["timestamp"].iloc[len(world) // 2]
    with pytest.raises(ConfigError, match="train-until"):
        train(world, TrainConfig(**LIGHT), train_until=until)


def test_cli_never_reads_rows_at_or_after_train_until(world, tmp_path):
    """Two files equal before train-until and wildly different after it train the same model."""
    from fraud.cli import main
    from fraud.io import write_transactions

    until = "2018-05-06"
    t = pd.Timestamp(until, tz="UTC")
    later = (world["timestamp"] >= t).to_numpy()
    assert later.any()
    other = world.copy()
    other.loc[later, "amount"] = other.loc[later, "amount"] * 50 + 1000
    other.loc[later, "label"] = 1 - other.loc[later, "label"]
    other.loc[later, "terminal_id"] = "X"
    outs = []
    for i, frame in enumerate((world, other)):
        path = write_transactions(frame, tmp_path / f"w{i}.parquet")
        r = CliRunner().invoke(main, ["train", "--data", str(path), "--train-until", until, "--no-register", "--json",
                                      *LIGHT_CLI], env={"MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path}/never.db"})
        assert r.exit_code == 0, r.output
        outs.append(json.loads(r.stdout.strip().splitlines()[-1]))
    assert outs[0]["windows"]["train_until"] == str(t)
    for k in ("ap", "auc", "cp@100", "threshold", "n"):
        assert outs[0]["metrics"][k] == outs[1]["metrics"][k], k
    assert not (tmp_path / "never.db").exists()  # --no-register touches no store


def test_no_fraud_labels_falls_back_to_unsupervised_with_warning(world):
    df = world.assign(label=np.zeros(len(world), dtype=np.int8))
    with pytest.warns(FraudTrainingWarning, match="unsupervised"):
        res = train(df, TrainConfig(**LIGHT))
    assert res.bundle.config["supervised"] is False
    assert res.bundle.detector.supervised_ is None
    assert res.bundle.score_batch(world.iloc[:500])["score"].between(0, 1).all()


def test_unsupervised_flag_ignores_labels(world):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = train(world, TrainConfig(**LIGHT), unsupervised=True)
    assert res.bundle.config["supervised"] is False and res.params["unsupervised_flag"] is True
    assert np.isnan(res.metrics["ap"])  # no labels at all: nothing to evaluate against


def test_missing_field_is_named(world):
    with pytest.raises(SchemaError, match="'amount'"):
        train(world.drop(columns=["amount"]), TrainConfig(**LIGHT))


def test_cli_missing_column_names_it(tmp_path, capsys):
    from fraud.cli import run

    p = tmp_path / "bad.csv"
    p.write_text("tx_id,timestamp,customer_id,amount\n1,2024-01-01,a,3\n")
    import sys

    old = sys.argv
    sys.argv = ["fraud", "train", "--data", str(p), "--no-register"]
    try:
        rc = run()
    finally:
        sys.argv = old
    assert rc == 2
    assert "'terminal_id'" in capsys.readouterr().err


def test_analyst_labels_override_and_recent_labels_hidden(tiny_frame):
    labels = pd.DataFrame({"tx_id": ["t0", "t1", "t9"], "label": [1, 0, 1]})
    out = apply_labels(tiny_frame, labels)
    assert out["label"].tolist() == [1, 0, 0, 0, 0, 1, 0, 0]
    no_label = apply_labels(tiny_frame.drop(columns=["label"]), labels)
    assert no_label["label"].tolist() == [1, 0, 0, 0, 0, 0, 0, 0]  # unlabelled = not reported
    with pytest.raises(SchemaError, match="must be 0 or 1"):
        apply_labels(tiny_frame, pd.DataFrame({"tx_id": ["t0"], "label": [3]}))
    hidden = hide_recent_labels(tiny_frame, pd.Timestamp("2024-01-06", tz="UTC"))
    assert hidden["label"].tolist() == [0, 1, 0, 0, 0, 0, 0, 0]


def test_promotion_decision_both_ways():
    champ = {"ap": 0.50, "cp@100": 0.20}
    ok, why = promotion_decision(champ, {"ap": 0.53, "cp@100": 0.21}, ap_margin=0.01)
    assert ok and "promoted" in why
    ok, why = promotion_decision(champ, {"ap": 0.505, "cp@100": 0.30}, ap_margin=0.01)
    assert not ok and "margin" in why
    ok, why = promotion_decision(champ, {"ap": 0.60, "cp@100": 0.19}, ap_margin=0.01)
    assert not ok and "CP@100" in why
    ok, why = promotion_decision(champ, {"ap": float("nan"), "cp@100": 0.3})
    assert not ok


def test_gate_window_excludes_labels_either_model_trained_on():
    w = {"label_cutoff": pd.Timestamp("2024-02-01", tz="UTC"), "labels_known_before": pd.Timestamp("2024-02-08", tz="UTC")}
    assert gate_window({"label_cutoff": "2024-01-20 00:00:00+00:00"}, w) == (w["label_cutoff"], w["labels_known_before"])
    s, e = gate_window({"label_cutoff": "2024-02-03 00:00:00+00:00"}, w)
    assert s == pd.Timestamp("2024-02-03", tz="UTC") and e == w["labels_known_before"]


def test_read_archive_drops_score_columns_and_duplicates(tiny_frame, tmp_path):
    from fraud.training import read_archive

    df = tiny_frame.assign(score=0.5, is_alert=False, reasons=[["x"]] * len(tiny_frame), kafka_partition=0,
                           kafka_offset=range(len(tiny_frame)))
    day = df["timestamp"].dt.strftime("%Y-%m-%d")
    for d, g in df.groupby(day):
        (tmp_path / f"date={d}").mkdir()
        g.to_parquet(tmp_path / f"date={d}" / "part-transactions-p0000-o0.parquet", index=False)
    # at-least-once delivery: one event archived twice
    df.iloc[[0]].to_parquet(tmp_path / f"date={day.iloc[0]}" / "part-transactions-p0000-o9.parquet", index=False)
    (tmp_path / f"date={day.iloc[0]}" / ".part-x.parquet.tmp").write_bytes(b"half-written")
    got = read_archive(tmp_path)
    assert got["tx_id"].tolist() == tiny_frame["tx_id"].tolist()
    assert {"score", "is_alert", "reasons", "kafka_offset"}.isdisjoint(got.columns)
    assert got["label"].tolist() == tiny_frame["label"].tolist()
    with pytest.raises(ConfigError, match="date=YYYY-MM-DD"):
        read_archive(tmp_path / f"date={day.iloc[0]}")


def test_warm_state_is_the_online_replay_of_recent_history(world):
    """The bundle's initial state equals replaying the last warm_state_days of (label-limited) history, and
    scoring the days after train-until from it differs from an empty state (windows are not empty)."""
    until = world["timestamp"].iloc[int(len(world) * 0.8)].ceil("D")
    hist, later = world[world["timestamp"] < until], world[world["timestamp"] >= until].head(300)
    res = train(hist, TrainConfig(**{**LIGHT, "warm_state_days": 10}), train_until=until)
    b = res.bundle
    assert b.initial_state_.last_timestamp == hist["timestamp"].iloc[-1]
    warm = b.score(later, b.warm_state())
    # the same from an empty state after replaying the last 10 days of history (labels hidden as training did)
    known = hide_recent_labels(hist, pd.Timestamp(res.windows["labels_known_before"]))
    st = b.new_state()
    tail = known[known["timestamp"] >= known["timestamp"].iloc[-1] - pd.Timedelta(days=10)]
    for i in range(0, len(tail), 10_000):
        b.features_online(tail.iloc[i:i + 10_000], st)
    np.testing.assert_allclose(warm["score"], b.score(later, st)["score"], atol=1e-9)
    cold = b.score(later, b.new_state())
    assert not np.allclose(warm["score"], cold["score"])
    assert b.warm_state() is not b.warm_state()  # a copy each time: partitions never share state
