"""The tx_ids a partition has already scored, so a replayed event is not scored (and stored) twice.

Kafka delivers at least once and producers retry: the same transaction can arrive again in a later poll. Each
partition keeps the 64-bit hash of every scored tx_id with a hash of its content, for ``horizon_days`` of event
time and at most ``max_ids`` ids (oldest forgotten first: memory is bounded). A seen id with the same content is
a replay (skipped); with other content it is a conflict (dead-lettered). The memory is checkpointed with the
partition as plain arrays (:meth:`SeenIds.to_arrays`).
"""
from __future__ import annotations

import numpy as np

NEW, REPLAY, CONFLICT = 0, 1, 2
_DAY_NS = 86_400 * 10**9


class SeenIds:
    """A bounded map tx_id hash -> content hash, in arrival order (a ring of arrays plus a dict)."""

    def __init__(self, horizon_days: float = 7.0, max_ids: int = 500_000):
        self.horizon_ns = int(horizon_days * _DAY_NS)
        self.max_ids = int(max_ids)
        self._map: dict[int, int] = {}
        self._key = np.zeros(self.max_ids, dtype=np.int64)
        self._ts = np.zeros(self.max_ids, dtype=np.int64)
        self._content = np.zeros(self.max_ids, dtype=np.int64)
        self._head = 0  # oldest entry
        self._n = 0
        self._newest = np.iinfo(np.int64).min

    def __len__(self) -> int:
        return self._n

    def check(self, key: int, content: int) -> int:
        """NEW, REPLAY (same content) or CONFLICT (same id, other content)."""
        got = self._map.get(key)
        if got is None:
            return NEW
        return REPLAY if got == content else CONFLICT

    def add(self, keys, contents, ts) -> None:
        """Remember scored events (arrival order), then forget what is beyond the horizon or the bound."""
        m, cap = self._map, self.max_ids
        for k, c, t in zip(keys, contents, ts):
            if k in m:
                continue
            if self._n == cap:
                self._pop()
            i = (self._head + self._n) % cap
            self._key[i], self._ts[i], self._content[i] = k, t, c
            m[k] = c
            self._n += 1
            if t > self._newest:
                self._newest = t
        limit = self._newest - self.horizon_ns
        while self._n and self._ts[self._head] < limit:
            self._pop()

    def _pop(self) -> None:
        self._map.pop(int(self._key[self._head]), None)
        self._head = (self._head + 1) % self.max_ids
        self._n -= 1

    def to_arrays(self) -> dict[str, np.ndarray]:
        """The live entries, oldest first: ``seen_key``, ``seen_content``, ``seen_ts`` (int64)."""
        idx = (self._head + np.arange(self._n)) % self.max_ids
        return {"seen_key": self._key[idx], "seen_content": self._content[idx], "seen_ts": self._ts[idx]}

    def restore(self, arrays: dict) -> "SeenIds":
        """Load entries saved by :meth:`to_arrays` (missing arrays: stays empty). Returns self."""
        if "seen_key" in arrays:
            self.add(arrays["seen_key"].tolist(), arrays["seen_content"].tolist(), arrays["seen_ts"].tolist())
        return self
