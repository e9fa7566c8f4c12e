"""Dead-letter topic for bad input; the consumer never stops on input.

A dead letter keeps the ORIGINAL message bytes as its value (and the original key), and says why in
headers (all values UTF-8 bytes):

============== ===========================================================================
header         value
============== ===========================================================================
error          the reason, e.g. ``transactions[2]@17: field 'amount' value '-5': negative amount``
error.kind     ``malformed_json`` | ``not_an_object`` | ``oversized`` | ``invalid`` (a field's type or value) |
               ``out_of_window`` (timestamp too old or ahead of the broker time) | ``conflict`` (tx_id
               already scored with other content) | ``decode_error`` | ``scoring_error`` (the model failed
               on the event's batch: replay it from here once fixed)
source.topic   topic of the original message
source.partition, source.offset   where it was read
original.size  size in bytes of the original value
truncated      ``1`` when the value was cut to ``max_bytes`` (oversized messages only)
============== ===========================================================================
"""
from __future__ import annotations

import logging
from collections import Counter

log = logging.getLogger("streaming.dlq")

KINDS = ("malformed_json", "not_an_object", "oversized", "invalid", "out_of_window", "conflict", "decode_error",
         "scoring_error")


class DeadLetterSink:
    def __init__(self, producer, topic: str = "transactions.dlq", max_bytes: int = 512 * 1024, metrics=None):
        self.producer = producer
        self.topic = topic
        self.max_bytes = max_bytes
        self.metrics = metrics
        self.counts: Counter = Counter()

    def send(self, value: bytes | None, key: bytes | None, kind: str, error: str, topic: str, partition: int,
             offset: int) -> None:
        value = value or b""
        size = len(value)
        truncated = size > self.max_bytes
        headers = [
            ("error", error.encode("utf-8", "replace")[:4000]),
            ("error.kind", kind.encode()),
            ("source.topic", topic.encode()),
            ("source.partition", str(partition).encode()),
            ("source.offset", str(offset).encode()),
            ("original.size", str(size).encode()),
        ]
        if truncated:
            value = value[: self.max_bytes]
            headers.append(("truncated", b"1"))
        self.producer.send(self.topic, key=key, value=value, headers=headers)
        self.counts[kind] += 1
        if self.metrics is not None:
            self.metrics.dead_letters.labels(kind=kind).inc()
        log.warning("dead letter kind=%s source=%s[%d]@%d error=%r", kind, topic, partition, offset, error[:300])

    def flush(self, timeout: float | None = None) -> None:
        self.producer.flush(timeout=timeout)


def parse_dead_letter(msg) -> dict:
    """Headers of a consumed dead letter as a dict (str values) plus ``value`` (bytes)."""
    h = {k: (v.decode("utf-8", "replace") if isinstance(v, bytes) else v) for k, v in (msg.headers or [])}
    h["value"] = msg.value
    return h
