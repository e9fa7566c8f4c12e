"""One checkpoint job: check delivery, write the alert store and the archive, save the states, then commit.

Every checkpoint runs this one path: the periodic ones on the writer thread, the synchronous ones (revoke,
model swap, shutdown) on the scoring thread. The scoring thread builds the :class:`Job` at a batch boundary
(what the producer sent, the sinks' buffers, the planned :class:`Item` per partition); :func:`run_job` writes it.
A job that fails keeps what it took: the next job first sends its undelivered records again and writes its
buffers (the sinks are idempotent by tx_id and offsets), and its offsets are not committed. Offsets therefore
never move past what the sinks hold.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from streaming.sinks import TrackedProducer, without_partitions


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
    gate()
    save(job.items, job.version)
