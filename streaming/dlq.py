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
key.truncated  ``1`` when the key was cut to ``MAX_KEY_BYTES`` (its size in ``original.key.size``)
value.dropped  ``1`` when the producer or the broker refused the letter as too large: sent again without value
               and key (the original stays at ``source.*``)
============== ===========================================================================

A letter is never larger than ``max_bytes`` + ``MAX_KEY_BYTES`` + its headers, so the producer's record limit
(1 MiB by default) cannot refuse it and stop the consumer on one event (``ServeConfig.max_message_bytes``); with a
smaller limit (the producer's or the topic's), the scorer's :class:`streaming.sinks.TrackedProducer` sends the
letter again without its payload (:func:`without_payload`).
"""
from __future__ import annotations

import logging
from collections import Counter

log = logging.getLogger("streaming.dlq")
MAX_KEY_BYTES = 1024  # a key is an id; a longer one is cut (the event's key is free input)

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
        if key is not None and len(key) > MAX_KEY_BYTES:
            headers += [("key.truncated", b"1"), ("original.key.size", str(len(key)).encode())]
            key = key[:MAX_KEY_BYTES]
        self.producer.send(self.topic, key=key, value=value, headers=headers)  # too large: without_payload
        self.counts[kind] += 1
        if self.metrics is not None:
            self.metrics.dead_letters.labels(kind=kind).inc()
        log.warning("dead letter kind=%s source=%s[%d]@%d error=%r", kind, topic, partition, offset, error[:300])

    def flush(self, timeout: float | None = None) -> None:
        self.producer.flush(timeout=timeout)


def without_payload(kw: dict) -> dict:
    """A dead letter's send arguments without key and value (``value.dropped``), when a record limit refused it;
    other records unchanged. The original stays in the source topic at the letter's ``source.*``."""
    headers = kw.get("headers") or []
    if not any(k == "error.kind" for k, _ in headers) or any(k == "value.dropped" for k, _ in headers):
        return kw
    return {**kw, "key": None, "value": b"", "headers": [*headers, ("value.dropped", b"1")]}


def parse_dead_letter(msg) -> dict:
    """Headers of a consumed dead letter as a dict (str values) plus ``value`` (bytes)."""
    h = {k: (v.decode("utf-8", "replace") if isinstance(v, bytes) else v) for k, v in (msg.headers or [])}
    h["value"] = msg.value
    return h
