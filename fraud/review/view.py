"""What the review pages show: the clusters of the store's alerts, each alert's strength and the context, kept
fresh off the request path.

A live scorer writes alerts at every checkpoint and clustering a long window takes seconds, so a page never waits
for it longer than ``wait_s``: the request that sees new alerts (or a new context) starts one refresh on a
background thread and, if it is not done in time, is served the last view; the pages then say that newer alerts
are being grouped. At most one refresh runs at a time, and one starts at most every ``min_interval_s``. A refresh
syncs the case book before it publishes its view, so the queue's cases always match the clusters shown. A failed
refresh keeps the last view, is logged, and is tried again by the next request that sees the change.
"""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone

import pandas as pd

from fraud.errors import FraudError
from fraud.review.clusters import ClusterResult, cluster_alerts
from fraud.review.queue import first_reasons, strength

log = logging.getLogger(__name__)


class NotGroupedYet(FraudError):
    """The first grouping is still running after ``first_wait_s``: the pages say so and reload."""


class GroupingFailed(FraudError):
    """The first grouping failed: there is no view to show (the next request tries again)."""


def _short(e: BaseException) -> str:
    """An exception in a line an analyst can be shown: its root cause (the driver's message, not the SQL
    around it)."""
    for _ in range(5):
        if e.__cause__ is None:
            break
        e = e.__cause__
    text = str(e).split("\n")[0].split(" [SQL:")[0].strip()
    return f"{e.__class__.__name__}: {text[:200]}"


@dataclass(frozen=True)
class View:
    """One consistent state of the pages: the clusters, each alert's strength and first reason in words, and the
    context they were built with; ``key``: the store's alert count and the context's version it was built for."""
    result: ClusterResult
    strength: pd.DataFrame
    first_reasons: pd.Series
    context: pd.DataFrame | None
    key: tuple
    as_of: datetime


