"""One checkpoint job: check delivery, write the alert store and the archive, save the states, then commit.

Every checkpoint runs this one path: the periodic ones on the writer thread, the synchronous ones (revoke,
model swap, shutdown) on the scoring thread. The scoring thread builds the :class:`Job` at a batch boundary
(what the producer sent, the sinks' buffers, the planned :class:`Item` per partition); :func:`run_job` writes it.
A job that fails keeps what it took: the next job first sends its undelivered records again and writes its
buffers (the sinks are idempotent by tx_id and offsets), and its offsets are not committed. Offsets therefore
never move past what the sinks hold.
"""
from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from fraud.archive import without_partitions
from streaming.sinks import TrackedProducer
from streaming.state import dump_state

log = logging.getLogger("streaming.checkpoint")


@dataclass
class Item:
    """What to save for one partition: ``kind`` "full" (``blob``: the state serialised), "compact" (``blob`` becomes
    a new base file) or "light" (nothing serialised: ``base`` + the archive make the state); ``extras``: the arrays
    saved beside it (the memory of scored tx_ids, the last record consumed)."""

    partition: int
    offset: int
    kind: str
    blob: bytes | None = None
    base: dict | None = None
    n_scored: int | None = None
    extras: dict = field(default_factory=dict)


@dataclass
class Job:
    sent: list = field(default_factory=list)  # records handed to the producer (streaming.sinks.Sent)
    resend: list = field(default_factory=list)  # records a failed job did not deliver: sent again first
    stores: list = field(default_factory=list)  # [(sink, buffers)]
    archive: list = field(default_factory=list)  # buffer groups, each flushed on its own (same files on a retry)
    items: list = field(default_factory=list)
    version: str | None = None

    def after(self, failed: "Job | None") -> "Job":
        """This job preceded by what ``failed`` (a failed job's carry) still has to write."""
        if failed is None:
            return self
        stores = [(s, b) for s, b in failed.stores] + self.stores
        return Job(sent=self.sent, resend=failed.resend + failed.sent + self.resend, stores=stores,
                   archive=failed.archive + self.archive, items=self.items, version=self.version)

    def carry(self) -> "Job":
        """What a failed run leaves to the next job: undelivered records and every buffer (no items)."""
        return Job(resend=TrackedProducer.undelivered(self.sent) + self.resend, stores=self.stores,
                   archive=self.archive)

    def drop_partitions(self, partitions) -> None:
        """Forget the archive rows of ``partitions`` (revoked: their next owner reads them again)."""
        self.archive = [without_partitions(g, partitions) for g in self.archive]

    def rows(self) -> int:
        return sum(len(b["kafka_offset"]) for g in self.archive for b in g)


def run_job(job: Job, producer, archive, save, gate=None) -> None:
    """Write ``job``: delivery of the producer's records first (resending a failed job's), then the alert store
    and the archive, then the checkpoint files (``save(items, version)``). ``gate()`` is called before each
    step (the writer thread waits there for the scoring thread to be idle). Raises on any failure."""
    gate = gate or (lambda: None)
    if producer is not None:
        if job.resend:
            job.sent, job.resend = job.sent + producer.resend(job.resend), []
        producer.flush()  # thread-safe in kafka-python; later sends are not waited for
        TrackedProducer.check(job.sent)
        job.sent = []
    for sink, bufs in job.stores:
        sink.flush(bufs, gate=gate)
    if archive is not None:
        for group in job.archive:
            archive.flush(group, gate=gate)
    for it in job.items:  # one file each: a step each
        gate()
        save([it], job.version)


