"""Fixtures of the live-scorer tests (test_stream*.py), built once per test process (session scope: under
``make test`` each pytest-xdist worker that runs one of those files builds them once, whatever files it gets):
a Tansu broker on a free port and a bundle registered as champion in a temporary MLflow store. Tests give
their topics and groups unique names; none changes the shared model's champion alias."""
from __future__ import annotations

import warnings
from types import SimpleNamespace

import pandas as pd
import pytest

from streamkit import MODEL, VERIFIED


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


@pytest.fixture(scope="module")
def verified_models(tmp_path_factory, new_mlflow_store):
    """(store folder, bundle, v1, v2) of ``VERIFIED`` in a fresh MLflow store (the registry configured on it): a
    light unsupervised bundle registered twice, v2 with the HMAC key "s3cret". Per module: the bundle-verification
    tests edit the artifact store (and put it back)."""
    import warnings

    from fraud import registry
    from fraud.simulate import simulate
    from fraud.training import TrainConfig, train

    root = tmp_path_factory.mktemp("mlflow")
    registry.configure(new_mlflow_store(root))
    light = dict(featurizers=("tabular",), unsupervised=("hbos",), supervised=None, warm_state_days=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        bundle = train(simulate(customers=100, terminals=200, days=30, seed=3), TrainConfig(**light),
                       unsupervised=True).bundle
    v1 = registry.log_and_register(bundle, name=VERIFIED, artifact_root=str(root / "artifacts"))
    v2 = registry.log_and_register(bundle, name=VERIFIED, artifact_root=str(root / "artifacts"), key="s3cret")
    return root, bundle, v1, v2
