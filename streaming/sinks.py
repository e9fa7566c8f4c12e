"""Sinks of the scorer: ``write(results)`` then ``flush()``; idempotent by ``tx_id``.

``results`` is the scored micro-batch: canonical columns (tx_id, timestamp, customer_id, terminal_id,
amount, optional label/scenario, other attributes) plus ``score``, ``is_alert``, ``reasons`` (list of
str), ``model_version``, ``kafka_partition``, ``kafka_offset``.

- TopicSink: every result to topic ``scores`` (key tx_id) and every alert to topic ``alerts``
  (key customer_id); JSON values. At-least-once: after a crash a result may be sent twice, with the
  same tx_id (consumers dedupe by tx_id).
- AlertStoreSink: alerts into the SQL alert store (unique tx_id: a re-delivered alert is skipped), one
  transaction per flush (the scorer flushes it at each checkpoint).
- ArchiveSink: every scored event into Parquet partitioned by day,
  ``DIR/date=YYYY-MM-DD/part-<topic>-p<partition>-o<first>-<last>.parquet``, written under a hidden
  temporary name and renamed when complete. Files are named by the Kafka offsets they hold, so after
  a crash the files written after the last checkpoint are found and removed before those offsets are
  consumed again (``discard_from``): the archive holds every event exactly once.
"""
from __future__ import annotations

import json
import logging
import os
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from fraud.errors import BrokerError, ConfigError
from fraud.io import read_parquet_parts

log = logging.getLogger("streaming.sinks")
_esc = json.encoder.encode_basestring_ascii  # what json.dumps uses for str (ensure_ascii=True)

RESULT_COLUMNS = ["score", "is_alert", "reasons", "model_version"]
_PART_RE = re.compile(r"^part-(?P<topic>.+)-p(?P<p>\d+)-o(?P<first>\d+)-(?P<last>\d+)\.parquet$")


def _json_default(o):
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, (np.bool_,)):
        return bool(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, pd.Timestamp):
        return o.isoformat()
    return str(o)


def encode_results(results: pd.DataFrame) -> list[bytes]:
    """The JSON value of each result row, byte for byte ``json.dumps(rec).encode()`` of
    ``{"tx_id", "timestamp", "customer_id", "terminal_id", "amount", "score", "is_alert", "reasons",
    "model_version"}`` (the format consumers of ``scores``/``alerts`` read), built from per-column
    pre-encoded pieces instead of one dict and one ``json.dumps`` per row."""
    n = len(results)
    if n == 0:
        return []

    def text(col):
        v = results[col].to_numpy()
        return [esc(x) if type(x) is str else json.dumps(x, default=_json_default) for x in v]

    def num(col):
        # json.dumps of a finite float is its repr (what the encoder calls), ~5x cheaper than the call
        v = results[col].to_numpy(dtype=np.float64)
        if np.isfinite(v).all():
            return list(map(float.__repr__, v.tolist()))
        return [json.dumps(float(x)) for x in v]

    esc = _esc
    ts = results["timestamp"].dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ").to_numpy()
    ts = [esc(x) for x in ts]
    tx, cu, te = text("tx_id"), text("customer_id"), text("terminal_id")
    mv = results["model_version"].to_numpy()
    if len(set(mv.tolist())) == 1:  # one model version per batch: encode it once
        v0 = mv[0]
        ver = [esc(v0) if type(v0) is str else json.dumps(v0, default=_json_default)] * n
    else:
        ver = text("model_version")
    amt, sc = num("amount"), num("score")
    al = ["true" if a else "false" for a in results["is_alert"].to_numpy(dtype=bool)]
    rs = ["[" + ", ".join(esc(str(r)) for r in x) + "]" if x is not None and len(x) else "[]"
          for x in results["reasons"].to_numpy()]
    return [(f'{{"tx_id": {tx[i]}, "timestamp": {ts[i]}, "customer_id": {cu[i]}, "terminal_id": {te[i]}, '
             f'"amount": {amt[i]}, "score": {sc[i]}, "is_alert": {al[i]}, "reasons": {rs[i]}, '
             f'"model_version": {ver[i]}}}').encode() for i in range(n)]


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


