"""Send ahead: a micro-batch's topic writes run on a thread while the scorer polls, decodes and scores the next.

kafka-python's per-record ``send`` is pure Python (the pass-through consumer's whole cost), while the model's
kernels (numba, compiled ``nogil``) and numpy release the GIL: writing batch k on a second thread while batch
k+1 is scored puts the second core to work. The rules that keep the loop's guarantees:

- at most one batch is in flight; the next ``submit`` first waits for it (``drain``), so records reach the
  producer in consumption order and a batch is never overtaken;
- every checkpoint drains first (``streaming.checkpoint.Checkpointer.take``), so the records of every batch a
  checkpoint commits were handed to the producer before its flush and delivery check;
- a write that failed on the thread is done again by the next ``drain`` on the caller's thread; while that
  fails too, ``drain`` raises and the batch stays pending (its offsets cannot be committed: a checkpoint's
  ``take`` raises), and it is tried again at the next drain (at least once: consumers dedupe by key);
- a batch below ``min_rows`` (caught up: latency matters and there is nothing to overlap) is written at once
  on the caller's thread, as is every batch with ``min_rows`` None; an error then propagates as before.
Figures: docs/streaming.md.
"""
from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Callable

log = logging.getLogger("streaming.ahead")


class SendAhead:
    """Runs write jobs (zero-argument callables) one at a time, in order, at most one in the background."""

    def __init__(self, min_rows: int | None):
        self.min_rows = min_rows
        self._pending: tuple | None = None  # (future or None when the thread's try failed, job)
        self._exec: ThreadPoolExecutor | None = None

    @property
    def pending(self) -> bool:
        return self._pending is not None

    def submit(self, job: Callable[[], object], rows: int) -> None:
        """Wait for the batch in flight, then run ``job`` in the background (``rows`` >= ``min_rows``) or now."""
        self.drain()
        if self.min_rows is None or rows < self.min_rows:
            job()
            return
        if self._exec is None:
            self._exec = ThreadPoolExecutor(1, thread_name_prefix="fraud-send-ahead")
        self._pending = (self._exec.submit(job), job)

    def drain(self) -> None:
        """Wait for the job in flight; one that failed on the thread runs again here (raises while it fails)."""
        if self._pending is None:
            return
        fut, job = self._pending
        if fut is not None:
            try:
                fut.result()
                self._pending = None
                return
            except Exception as e:  # noqa: BLE001 - written again below, on this thread
                log.warning("background topic write failed error=%r: writing the batch again",
                            f"{e.__class__.__name__}: {e}")
                self._pending = (None, job)
        job()
        self._pending = None

    def close(self) -> None:
        """Drain (errors logged: the batch's offsets were not committed) and stop the thread."""
        try:
            self.drain()
        except Exception as e:  # noqa: BLE001
            log.error("topic write failed at shutdown error=%r: its events are read again on restart",
                      f"{e.__class__.__name__}: {e}")
        if self._exec is not None:
            self._exec.shutdown(wait=True)
            self._exec = None
