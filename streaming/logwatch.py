"""Noticing that a partition's log is not the one the scorer has been reading.

A broker that comes back empty (Tansu keeps its log in memory), a topic deleted and created again, or a log
truncated below the scorer's position would otherwise make it skip the new log's first events silently. Four
signs, all cheap: a restored partition's last consumed record is gone (it is read again on restore and
compared), offsets go back, the topic's id changed, or the log ends below the position reached.
"""
from __future__ import annotations

import logging
from typing import Callable

from streaming.partitions import crc

log = logging.getLogger("streaming.logwatch")


class LogWatch:
    def __init__(self, topic: str, reset: Callable[[int, str], None], verified: Callable[[int, int], None],
                 lag=None):
        self.topic = topic
        self.lag = lag  # the lag gauge (labels: partition): the high watermark - the next offset, not clamped
        self.reset = reset  # reset(partition, why): the scorer re-reads the partition from its log's start
        self.verified = verified  # verified(partition, offset): the log still holds the record read last
        self.topic_id = None
        # of the last check(): partitions reset (sought to their log's start) and, per partition whose last consumed
        # record was read again and dropped, the offset after it (streaming.partitions.rewind never seeks below it)
        self.reset_now: set = set()
        self.resume: dict = {}

    def begin(self) -> None:
        """A new batch: nothing of it checked yet (what :func:`streaming.partitions.rewind` reads)."""
        self.reset_now, self.resume = set(), {}

    def check(self, msgs: list, parts: dict) -> list:
        """The messages of a poll still to process: a restored partition's first message is its last consumed
        record read again (dropped when it matches); a mismatch, or an offset below the position reached, resets
        the partition (its messages are dropped: it is read again from the start)."""
        first: dict[int, object] = {}
        for m in msgs:
            first.setdefault(m.partition, m)
        self.reset_now = drop = set()  # what rewind must not seek back: reset to its log's start
        again = set()
        for p, m in first.items():
            part = parts.get(p)
            if part is None:
                continue
            want = part.verify
            if want is not None:
                if m.offset == want[0] and (m.timestamp, crc(m.value)) == (want[1], want[2]):
                    self.verified(p, m.offset)  # raises: the record is checked again when the batch is read again
                    again.add(p)
                    self.resume[p], part.verify = m.offset + 1, None
                elif m.offset > want[0]:  # the record is gone (retention) but the log goes on after it
                    part.verify = None
                    log.warning("partition %d: the last consumed record (offset %d) is no longer in the log; "
                                "resuming at offset %d", p, want[0], m.offset)
                else:
                    self.reset(p, f"the record at offset {want[0]} consumed last is not in the log (found offset "
                                  f"{m.offset} with other content)")
                    drop.add(p)
            elif part.next_offset is not None and m.offset < part.next_offset:
                self.reset(p, f"offset {m.offset} was read after offset {part.next_offset - 1}")
                drop.add(p)
        if not drop and not again:
            return msgs
        return [m for m in msgs if m.partition not in drop and not (m.partition in again and m is first[m.partition])]

    def watch(self, consumer, parts: dict) -> None:
        """Each cycle (in-memory lookups): the topic recreated (kafka-python's metadata has a new topic id) or a
        log ending below the position reached resets the partitions concerned. Sets the lag gauge (negative when
        the log shrank)."""
        from kafka import TopicPartition

        cluster = getattr(getattr(consumer, "_client", None), "cluster", None)
        tid = cluster.topic_id(self.topic) if cluster is not None and hasattr(cluster, "topic_id") else None
        if tid is not None:
            if self.topic_id is not None and tid != self.topic_id:
                for p in sorted(p for p, part in parts.items() if part.next_offset is not None):
                    self.reset(p, f"topic {self.topic!r} was created again (its id changed from {self.topic_id} "
                                  f"to {tid})")
            self.topic_id = tid
        for p, part in list(parts.items()):
            hw = consumer.highwater(TopicPartition(self.topic, p))
            if hw is None or part.next_offset is None:
                continue
            if self.lag is not None:
                self.lag.labels(partition=str(p)).set(hw - part.next_offset)
            if hw < part.next_offset:
                self.reset(p, f"the log ends at offset {hw}, below the position {part.next_offset} reached")