class TrackedProducer:
    """The scorer's one producer, with delivery checked: kafka-python's ``flush`` returns even when records
    failed (their futures hold the error), so every send is kept as a :class:`Sent` (future + what was sent)
    until the checkpoint that covers it. ``take()`` (on the scoring thread, at the batch boundary) hands over
    the records sent so far; after ``flush()``, ``check(taken)`` raises :class:`BrokerError` naming the count
    and the first error if a record was not delivered, so the offsets of that checkpoint are not committed;
    ``undelivered`` / ``resend`` let the next checkpoint send those records again (at-least-once: consumers
    dedupe by key)."""

    def __init__(self, producer):
        self.producer = producer
        self._pending: list[Sent] = []

    def send(self, topic, **kw):
        fut = self.producer.send(topic, **kw)
        self._pending.append(Sent(fut, topic, kw))
        return fut

    def resend(self, records: list) -> list:
        """Send ``records`` (undelivered :class:`Sent`) again; returns the new ones (not in ``take``)."""
        return [Sent(self.producer.send(r.topic, **r.kw), r.topic, r.kw) for r in records]

    def partitions_for(self, topic):
        return self.producer.partitions_for(topic)

    def take(self) -> list:
        taken, self._pending = self._pending, []
        return taken

    @staticmethod
    def undelivered(taken) -> list:
        return [r for r in taken if not r.future.is_done or r.future.failed()]

    @staticmethod
    def check(taken) -> None:
        failed = TrackedProducer.undelivered(taken)
        if failed:
            f = failed[0].future
            err = f.exception if f.is_done else "not completed by flush"
            raise BrokerError(f"{len(failed)} of {len(taken)} records sent since the last checkpoint were not "
                              f"delivered (first: {err!r}, topic {failed[0].topic!r}); offsets not committed")

    def flush(self, timeout: float | None = None) -> None:
        self.producer.flush(timeout=timeout)

    def close(self, timeout: float | None = None) -> None:
        self.producer.close(timeout=timeout)


@dataclass
class Sent:
    """One record handed to the producer: its future and what to send again if it is not delivered."""

    future: object
    topic: str
    kw: dict


class TopicSink:
    def __init__(self, producer, scores_topic: str | None = "scores", alerts_topic: str | None = "alerts"):
        self.producer = producer
        self.scores_topic = scores_topic
        self.alerts_topic = alerts_topic
        self._one_part: dict = {}

    def _partition0(self, topic: str):
        """0 for a one-partition topic (then the default partitioner's choice is 0 too, and naming it skips
        the partitioner per message); None (default partitioner) otherwise or when unknown."""
        if topic not in self._one_part:
            try:
                parts = self.producer.partitions_for(topic)
            except Exception:  # noqa: BLE001 - unknown: let the default partitioner decide
                parts = None
            self._one_part[topic] = 0 if parts is not None and len(parts) == 1 else None
        return self._one_part[topic]

    def write(self, results: pd.DataFrame, columns: dict | None = None) -> None:
        if len(results) == 0:
            return
        vals = encode_results(results)
        tx = results["tx_id"].to_numpy()
        send = self.producer.send
        if self.scores_topic:
            t, part = self.scores_topic, self._partition0(self.scores_topic)
            for i in range(len(vals)):
                send(t, key=str(tx[i]).encode(), value=vals[i], partition=part)
        if self.alerts_topic:
            idx = np.flatnonzero(results["is_alert"].to_numpy(dtype=bool))
            if len(idx):
                cust = results["customer_id"].to_numpy()
                t, part = self.alerts_topic, self._partition0(self.alerts_topic)
                for i in idx:
                    send(t, key=str(cust[i]).encode(), value=vals[i], partition=part)

    def flush(self, timeout: float | None = None) -> None:
        self.producer.flush(timeout=timeout)


def _keeping(sink, flush, gate):
    """``flush(sink.take())``, putting the buffers back in front if it fails (nothing taken is dropped)."""
    bufs = sink.take()
    try:
        return flush(bufs, gate=gate)
    except BaseException:
        sink._buf = bufs + sink._buf
        raise


