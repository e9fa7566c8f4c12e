"""Bundles are verified before they are unpickled: a real SQLite MLflow store, a bundle registered, then its
artifact replaced by a planted pickle (the artifact store is a folder others may write): every load path refuses
it, names the model and both digests, and the plant never runs. Keyed (HMAC) registration and local folders."""
from __future__ import annotations

import pickle
import shutil

import pytest

from fraud import registry
from fraud.errors import RegistryError
from streamkit import VERIFIED

pytestmark = pytest.mark.integration
NAME = VERIFIED


def _touch(path):  # what the plant runs when unpickled (stands for any shell command)
    with open(path, "w") as f:
        f.write("ran")
    return 0


class _Planted:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (_touch, (self.marker,))


@pytest.fixture(scope="module")
def registered(verified_models):
    return verified_models


def test_registered_versions_carry_digests_and_load(registered):
    _, bundle, v1, v2 = registered
    tags = registry.model_version_info(NAME, v1).tags
    assert len(tags[registry.TAG_SHA256]) == 64 and registry.TAG_HMAC not in tags
    assert len(tags[registry.TAG_MODEL_TREE]) == 64
    assert registry.TAG_HMAC in registry.model_version_info(NAME, v2).tags
    assert registry.load_bundle(f"models:/{NAME}/{v1}").threshold == bundle.threshold
    assert registry.load_bundle(f"models:/{NAME}/{v2}", key="s3cret", via="pyfunc").version == v2
    with pytest.raises(RegistryError, match="HMAC-SHA256 .* does not match"):
        registry.load_bundle(f"models:/{NAME}/{v2}", key="wrong")
    with pytest.raises(RegistryError, match="no registered HMAC-SHA256"):  # v1 was registered without a key
        registry.load_bundle(f"models:/{NAME}/{v1}", key="s3cret")


def test_a_tampered_artifact_is_refused_and_never_runs(registered, tmp_path):
    root, _, v1, _ = registered
    marker = tmp_path / "marker"
    evil = pickle.dumps(_Planted(marker))
    pickle.loads(evil)  # the plant is live when unpickled...
    assert marker.exists()
    marker.unlink()
    mv = registry.model_version_info(NAME, v1)
    arts = [p for p in (root / "artifacts").rglob("bundle.pkl")
            if registry._sha256(p.read_bytes()) == mv.tags[registry.TAG_SHA256]]
    assert arts, "the registered artifact is in the artifact store"
    saved = {p: p.read_bytes() for p in arts}
    try:
        for p in arts:
            p.write_bytes(evil)
        for kw in ({}, {"via": "pyfunc"}):
            with pytest.raises(RegistryError) as e:
                registry.load_bundle(f"models:/{NAME}/{v1}", **kw)
            msg = str(e.value)
            assert f"models:/{NAME}/{v1}" in msg and mv.tags[registry.TAG_SHA256] in msg
            assert registry._sha256(evil) in msg and "fraud train" in msg
        with pytest.raises(RegistryError, match="does not match"):
            registry.load_bundle(f"runs:/{mv.run_id}/model")
    finally:
        for p, data in saved.items():
            p.write_bytes(data)
    assert not marker.exists()


def test_a_version_without_a_digest_tag_is_refused(registered):
    _, _, v1, _ = registered
    from mlflow.tracking import MlflowClient

    client = MlflowClient()
    sha = registry.model_version_info(NAME, v1).tags[registry.TAG_SHA256]
    client.delete_model_version_tag(NAME, v1, registry.TAG_SHA256)
    try:
        with pytest.raises(RegistryError, match="no registered sha256 of bundle.pkl .* re-register"):
            registry.load_bundle(f"models:/{NAME}/{v1}")
    finally:
        client.set_model_version_tag(NAME, v1, registry.TAG_SHA256, sha)


def test_local_folders_need_the_hmac_or_trust_local(registered, tmp_path):
    import mlflow

    _, bundle, v1, v2 = registered
    keyed = tmp_path / "keyed"
    shutil.copytree(mlflow.artifacts.download_artifacts(f"models:/{NAME}/{v2}"), keyed)
    assert registry.load_bundle(str(keyed), key="s3cret").threshold == bundle.threshold
    with pytest.raises(RegistryError, match="cannot be verified .* --trust-local"):
        registry.load_bundle(str(keyed))
    with pytest.raises(RegistryError, match="does not match"):
        registry.load_bundle(str(keyed), key="wrong")
    plain = tmp_path / "plain"
    shutil.copytree(mlflow.artifacts.download_artifacts(f"models:/{NAME}/{v1}"), plain)
    with pytest.raises(RegistryError, match="no bundle.pkl.hmac in it"):
        registry.load_bundle(str(plain), key="s3cret")
    assert registry.load_bundle(str(plain), trust_local=True).version is None
