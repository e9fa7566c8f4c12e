"""`mlflow models serve` for real: MLflow's CLI serves the registered version over REST (--env-manager local),
the customers' history from the archive (FRAUD_ARCHIVE). With the model config history=fresh its scores equal
`fraud score` on the archive plus the request's 1,000 events; by default (warm) they equal the stream scorer's
replay from the training-cutoff state. Requests are JSON as the README shows (naive UTC timestamp texts)."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import warnings
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from fraud import registry
from fraud.training import TrainConfig, train

pytestmark = [pytest.mark.integration, pytest.mark.slow]
NAME = "fraud-detector"
LIGHT = dict(featurizers=("tabular", "sequence"), unsupervised=("iforest", "hbos"),
             ensemble_params={"detector_params": {"iforest": {"n_estimators": 50}}}, warm_state_days=10)


@pytest.fixture(scope="module")
def store(tmp_path_factory, new_mlflow_store):
    from fraud.simulate import simulate

    root = tmp_path_factory.mktemp("serve")
    uri = new_mlflow_store(root)
    registry.configure(uri)
    world = simulate(customers=200, terminals=400, days=45, seed=5).sort_values(["timestamp", "tx_id"])
    world = world.reset_index(drop=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cutoff = world["timestamp"].iloc[-3000]
        res = train(world[world["timestamp"] < cutoff], TrainConfig(**LIGHT), train_until=cutoff, unsupervised=True)
    version = registry.log_and_register(res.bundle, name=NAME, artifact_root=str(root / "artifacts"))
    world = world.drop(columns=["label", "scenario"])  # events as the scorer gets them: no labels yet
    query, history = world.iloc[-1000:], world.iloc[:-1000]
    for day, part in history.groupby(history["timestamp"].dt.strftime("%Y-%m-%d")):
        (root / "archive" / f"date={day}").mkdir(parents=True)
        part.to_parquet(root / "archive" / f"date={day}" / "part-0.parquet", index=False)
    return uri, root, world, query, version


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _served_scores(uri: str, root: Path, query: pd.DataFrame, model_config: dict | None,
                   env_manager: str = "local", path: str = "/usr/bin:/bin", limit: float = 180,
                   extra_env: dict | None = None) -> pd.DataFrame:
    port, bindir = _port(), str(Path(sys.executable).parent)
    env = {"HOME": os.environ.get("HOME", str(root)), "PATH": f"{bindir}:{path}", "PYTHONWARNINGS": "ignore",
           "MLFLOW_TRACKING_URI": uri, "FRAUD_ARCHIVE": str(root / "archive")}
    env.update(extra_env or {})
    if model_config:
        env["SERVING_MODEL_CONFIG"] = json.dumps(model_config)
    proc = subprocess.Popen([f"{bindir}/mlflow", "models", "serve", "-m", f"models:/{NAME}@champion",
                             "--env-manager", env_manager, "-p", str(port)], env=env, cwd=root,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    try:
        _wait(port, proc, limit)
        recs = [{"tx_id": r.tx_id, "timestamp": r.timestamp.strftime("%Y-%m-%d %H:%M:%S.%f"),
                 "customer_id": r.customer_id, "terminal_id": r.terminal_id, "amount": float(r.amount)}
                for r in query.itertuples()]
        r = httpx.post(f"http://127.0.0.1:{port}/invocations", json={"dataframe_records": recs}, timeout=300)
        assert r.status_code == 200, r.text[:2000]
        return pd.DataFrame(r.json()["predictions"]).set_index("tx_id").loc[query["tx_id"]]
    finally:
        os.killpg(proc.pid, 15)
        proc.wait(timeout=30)


def _wait(port: int, proc: subprocess.Popen, limit: float = 180) -> None:
    t0 = time.monotonic()
    while time.monotonic() - t0 < limit:
        if proc.poll() is not None:
            raise AssertionError(f"mlflow models serve exited {proc.returncode}: {proc.stderr.read()[-3000:]!r}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/ping", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise AssertionError("mlflow models serve did not answer /ping")


def _fraud_score(store, tmp_path: Path) -> pd.DataFrame:
    """`fraud score` on the whole world (history and query) with the registered version: the query's rows."""
    from fraud.cli import main

    uri, root, world, query, version = store
    world.to_parquet(tmp_path / "world.parquet", index=False)
    r = CliRunner().invoke(main, ["score", "--data", str(tmp_path / "world.parquet"), "--model",
                                  f"models:/{NAME}/{version}", "--out", str(tmp_path / "s.parquet")],
                           env={"MLFLOW_TRACKING_URI": uri}, catch_exceptions=False)
    assert r.exit_code == 0, r.output
    return pd.read_parquet(tmp_path / "s.parquet").set_index("tx_id").loc[query["tx_id"]]


def test_rest_with_fresh_history_equals_fraud_score_on_1000_events(store, tmp_path):
    uri, root, world, query, version = store
    expected = _fraud_score(store, tmp_path)
    got = _served_scores(uri, root, query, {"history": "fresh"})
    diff = np.abs(got["score"].to_numpy() - expected["score"].to_numpy())
    print(f"mlflow models serve vs fraud score on {len(query)} events: max |score difference| {diff.max():.3g}")
    assert diff.max() < 1e-9
    assert (got["is_alert"].to_numpy() == expected["is_alert"].to_numpy()).all()


@pytest.mark.timeout(3600)
@pytest.mark.skipif(os.environ.get("FRAUD_TEST_VIRTUALENV") != "1",
                    reason="rebuilds the model's environment from its requirements (minutes): FRAUD_TEST_VIRTUALENV=1")
def test_rest_from_a_rebuilt_virtualenv_equals_fraud_score(store, tmp_path):
    """`--env-manager virtualenv`: MLflow builds a fresh environment from the logged requirements and code paths
    (pyenv and virtualenv on PATH), so the scores prove the model carries everything it needs."""
    uri, root, world, query, version = store
    expected = _fraud_score(store, tmp_path)
    got = _served_scores(uri, root, query, {"history": "fresh"}, env_manager="virtualenv",
                         path=os.environ.get("PATH", "/usr/bin:/bin"), limit=3000,
                         # no route to the CPU torch index here: pip fails fast on it instead of retrying
                         extra_env={"PIP_RETRIES": os.environ.get("PIP_RETRIES", "0")})
    diff = np.abs(got["score"].to_numpy() - expected["score"].to_numpy())
    print(f"mlflow models serve (virtualenv) vs fraud score on {len(query)} events: max difference {diff.max():.3g}")
    assert diff.max() < 1e-9


def test_rest_by_default_equals_the_stream_replay_from_the_cutoff_state(store):
    uri, root, world, query, version = store
    bundle = registry.load_bundle(f"models:/{NAME}/{version}", tracking_uri=uri)
    since = world[world["timestamp"] >= pd.Timestamp(bundle.config["train_until"])]
    state, parts = bundle.warm_state(), []
    for i in range(0, len(since), 500):  # the scorer's micro-batches from the training-cutoff state
        parts.append(bundle.score(since.iloc[i:i + 500], state))
    expected = pd.concat(parts).set_index("tx_id").loc[query["tx_id"]]
    got = _served_scores(uri, root, query, None)
    diff = np.abs(got["score"].to_numpy() - expected["score"].to_numpy())
    print(f"mlflow models serve (warm) vs the stream replay on {len(query)} events: max difference {diff.max():.3g}")
    assert diff.max() < 1e-9
