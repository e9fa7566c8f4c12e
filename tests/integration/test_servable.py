"""The registered model is servable: signature and input example recorded, no type-hint warning at load, and
pyfunc scoring (what `mlflow models serve` runs) with the archive as history equals `fraud score` on the same
1,000 events."""
from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from fraud import registry
from fraud.config import Settings
from fraud.training import TrainConfig, train

pytestmark = pytest.mark.integration

LIGHT = dict(featurizers=("tabular", "sequence"), unsupervised=("iforest", "hbos"),
             ensemble_params={"detector_params": {"iforest": {"n_estimators": 50}}})
NAME = "fraud-detector"


@pytest.fixture(scope="module")
def served(tmp_path_factory, new_mlflow_store):
    from fraud.simulate import simulate

    root = tmp_path_factory.mktemp("serve")
    settings = Settings(tracking_uri=new_mlflow_store(root), artifact_root=str(root / "artifacts"))
    registry.configure(settings.tracking_uri)
    world = simulate(customers=200, terminals=400, days=45, seed=5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = train(world, TrainConfig(**LIGHT), unsupervised=True)
    version = registry.log_and_register(res.bundle, name=NAME, artifact_root=settings.artifact_root)
    return settings, root, world.sort_values(["timestamp", "tx_id"]).reset_index(drop=True), version


def _archive(df: pd.DataFrame, root) -> str:
    """``df`` written as the scorer's archive: DIR/date=YYYY-MM-DD/part-0.parquet."""
    for day, part in df.groupby(df["timestamp"].dt.strftime("%Y-%m-%d")):
        d = root / f"date={day}"
        d.mkdir(parents=True)
        part.to_parquet(d / "part-0.parquet", index=False)
    return str(root)


def test_model_version_has_signature_input_example_code_and_pinned_requirements(served):
    import mlflow

    settings, _, _, version = served
    info = mlflow.models.get_model_info(f"models:/{NAME}/{version}")
    assert info.signature is not None
    assert [c.name for c in info.signature.inputs.inputs][:5] == ["tx_id", "timestamp", "customer_id",
                                                                   "terminal_id", "amount"]
    assert {c.name for c in info.signature.outputs.inputs} == {"tx_id", "score", "is_alert", "reasons"}
    assert info.saved_input_example_info is not None
    d = registry.mlflow_download(f"models:/{NAME}/{version}", str(_tmp(served)))
    reqs = (__import__("pathlib").Path(d) / "requirements.txt").read_text().splitlines()
    assert any(r.startswith("torch==2.13.0") for r in reqs) and not any(r.startswith("fraud-graph") for r in reqs)
    assert all("==" in r for r in reqs if not r.startswith("-")), reqs
    assert {"fraud", "models", "streaming"} <= {p.name for p in (__import__("pathlib").Path(d) / "code").iterdir()}


def _tmp(served):
    p = served[1] / "dl"
    p.mkdir(exist_ok=True)
    return p


def test_pyfunc_with_archive_history_equals_fraud_score_on_1000_events(served, tmp_path):
    import mlflow.pyfunc

    from fraud.cli import main

    settings, root, world, version = served
    query, history = world.iloc[-1000:], world.iloc[:-1000]
    world.to_parquet(tmp_path / "world.parquet", index=False)
    out = tmp_path / "scores.parquet"
    r = CliRunner().invoke(main, ["score", "--data", str(tmp_path / "world.parquet"), "--model",
                                  f"models:/{NAME}/{version}", "--out", str(out)],
                           env={"MLFLOW_TRACKING_URI": settings.tracking_uri}, catch_exceptions=False)
    assert r.exit_code == 0, r.output
    expected = pd.read_parquet(out).set_index("tx_id").loc[query["tx_id"]]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = mlflow.pyfunc.load_model(f"models:/{NAME}/{version}",
                                         model_config={"archive": _archive(history, tmp_path / "archive"),
                                                       "history": "fresh"})
    assert not [w for w in caught if "type hint" in str(w.message).lower()]
    # the signature's timestamp is a naive datetime (UTC), what a REST request's text becomes; rows in any order
    request = query.sample(frac=1.0, random_state=0)
    request = request.assign(timestamp=request["timestamp"].dt.tz_convert("UTC").dt.tz_localize(None))
    got = model.predict(request).set_index("tx_id").loc[query["tx_id"]]
    diff = np.abs(got["score"].to_numpy() - expected["score"].to_numpy())
    print(f"pyfunc vs fraud score on {len(query)} events: max |score difference| {diff.max():.3g}")
    assert diff.max() < 1e-9
    assert (got["is_alert"].to_numpy() == expected["is_alert"].to_numpy()).all()
    without = model.unwrap_python_model()
    without.archive = None
    cold = model.predict(request)
    assert not np.allclose(cold.set_index("tx_id").loc[query["tx_id"], "score"], expected["score"])


def test_served_bundle_is_verified_against_the_run(served, tmp_path):
    import mlflow.pyfunc

    from fraud.errors import RegistryError

    settings, root, world, version = served
    d = registry.mlflow_download(f"models:/{NAME}/{version}", str(tmp_path / "m"))
    pkl = __import__("pathlib").Path(d) / "artifacts" / "bundle.pkl"
    pkl.write_bytes(pkl.read_bytes() + b"x")
    with pytest.raises(Exception) as e:
        mlflow.pyfunc.load_model(d)
    assert isinstance(e.value, RegistryError) or "does not match" in str(e.value)
