"""The event archive: every scored event, in Parquet files by day, named by the Kafka offsets they hold.

Layout: ``ROOT/date=YYYY-MM-DD/part-<topic>-p<partition>-o<first>-<last>.parquet`` (offsets zero-padded); files of
a partition whose log was replaced are kept as ``part-<topic>~<k>-p...``. The scorer writes it
(:class:`ArchiveWriter`, after each checkpoint's flush); training and review read it whole (:func:`read`,
:func:`events`); a restarting scorer reads one partition's offsets (:func:`partition_rows`). Because files are
named by offsets, the files written after a scorer's last checkpoint are found and removed before those offsets
are consumed again (:meth:`ArchiveWriter.discard_from`): every event is archived once.
"""
from __future__ import annotations

import glob
import logging
import os
import re
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from fraud.errors import ConfigError

log = logging.getLogger("fraud.archive")

#: columns the scorer adds to each event: its results and where it was read
RESULT_COLUMNS = ("score", "is_alert", "reasons", "model_version", "kafka_partition", "kafka_offset")
PART_RE = re.compile(r"^part-(?P<topic>.+)-p(?P<p>\d+)-o(?P<first>\d+)-(?P<last>\d+)\.parquet$")


def safe_topic(topic: str) -> str:
    return re.sub(r"[^A-Za-z0-9._]", "_", topic)


def paths(root) -> list[Path]:
    """The complete archive files under ``root`` (hidden temporary files of a writer skipped), in name order."""
    return [f for f in sorted(Path(root).glob("date=*/*.parquet")) if not f.name.startswith(".")]


def _read_files(files) -> list[pd.DataFrame]:
    """Read ``files``, skipping one that vanishes meanwhile (a restarting scorer removes what it will rewrite)."""
    frames = []
    for f in files:
        try:
            frames.append(pd.read_parquet(f))
        except FileNotFoundError:
            continue
    return frames


def frames(root) -> list[pd.DataFrame]:
    """Every complete archive file as read (temporary and hidden files skipped), in name order."""
    return _read_files(paths(root))


def read(root) -> pd.DataFrame:
    """Every archived event with the scorer's columns, sorted by time (empty frame when there is none)."""
    frames = _read_files(paths(root))
    if not frames:
        return pd.DataFrame()
    df = pd.concat(frames, ignore_index=True)
    return df.sort_values(["timestamp", "tx_id"], kind="stable").reset_index(drop=True)


def events(root) -> pd.DataFrame:
    """The archived events as transactions (the scorer's columns dropped; a tx_id archived twice kept once).
    A label the event did not carry (-1, unknown) counts as not reported (0); ``scenario`` is kept only when every
    event carried one. Raises ConfigError when ``root`` is no archive."""
    root = Path(root)
    if not root.is_dir():
        raise ConfigError(f"--archive: folder {str(root)!r} does not exist")
    df = read(root)
    if not len(df):
        raise ConfigError(f"--archive: no DIR/date=YYYY-MM-DD/*.parquet files under {str(root)!r}")
    df = df.drop(columns=[c for c in (*RESULT_COLUMNS, "scored_at", "date") if c in df.columns])
    df = df.drop_duplicates("tx_id", keep="first").reset_index(drop=True)
    if "label" in df:
        lab = pd.to_numeric(df["label"], errors="coerce")
        df["label"] = lab.where(lab >= 0, 0).fillna(0).astype(np.int8)
    if "scenario" in df:
        sc = pd.to_numeric(df["scenario"], errors="coerce")
        if sc.isna().any() or (sc < 0).any():
            df = df.drop(columns=["scenario"])
    return df


def partition_rows(root, topic: str, partition: int, lo: int | None = None, hi: int | None = None) -> pd.DataFrame:
    """The archived events of ``partition`` with ``lo <= kafka_offset < hi`` (bounds optional), in offset order."""
    files = [f for f, _, first, last in ArchiveWriter(root, topic).files(partition)
             if (hi is None or first < hi) and (lo is None or last >= lo)]
    frames = _read_files(files)
    if not frames:
        return pd.DataFrame()
    df = pd.concat(frames, ignore_index=True)
    off = df["kafka_offset"].to_numpy()
    keep = np.ones(len(df), dtype=bool)
    if lo is not None:
        keep &= off >= lo
    if hi is not None:
        keep &= off < hi
    return df[keep].sort_values("kafka_offset", kind="stable").reset_index(drop=True)


def frame_columns(df: pd.DataFrame) -> dict:
    """A frame's columns as a dict of arrays (what the buffering sinks keep per micro-batch)."""
    return {c: df[c].array for c in df.columns}


def _concat_arrays(parts: list):
    p0 = parts[0]
    t0, d0 = type(p0), p0.dtype
    if all(type(p) is t0 and (p.dtype is d0 or p.dtype == d0) for p in parts):
        if isinstance(p0, np.ndarray):
            return np.concatenate(parts)
        return type(p0)._concat_same_type(parts)  # the ExtensionArray interface's own concatenation
    # dtypes differ between batches (e.g. an extra attribute inferred int in one, float in another): pandas' rules
    return pd.concat([pd.Series(p, copy=False) for p in parts], ignore_index=True).array


