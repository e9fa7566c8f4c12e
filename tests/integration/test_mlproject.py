"""`mlflow run mlflow -e train` as a user runs it: MLflow's own CLI from the project's interpreter, a shell whose
PATH has no virtualenv, a temporary SQLite store. The entry point finds the checkout's `fraud` by itself
(mlflow/run-fraud), registers a model, and nothing is written in the working directory (no ./mlflow.db, no ./mlruns)."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[2]
MLFLOW = Path(sys.executable).parent / "mlflow"

needs_launcher = pytest.mark.skipif(
    not (ROOT / ".venv" / "bin" / "python").exists() and shutil.which("fraud") is None,
    reason="mlflow/run-fraud needs the checkout's .venv (make install) or fraud on PATH")


def _env(store: Path) -> dict:
    return {"HOME": os.environ.get("HOME", str(store)), "PATH": "/usr/bin:/bin", "PYTHONWARNINGS": "ignore",
            "MLFLOW_TRACKING_URI": f"sqlite:///{store / 'mlflow.db'}"}


def _mlflow(args: list[str], cwd: Path, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([str(MLFLOW), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


@needs_launcher
def test_mlflow_run_train_needs_no_path_and_leaves_no_stray_files(tmp_path, new_mlflow_store):
    from mlflow.tracking import MlflowClient

    from fraud.simulate import simulate

    store, work = tmp_path / "store", tmp_path / "work"
    work.mkdir()
    simulate(customers=150, terminals=300, days=40, seed=3).to_parquet(work / "world.parquet")
    # the user's store and experiment (made here with the client: MLflow's CLI would migrate a new store, 4-8 s)
    MlflowClient(new_mlflow_store(store)).create_experiment("fraud-detector", artifact_location=str(store / "artifacts"))
    env = _env(store)
    run = _mlflow(["run", str(ROOT / "mlflow"), "-e", "train", "--env-manager", "local",
                   "--experiment-name", "fraud-detector", "-P", "data=world.parquet",
                   "-P", "train_until=2018-05-01", "-P", "features=tabular", "-P", "detectors=hbos",
                   "-P", "head_trees=40", "-P", "baseline_trees=20"], work, env)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-4000:]
    assert "registered models:/fraud-detector/1" in run.stdout + run.stderr
    assert sorted(p.name for p in work.iterdir()) == ["world.parquet"]
    client = MlflowClient(f"sqlite:///{store / 'mlflow.db'}")        # the size parameters reached the training
    params = client.get_run(client.get_model_version("fraud-detector", "1").run_id).data.params
    assert params["baseline.trees"] == "20" and params["ensemble.supervised_params"] == str({"n_estimators": 40})
