"""Shared fixtures. Tests that need the handbook benchmark data skip when it is absent."""
from __future__ import annotations

import os
from pathlib import Path

# One thread per OpenMP/BLAS pool, set before sklearn, LightGBM or torch load their runtime: the suite runs on 2
# shared cores, where OpenMP's spinning workers thrash (a HistGradientBoosting fit of the ablation test: 47 s with
# the default pool vs 5 s with one thread on the loaded machine). Subprocesses (scorers, CLIs) inherit it; a value
# set by the caller is kept. No test asserts a figure that depends on the thread count.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")
# Idle OpenMP threads sleep instead of spinning. numba's OpenMP threading layer (the node2vec kernels run with
# parallel=True) set the process's OpenMP thread count to its own (NUMBA_NUM_THREADS: the core count) in the
# libgomp torch loads, which sklearn and torch then use too: after the graph featurizer, the ablation test's
# HistGradientBoosting fit ran with 2 threads whose spin-waits between its many small parallel regions cost
# 6-33 s of CPU instead of 0.5 s (1.1 s with passive waits). models.node2vec now sets the counts back after
# its kernels; passive waits stay for any other parallel region. Only scheduling: no figure depends on it.
os.environ.setdefault("OMP_WAIT_POLICY", "passive")

import numpy as np
import pandas as pd
import pytest

try:  # one intra-op thread: the suite runs on 2 cores, and torch's thread pool thrashes under contention
    import torch

    torch.set_num_threads(1)
except ImportError:  # pragma: no cover
    pass

ROOT = Path(__file__).resolve().parents[1]
HANDBOOK = ROOT.parent / "shared" / "data" / "handbook" / "transactions.parquet"


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return ROOT


@pytest.fixture(scope="session")
def handbook_path() -> Path:
    if not HANDBOOK.exists():
        pytest.skip(f"handbook benchmark data absent at {HANDBOOK} (it is not part of the product)")
    return HANDBOOK


@pytest.fixture(scope="session")
def small_world() -> pd.DataFrame:
    """A small simulated world with all six scenarios (session-scoped: built once)."""
    from fraud.simulate import simulate

    return simulate(customers=400, terminals=800, days=60, seed=11)


def _random_world(n_customers: int, n_terminals: int, days: int, seed: int = 0, per_customer_day: int = 1,
                  fraud_rate: float = 0.05) -> pd.DataFrame:
    """Uniform random canonical events with second-resolution timestamps, many exact ties and events exactly
    whole days apart (the window-boundary cases of the featurizers), random labels."""
    rng = np.random.default_rng(seed)
    n = n_customers * days * per_customer_day
    secs = rng.integers(0, days * 86_400, n)
    k = n // 10
    secs[:k] = (secs[:k] // 86_400) * 86_400 + 3_600  # many events exactly whole days apart
    secs = np.sort(secs)
    return pd.DataFrame({
        "tx_id": [f"t{i}" for i in range(n)],
        "timestamp": pd.Timestamp("2024-03-01", tz="UTC") + pd.to_timedelta(secs, unit="s"),
        "customer_id": rng.integers(0, n_customers, n).astype(str),
        "terminal_id": rng.integers(0, n_terminals, n).astype(str),
        "amount": rng.gamma(2.0, 30.0, n).round(2),
        "label": (rng.random(n) < fraud_rate).astype(np.int8),
    })


@pytest.fixture(scope="session")
def random_world():
    """The generator of random worlds for featurizer tests: ``random_world(n_customers, n_terminals, days, seed=0,
    per_customer_day=1, fraud_rate=0.05)``."""
    return _random_world


@pytest.fixture()
def tiny_frame() -> pd.DataFrame:
    """A hand-built canonical frame: 2 customers, 2 terminals, 8 transactions over 10 days."""
    ts = pd.to_datetime([
        "2024-01-01 10:00", "2024-01-01 12:00", "2024-01-02 09:00", "2024-01-03 23:30",
        "2024-01-05 08:00", "2024-01-06 13:00", "2024-01-09 10:00", "2024-01-10 11:00",
    ], utc=True)
    return pd.DataFrame({
        "tx_id": [f"t{i}" for i in range(8)],
        "timestamp": ts,
        "customer_id": ["A", "B", "A", "A", "B", "A", "B", "A"],
        "terminal_id": ["X", "X", "Y", "X", "Y", "X", "X", "Y"],
        "amount": np.array([10.0, 20.0, 30.0, 40.0, 50.0, 60.0, 70.0, 80.0]),
        "label": np.array([0, 1, 0, 0, 0, 1, 0, 0], dtype=np.int8),
    })


@pytest.fixture(scope="session")
def drift_world() -> pd.DataFrame:
    """A 45-day world for the bundle and drift tests (bundle, drift, monitor CLI, scorer gauges)."""
    from fraud.simulate import simulate

    return simulate(customers=200, terminals=400, days=45, seed=5)


@pytest.fixture(scope="session")
def drift_bundle(drift_world):
    """A light bundle (tabular features, iforest + hbos, a small head) trained on ``drift_world``: it carries a
    drift profile. Shared by several modules: a test that sets an attribute on it works on a ``copy.copy``."""
    import warnings

    from fraud.training import TrainConfig, train

    light = dict(featurizers=("tabular",), unsupervised=("iforest", "hbos"),
                 ensemble_params={"detector_params": {"iforest": {"n_estimators": 50}},
                                  "supervised_params": {"n_estimators": 40, "n_jobs": 1}}, baseline_trees=20)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return train(drift_world, TrainConfig(**light)).bundle


@pytest.fixture(scope="session")
def new_mlflow_store(tmp_path_factory):
    """``new_mlflow_store(folder)`` -> the tracking URI of an empty MLflow store ``folder/mlflow.db``: a copy of
    one store made once per test run (under pytest-xdist the first worker to need it makes it in the run's shared
    temporary folder, the others wait for it and copy it). MLflow makes a store's tables by running its schema
    migrations, 4-8 s each time on this machine (1.3 s of CPU, the rest its disk syncs); a copy opens in 0.06 s
    and is the same store (it holds only MLflow's Default experiment; the product logs into experiments it
    creates with their own artifact root)."""
    import fcntl
    import shutil

    from mlflow.tracking import MlflowClient

    base = tmp_path_factory.getbasetemp()
    shared = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base  # xdist: the run's folder
    template = shared / "mlflow-template" / "mlflow.db"
    with open(shared / "mlflow-template.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        if not template.exists():
            template.parent.mkdir(exist_ok=True)
            part = template.with_name("making.db")
            part.unlink(missing_ok=True)
            MlflowClient(f"sqlite:///{part}").search_experiments()
            part.rename(template)  # whole or absent: a worker that dies while making it leaves no half store

    def new(folder) -> str:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(template, folder / "mlflow.db")
        return f"sqlite:///{folder / 'mlflow.db'}"

    return new


def pytest_collection_modifyitems(config, items):
    """Files holding ``slow`` tests run first, then files holding ``integration`` tests, then the rest (a stable
    sort by file: files stay whole, the order within a file is kept). ``make test`` hands whole files to two
    workers in this order (pytest-xdist ``--dist loadfile --no-loadscope-reorder``): the long files (fault runs,
    broker, MLflow serve) start early instead of leaving one worker running alone at the end."""
    rank: dict = {}
    for it in items:
        r = 0 if it.get_closest_marker("slow") else 1 if it.get_closest_marker("integration") else 2
        rank[it.path] = min(r, rank.get(it.path, 2))
    items.sort(key=lambda it: rank[it.path])