class Checkpointer:
    """A scorer's checkpoints: which partitions are due (``dirty``), the one job in flight on the writer thread,
    what a failed job left to write (``carry``), and the commit of the offsets a job covered. ``parts`` is the
    scorer's {partition: streaming.partitions.Partition}; ``attach`` gives it the producer, sinks and consumer."""

    def __init__(self, cfg, store, metrics, parts: dict):
        self.cfg, self.store, self.metrics, self.parts = cfg, store, metrics, parts
        self.producer = self.archive = self.consumer = None
        self.sinks: list = []
        self.dirty: set[int] = set()
        self.carry: Job | None = None
        self.in_flight = None  # (future, Job)
        self.last = time.monotonic()
        self.polling = threading.Event()  # set while the scoring thread waits (poll, or this job): the writer's gate
        self.hurry = threading.Event()  # set while the scoring thread waits for the job: the writer stops pacing
        self._paced: list | None = None  # [job start, step start] while the writer thread runs a job
        self._exec = None

    def attach(self, producer, sinks: list, archive, consumer) -> None:
        self.producer, self.sinks, self.archive, self.consumer = producer, sinks, archive, consumer

    @property
    def archive_root(self) -> str | None:
        return str(self.archive.root.resolve()) if self.archive is not None else None

    def backlog(self) -> int:
        """Archive rows failed jobs left to write."""
        return self.carry.rows() if self.carry is not None else 0

    # -- planning (scoring thread) ------------------------------------------------------------------
    def plan(self, partitions, full: bool = False, max_compact: int | None = None) -> list[Item]:
        """What to save for each partition: a full state (no archive, ``full``, or a state without ``n_scored``),
        a new base ("compact": no base yet, or ``snapshot_events`` absorbed since; at most ``max_compact`` of
        the latter at once, spreading the cost), otherwise a light checkpoint (nothing serialised)."""
        items, n_compact = [], 0
        light = self.archive is not None and self.cfg.snapshot_events > 0
        for p in partitions:
            part = self.parts.get(p)
            if part is None or part.next_offset is None:
                continue
            off, n, b = part.next_offset, getattr(part.state, "n_scored", None), part.base
            if full or not light or not isinstance(n, (int, np.integer)):
                items.append(Item(p, off, "full", blob=dump_state(part.state), extras=part.extras()))
                continue
            due = b is not None and b["offset"] is not None and n - b["n_scored"] >= self.cfg.snapshot_events
            if b is None or b["offset"] is None or (due and (max_compact is None or n_compact < max_compact)):
                n_compact += due
                part.labels_since_base = 0
                items.append(Item(p, off, "compact", blob=dump_state(part.state), n_scored=int(n),
                                  extras=part.extras()))
                part.base = {"kind": "file", "file": self.store.base_path(p, off).name, "offset": off,
                             "n_scored": int(n), "archive": self.archive_root}
            else:
                items.append(Item(p, off, "light", base=dict(b), n_scored=int(n), extras=part.extras()))
        return items

    def take(self, partitions, version, full: bool = False, max_compact: int | None = None) -> Job:
        """The records sent and the sinks' buffers so far and the planned items, after a failed job's carry."""
        job = Job(sent=self.producer.take() if self.producer is not None else [],
                  stores=[(s, s.take()) for s in self.sinks if hasattr(s, "take")],
                  archive=[self.archive.take()] if self.archive is not None else [],
                  items=self.plan(partitions, full=full, max_compact=max_compact), version=version)
        job, self.carry = job.after(self.carry), None
        self.dirty -= {it.partition for it in job.items}
        return job

    # -- writing (either thread) --------------------------------------------------------------------
    def save(self, items: list[Item], version) -> None:
        """Write the planned checkpoint files (after the sinks they reflect are flushed)."""
        st = self.store
        for it in items:
            if it.kind == "full":
                st.save(it.partition, it.offset, None, version, blob=it.blob, extras=it.extras)
            elif it.kind == "light":
                st.save(it.partition, it.offset, None, version, base=it.base, n_scored=it.n_scored, extras=it.extras)
            else:
                name = st.save_base(it.partition, it.offset, it.blob, version, it.n_scored)
                st.save(it.partition, it.offset, None, version, n_scored=it.n_scored, extras=it.extras,
                        base={"kind": "file", "file": name, "offset": it.offset, "n_scored": it.n_scored,
                              "archive": self.archive_root})
                st.prune_bases(it.partition, name)

    def run(self, job: Job, gate=None) -> None:
        run_job(job, self.producer, self.archive, self.save, gate)

    def run_paced(self, job: Job) -> None:
        """The writer thread's job: :meth:`run` with :meth:`gate` before each step, paced."""
        self._paced = [time.monotonic(), None]
        try:
            self.run(job, self.gate)
        finally:
            self._paced = None

    def gate(self) -> None:
        """The writer thread, before each step. Inside :meth:`run_paced`, first give the scoring thread
        ``writer_pace`` times the time the last step took (the threads share the GIL: a job's ~0.1-0.2 s of
        concatenation, conversion and file writes run back to back stretched a dozen consecutive batches, whose
        polls then grew: docs/streaming.md, Tail latency); not once the job has run half the checkpoint interval,
        nor while the scoring thread waits for the job. Then wait until the scoring thread is in poll (or waits
        for this job), at most ``writer_gate_ms``."""
        paced, pace = self._paced, self.cfg.writer_pace
        if paced is not None and paced[1] is not None and pace > 0 and not self.hurry.is_set():
            now = time.monotonic()
            left = paced[0] + self.cfg.checkpoint_interval / 2 - now
            if left > 0:
                self.hurry.wait(min(pace * (now - paced[1]), left))
        ms = self.cfg.writer_gate_ms
        if ms and ms > 0:
            self.polling.wait(ms / 1000.0)
        if paced is not None:
            paced[1] = time.monotonic()

    # -- completion (scoring thread) ----------------------------------------------------------------
    def done(self, job: Job, error: BaseException | None, commit: bool, sync: bool = True) -> None:
        """After a job: commit its offsets; or, when it failed, keep what it did not write for the next job and
        mark its partitions due again (a base it was writing may not exist)."""
        if error is not None:
            self.carry = job.carry() if self.carry is None else self.carry.after(job.carry())
            for it in job.items:
                part = self.parts.get(it.partition)
                if part is not None:
                    self.dirty.add(it.partition)
                    if it.kind == "compact":
                        part.base = None
            self.metrics.checkpoint_failures.inc()
            return
        self.metrics.checkpoints.inc()
        if commit:
            self.commit({it.partition: it.offset for it in job.items}, sync=sync)

    def commit(self, offsets: dict[int, int], sync: bool = True) -> None:
        """Commit offsets whose sinks are flushed and states saved. Advisory (the checkpoint is the source of
        truth): a failure is logged. ``sync=False``: not waiting for the coordinator (a 3-7 ms round trip)."""
        if not offsets or self.consumer is None:
            return
        from kafka import TopicPartition
        from kafka.structs import OffsetAndMetadata

        tps = {TopicPartition(self.cfg.topic, p): OffsetAndMetadata(o, "", -1) for p, o in offsets.items()}
        try:
            if sync:
                self.consumer.commit(tps)
            else:
                self.consumer.commit_async(tps, callback=_commit_done)
        except Exception as e:  # noqa: BLE001
            _commit_done(tps, e)

    def now(self, partitions=None, version=None, commit: bool = True, full: bool = False) -> None:
        """A synchronous checkpoint of ``partitions`` (default: all due). Raises when it fails (its writes are
        kept for the next one)."""
        self.wait(commit=commit)
        parts = sorted(self.dirty if partitions is None else set(partitions) & (self.dirty | set(self.parts)))
        job = self.take(parts, version, full=full)
        try:
            self.run(job)
        except Exception as e:
            self.done(job, e, commit)
            raise
        self.done(job, None, commit)
        self.last = time.monotonic()

    def start(self, version) -> bool:
        """The periodic checkpoint: built here, written by the writer thread, committed by :meth:`wait`. At most
        one in flight (returns False, nothing done, while one runs)."""
        if self.in_flight is not None:
            if not self.in_flight[0].done():
                return False
            self.wait(commit=True, sync=False)
        job = self.take(sorted(self.dirty), version, max_compact=1)
        if self._exec is None:
            self._exec = ThreadPoolExecutor(1, thread_name_prefix="fraud-checkpoint")
        self.in_flight = (self._exec.submit(self.run_paced, job), job)
        self.last = time.monotonic()
        return True

    def wait(self, commit: bool = True, sync: bool = True) -> None:
        """Finish the job in flight (if any) and commit its offsets; a failed job re-raises here."""
        pending, self.in_flight = self.in_flight, None
        if pending is None:
            return
        fut, job = pending
        was_open = self.polling.is_set()  # (inside poll when a rebalance callback checkpoints)
        self.polling.set()  # the scoring thread waits here: the writer's gate is open, and it stops pacing
        self.hurry.set()
        try:
            fut.result()
        except Exception as e:
            self.done(job, e, commit)
            raise
        finally:
            self.hurry.clear()
            if not was_open:
                self.polling.clear()
        self.done(job, None, commit, sync=sync)

    def guarded(self, step) -> None:
        """Run a checkpoint step; a failure is logged and counted, and its writes retried by the next job."""
        try:
            step()
        except Exception as e:  # noqa: BLE001
            self.last = time.monotonic()
            log.error("checkpoint failed error=%r: nothing of it is committed; its writes are retried by the next "
                      "checkpoint (%d archive rows waiting)", f"{e.__class__.__name__}: {e}", self.backlog())

    def throttle(self, consumer) -> None:
        """While failed jobs left more than ``max_pending_rows`` archive rows unwritten, pause the input (poll goes
        on, so the group keeps the member) until a checkpoint writes them."""
        backlog, paused = self.backlog() > self.cfg.max_pending_rows, bool(consumer.paused())
        if backlog and not paused:
            log.warning("pausing consumption: %d archive rows wait for a checkpoint that succeeds", self.backlog())
            consumer.pause(*consumer.assignment())
        elif paused and not backlog:
            consumer.resume(*consumer.paused())

    def forget(self, partitions) -> None:
        """Partitions revoked: not due here any more; a failed job's archive rows of them are dropped (their next
        owner reads them again from their last checkpoint)."""
        self.dirty -= set(partitions)
        if self.carry is not None:
            self.carry.drop_partitions(partitions)

    def close(self) -> None:
        if self._exec is not None:
            self._exec.shutdown(wait=True)
            self._exec = None


def _commit_done(offsets, result) -> None:
    if isinstance(result, BaseException):
        log.warning("offset commit failed offsets=%s error=%r (checkpoints are saved; a restart resumes from them)",
                    {tp.partition: o.offset for tp, o in offsets.items()}, f"{result.__class__.__name__}: {result}")
