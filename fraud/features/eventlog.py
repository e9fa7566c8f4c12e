"""The window featurizers' kept history: event columns in arrival order, with an index from entity to its events.

A micro-batch needs the kept events of the few customers and terminals it touches. Scanning the whole log for
them made every poll cost as much as the state is large (a month of a partition's traffic per call); the entity
index answers in time proportional to the events returned. The index is derived data: rebuilt from the columns
when the buffer moves, never saved in a checkpoint (the checkpoint form is the columns alone).
"""
from __future__ import annotations

import numpy as np

from fraud._jit import compiled


def _chain_extend(codes, lo, hi, last, prev):  # pragma: no cover - compiled
    """Link buffer positions [lo, hi) into their entities' chains: ``prev[i]`` = the entity's event before ``i``."""
    for i in range(lo, hi):
        c = codes[i]
        prev[i] = last[c]
        last[c] = i


def _chain_walk(last, prev, start, wanted, out):  # pragma: no cover - compiled
    """Positions >= ``start`` of the events of the entities ``wanted``; returns how many were written to ``out``.
    The entities' chains are walked in lockstep, one step of each per round: their loads are independent, so the
    memory waits overlap instead of adding up."""
    cur = np.empty(len(wanted), dtype=np.int64)
    for j in range(len(wanted)):
        cur[j] = last[wanted[j]] if wanted[j] < last.shape[0] else -1
    k = 0
    active = True
    while active:
        active = False
        for j in range(cur.shape[0]):
            i = cur[j]
            if i >= start:
                out[k] = i
                k += 1
                cur[j] = prev[i]
                active = True
    return k


_EXTEND, _WALK = [], []


def find_events(ts: np.ndarray, cols: dict, q_ts: np.ndarray, q_cols: dict, ts_sorted: bool) -> np.ndarray:
    """Per query, the position of the kept event with its time ``q_ts`` and its values ``q_cols`` (column -> values;
    ``cols`` holds the kept ones), -1 when none. Queries with equal values take the events that share them in kept
    order (callers include a transaction key when events must not be confused). One ``searchsorted`` on the kept times (sorted first unless
    ``ts_sorted``): the cost is in the queries, not the history."""
    m = len(q_ts)
    out = np.full(m, -1, dtype=np.int64)
    qi, pos = _candidates(ts, cols, q_ts, q_cols, ts_sorted)
    if not len(qi):
        return out
    n = np.bincount(qi, minlength=m)
    rank = _rank_in_key(q_ts, q_cols)
    hit = rank < n
    out[hit] = pos[(np.cumsum(n) - n)[hit] + rank[hit]]
    return out


def _candidates(ts: np.ndarray, cols: dict, q_ts: np.ndarray, q_cols: dict, ts_sorted: bool) -> tuple:
    """(query, kept position) pairs with equal time and values, queries ascending, events in kept order."""
    m = len(q_ts)
    if m == 0 or len(ts) == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    order = None if ts_sorted else np.argsort(ts, kind="stable")
    sts = ts if order is None else ts[order]
    lo = np.searchsorted(sts, q_ts, side="left")
    width = np.searchsorted(sts, q_ts, side="right") - lo
    qi = np.repeat(np.arange(m), width)  # candidate pairs (query, event of the same time), events in kept order
    pos = lo[qi] + np.arange(len(qi)) - np.repeat(np.cumsum(width) - width, width)
    pos = pos if order is None else order[pos]
    ok = np.ones(len(qi), dtype=bool)
    for k, v in q_cols.items():
        ok &= cols[k][pos] == np.asarray(v)[qi]
    return qi[ok], pos[ok]


def _rank_in_key(q_ts: np.ndarray, q_cols: dict) -> np.ndarray:
    """Per query, how many earlier queries share its time and values."""
    keys = [np.asarray(v) for v in reversed(list(q_cols.values()))] + [q_ts]
    o = np.lexsort([np.arange(len(q_ts))] + keys)  # by key, then query order
    same = np.ones(max(len(o) - 1, 0), dtype=bool)
    for k in keys:
        same &= k[o][1:] == k[o][:-1]
    start = np.flatnonzero(np.concatenate(([True], ~same)))
    run = np.repeat(start, np.diff(np.concatenate((start, [len(o)]))))
    rank = np.empty(len(o), dtype=np.int64)
    rank[o] = np.arange(len(o)) - run
    return rank


