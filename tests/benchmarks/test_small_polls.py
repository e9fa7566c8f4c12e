"""``benchmarks.small_polls`` reads its bundle cache (a pickle) only from a folder private to this user."""
from __future__ import annotations

import os

import pytest

from benchmarks.small_polls import _check_private
from fraud.errors import ConfigError


def test_cache_is_read_only_from_a_private_folder(tmp_path):
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    (private / "bundle.pkl").write_bytes(b"")
    _check_private(str(private / "bundle.pkl"))
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o777)
    (shared / "bundle.pkl").write_bytes(b"")
    with pytest.raises(ConfigError, match="not private"):
        _check_private(str(shared / "bundle.pkl"))
    os.chmod(private / "bundle.pkl", 0o666)
    with pytest.raises(ConfigError, match="bundle.pkl"):
        _check_private(str(private / "bundle.pkl"))
