"""Real MLflow SQLite store in a temporary folder: train -> register -> load by alias -> score;
the promotion gate both ways; the score command; unreachable registry."""
from __future__ import annotations

import json
import time
import warnings

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from fraud import registry
from fraud.config import Settings
from fraud.errors import RegistryError
from fraud.training import TrainConfig, retrain_flow, train

pytestmark = pytest.mark.integration

# the baseline guard (its random forests: most of a training's time here) is tested in tests/fraud/test_baseline.py
LIGHT = dict(featurizers=("tabular",), unsupervised=("iforest", "hbos"), baseline_guard=False,
             ensemble_params={"detector_params": {"iforest": {"n_estimators": 50}},
                              "supervised_params": {"n_estimators": 40, "n_jobs": 1}})
NAME = "fraud-detector"


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """A store MLflow makes here from nothing (the other tests of the suite copy a made one: new_mlflow_store)."""
    root = tmp_path_factory.mktemp("mlflow")
    settings = Settings(tracking_uri=f"sqlite:///{root}/mlflow.db", artifact_root=str(root / "artifacts"))
    registry.configure(settings.tracking_uri)
    return settings, root


@pytest.fixture(scope="module")
def world():
    """Training data (smaller than small_world, to keep the three trainings here fast)."""
    from fraud.simulate import simulate

    return simulate(customers=200, terminals=400, days=45, seed=5)


@pytest.fixture(scope="module")
def champion(store, world):
    """v1: an unsupervised model (a weak champion), registered; first version -> alias champion."""
    settings, _ = store
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = train(world, TrainConfig(**LIGHT), unsupervised=True)
    version = registry.log_and_register(res.bundle, name=NAME, metrics=res.metrics, params=res.params,
                                        artifact_root=settings.artifact_root)
    return res, version


def test_train_register_load_by_alias_and_score(store, champion, small_world):
    settings, root = store
    res, version = champion
    assert version == "1"
    assert registry.resolve_alias(NAME, "champion") == "1"
    b = registry.load_bundle(f"models:/{NAME}@champion", tracking_uri=settings.tracking_uri)
    assert b.version == "1" and b.feature_names == res.bundle.feature_names
    df = small_world.iloc[-4000:]
    got = b.score_frame(df, batch_size=1000)
    exp = res.bundle.score_frame(df, batch_size=1000)
    np.testing.assert_array_equal(got["score"].to_numpy(), exp["score"].to_numpy())
    assert got["is_alert"].any()
    # the artifacts land under the configured artifact root, never ./mlruns
    assert any((root / "artifacts").rglob("bundle.pkl"))
    # pyfunc semantics: predict(rows) == score_frame(rows) from a fresh state
    import mlflow.pyfunc

    # MLflow alone (mlflow models serve) verifies the bundle against its run's tags (tampering: test_servable.py)
    assert mlflow.pyfunc.load_model(f"models:/{NAME}/1").unwrap_python_model().bundle.threshold == b.threshold
    t0 = time.perf_counter()
    model = registry.BundleModel(registry.load_bundle(f"models:/{NAME}/1", via="pyfunc"), history="fresh")
    t_pyfunc = time.perf_counter() - t0
    t0 = time.perf_counter()
    registry.load_bundle(f"models:/{NAME}/1")
    t_direct = time.perf_counter() - t0
    print(f"load: pyfunc {t_pyfunc:.3f}s, direct artifact {t_direct:.3f}s")
    pred = model.predict(None, df.iloc[::-1])  # any order: sorted by time inside (reversal keeps no tie order...)
    pred = model.predict(None, df)  # ...so compare on the time-ordered frame
    np.testing.assert_array_equal(pred["score"].to_numpy(), exp["score"].to_numpy())
    assert model.bundle.feature_names == b.feature_names
    # a run URI loads the same bundle (no registry version then)
    by_run = registry.load_bundle(f"runs:/{res.bundle.config['run_id']}/model")
    assert by_run.version is None and by_run.threshold == b.threshold