class ClusterCache:
    """The current :class:`View` of ``store``'s alerts (``since``/``until`` bound the window). ``book``: a
    CaseBook synced with every new result; ``context_source``: a ContextSource (the scorer's archive as it
    grows); ``wait_s``: the longest a request waits for a refresh it started (None: until it is done);
    ``first_wait_s``: the same for the first grouping, after which :class:`NotGroupedYet` is raised;
    ``cluster_kwargs``: passed to :func:`fraud.review.clusters.cluster_alerts`."""

    def __init__(self, store, since=None, until=None, context_source=None, book=None, wait_s: float | None = 0.5,
                 first_wait_s: float | None = None, min_interval_s: float = 5.0, **cluster_kwargs):
        self.store, self.since, self.until, self.kw = store, since, until, cluster_kwargs
        self.context_source, self.book = context_source, book
        self.wait_s, self.first_wait_s, self.min_interval_s = wait_s, first_wait_s, min_interval_s
        self._refresh_error: str | None = None   # why the last refresh failed (None: it did not)
        self._look_error: str | None = None      # why the last look for new alerts failed
        self._lock = threading.Lock()
        self._view: View | None = None
        self._done: threading.Event | None = None   # set when the running refresh ends (None: none runs)
        self._last_start = float("-inf")
        self._tried: tuple | None = None        # the key the last refresh was for

    @property
    def refreshing(self) -> bool:
        """A refresh is running or waiting for its turn: newer alerts than the view's exist."""
        return self._done is not None

    @property
    def error(self) -> str | None:
        """Why the newest alerts are not on the pages (the last look or refresh failed); None: they are."""
        return self._look_error or self._refresh_error

    @property
    def as_of(self) -> datetime | None:
        """When the current view was built (None: not yet)."""
        view = self._view
        return None if view is None else view.as_of

    def view(self) -> View:
        """The current view; starts a refresh when the alerts or the context changed since it was built. Waits
        for the refresh only when this request started it and it can run at once."""
        with self._lock:
            try:
                key, kw = self._look()
            except Exception as e:  # noqa: BLE001 - the store or the context cannot be read: keep the last view
                if self._view is None:
                    raise
                self._look_error = _short(e)
                log.warning("review: cannot look for new alerts in %s (%s); the pages keep the last view",
                            self.store.url, self._look_error)
                return self._view
            self._look_error = None
            current = self._view
            if current is not None and current.key == key:
                return current
            done, started = self._start(key, kw)
            wait = self.first_wait_s if current is None else (self.wait_s if started and not self._spaced() else 0)
        if current is not None and self.wait_s is None:       # wait until this change is on the view
            return self._until_current(key, kw, done)
        if wait != 0:
            done.wait(wait)
        with self._lock:
            if self._view is not None:
                if self._view.key != key and self._done is None and self._tried != key:
                    self._start(key, kw)            # the refresh that ran was for an older change
                return self._view
            if self._done is not None:
                raise NotGroupedYet("the alerts are being grouped into cases for the first time since the app "
                                    f"started ({key[0]:,} in the store)"
                                    + (f"; the last attempt failed: {self.error}" if self.error else ""))
            raise GroupingFailed(f"the alerts of {self.store.url!r} could not be grouped into cases: {self.error}")

    def _until_current(self, key: tuple, kw: dict, done: threading.Event) -> View:
        while True:
            done.wait()
            with self._lock:
                if self._view.key == key or self._tried == key:     # on the view, or its refresh failed
                    return self._view
                done, _ = self._start(key, kw)

    def start(self) -> None:
        """Start grouping now, without waiting (the app does at its start: its first page then waits only for
        what is left)."""
        with self._lock:
            key, kw = self._look()
            if self._view is None or self._view.key != key:
                self._start(key, kw)

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for the running refresh, if any; False if it is still running after ``timeout`` s."""
        done = self._done
        return done is None or done.wait(timeout)

    def _look(self) -> tuple[tuple, dict]:
        """The key of what the pages should show now (cheap: a count and a file listing; nothing is read)."""
        version = self.context_source.look() if self.context_source is not None else None
        return (self.store.count_alerts(), version), dict(self.kw)

    def _start(self, key: tuple, kw: dict) -> tuple[threading.Event, bool]:
        """(the running refresh's end, whether this call started it)."""
        if self._done is not None:
            return self._done, False
        self._done = threading.Event()
        threading.Thread(target=self._refresh, args=(key, kw, self._done), name="review-refresh", daemon=True).start()
        return self._done, True

    def _spaced(self) -> float:
        """Seconds a refresh starting now waits for its turn (after a view or a failure: one every min_interval_s)."""
        if self._view is None and self.error is None:
            return 0.0
        return max(0.0, self._last_start + self.min_interval_s - time.monotonic())

    def _refresh(self, key: tuple, kw: dict, done: threading.Event) -> None:
        try:
            delay = self._spaced()
            if delay > 0:
                time.sleep(delay)
            self._last_start, self._tried = time.monotonic(), key
            view = self._compute(key, kw)
            if self.book is not None:
                self.book.sync(view.result)
            with self._lock:
                self._view, self._refresh_error = view, None
        except Exception as e:  # noqa: BLE001 - the app keeps serving the last view; the next request retries
            self._refresh_error = _short(e)
            log.exception("review: grouping the alerts of %s failed; %s", self.store.url,
                          "the pages keep the last view" if self._view is not None else "no view yet: retried")
        finally:
            with self._lock:
                self._done = None
            done.set()

    def _compute(self, key: tuple, kw: dict) -> View:
        if self.context_source is not None:
            _, kw["context"] = self.context_source.get()       # the archive's new files are read here, off the pages
        result = cluster_alerts(self.store.read_alerts(), since=self.since, until=self.until, **kw)
        context = kw.get("context")
        return View(result, strength(result.alerts, context), self._first_reasons(result.alerts), context, key,
                    datetime.now(timezone.utc))

    def _first_reasons(self, alerts: pd.DataFrame) -> pd.Series:
        """:func:`fraud.review.queue.first_reasons`, worded only for alerts the last view did not hold (a stored
        alert's reasons never change)."""
        known = self._view.first_reasons if self._view is not None else pd.Series([], dtype=object)
        tx = alerts["tx_id"].to_numpy()
        new = ~pd.Index(tx).isin(known.index)
        if not new.any():
            return known.reindex(tx)
        return pd.concat([known[known.index.isin(tx)], first_reasons(alerts[new])]).reindex(tx)