def without_partitions(bufs: list[dict], partitions) -> list[dict]:
    """Buffered micro-batches (column dicts) without the rows of ``partitions``."""
    ps = np.array(sorted(int(p) for p in partitions), dtype=np.int64)
    out = []
    for b in bufs:
        keep = ~np.isin(np.asarray(b["kafka_partition"], dtype=np.int64), ps)
        if keep.any():
            out.append({c: v[keep] for c, v in b.items()})
    return out


def concat_columns(bufs: list[dict]) -> pd.DataFrame:
    """``pd.concat`` of the micro-batches' frames (``ignore_index``), from their column dicts: one concatenation
    per column instead of pandas' per-frame block planning (403 buffered batches: 38 ms -> ~6 ms), which ran
    on the checkpoint writer thread and, holding the GIL, slowed the scoring thread. Batches whose column sets
    differ go through ``pd.concat`` itself."""
    names = list(bufs[0])
    if any(list(b) != names for b in bufs):
        return pd.concat([pd.DataFrame(b, copy=False) for b in bufs], ignore_index=True)
    return pd.DataFrame({c: _concat_arrays([b[c] for b in bufs]) for c in names}, copy=False)


def keeping(sink, flush, gate):
    """``flush(sink.take())``, putting the buffers back in front if it fails (nothing taken is dropped)."""
    bufs = sink.take()
    try:
        return flush(bufs, gate=gate)
    except BaseException:
        sink._buf = bufs + sink._buf
        raise


def _write_durably(write, tmp: Path, final: Path) -> None:
    """``write(file)`` into ``tmp``, on disk before its rename to ``final``: the offsets a checkpoint commits after
    an archive flush never point at a file a crash left empty."""
    with open(tmp, "wb") as f:
        write(f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, final)


