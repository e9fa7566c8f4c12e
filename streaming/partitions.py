"""The partitions a scorer owns: each one's online state and where its log stands.

A :class:`Partition` holds the model's online state for the partition's customers and what its checkpoint
needs: the offset to read next, the base its state grew from (light checkpoints: the base plus the archived
events since make the state), the tx_ids it scored and the last record it consumed. :func:`restore` rebuilds a
partition from its checkpoint, :func:`warm_states` builds the states of a new model from the archive.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import crc32c
import numpy as np
import pandas as pd

from fraud.archive import partition_rows
from streaming import feedback
from streaming.dedup import SeenIds
from streaming.state import load_state

log = logging.getLogger("streaming.partitions")
_RESULT_COLUMNS = ("kafka_partition", "kafka_offset", "score", "is_alert", "reasons", "model_version")


@dataclass
class Partition:
    state: object
    # light checkpoints: {"kind": "fresh" | "file", "file", "offset", "n_scored", "archive"} the state grew from;
    # None when it has no reproducible base (the next checkpoint serialises it)
    base: dict | None
    seen: SeenIds
    next_offset: int | None = None  # None until the first message when there was no checkpoint
    last: object = None  # the last message consumed
    verify: tuple | None = None  # (offset, timestamp, crc) of the record a restored log must still hold
    labels: list = field(default_factory=list)  # the newest label events applied (streaming.feedback)
    labels_since_base: int = 0  # label events applied since the base was saved (a new base is due at MAX_KEPT)

    def extras(self) -> dict:
        """Arrays saved with the checkpoint: the scored tx_ids, the last record consumed and the newest label
        events applied (the archive holds only scored events: a light checkpoint's state and a model swap's
        rebuilt state get them again; applying one twice changes nothing)."""
        out = {**self.seen.to_arrays(), **feedback.to_arrays(self.labels)}
        if self.last is not None:
            out["last_record"] = np.array([self.last.offset, self.last.timestamp, crc(self.last.value)],
                                          dtype=np.int64)
        return out


def crc(value) -> int:
    return crc32c.crc32c(value or b"")


def warm_or_new(bundle):
    """The bundle's training-cutoff state when it has one, else an empty state."""
    return bundle.warm_state() if hasattr(bundle, "warm_state") else bundle.new_state()


def fresh(bundle, cfg, archive_root: str | None) -> Partition:
    """A partition without checkpoint: the model's starting state, which is also the base of its light
    checkpoints (its offset is that of the first message)."""
    st = warm_or_new(bundle)
    return Partition(state=st, seen=SeenIds(cfg.dedup_days, cfg.dedup_max_ids),
                     base={"kind": "fresh", "file": None, "offset": None, "n_scored": getattr(st, "n_scored", 0),
                           "archive": archive_root})


def restore(ck, bundle, version: str, cfg, store, archive_root: str | None) -> tuple[Partition, str]:
    """The partition of checkpoint ``ck`` and how it was restored (for the log). A full state of the same model
    is loaded (and becomes the base of the next light checkpoints); a light one is its base plus the archived
    events since; a checkpoint of another model, or one that cannot be read, is rebuilt from the archive."""
    seen = SeenIds(cfg.dedup_days, cfg.dedup_max_ids).restore(ck.extras)
    light = archive_root is not None and cfg.snapshot_events > 0
    labels = feedback.from_arrays(ck.extras)  # the newest label events the partition had applied
    if ck.model_version != version:
        st, how = _rebuilt(bundle, ck, archive_root, cfg, labels)
        return Partition(st, None, seen, labels=labels), f"{how} (checkpoint was model {ck.model_version})"
    if ck.base is None:
        base = None
        if light:
            name = store.save_base(ck.partition, ck.offset, ck.blob, version, ck.state.n_scored)
            store.prune_bases(ck.partition, name)
            base = {"kind": "file", "file": name, "offset": ck.offset, "n_scored": ck.state.n_scored,
                    "archive": archive_root}
        return Partition(ck.state, base, seen, labels=labels), "restored"  # the labels are in the state
    try:
        st, n = restore_light(ck, bundle, store, archive_root, cfg.topic)
    except Exception as e:  # noqa: BLE001 - an unreadable base or archive is never fatal
        log.error("checkpoint restore failed partition=%d error=%r: rebuilding the state from the archive's last %s "
                  "days", ck.partition, f"{e.__class__.__name__}: {e}", cfg.warmup_days)
        st, how = _rebuilt(bundle, ck, archive_root, cfg, labels)
        return Partition(st, None, seen, labels=labels), f"{how} (light checkpoint unreadable)"
    feedback.reapply(bundle, st, labels)
    own = ck.base.get("archive") == archive_root
    return (Partition(st, dict(ck.base) if own and light else None, seen, labels=labels),
            f"restored (base {ck.base['kind']} at offset {ck.base['offset']} + {n} archived events"
            f"{f' + {len(labels)} labels' if labels else ''})")


