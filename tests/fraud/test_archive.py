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


def test_a_restored_partition_removes_only_its_own_half_written_files(tmp_path):
    """A scorer restoring partition 3 removes the temporary files a crashed writer left for partition 3, never
    one that its own writer (or another scorer on a shared archive) is writing for another partition."""
    from fraud.archive import ArchiveWriter

    day = tmp_path / "date=2024-01-01"
    day.mkdir()
    stale = day / ".part-tx-p0003-o000000000010-000000000019.parquet.tmp"
    in_flight = day / ".part-tx-p0001-o000000000154-000000000191.parquet.tmp"
    other_topic = day / ".part-cards-p0003-o000000000000-000000000005.parquet.tmp"
    for f in (stale, in_flight, other_topic):
        f.write_bytes(b"half")
    ArchiveWriter(tmp_path, "tx").discard_from(3, 10)
    assert not stale.exists() and in_flight.exists() and other_topic.exists()


def test_archive_files_reach_the_disk_before_their_offsets_can_be_committed(tmp_path, monkeypatch):
    """Each file is fsynced before its rename and each folder after (a crash after the commit leaves no empty file);
    the files read back as written."""
    import os

    from fraud import archive

    synced = []
    real = os.fsync
    monkeypatch.setattr(archive.os, "fsync", lambda fd: (synced.append(os.readlink(f"/proc/self/fd/{fd}")), real(fd)))
    rows = pd.DataFrame({"tx_id": ["a", "b", "c"], "timestamp": pd.to_datetime(
        ["2024-01-01 10:00", "2024-01-02 10:00", "2024-01-02 11:00"], utc=True), "amount": [1.0, 2.0, 3.0],
        "kafka_partition": [0, 0, 1], "kafka_offset": [5, 6, 7]})
    w = archive.ArchiveWriter(tmp_path, "tx")
    w.write(rows)
    files = w.flush()
    assert len(files) == 3
    assert {p for p in synced if p.endswith(".tmp")} == {str(f.parent / f".{f.name}.tmp") for f in files}
    assert {p for p in synced if not p.endswith(".tmp")} == {str(f.parent) for f in files} | {str(tmp_path)}
    assert sorted(archive.read(tmp_path)["tx_id"]) == ["a", "b", "c"]


def test_an_unreadable_file_across_the_restart_point_is_set_aside_not_fatal(tmp_path):
    """A restored partition cuts the file that straddles its checkpoint offset; one a crash left empty cannot be
    read: it is renamed hidden (never read again) instead of failing the partition's restore on every cycle."""
    from fraud import archive

    day = tmp_path / "date=2024-01-01"
    day.mkdir()
    bad = day / "part-tx-p0000-o000000000000-000000000009.parquet"
    bad.write_bytes(b"")
    assert archive.ArchiveWriter(tmp_path, "tx").discard_from(0, 5) == 1
    assert not bad.exists() and (day / f".{bad.name}.unreadable").exists()
    assert archive.read(tmp_path).empty


def test_discard_from_never_raises(tmp_path):
    """A straddling file without the offset column cannot be cut: logged, and the restore goes on."""
    from fraud import archive

    day = tmp_path / "date=2024-01-01"
    day.mkdir()
    pd.DataFrame({"x": [1]}).to_parquet(day / "part-tx-p0000-o000000000000-000000000009.parquet")
    archive.ArchiveWriter(tmp_path, "tx").discard_from(0, 5)
