"""Checkpoints of the online state, one file per (topic, partition), with the offset they reflect.

A checkpoint is written atomically (temporary file, fsync, rename) after the sinks are flushed and
before offsets are committed; it is the source of truth on restart and on rebalance: the scorer that
gets a partition loads its checkpoint and seeks to its offset. ``offset`` is the next offset to read
(every message below it is reflected in the state and in the sinks).

File: ``STATE_DIR/<topic>-p<partition>.ckpt`` = pickle of a dict
``{"format": 1, "topic", "partition", "offset", "model_version", "state": bytes | None, "saved_at",
"base": dict | None, "n_scored": int | None}``
where ``state`` is ``pickle.dumps(bundle_state)`` (or ``state.snapshot()`` when the state has one).
Several scorers of one group must share STATE_DIR (a shared volume) for state to follow partitions.

Two kinds of checkpoint:

* full: ``state`` holds the serialised state (``base`` is None);
* light (``state`` is None): the state is *base + log*. ``base`` = ``{"kind": "fresh" | "file", "file",
  "offset", "n_scored", "archive"}`` names a base state (``fresh``: the model's own starting state,
  ``bundle.warm_state()``, nothing stored; ``file``: a base file ``<topic>-p<partition>.base-o<offset>.ckpt``
  written by :meth:`CheckpointStore.save_base`) and the offset it reflects; the events from that offset up to
  ``offset`` are the partition's rows of the Parquet archive at ``archive`` (flushed before the checkpoint
  is written), replayed through the bundle's online features on restore (``streaming.loop``). A light
  checkpoint costs nothing on the scoring thread: no state is serialised. ``n_scored`` (events the state has
  absorbed) lets the restore check that the archive held every event.
"""
from __future__ import annotations

import logging
import os
import pickle
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fraud.errors import ConfigError

log = logging.getLogger("streaming.state")
FORMAT = 1


@dataclass
class Checkpoint:
    topic: str
    partition: int
    offset: int
    model_version: str | None
    state: Any
    saved_at: float
    base: dict | None = None  # light checkpoint: the base state and offset (state is None)
    n_scored: int | None = None  # events the state has absorbed (light checkpoints; None when unknown)
    blob: bytes | None = None  # the serialised state of a full checkpoint, as stored
    extras: dict = None  # named arrays saved beside the state

    def __post_init__(self):
        if self.extras is None:
            self.extras = {}


def dump_state(state) -> bytes:
    snap = getattr(state, "snapshot", None)
    if callable(snap):
        return b"S" + snap()
    return b"P" + pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL)


def load_state(blob: bytes, template=None):
    """Inverse of dump_state. ``template`` (a fresh state) is used for snapshot()-style states."""
    kind, body = blob[:1], blob[1:]
    if kind == b"S":
        if template is None or not callable(getattr(template, "restore", None)):
            raise ValueError("snapshot-style state needs a fresh state with restore()")
        out = template.restore(body)
        return template if out is None else out
    return pickle.loads(body)


