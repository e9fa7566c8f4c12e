"""Checkpoints of the online state, one file per (topic, partition), with the offset they reflect.

A checkpoint is written atomically (temporary file, fsync, rename) after the sinks are flushed and
before offsets are committed; it is the source of truth on restart and on rebalance: the scorer that
gets a partition loads its checkpoint and seeks to its offset. ``offset`` is the next offset to read
(every message below it is reflected in the state and in the sinks).

File: ``STATE_DIR/<topic>-p<partition>.ckpt``, an ``.npz`` (zip) read with ``allow_pickle=False``: member
``header`` (JSON ``{"format": 2, "kind": "checkpoint" | "base", "topic", "partition", "offset", "model_version",
"saved_at", "base": dict | None, "n_scored": int | None}``), member ``state`` (the bytes of
:func:`dump_state`, absent in a light checkpoint) and members ``x.<name>`` (the caller's ``extras`` arrays).
Data only, never a pickle: the folder is shared between scorers (a shared volume), so a file planted there
must not run code in the scorer that reads it. States are serialised by :mod:`fraud.safestate` (allowlisted
state classes, numpy arrays). A file of another format (an older pickle checkpoint) is never unpickled: it is
set aside like a corrupt one and the partition starts from the committed offset.

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
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fraud import safestate
from fraud.errors import ConfigError, StateError

log = logging.getLogger("streaming.state")
FORMAT = 2


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
    extras: dict = field(default_factory=dict)  # name -> array saved alongside (``save(extras=...)``)


def dump_state(state) -> bytes:
    """``state`` (an allowlisted state class, :mod:`fraud.safestate`) as bytes."""
    return safestate.dumps(state)


def load_state(blob: bytes, template=None, where: str = "state"):
    """Inverse of :func:`dump_state` (never unpickles). ``template`` (a fresh state) when given: the restored
    state must be of its class."""
    if not isinstance(blob, (bytes, bytearray, memoryview)):
        raise StateError(f"{where}: {type(blob).__name__}, not bytes")
    state = safestate.loads(bytes(blob), where)
    if template is not None and type(state) is not type(template):
        raise StateError(f"{where}: a {type(state).__name__}, expected a {type(template).__name__}")
    return state


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

    def _write(self, p: Path, header: dict, blob: bytes | None, extras: dict | None) -> Path:
        arrays = {f"x.{k}": v for k, v in safestate.plain_arrays(extras, f"checkpoint {p.name} extras").items()}
        if blob is not None:
            arrays["state"] = np.frombuffer(blob, dtype=np.uint8)
        header = {"format": FORMAT, "topic": self.topic, "saved_at": time.time(), **header}
        tmp = p.with_name(f".{p.name}.{os.getpid()}.tmp")
        with open(tmp, "wb") as f:
            safestate.write_npz(f, header, arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, p)
        return p

    def _read(self, p: Path, kind: str) -> tuple[dict, bytes | None, dict]:
        """(header, state bytes or None, extras) of file ``p``; StateError when it is not a valid ``kind`` file of
        this format and topic."""
        where = f"checkpoint {str(p)!r}"
        with open(p, "rb") as f, safestate.open_npz(f, where) as z:
            h = safestate.read_header(z, where)
            if h.get("format") != FORMAT or h.get("topic") != self.topic or h.get("kind") != kind:
                raise StateError(f"{where}: format {h.get('format')!r} topic {h.get('topic')!r} kind "
                                 f"{h.get('kind')!r}, expected format {FORMAT} topic {self.topic!r} kind {kind!r}")
            blob = z["state"].tobytes() if "state" in z.files else None
            extras = {k[2:]: z[k] for k in z.files if k.startswith("x.")}
        return h, blob, extras

    def save(self, partition: int, offset: int, state, model_version: str | None, blob: bytes | None = None,
             base: dict | None = None, n_scored: int | None = None, extras: dict | None = None) -> Path:
        """Full checkpoint (``state``, or ``blob``: the state already serialised by :func:`dump_state`), or,
        with ``base``, a light one (nothing serialised: see the module doc). ``extras``: name -> numpy array
        (no object dtype) stored alongside, returned as :attr:`Checkpoint.extras`."""
        if base is not None:
            data = None
        else:
            data = dump_state(state) if blob is None else blob
        header = {"kind": "checkpoint", "partition": int(partition), "offset": int(offset),
                  "model_version": None if model_version is None else str(model_version),
                  "base": None if base is None else dict(base), "n_scored": None if n_scored is None else int(n_scored)}
        return self._write(self.path(partition), header, data, extras)

    def save_base(self, partition: int, offset: int, blob: bytes, model_version: str | None, n_scored: int,
                  extras: dict | None = None) -> str:
        """A base state (serialised by :func:`dump_state`) reflecting the events below ``offset``; returns its
        file name (what a light checkpoint's ``base["file"]`` names). ``extras`` as in :meth:`save`."""
        header = {"kind": "base", "partition": int(partition), "offset": int(offset),
                  "model_version": None if model_version is None else str(model_version), "n_scored": int(n_scored)}
        return self._write(self.base_path(partition, offset), header, blob, extras).name

    def _check_base_name(self, name, partition: int | None = None) -> str:
        part = r"\d{4}" if partition is None else f"{int(partition):04d}"
        pattern = rf"{re.escape(_safe(self.topic))}-p{part}\.base-o\d{{12}}\.ckpt"
        if not isinstance(name, str) or not re.fullmatch(pattern, name):
            raise StateError(f"base file name {name!r} is not a base file of topic {self.topic!r}"
                             + ("" if partition is None else f" partition {partition}"))
        return name

    def load_base(self, name: str) -> dict:
        """The payload of base file ``name``: header fields, ``state`` (bytes) and ``extras`` (name -> array).
        Raises OSError / ValueError (StateError) when missing or unreadable; never unpickles."""
        h, blob, extras = self._read(self.dir / self._check_base_name(name), "base")
        if blob is None:
            raise StateError(f"base file {name!r} holds no state")
        return {**h, "state": blob, "extras": extras}

    def prune_bases(self, partition: int, keep: str | None) -> int:
        """Remove the partition's base files other than ``keep`` (after a checkpoint naming ``keep`` is saved)."""
        n = 0
        for f in self.dir.glob(f"{_safe(self.topic)}-p{int(partition):04d}.base-o*.ckpt"):
            if f.name != keep:
                f.unlink(missing_ok=True)
                n += 1
        return n

    def load(self, partition: int, template=None) -> Checkpoint | None:
        """The partition's checkpoint, or None if absent. A corrupt file, or one of another format (an older pickle
        checkpoint is never unpickled), is moved aside and logged."""
        p = self.path(partition)
        if not p.exists():
            return None
        try:
            h, blob, extras = self._read(p, "checkpoint")
            if h.get("partition") != int(partition) or not isinstance(h.get("offset"), int):
                raise StateError(f"partition {h.get('partition')!r} offset {h.get('offset')!r}")
            base = h.get("base")
            if base is None:
                state = load_state(blob, template, f"checkpoint {str(p)!r}")
            else:
                state, blob = None, None
                if not isinstance(base, dict) or base.get("kind") not in ("fresh", "file"):
                    raise StateError(f"base {base!r} is not a fresh or file base")
                if base["kind"] == "file":
                    self._check_base_name(base.get("file"), partition)
                    if not (self.dir / base["file"]).exists():
                        raise StateError(f"its base file {base['file']!r} is missing")
        except Exception as e:  # noqa: BLE001 - any unreadable checkpoint is set aside, never fatal
            bad = p.with_suffix(f".corrupt-{int(time.time())}")
            os.replace(p, bad)
            log.error("checkpoint unreadable path=%s error=%r moved_to=%s: starting partition %d from the "
                      "committed offset with a fresh state", p, f"{e.__class__.__name__}: {e}", bad, partition)
            return None
        return Checkpoint(topic=h["topic"], partition=h["partition"], offset=h["offset"],
                          model_version=h.get("model_version"), state=state, saved_at=h.get("saved_at"),
                          base=base, n_scored=h.get("n_scored"), blob=blob, extras=extras)

    def offsets(self) -> dict[int, int]:
        """partition -> checkpointed offset, for every checkpoint in the directory (cheap: reads headers)."""
        out = {}
        for f in sorted(self.dir.glob(f"{_safe(self.topic)}-p*.ckpt")):
            m = re.search(r"-p(\d+)\.ckpt$", f.name)
            if m:
                try:
                    with open(f, "rb") as fh, safestate.open_npz(fh, str(f)) as z:
                        out[int(m.group(1))] = int(safestate.read_header(z, str(f))["offset"])
                except Exception:  # noqa: BLE001
                    continue
        return out