def test_gate_promotes_a_better_challenger_and_keeps_a_worse_one(store, champion, world):
    settings, _ = store
    cfg = TrainConfig(**LIGHT)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        win = retrain_flow(settings, world, cfg, name=NAME, ap_margin=0.01)
    assert win["decision"] == "promote", win
    assert win["challenger"]["ap"] >= win["champion"]["ap"] + 0.01
    assert registry.resolve_alias(NAME, "champion") == win["challenger_version"] == "2"
    # an impossible margin: the challenger loses, the alias stays, tags say why
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        lose = retrain_flow(settings, world, cfg, name=NAME, ap_margin=1.0)
    assert lose["decision"] == "keep" and "margin" in lose["reason"]
    assert lose["champion_version"] == "2" and lose["challenger_version"] == "3"
    assert registry.resolve_alias(NAME, "champion") == "2"
    mv = registry.model_version_info(NAME, "3")
    assert mv.tags["retrain.decision"] == "keep"
    assert mv.tags["retrain.reason"] == lose["reason"]
    assert float(mv.tags["retrain.champion.ap"]) == pytest.approx(lose["champion"]["ap"])
    assert float(mv.tags["retrain.challenger.ap"]) == pytest.approx(lose["challenger"]["ap"])
    from mlflow.tracking import MlflowClient

    run = MlflowClient(settings.tracking_uri).get_run(mv.tags["run_id"])
    assert run.data.tags["retrain.decision"] == "keep"
    assert "retrain.challenger.cp_at_100" in run.data.tags
    assert registry.model_version_info(NAME, "2").tags["retrain.decision"] == "promote"


def test_score_command_writes_results_rejects_and_alerts(store, champion, small_world, tmp_path):
    from fraud.cli import main
    from fraud.store import AlertStore

    settings, _ = store
    df = small_world.iloc[-3000:].copy()
    csv = tmp_path / "tx.csv"
    df.to_csv(csv, index=False)
    with open(csv, "a") as fh:
        fh.write("bad1,not-a-time,c1,t1,5.0,0,0\n")
    env = {"MLFLOW_TRACKING_URI": settings.tracking_uri}
    out, rej, db = tmp_path / "scores.parquet", tmp_path / "rejects.csv", f"sqlite:///{tmp_path}/alerts.db"
    r = CliRunner().invoke(main, ["score", "--data", str(csv), "--model", f"models:/{NAME}@champion", "--out",
                                  str(out), "--rejects", str(rej), "--alerts-db", db], env=env)
    assert r.exit_code == 0, r.output
    res = pd.read_parquet(out)
    assert list(res.columns) == ["tx_id", "score", "is_alert", "reasons"]
    assert res["tx_id"].tolist() == df["tx_id"].tolist()
    assert "bad1" in pd.read_csv(rej)["tx_id"].astype(str).tolist()
    store_ = AlertStore(db)
    assert store_.count_alerts() == int(res["is_alert"].sum()) > 0
    # idempotent: scoring again adds no duplicate alert
    r = CliRunner().invoke(main, ["score", "--data", str(csv), "--out", str(out), "--alerts-db", db], env=env)
    assert r.exit_code == 0, r.output
    assert store_.count_alerts() == int(res["is_alert"].sum())
    assert set(store_.read_alerts()["model_version"]) == {registry.resolve_alias(NAME, "champion")}


def test_unreachable_registry_names_the_uri(tmp_path):
    bad = f"sqlite:///{tmp_path}/no/such/dir/mlflow.db"
    with pytest.raises(RegistryError, match="no/such/dir"):
        registry.configure(bad)
    with pytest.raises(RegistryError, match="127.0.0.1:9"):
        registry.load_bundle("models:/x@champion", tracking_uri="http://127.0.0.1:9")


def test_unknown_model_or_alias_is_a_registry_error(store):
    settings, _ = store
    registry.configure(settings.tracking_uri)
    with pytest.raises(RegistryError, match="nope"):
        registry.resolve_alias("nope", "champion")
    with pytest.raises(RegistryError, match="models:/"):
        registry.load_bundle("models:/", tracking_uri=settings.tracking_uri)


def test_evaluate_command(store, champion, small_world, tmp_path):
    from fraud.cli import main

    settings, _ = store
    p = tmp_path / "w.parquet"
    small_world.to_parquet(p)
    r = CliRunner().invoke(main, ["evaluate", "--data", str(p), "--json"],
                           env={"MLFLOW_TRACKING_URI": settings.tracking_uri})
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["version"] == registry.resolve_alias(NAME, "champion")
    assert 0 <= out["metrics"]["ap"] <= 1 and out["metrics"]["n_fraud"] > 0