class AlertStoreSink:
    """Alerts are buffered and written in one transaction per flush (the scorer flushes at each checkpoint,
    so an alert reaches the store within the checkpoint interval; it is on the ``alerts`` topic at once).
    One SQLite commit costs ~25 ms here: per micro-batch it would dominate small batches."""

    def __init__(self, store):
        self.store = store
        self.inserted = 0
        self._buf: list[dict] = []

    def write(self, results: pd.DataFrame, columns: dict | None = None) -> None:
        """Buffer the alerts of ``results``; ``columns``: the same data as a dict of arrays (the scorer has it:
        sliced here, concatenated at flush without pandas' per-frame costs)."""
        flags = columns["is_alert"] if columns is not None else results["is_alert"].to_numpy(dtype=bool)
        idx = np.flatnonzero(np.asarray(flags, dtype=bool))
        if len(idx):
            cols = columns if columns is not None else frame_columns(results)
            self._buf.append({c: v[idx] for c, v in cols.items()})

    def take(self) -> list:
        """Hand over the buffered alerts (to be written by ``flush(taken)``, e.g. on a writer thread)."""
        bufs, self._buf = self._buf, []
        return bufs

    def flush(self, bufs: list | None = None, gate=None) -> None:
        """Write the buffered (or the ``take``-n) alerts; ``gate``: called before each step (the scorer's writer
        thread waits there for the scoring thread to be idle)."""
        if bufs is None:
            return _keeping(self, self.flush, gate)
        if bufs:
            if gate is not None:
                gate()
            df = concat_columns(bufs)
            if gate is not None:
                gate()
            self.inserted += self.store.write_alerts(df)


class ArchiveSink:
    """Buffers scored events per (day, partition); flush() writes one Parquet file per group."""

    def __init__(self, root: str | os.PathLike, topic: str):
        self.root = Path(root)
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise ConfigError(f"--archive {str(root)!r}: cannot create: {e}") from e
        self.topic = re.sub(r"[^A-Za-z0-9._]", "_", topic)
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
        """Forget buffered rows of partitions (not used in normal flow: revoke flushes first)."""
        self._buf = without_partitions(self._buf, partitions)

    def take(self) -> list:
        """Hand over the buffered rows (to be written by ``flush(taken)``, e.g. on a writer thread)."""
        bufs, self._buf = self._buf, []
        return bufs

    def flush(self, bufs: list | None = None, gate=None) -> list[Path]:
        """Write the buffered (or the ``take``-n) rows, one file per (day, partition); ``gate``: called before
        each step (concatenation, Arrow conversion, each file)."""
        if bufs is None:
            return _keeping(self, self.flush, gate)
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
            pq.write_table(table.take(pa.array(idx)), tmp, compression="snappy")
            os.replace(tmp, folder / name)
            out.append(folder / name)
        self.files_written += len(out)
        return out

    def files(self, partition: int | None = None) -> list[tuple[Path, int, int, int]]:
        """(path, partition, first_offset, last_offset) of every complete archive file of this topic."""
        res = []
        for f in self.root.glob("date=*/part-*.parquet"):
            m = _PART_RE.match(f.name)
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

    def discard_from(self, partition: int, offset: int) -> int:
        """Remove archive files of ``partition`` holding offsets >= ``offset`` (written after the last
        checkpoint by a scorer that then died): those events are about to be consumed again."""
        n = 0
        for f, _, first, last in self.files(partition):
            if first >= offset:
                f.unlink(missing_ok=True)
                n += 1
            elif last >= offset:  # straddles the restart point: keep the part below it
                df = pd.read_parquet(f)
                keep = df[df["kafka_offset"] < offset]
                new_last = int(keep["kafka_offset"].max())
                name = f"part-{self.topic}-p{partition:04d}-o{first:012d}-{new_last:012d}.parquet"
                tmp = f.with_name(f".{name}.tmp")
                keep.to_parquet(tmp, index=False)
                os.replace(tmp, f.with_name(name))
                f.unlink(missing_ok=True)
                n += 1
        for t in self.root.glob("date=*/.part-*.tmp"):  # half-written files of a crashed writer
            t.unlink(missing_ok=True)
        if n:
            log.warning("archive: removed %d file(s) of partition %d at offsets >= %d (written after the last "
                        "checkpoint; they will be rewritten)", n, partition, offset)
        return n


def read_archive(root: str | os.PathLike) -> pd.DataFrame:
    """Every archived event (hidden temporary files excluded), sorted by time."""
    frames = read_parquet_parts(root, "date=*/part-*.parquet")
    if not frames:
        return pd.DataFrame()
    df = pd.concat(frames, ignore_index=True)
    return df.sort_values(["timestamp", "tx_id"], kind="stable").reset_index(drop=True)