def _rebuilt(bundle, ck, archive_root: str | None, cfg, labels: list) -> tuple:
    """(state, how) of checkpoint ``ck``'s partition rebuilt from the archive's last ``warmup_days``; the model's
    starting state when the archive cannot be read either (its features then lack the partition's recent history)."""
    how = "rebuilt from the archive"
    try:
        st = warm_states(bundle, {ck.partition: ck.offset}, archive_root, cfg)[ck.partition]
    except Exception as e:  # noqa: BLE001 - an unreadable archive file (e.g. left empty by a crash) is never fatal
        log.error("state rebuild from the archive failed partition=%d archive=%s error=%r: starting from the model's "
                  "state", ck.partition, archive_root, f"{e.__class__.__name__}: {e}")
        st, how = warm_or_new(bundle), "the model's starting state (the archive could not be read)"
    feedback.reapply(bundle, st, labels)
    return st, how


def restore_light(ck, bundle, store, archive_root: str | None, topic: str) -> tuple:
    """The state of a light checkpoint: its base, then the partition's archived events from the base offset up
    to the checkpoint's absorbed through the online path. Returns (state, events replayed)."""
    b = ck.base
    st = warm_or_new(bundle) if b["kind"] == "fresh" else load_state(store.load_base(b["file"])["state"],
                                                                     bundle.new_state())
    root = b.get("archive") or archive_root
    t0 = time.perf_counter()
    df = partition_rows(root, topic, ck.partition, lo=b["offset"], hi=ck.offset) if root else pd.DataFrame()
    n = absorb(bundle, st, df)
    got = getattr(st, "n_scored", None)
    if ck.n_scored is not None and got is not None and got != ck.n_scored:
        log.error("checkpoint restore partition=%d: the archive %s holds %d events at offsets [%d, %d) but the state "
                  "had absorbed %d since its base (archive files removed?): rebuilt from the events found",
                  ck.partition, root, n, b["offset"], ck.offset, ck.n_scored - b["n_scored"])
    log.info("checkpoint restore partition=%d base=%s base_offset=%s replayed=%d seconds=%.2f", ck.partition,
             b["kind"], b["offset"], n, time.perf_counter() - t0)
    return st, n


def warm_states(bundle, upto: dict, archive_root: str | None, cfg) -> dict:
    """New states of ``bundle`` for partitions ``upto`` ({partition: offset or None}), each having absorbed the
    partition's archived events below that offset from its last ``warmup_days`` (features only: nothing is
    scored or written). Without an archive the states are the model's starting states."""
    out = {p: warm_or_new(bundle) for p in upto}
    if archive_root is None or cfg.warmup_days <= 0:
        return out
    t0, n = time.perf_counter(), 0
    for p, off in upto.items():
        df = partition_rows(archive_root, cfg.topic, p, hi=off)
        if not len(df):
            continue
        df = df[df["timestamp"] >= df["timestamp"].max() - pd.Timedelta(days=cfg.warmup_days)]
        warm_until = getattr(out[p], "last_timestamp", None)
        if warm_until is not None:  # the bundle's warm state already reflects events up to its cutoff
            df = df[df["timestamp"] > warm_until]
        n += absorb(bundle, out[p], df)
    log.info("state warm-up from archive partitions=%s events=%d days=%s seconds=%.2f", sorted(upto), n,
             cfg.warmup_days, time.perf_counter() - t0)
    return out


def rewind(consumer, topic: str, parts: dict, msgs, watch) -> None:
    """A batch failed part-way: seek its partitions back to its first offsets (read again, not skipped), except
    a partition the batch's log check reset (sought to its log's start) and past a restored partition's last
    consumed record when the check dropped it (read again, it would look like a log reset)."""
    from kafka import TopicPartition

    for m in sorted(msgs, key=lambda m: m.offset, reverse=True):  # the first offset of each partition last
        if m.partition in parts and m.partition not in watch.reset_now:
            consumer.seek(TopicPartition(topic, m.partition), max(m.offset, watch.resume.get(m.partition, 0)))


def absorb(bundle, st, df: pd.DataFrame, chunk: int = 5000) -> int:
    """Absorb archived events ``df`` (offset order) into ``st`` through the online path, as scoring them did
    (features only: nothing is scored or written). Returns the number of events absorbed."""
    if not len(df):
        return 0
    rows = df.drop(columns=[c for c in _RESULT_COLUMNS if c in df.columns]).reset_index(drop=True)
    rows["timestamp"] = rows["timestamp"].astype("datetime64[ns, UTC]")
    for i in range(0, len(rows), chunk):
        part = rows.iloc[i:i + chunk].sort_values("timestamp", kind="stable").reset_index(drop=True)
        bundle.features_online(part, st)
        st.absorbed(len(part), part["timestamp"].iloc[-1])
    return len(rows)
