"""Sinks of the scorer: ``write(results)`` then ``flush()``; idempotent by ``tx_id``.

``results`` is the scored micro-batch: canonical columns (tx_id, timestamp, customer_id, terminal_id,
amount, optional label/scenario, other attributes) plus ``score``, ``is_alert``, ``reasons`` (list of
str), ``model_version``, ``kafka_partition``, ``kafka_offset``.

- TopicSink: every result to topic ``scores`` (key tx_id) and every alert to topic ``alerts``
  (key customer_id); JSON values. At-least-once: after a crash a result may be sent twice, with the
  same tx_id (consumers dedupe by tx_id).
- AlertStoreSink: alerts into the SQL alert store (unique tx_id: a re-delivered alert is skipped), one
  transaction per flush (the scorer flushes it at each checkpoint).
- the event archive: ``fraud.archive.ArchiveWriter`` (every scored event, Parquet by day, named by offsets).
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd
from kafka.errors import MessageSizeTooLargeError

from fraud.archive import concat_columns, frame_columns, keeping
from fraud.errors import BrokerError
from streaming.dlq import without_payload

log = logging.getLogger("streaming.sinks")
_esc = json.encoder.encode_basestring_ascii  # what json.dumps uses for str (ensure_ascii=True)



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
        sent = self._send(topic, kw)
        self._pending.append(sent)
        return sent.future

    def _send(self, topic, kw: dict) -> "Sent":
        """One record to the producer. A dead letter refused as too large (by the producer here, or by the broker
        at delivery: see :meth:`resend`) goes without its payload (``streaming.dlq.without_payload``): refused
        forever otherwise, it would stop the consumer or fail every checkpoint."""
        try:
            return Sent(self.producer.send(topic, **kw), topic, kw)
        except MessageSizeTooLargeError:
            smaller = without_payload(kw)
            if smaller is kw:  # not a dead letter: nothing of a score or alert may be dropped
                raise
            return Sent(self.producer.send(topic, **smaller), topic, smaller)

    def resend(self, records: list) -> list:
        """Send ``records`` (undelivered :class:`Sent`) again; returns the new ones (not in ``take``)."""
        return [self._send(r.topic, without_payload(r.kw) if _too_large(r) else r.kw) for r in records]

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


def _too_large(r: "Sent") -> bool:
    return r.future.is_done and isinstance(r.future.exception, MessageSizeTooLargeError)


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
            return keeping(self, self.flush, gate)
        if bufs:
            if gate is not None:
                gate()
            df = concat_columns(bufs)
            if gate is not None:
                gate()
            self.inserted += self.store.write_alerts(df)
