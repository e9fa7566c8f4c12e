"""A bundle of another bundle format (or none recorded: pickled before formats existed) is refused at load with a
message naming the format found, the one expected and `fraud retrain`; the current format loads."""
from __future__ import annotations

import pickle

import pytest

from fraud import registry
from fraud.bundle import BUNDLE_FORMAT, ScoringBundle
from fraud.errors import RegistryError


def _folder(tmp_path, bundle):
    folder = tmp_path / "model"
    (folder / "artifacts").mkdir(parents=True)
    (folder / "artifacts" / registry.BUNDLE_ARTIFACT).write_bytes(pickle.dumps(bundle, protocol=5))
    return str(folder)


@pytest.mark.parametrize("found", [BUNDLE_FORMAT + 1, None])
def test_a_bundle_of_another_format_is_refused(tmp_path, found):
    registry.configure(f"sqlite:///{tmp_path}/mlflow.db")
    bundle = ScoringBundle([], None, 0.5, [])
    if found is None:
        del bundle.format_version
    else:
        bundle.format_version = found
    shown = "none recorded" if found is None else str(found)
    with pytest.raises(RegistryError, match=rf"bundle format {shown}, expected format {BUNDLE_FORMAT}.*"
                                            r"retrain with `fraud retrain`"):
        registry.load_bundle(_folder(tmp_path, bundle), trust_local=True)


def test_the_current_format_loads(tmp_path):
    registry.configure(f"sqlite:///{tmp_path}/mlflow.db")
    loaded = registry.load_bundle(_folder(tmp_path, ScoringBundle([], None, 0.5, [])), trust_local=True)
    assert loaded.format_version == BUNDLE_FORMAT


def test_a_bundle_naming_a_class_that_is_gone_is_refused(tmp_path):
    registry.configure(f"sqlite:///{tmp_path}/mlflow.db")
    folder = tmp_path / "model"
    (folder / "artifacts").mkdir(parents=True)
    (folder / "artifacts" / registry.BUNDLE_ARTIFACT).write_bytes(b"cfraud.bundle\nScoringBundleOfOld\n)R.")
    with pytest.raises(RegistryError, match=r"bundle format unreadable \(AttributeError.*retrain with `fraud retrain`"):
        registry.load_bundle(str(folder), trust_local=True)