class EventLog:
    """Append-only event columns in arrival order with amortized O(batch) append and eviction.

    ``rows_of(column, codes)`` lists the live events of the given entity codes through a per-column chain index
    (per entity its newest event's buffer position, per event its entity's previous one), built on first use
    and extended on append; without numba it is a scan of the column.
    """

    def __init__(self, **dtypes):
        self._cols = {k: np.empty(64, dtype=dt) for k, dt in dtypes.items()}
        self._start = 0
        self._end = 0
        self._ts_sorted = True  # "ts" nondecreasing over the live part
        self._chains: dict = {}  # code column -> (last, prev), buffer positions

    def __len__(self) -> int:
        return self._end - self._start

    def __getitem__(self, name: str) -> np.ndarray:
        return self._cols[name][self._start:self._end]

    def append(self, **values) -> None:
        n = len(values["ts"])
        if n == 0:
            return
        ts_new = values["ts"]
        if self._ts_sorted:
            last = self._cols["ts"][self._end - 1] if len(self) else None
            self._ts_sorted = bool((last is None or ts_new[0] >= last) and np.all(ts_new[1:] >= ts_new[:-1]))
        cap = len(self._cols["ts"])
        if self._end + n > cap:
            live = len(self)
            new_cap = max(64, 2 * (live + n)) if live + n > cap // 2 else cap
            for k, a in self._cols.items():
                b = np.empty(new_cap, dtype=a.dtype)
                b[:live] = a[self._start:self._end]
                self._cols[k] = b
            self._start, self._end = 0, live
            self._chains = {}  # positions moved: rebuilt on the next lookup
        for k, v in values.items():
            self._cols[k][self._end:self._end + n] = v
        self._end += n
        for col, chain in list(self._chains.items()):
            self._chains[col] = self._extend(col, chain, self._end - n)

    def evict(self, cut: int) -> None:
        """Drop events with ts <= cut."""
        ts = self["ts"]
        if self._ts_sorted:  # the chains stay valid: a walk stops below the live start
            self._start += int(np.searchsorted(ts, cut, side="right"))
            return
        keep = ts > cut
        if keep.all():
            return
        live = int(keep.sum())
        for k, a in self._cols.items():
            a[:live] = a[self._start:self._end][keep]
        self._start, self._end = 0, live
        self._chains = {}
        t = self["ts"]
        self._ts_sorted = bool(np.all(t[1:] >= t[:-1]))

    def find(self, ts: np.ndarray, **values) -> np.ndarray:
        """Live positions of the events with times ``ts`` and column values ``values`` (-1: not kept), as
        :func:`find_events` matches them."""
        return find_events(self["ts"], {k: self[k] for k in values}, np.asarray(ts, dtype=np.int64), values,
                           self._ts_sorted)

    def set(self, name: str, positions: np.ndarray, values) -> None:
        """Overwrite column ``name`` (not an indexed entity column) at live ``positions``."""
        self._cols[name][self._start + np.asarray(positions, dtype=np.int64)] = values

    def rows_of(self, col: str, codes: np.ndarray) -> np.ndarray:
        """Live positions (ascending, as ``self[col]`` indexes) of the events whose ``col`` is one of ``codes``
        (distinct non-negative entity codes)."""
        codes = np.asarray(codes, dtype=np.int64)
        walk = compiled(_WALK, _chain_walk)
        if walk is None or compiled(_EXTEND, _chain_extend) is None:
            return np.flatnonzero(np.isin(self[col], codes))
        chain = self._chains.get(col)
        if chain is None:
            chain = self._chains[col] = self._extend(col, None, self._start)
        out = np.empty(len(self), dtype=np.int64)
        k = walk(chain[0], chain[1], self._start, codes, out)
        rows = out[:k]
        rows.sort()
        return rows - self._start

    def _extend(self, col: str, chain, lo: int) -> tuple:
        """``chain`` (None: a new one over the live part) extended to positions [lo, end)."""
        codes = self._cols[col]
        top = int(codes[lo:self._end].max()) + 1 if self._end > lo else 0
        if chain is None:
            last, prev = np.full(max(top, 64), -1, dtype=np.int64), np.empty(len(codes), dtype=np.int64)
        else:
            last, prev = chain
            if top > len(last):
                last = np.concatenate([last, np.full(max(top, 2 * len(last)) - len(last), -1, dtype=np.int64)])
        compiled(_EXTEND, _chain_extend)(codes, lo, self._end, last, prev)
        return last, prev

    def __getstate__(self):  # pickle only the live part
        return {"cols": {k: self[k].copy() for k in self._cols}, "ts_sorted": self._ts_sorted}

    def __setstate__(self, st):
        self._cols = st["cols"]
        self._start, self._end = 0, len(st["cols"]["ts"])
        self._ts_sorted = st["ts_sorted"]
        self._chains = {}

    def to_arrays(self, prefix: str) -> dict:
        """Checkpoint form of the live part (:mod:`fraud.safestate`): ``prefix + column`` -> array."""
        return {prefix + k: self[k].copy() for k in self._cols}

    @classmethod
    def from_arrays(cls, arrays: dict, prefix: str, dtypes: dict, ts_sorted: bool) -> "EventLog":
        """Inverse of :meth:`to_arrays`; the columns must be ``dtypes`` (name -> dtype), of one length."""
        cols = {}
        for k, dt in dtypes.items():
            a = np.asarray(arrays[prefix + k])
            if a.dtype != np.dtype(dt) or a.ndim != 1 or len(a) != len(arrays[prefix + "ts"]):
                raise ValueError(f"log column {prefix + k!r}: {a.dtype} {a.shape}, expected {np.dtype(dt)} 1-d")
            cols[k] = a
        if set(k for k in arrays if k.startswith(prefix)) != {prefix + k for k in dtypes}:
            raise ValueError(f"log {prefix!r}: columns {sorted(arrays)}, expected {sorted(dtypes)}")
        log = cls.__new__(cls)
        log.__setstate__({"cols": cols, "ts_sorted": bool(ts_sorted)})
        return log