def _fsync_dir(folder: Path) -> None:
    """Make the renames in ``folder`` durable (POSIX: the directory entry is data of the folder)."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class ArchiveWriter:
    """The scorer's archive sink: buffers scored micro-batches (their column dicts); ``flush`` writes one file per
    (day, partition), under a hidden temporary name renamed when complete."""

    def __init__(self, root: str | os.PathLike, topic: str):
        self.root = Path(root)
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise ConfigError(f"--archive {str(root)!r}: cannot create: {e}") from e
        self.topic = safe_topic(topic)
        self._buf: list[dict] = []
        self.files_written = 0

    def write(self, results: pd.DataFrame, columns: dict | None = None) -> None:
        """Buffer ``results``; ``columns``: the same data as a dict of arrays (see :func:`concat_columns`)."""
        if len(results):
            self._buf.append(columns if columns is not None else frame_columns(results))

    @property
    def pending(self) -> int:
        return sum(len(b["kafka_offset"]) for b in self._buf)

    def drop_partitions(self, partitions) -> None:
        """Forget buffered rows of partitions (lost to an eviction from the group; a revoke flushes them first)."""
        self._buf = without_partitions(self._buf, partitions)

    def take(self) -> list:
        """Hand over the buffered rows (to be written by ``flush(taken)``, e.g. on a writer thread)."""
        bufs, self._buf = self._buf, []
        return bufs

    def flush(self, bufs: list | None = None, gate=None) -> list[Path]:
        """Write the buffered (or the ``take``-n) rows, one file per (day, partition); ``gate``: called before
        each step (concatenation, Arrow conversion, each file)."""
        if bufs is None:
            return keeping(self, self.flush, gate)
        if not bufs:
            return []
        gate = gate or (lambda: None)
        import pyarrow as pa
        import pyarrow.parquet as pq

        # one frame, one Arrow conversion, groups by numpy, one take + write per file: the files are those of
        # ``g.reset_index(drop=True).to_parquet(tmp, index=False)`` per (day, partition) group sorted by offset
        gate()
        df = concat_columns(bufs)
        ts = df["timestamp"]
        if ts.dt.tz is not None:
            ts = ts.dt.tz_convert("UTC").dt.tz_localize(None)
        day = ts.to_numpy(dtype="datetime64[ns]").astype("datetime64[D]")
        part = df["kafka_partition"].to_numpy(dtype=np.int64)
        offs = df["kafka_offset"].to_numpy(dtype=np.int64)
        order = np.lexsort((offs, part, day))  # stable: by day, partition, offset
        key_day, key_part = day[order], part[order]
        cuts = np.flatnonzero((key_day[1:] != key_day[:-1]) | (key_part[1:] != key_part[:-1])) + 1
        gate()
        with warnings.catch_warnings():  # as pandas' to_parquet does: pyarrow reads Series.values (deprecated)
            warnings.filterwarnings("ignore", message=r"Series\.values returning")
            table = pa.Table.from_pandas(df, preserve_index=False)
        out = []
        for a, b in zip([0, *cuts.tolist()], [*cuts.tolist(), len(order)]):
            idx = order[a:b]
            d, p = str(key_day[a]), int(key_part[a])
            first, last = int(offs[idx[0]]), int(offs[idx[-1]])
            folder = self.root / f"date={d}"
            folder.mkdir(parents=True, exist_ok=True)
            name = f"part-{self.topic}-p{p:04d}-o{first:012d}-{last:012d}.parquet"
            tmp = folder / f".{name}.tmp"
            gate()
            sub = table.take(pa.array(idx))
            _write_durably(lambda f: pq.write_table(sub, f, compression="snappy"), tmp, folder / name)
            out.append(folder / name)
        for folder in {f.parent for f in out} | {self.root}:  # the renames, and any new date folder
            _fsync_dir(folder)
        self.files_written += len(out)
        return out

    def files(self, partition: int | None = None) -> list[tuple[Path, int, int, int]]:
        """(path, partition, first_offset, last_offset) of every complete archive file of this topic."""
        res = []
        for f in self.root.glob("date=*/part-*.parquet"):
            m = PART_RE.match(f.name)
            if not m or m.group("topic") != self.topic:
                continue
            p = int(m.group("p"))
            if partition is None or p == partition:
                res.append((f, p, int(m.group("first")), int(m.group("last"))))
        return res

    def retire(self, partition: int) -> int:
        """The partition's log was replaced (its offsets start again): rename its files to
        ``part-<topic>~<k>-p...`` (k = 1, 2, ...: one per replaced log). Readers of the whole archive (training,
        review) still read them; the partition's offsets (:meth:`files`, :meth:`discard_from`) no longer include
        them. Returns the number of files renamed."""
        mine = self.files(partition)
        if not mine:
            return 0
        used = [int(m.group(1)) for f in self.root.glob(f"date=*/part-{self.topic}~*-p{partition:04d}-o*.parquet")
                if (m := re.match(rf"^part-{re.escape(self.topic)}~(\d+)-p", f.name))]
        k = max(used, default=0) + 1
        for f, p, first, last in mine:
            os.replace(f, f.with_name(f"part-{self.topic}~{k}-p{p:04d}-o{first:012d}-{last:012d}.parquet"))
        log.warning("archive: %d file(s) of partition %d kept as part-%s~%d-... (its log was replaced)", len(mine),
                    partition, self.topic, k)
        return len(mine)

    def _cut(self, f: Path, partition: int, first: int, offset: int) -> None:
        """Rewrite archive file ``f`` without its offsets >= ``offset``; one that cannot be read (left empty by a
        crash) is set aside as ``.NAME.unreadable`` (never read again)."""
        try:
            df = pd.read_parquet(f)
        except Exception as e:  # noqa: BLE001 - pyarrow raises several kinds on a damaged file
            log.error("archive: file %s is unreadable (%s: %s): renamed to .%s.unreadable; its events below offset %d "
                      "are not in the archive", f, e.__class__.__name__, e, f.name, offset)
            os.replace(f, f.with_name(f".{f.name}.unreadable"))
            return
        keep = df[df["kafka_offset"] < offset]
        name = f"part-{self.topic}-p{partition:04d}-o{first:012d}-{int(keep['kafka_offset'].max()):012d}.parquet"
        _write_durably(lambda t: keep.to_parquet(t, index=False), f.with_name(f".{name}.tmp"), f.with_name(name))
        f.unlink(missing_ok=True)

    def discard_from(self, partition: int, offset: int) -> int:
        """Remove archive files of ``partition`` holding offsets >= ``offset`` (written after the last
        checkpoint by a scorer that then died): those events are about to be consumed again. Never raises (a
        restore must go on): what cannot be removed is logged, and its events may then be archived twice."""
        try:
            return self._discard_from(partition, offset)
        except Exception as e:  # noqa: BLE001 - a damaged file or folder: logged, the partition goes on
            log.error("archive: could not remove the files of partition %d at offsets >= %d under %s (%s: %s): events "
                      "read again may be archived twice", partition, offset, self.root, e.__class__.__name__, e)
            return 0

    def _discard_from(self, partition: int, offset: int) -> int:
        n, touched = 0, set()
        for f, _, first, last in self.files(partition):
            if last < offset:
                continue
            try:
                if first >= offset:
                    f.unlink(missing_ok=True)
                else:  # straddles the restart point: keep the part below it
                    self._cut(f, partition, first, offset)
            except Exception as e:  # noqa: BLE001 - one file never stops the others
                log.error("archive: could not remove offsets >= %d from %s (%s: %s): events read again may be "
                          "archived twice", offset, f, e.__class__.__name__, e)
            n, touched = n + 1, touched | {f.parent}
        for folder in touched:
            _fsync_dir(folder)
        # half-written files of this partition by a crashed writer; not other partitions': this scorer's writer
        # (or another scorer's, on a shared archive) may be writing one of theirs right now
        for t in self.root.glob(f"date=*/.part-{glob.escape(self.topic)}-p{partition:04d}-o*.tmp"):
            t.unlink(missing_ok=True)
        if n:
            log.warning("archive: removed %d file(s) of partition %d at offsets >= %d (written after the last "
                        "checkpoint; they will be rewritten)", n, partition, offset)
        return n
