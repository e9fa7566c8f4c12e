"""The event archive (fraud.archive): what is read, and a partition's offsets."""
from __future__ import annotations

import pandas as pd


def test_archive_parts_skip_hidden_and_vanished_files(tmp_path, monkeypatch):
    from fraud import archive

    day = tmp_path / "date=2024-01-01"
    day.mkdir()
    for name, v in (("part-a.parquet", 1), ("part-b.parquet", 2), (".part-c.parquet.tmp", 3), (".hidden.parquet", 4)):
        pd.DataFrame({"x": [v]}).to_parquet(day / name)
    got = pd.concat(archive.frames(tmp_path))["x"].tolist()
    assert got == [1, 2]  # temporary / hidden files are never read
    real = pd.read_parquet

    def vanishing(path, *a, **kw):  # a live scorer removed part-b between listing and reading
        if str(path).endswith("part-b.parquet"):
            raise FileNotFoundError(path)
        return real(path, *a, **kw)

    monkeypatch.setattr(archive.pd, "read_parquet", vanishing)
    assert pd.concat(archive.frames(tmp_path))["x"].tolist() == [1]