def _safe(topic: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", topic)


class CheckpointStore:
    def __init__(self, state_dir: str | os.PathLike, topic: str):
        self.dir = Path(state_dir)
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise ConfigError(f"--state-dir {str(state_dir)!r}: cannot create: {e}") from e
        self.topic = topic

    def path(self, partition: int) -> Path:
        return self.dir / f"{_safe(self.topic)}-p{int(partition):04d}.ckpt"

    def base_path(self, partition: int, offset: int) -> Path:
        return self.dir / f"{_safe(self.topic)}-p{int(partition):04d}.base-o{int(offset):012d}.ckpt"

    def _write(self, p: Path, payload: dict) -> Path:
        tmp = p.with_name(f".{p.name}.{os.getpid()}.tmp")
        with open(tmp, "wb") as f:
            pickle.dump(payload, f, protocol=pickle.HIGHEST_PROTOCOL)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, p)
        return p

    def save(self, partition: int, offset: int, state, model_version: str | None, blob: bytes | None = None,
             base: dict | None = None, n_scored: int | None = None, extras: dict | None = None) -> Path:
        """Full checkpoint (``state``, or ``blob``: the state already serialised by :func:`dump_state`), or,
        with ``base``, a light one (nothing serialised: see the module doc)."""
        if base is not None:
            data = None
        else:
            data = dump_state(state) if blob is None else blob
        payload = {"format": FORMAT, "topic": self.topic, "partition": int(partition), "offset": int(offset),
                   "model_version": None if model_version is None else str(model_version),
                   "state": data, "saved_at": time.time(), "base": None if base is None else dict(base),
                   "n_scored": None if n_scored is None else int(n_scored), "extras": dict(extras or {})}
        return self._write(self.path(partition), payload)

    def save_base(self, partition: int, offset: int, blob: bytes, model_version: str | None, n_scored: int) -> str:
        """A base state (serialised by :func:`dump_state`) reflecting the events below ``offset``; returns its
        file name (what a light checkpoint's ``base["file"]`` names)."""
        payload = {"format": FORMAT, "topic": self.topic, "partition": int(partition), "offset": int(offset),
                   "model_version": None if model_version is None else str(model_version), "state": blob,
                   "n_scored": int(n_scored), "saved_at": time.time()}
        return self._write(self.base_path(partition, offset), payload).name

    def load_base(self, name: str) -> dict:
        """The payload of base file ``name`` (raises OSError / ValueError when missing or unreadable)."""
        with open(self.dir / name, "rb") as f:
            d = pickle.load(f)
        if d.get("format") != FORMAT or d.get("topic") != self.topic:
            raise ValueError(f"base {name}: format {d.get('format')!r} topic {d.get('topic')!r}")
        return d

    def prune_bases(self, partition: int, keep: str | None) -> int:
        """Remove the partition's base files other than ``keep`` (after a checkpoint naming ``keep`` is saved)."""
        n = 0
        for f in self.dir.glob(f"{_safe(self.topic)}-p{int(partition):04d}.base-o*.ckpt"):
            if f.name != keep:
                f.unlink(missing_ok=True)
                n += 1
        return n

    def load(self, partition: int, template=None) -> Checkpoint | None:
        """The partition's checkpoint, or None if absent. A corrupt file is moved aside and logged."""
        p = self.path(partition)
        if not p.exists():
            return None
        try:
            with open(p, "rb") as f:
                d = pickle.load(f)
            if d.get("format") != FORMAT or d.get("topic") != self.topic:
                raise ValueError(f"format {d.get('format')!r} topic {d.get('topic')!r}")
            base = d.get("base")
            if base is None:
                state = load_state(d["state"], template)
            else:
                state = None
                if base.get("kind") == "file" and not (self.dir / base["file"]).exists():
                    raise ValueError(f"its base file {base['file']!r} is missing")
        except Exception as e:  # noqa: BLE001 - any unreadable checkpoint is set aside, never fatal
            bad = p.with_suffix(f".corrupt-{int(time.time())}")
            os.replace(p, bad)
            log.error("checkpoint unreadable path=%s error=%r moved_to=%s: starting partition %d from the "
                      "committed offset with a fresh state", p, f"{e.__class__.__name__}: {e}", bad, partition)
            return None
        return Checkpoint(topic=d["topic"], partition=d["partition"], offset=d["offset"],
                          model_version=d["model_version"], state=state, saved_at=d["saved_at"],
                          base=d.get("base"), n_scored=d.get("n_scored"),
                          blob=d["state"] if d.get("base") is None else None, extras=d.get("extras") or {})

    def offsets(self) -> dict[int, int]:
        """partition -> checkpointed offset, for every checkpoint in the directory (cheap: reads headers)."""
        out = {}
        for f in sorted(self.dir.glob(f"{_safe(self.topic)}-p*.ckpt")):
            m = re.search(r"-p(\d+)\.ckpt$", f.name)
            if m:
                try:
                    with open(f, "rb") as fh:
                        out[int(m.group(1))] = int(pickle.load(fh)["offset"])
                except Exception:  # noqa: BLE001
                    continue
        return out
