"""Events dated long before what their partition's state has already absorbed.

A state's time windows end at the newest event it has seen (for a fresh partition: the model's training cutoff).
An event dated well before that is scored against windows that already hold its future, so its counts and sums
are too high and most such events alert: replaying a file from before the serving model's cutoff does exactly
this (docs/streaming.md, "Late events"). A late event is legitimate in a stream, so it is still scored; the
scorer counts those older than ``hours`` behind their state and says so in a warning (at most once a minute).
"""
from __future__ import annotations

import logging
import time

import numpy as np
import pandas as pd

log = logging.getLogger("streaming.late")


class LateEvents:
    def __init__(self, counter=None, hours: float = 24.0, every_s: float = 60.0):
        self.counter = counter  # fraud_late_events (a prometheus Counter) or None
        self.hours = hours
        self.every_s = every_s
        self._last_warn = -np.inf

    def check(self, rows: pd.DataFrame, part: np.ndarray, states: dict, model: str = "") -> int:
        """How many of ``rows`` (partition ``part[i]``, scored with ``states[part[i]]``) are more than ``hours``
        older than their state's newest event; counted, and named in a warning now and then."""
        ts = rows["timestamp"]
        t = ts.to_numpy(dtype="datetime64[ns]").view(np.int64)  # ns since the epoch, UTC
        cut = np.full(len(t), np.iinfo(np.int64).min)  # a partition without state time: never late
        lag_ns, now_ns = int(self.hours * 3600 * 10**9), time.time_ns()
        for p in np.unique(part):
            last = states[int(p)].last_timestamp
            if last is not None:  # Timestamp.value: ns since the epoch, UTC; an event from a clock ahead never
                cut[part == p] = min(last.value, now_ns) - lag_ns  # makes the events after it late
        old = t < cut
        late = int(old.sum())
        if late:
            if self.counter is not None:
                self.counter.inc(late)
            now = time.monotonic()
            if now - self._last_warn >= self.every_s:
                self._last_warn = now
                i = int(np.argmax(old))
                first, newest = ts.iloc[i], states[int(part[i])].last_timestamp
                log.warning("%d event(s) dated more than %gh before what their partition's state has seen (e.g. %s, "
                            "state's newest %s, model %s): scored against windows that hold their future, so they "
                            "alert far too often; was a file replayed from before the model's training cutoff?",
                            late, self.hours, first, newest, model)
        return late
