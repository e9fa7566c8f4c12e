"""A scored batch on its way to the sinks: written once, in sink order, retried from the sink that failed.

Scoring a batch changes its partitions' online states, so a batch whose sinks fail must not be read and scored
again (its events would enter the states twice): the scorer remembers its tx_ids, puts it here, and does not
poll (so no rebalance runs), checkpoint or commit until every sink has it. A sink that raised part-way may get
some of its rows again on the retry (a topic: at-least-once, consumers dedupe by key; the alert store skips known
tx_ids).
"""
from __future__ import annotations

import logging

log = logging.getLogger("streaming.outbox")


class Outbox:
    def __init__(self, on_failure=None):
        self.pending: list | None = None  # [results, columns, sinks still to write]
        self.retry_in = 0.25  # seconds to wait after the last failed attempt: 0.5, 1, 2, ... 10 (reset on success)
        self.on_failure = on_failure  # called on each failed attempt (the scorer's fraud_sink_failures counter)

    def put(self, results, columns: dict, sinks: list) -> None:
        if self.pending is not None:
            raise RuntimeError("outbox: a batch is still pending; deliver it before the next one")
        self.pending = [results, columns, list(sinks)]

    def deliver(self) -> None:
        """Write the pending batch to each sink not written yet; raises (the batch stays pending from that sink)."""
        if self.pending is None:
            return
        results, columns, todo = self.pending
        while todo:
            todo[0].write(results, columns=columns)
            todo.pop(0)
        self.pending = None

    def try_deliver(self) -> bool:
        """:meth:`deliver`, logging a failure instead of raising (retried before the next poll). True when empty."""
        try:
            self.deliver()
            self.retry_in = 0.25
        except Exception as e:  # noqa: BLE001 - the batch stays here; the scoring loop retries it with backoff
            self.retry_in = min(10.0, self.retry_in * 2)
            log.error("a sink failed on a scored batch of %d events error=%r: kept, written again in %.1fs before the "
                      "next poll (nothing polled or committed meanwhile)", len(self.pending[0]),
                      f"{e.__class__.__name__}: {e}", self.retry_in)
            if self.on_failure is not None:
                self.on_failure()
        return self.pending is None
