"""``load_bundle(via="pyfunc")`` verifies the WHOLE model folder before ``mlflow.pyfunc.load_model`` reads it.

Pins: MLflow's loader follows the folder's MLmodel (``loader_module``, ``python_model``, ``code``), puts its
``code/`` folder first on sys.path and unpickles ``python_model.pkl``, so a bundle digest alone is not enough. A
real SQLite MLflow store in a temporary folder, one registered version, then its folder in the artifact store is
edited (MLmodel naming a module planted in code/, a file added to code/, python_model.pkl replaced): every edit
is refused with the model and both tree digests named, and the plant never runs. Also: the tree digest is a tag
of the version and the run, MLflow's own ``registered_model_meta`` (written by every models:/ download) does not
upset it, a version without the tag is refused (re-register), and a local folder loads via pyfunc only with
``trust_local=True``."""
from __future__ import annotations

import shutil
import sys

import pytest
import yaml

from fraud import registry
from fraud.errors import RegistryError
from streamkit import VERIFIED

pytestmark = pytest.mark.integration
NAME = VERIFIED


@pytest.fixture(scope="module")
def registered(verified_models):
    root, _, v1, _ = verified_models
    return root, v1


def _model_dir(root, v):
    """The version's model folder in the artifact store (holds MLmodel, code/, python_model.pkl, artifacts/)."""
    sha = registry.model_version_info(NAME, v).tags[registry.TAG_SHA256]
    for p in (root / "artifacts").rglob(registry.BUNDLE_ARTIFACT):
        if registry._sha256(p.read_bytes()) == sha:
            return p.parent.parent
    raise AssertionError("registered artifact not found")


def _plant_loader_module(d, marker):
    conf = yaml.safe_load((d / "MLmodel").read_text())
    conf["flavors"]["python_function"]["loader_module"] = "tree_plant"
    (d / "MLmodel").write_text(yaml.safe_dump(conf))
    (d / "code" / "tree_plant.py").write_text(f"open({str(marker)!r}, 'w').write('ran')\n"
                                              "from mlflow.pyfunc.model import _load_pyfunc  # and load as usual\n")


def _add_code_file(d, marker):
    (d / "code" / "fraud" / "extra.py").write_text(f"open({str(marker)!r}, 'w').write('ran')\n")


def _replace_python_model(d, marker):
    (d / "python_model.pkl").write_bytes(b"not the registered pickle")


def test_the_tree_digest_is_recorded_and_a_clean_version_loads(registered):
    _, v1 = registered
    mv = registry.model_version_info(NAME, v1)
    tree = mv.tags[registry.TAG_MODEL_TREE]
    assert len(tree) == 64
    from mlflow.tracking import MlflowClient

    assert MlflowClient().get_run(mv.run_id).data.tags[registry.TAG_MODEL_TREE] == tree
    for uri in (f"models:/{NAME}/{v1}", f"models:/{NAME}@champion", f"runs:/{mv.run_id}/model"):
        assert registry.load_bundle(uri, via="pyfunc").threshold is not None, uri


@pytest.mark.parametrize("tamper", [_plant_loader_module, _add_code_file, _replace_python_model])
def test_an_edited_model_folder_is_refused_before_mlflow_reads_it(registered, tmp_path, tamper):
    root, v1 = registered
    d = _model_dir(root, v1)
    marker = tmp_path / "ran"
    saved = tmp_path / "saved"
    shutil.copytree(d, saved)
    registered_tree = registry.model_version_info(NAME, v1).tags[registry.TAG_MODEL_TREE]
    try:
        tamper(d, marker)
        with pytest.raises(RegistryError) as e:
            registry.load_bundle(f"models:/{NAME}/{v1}", via="pyfunc")
        msg = str(e.value)
        assert f"models:/{NAME}/{v1}" in msg and "the model folder" in msg and "does not match" in msg
        assert registered_tree in msg and registry._tree_sha256("x", d) in msg and "fraud train" in msg
    finally:
        shutil.rmtree(d)
        shutil.copytree(saved, d)
        sys.modules.pop("tree_plant", None)
    assert not marker.exists(), "a file planted in the artifact store ran during load_bundle(via='pyfunc')"
    assert registry.load_bundle(f"models:/{NAME}/{v1}", via="pyfunc").threshold is not None  # restored


def test_a_version_without_the_tree_tag_is_refused(registered):
    _, v1 = registered
    from mlflow.tracking import MlflowClient

    client = MlflowClient()
    tree = registry.model_version_info(NAME, v1).tags[registry.TAG_MODEL_TREE]
    client.delete_model_version_tag(NAME, v1, registry.TAG_MODEL_TREE)
    try:
        with pytest.raises(RegistryError, match="no registered sha256 of the model folder .* re-register"):
            registry.load_bundle(f"models:/{NAME}/{v1}", via="pyfunc")
    finally:
        client.set_model_version_tag(NAME, v1, registry.TAG_MODEL_TREE, tree)


def test_a_local_folder_loads_via_pyfunc_only_when_trusted(registered, tmp_path):
    import mlflow

    _, v1 = registered
    local = tmp_path / "local"
    shutil.copytree(mlflow.artifacts.download_artifacts(f"models:/{NAME}/{v1}"), local)
    pkl = local / "artifacts" / registry.BUNDLE_ARTIFACT
    (pkl.parent / registry.HMAC_ARTIFACT).write_text(registry.bundle_hmac(pkl.read_bytes(), "s3cret"))
    assert registry.load_bundle(str(local), key="s3cret").version is None  # its bundle verifies (via="artifact")
    with pytest.raises(RegistryError, match="runs its MLmodel, code/ and python_model.pkl, .* trust_local=True"):
        registry.load_bundle(str(local), via="pyfunc", key="s3cret")  # but its MLmodel and code/ do not
    assert registry.load_bundle(str(local), via="pyfunc", trust_local=True).version is None
