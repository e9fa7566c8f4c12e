"""A registry call given its own tracking URI touches only that store: resolving an alias with an explicit URI
left an empty mlflow.db in the working folder (the default client was built first, and MLflow's default store is
./mlflow.db)."""
from __future__ import annotations

import pytest

from fraud import registry
from fraud.errors import RegistryError


def test_resolve_alias_with_a_uri_opens_no_default_store(tmp_path, monkeypatch, new_mlflow_store):
    uri = new_mlflow_store(tmp_path / "store")
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setitem(registry._state, "tracking_uri", None)
    monkeypatch.setitem(registry._state, "registry_uri", None)
    with pytest.raises(RegistryError, match="fraud-detector"):
        registry.resolve_alias("fraud-detector", "champion", tracking_uri=uri)
    assert list(cwd.iterdir()) == []
