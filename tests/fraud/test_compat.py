"""A bundle pickled by an earlier version, outside the registry's record, is refused: nothing is unpickled before
it is verified. The fixture (``bundle_0d3a33d.pkl``, pickled by commit 0d3a33d: a bundle, the rows it scored and
their scores) stands for such a file, placed as a local model folder's ``artifacts/bundle.pkl``."""
from __future__ import annotations

import pickle
from pathlib import Path

import pytest

from fraud import registry
from fraud.errors import RegistryError

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "bundle_0d3a33d.pkl"


def test_an_unverified_old_bundle_is_refused_and_never_unpickled(tmp_path, monkeypatch):
    folder = tmp_path / "model"
    (folder / "artifacts").mkdir(parents=True)
    (folder / "artifacts" / registry.BUNDLE_ARTIFACT).write_bytes(FIXTURE.read_bytes())
    registry.configure(f"sqlite:///{tmp_path}/mlflow.db")
    calls = []

    def spy(*a, **k):
        calls.append(a)
        raise AssertionError("unpickled")

    monkeypatch.setattr(pickle, "loads", spy)
    monkeypatch.setattr(pickle, "load", spy)
    with pytest.raises(RegistryError, match="cannot be verified"):
        registry.load_bundle(str(folder))
    with pytest.raises(RegistryError, match="no bundle.pkl.hmac in it"):
        registry.load_bundle(str(folder), key="some key")
    assert calls == []
