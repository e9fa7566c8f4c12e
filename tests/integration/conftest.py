"""Fixtures of the live-scorer tests (test_stream*.py), built once per test process (session scope: under
``make test`` each pytest-xdist worker that runs one of those files builds them once, whatever files it gets):
a Tansu broker on a free port and a bundle registered as champion in a temporary MLflow store. Tests give
their topics and groups unique names; none changes the shared model's champion alias."""
from __future__ import annotations

import warnings
from types import SimpleNamespace

import pandas as pd
import pytest

from streamkit import MODEL


@pytest.fixture(scope="session")
def broker():
    from streaming.broker import LocalBroker, wait_for_broker

    with LocalBroker() as b:
        wait_for_broker(b.bootstrap, timeout=30)
        yield b


@pytest.fixture(scope="session")
def reg(tmp_path_factory, new_mlflow_store):
    """A bundle trained on the first 14 days of a small world, registered as version 1 (champion) of ``MODEL``
    in a temporary store; ``live`` holds the days after."""
    from fraud import registry
    from fraud.simulate import simulate
    from fraud.training import TrainConfig, train

    world = simulate(customers=150, terminals=300, days=24, seed=5)
    d = tmp_path_factory.mktemp("mlflow")
    uri = new_mlflow_store(d)
    registry.configure(uri)
    registry.quiet_mlflow()
    hist = world[world["timestamp"] < world["timestamp"].min() + pd.Timedelta(days=14)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = train(hist, TrainConfig(featurizers=("tabular",), unsupervised=("ecod",), supervised=None,
                                      alert_budget_per_day=15, warmup_days=3, eval_days=3))
        version = registry.log_and_register(res.bundle, name=MODEL, artifact_root=str(d / "artifacts"))
    live = world[world["timestamp"] >= world["timestamp"].min() + pd.Timedelta(days=14)].reset_index(drop=True)
    return SimpleNamespace(uri=uri, version=version, bundle=res.bundle, live=live, root=d)