def test_train_command_without_fraud_labels_falls_back_with_a_warning(world, tmp_path):
    """No labelled fraud -> the CLI trains unsupervised and says so on stderr (nothing registered here)."""
    from fraud.cli import main

    p = tmp_path / "nofraud.parquet"
    world.assign(label=np.int8(0)).to_parquet(p)
    r = CliRunner().invoke(main, ["train", "--data", str(p), "--features", "tabular", "--detectors", "hbos",
                                  "--no-register", "--json"])
    assert r.exit_code == 0, r.output
    assert "warning:" in r.stderr and "unsupervised" in r.stderr.lower()
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["version"] is None and any("unsupervised" in w.lower() for w in out["warnings"])


def test_train_command_unsupervised_without_label_column_registers_a_loadable_model(world, tmp_path, new_mlflow_store):
    """``fraud train --unsupervised`` on data with no label (nor scenario) column: trained, registered
    (curves skipped: nothing to draw them from), and the version loads and scores."""
    from fraud.cli import main

    p = tmp_path / "nolabels.parquet"
    world.drop(columns=[c for c in ("label", "scenario") if c in world]).to_parquet(p)
    uri = new_mlflow_store(tmp_path)
    env = {"MLFLOW_TRACKING_URI": uri, "FRAUD_ARTIFACT_ROOT": str(tmp_path / "artifacts")}
    r = CliRunner().invoke(main, ["train", "--data", str(p), "--unsupervised",
                                  "--features", "tabular", "--detectors", "hbos", "--name", "label-free",
                                  "--json"], env=env)
    assert r.exit_code == 0, r.output + repr(r.exception)
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["version"] == "1"
    b = registry.load_bundle("models:/label-free/1", tracking_uri=uri)
    assert b.config["unsupervised_flag"] is True
    scored = b.score_frame(world.drop(columns=["label", "scenario"]).iloc[-2000:], batch_size=1000)
    assert len(scored) == 2000 and scored["score"].between(0, 1).all()


def test_retrain_command_registers_a_challenger_with_the_gate_decision(world, tmp_path, new_mlflow_store):
    """``fraud train`` then ``fraud retrain`` through the CLI: v1 champion, v2 challenger with the decision tags."""
    import mlflow

    from fraud.cli import main

    p = tmp_path / "world.parquet"
    world.to_parquet(p)
    uri = new_mlflow_store(tmp_path)
    env = {"MLFLOW_TRACKING_URI": uri, "FRAUD_ARTIFACT_ROOT": str(tmp_path / "artifacts")}
    light = ["--features", "tabular", "--detectors", "hbos", "--head-trees", "30", "--baseline-trees", "20",
             "--name", "gated"]
    first = CliRunner().invoke(main, ["train", "--data", str(p), *light, "--json"], env=env)
    assert first.exit_code == 0, first.output + repr(first.exception)
    r = CliRunner().invoke(main, ["retrain", "--data", str(p), *light, "--json"], env=env)
    assert r.exit_code == 0, r.output + repr(r.exception)
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["champion_version"] == "1" and out["challenger_version"] == "2"
    assert out["decision"] in ("promote", "keep") and out["reason"]
    registry.configure(uri)
    run_id = mlflow.MlflowClient().get_model_version("gated", "2").run_id
    tags = mlflow.get_run(run_id).data.tags
    assert tags["retrain.decision"] == out["decision"] and "baseline.choice" in tags
    assert registry.resolve_alias("gated", "champion") == ("2" if out["decision"] == "promote" else "1")


def test_train_command_checks_the_tracking_store_before_training(world, tmp_path):
    """A tracking store in a folder that does not exist fails at once, naming it, not after the training."""
    from fraud.cli import main

    p = tmp_path / "world.parquet"
    world.to_parquet(p)
    uri = f"sqlite:///{tmp_path}/missing/mlflow.db"
    r = CliRunner().invoke(main, ["train", "--data", str(p), "--features", "tabular", "--detectors", "hbos"],
                           env={"MLFLOW_TRACKING_URI": uri})
    from fraud.errors import RegistryError

    assert isinstance(r.exception, RegistryError), r.output  # the CLI's entry point prints it, exit 2
    assert "missing" in str(r.exception) and "does not exist" in str(r.exception)
    assert "fitting featurizer" not in r.output  # nothing was trained
