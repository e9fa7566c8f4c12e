"""One failed step of a batch never stops the scorer, feeds a batch to the states twice, or resets a healthy log
(streaming.outbox, streaming.partitions.rewind, streaming.dlq's size bounds, a restore that cannot read the archive)."""
from __future__ import annotations

import time

import pytest

from streaming.replay import make_producer
from streamkit import events, halt, new_topic, serve_config, start, wait

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _score_and_stop(broker, reg, tmp_path, topic, records) -> None:
    """Send ``records``, score them with a scorer that then stops (its checkpoints and archive in ``tmp_path``)."""
    from streamkit import send

    send(broker.bootstrap, topic, records)
    h = start(serve_config(broker, reg, tmp_path, topic))
    try:
        wait(lambda: h.scorer.n_scored >= len(records), 90, f"the first {len(records)} events")
    finally:
        halt(h)


def test_a_bad_event_with_a_large_key_does_not_stop_the_scorer(broker, reg, tmp_path):
    """A malformed event whose Kafka key is ~1.2 MB (a broker may accept it): its dead letter's key is cut, so the
    producer (1 MiB records) takes it and the events after it are scored (the letter was once refused on every
    re-read of the poll, forever)."""
    topic = new_topic("bigkey", broker, partitions=1)
    good = events(reg.live.iloc[:50])
    prod = make_producer(broker.bootstrap, max_request_size=8 * 1024 * 1024)
    prod.send(topic, key=b"k" * 1_200_000, value=b"not json").get(timeout=30)
    import json
    for r in good:
        prod.send(topic, key=r["customer_id"].encode(), value=json.dumps(r).encode())
    prod.flush()
    prod.close()
    h = start(serve_config(broker, reg, tmp_path, topic))
    s = h.scorer
    try:
        try:
            wait(lambda: s.n_scored >= len(good), 45, "the good events after the bad one")
        finally:
            print("n_events", s.n_events, "n_scored", s.n_scored, "dead letters", dict(s.dlq.counts) if s.dlq else None)
    finally:
        halt(h)
    assert s.dlq.counts["malformed_json"] == 1
    cfg = s.producer.producer.config  # delivered = on every in-sync replica; no producer id to lose with the broker
    assert cfg["acks"] in ("all", -1) and cfg["enable_idempotence"] is False


def test_a_failed_first_batch_after_a_restore_is_not_taken_for_a_log_reset(broker, reg, tmp_path, monkeypatch):
    """A restored partition's first poll re-reads its last consumed record (checked, then dropped). A sink failing
    on that batch (one KafkaTimeoutError from the scores topic, as a producer's metadata wait raises) once made the
    rewind seek back to that record, which the re-read then took for a log reset (archive files retired, the log
    read again from its start)."""
    from kafka.errors import KafkaTimeoutError

    from fraud.archive import ArchiveWriter
    from streaming import sinks
    from streamkit import send

    topic = new_topic("verifyrewind", broker, partitions=1)
    good = events(reg.live.iloc[:120])
    _score_and_stop(broker, reg, tmp_path, topic, good[:60])
    send(broker.bootstrap, topic, good[60:])
    real, calls = sinks.TopicSink.write, []

    def flaky(self, results, columns=None):
        calls.append(len(results))
        if len(calls) == 1:
            raise KafkaTimeoutError("Failed to update metadata after 60.0 secs.")
        return real(self, results, columns)

    monkeypatch.setattr(sinks.TopicSink, "write", flaky)
    h = start(serve_config(broker, reg, tmp_path, topic))
    s = h.scorer
    try:
        wait(lambda: s.n_scored >= 60, 90, "the next 60 events")
        time.sleep(2.0)
    finally:
        halt(h)
    resets = s.metrics.offset_resets.labels(partition="0")._value.get()
    retired = [f.name for f in (tmp_path / "archive").rglob("*.parquet") if "~" in f.name]
    print("calls", calls, "resets", resets, "retired", retired)
    assert resets == 0 and not retired, f"a healthy log was reset: resets={resets}, retired files={retired}"


@pytest.mark.parametrize("fail", [False, True], ids=["control", "one-failure"])
def test_a_sink_failure_mid_batch_does_not_feed_the_batch_to_the_state_twice(broker, reg, tmp_path, monkeypatch, fail):
    """Scoring updates the partitions' states in place; a sink failing after it (one KafkaTimeoutError from a send)
    once rewound the poll and the events were scored again by states that already held them (features counting
    each twice). Now the batch waits in the outbox: every event archived once, scores equal to one replay."""
    import numpy as np
    from kafka.errors import KafkaTimeoutError

    from fraud.archive import read as read_archive
    from streaming import sinks
    from streamkit import replayed_scores, send

    topic = new_topic("twice", broker, partitions=1)
    good = events(reg.live.iloc[:200])
    real, calls = sinks.TopicSink.write, []

    def flaky(self, results, columns=None):
        calls.append(len(results))
        if fail and len(calls) == 1:
            raise KafkaTimeoutError("Failed to update metadata after 60.0 secs.")
        return real(self, results, columns)

    monkeypatch.setattr(sinks.TopicSink, "write", flaky)
    send(broker.bootstrap, topic, good)
    h = start(serve_config(broker, reg, tmp_path, topic))
    s = h.scorer
    try:
        wait(lambda: s.n_scored >= len(good), 90, "every event")
        time.sleep(1.5)
    finally:
        halt(h)
    arch = read_archive(tmp_path / "archive")
    assert len(arch) == len(good) and arch["tx_id"].is_unique
    ref = replayed_scores(arch, reg.bundle)
    got = arch.set_index("tx_id")["score"]
    bad = int((~np.isclose(got.to_numpy(), ref.loc[got.index].to_numpy(), rtol=1e-9, atol=1e-12)).sum())
    print("calls", calls, "scores differing from a single pass:", bad, "of", len(got))
    assert bad == 0
    assert s.metrics.sink_failures._value.get() == (1 if fail else 0)


def test_one_partition_that_cannot_be_restored_does_not_drop_the_others_state(broker, reg, tmp_path, caplog):
    """Partition 0's archive files are unreadable (left empty by a crash), so its light checkpoint and the rebuild
    from the archive both fail: partition 0 starts from the model's state, and partition 1 is still restored from
    its own checkpoint (the assignment once stopped at partition 0 and partition 1's checkpoint was overwritten)."""
    import logging

    from streaming.state import CheckpointStore
    from streamkit import send

    topic = new_topic("assignabort", broker, partitions=2)
    good = events(reg.live.iloc[:300])
    _score_and_stop(broker, reg, tmp_path, topic, good[:200])
    store = CheckpointStore(tmp_path / "state", topic)
    before = {p: store.load(p) for p in (0, 1)}
    n1 = before[1].n_scored
    assert before[0] is not None and before[1] is not None
    for f in (tmp_path / "archive").rglob("*-p0000-*.parquet"):  # e.g. a file left empty by a crash (no fsync)
        f.write_bytes(b"")
    send(broker.bootstrap, topic, good[200:])
    caplog.set_level(logging.INFO, logger="streaming.loop")
    h = start(serve_config(broker, reg, tmp_path, topic))
    s = h.scorer
    try:
        wait(lambda: s.n_scored >= 100 and 1 in s.parts, 90, "the next events")
        time.sleep(1.5)
    finally:
        halt(h)
    assigned = [r.getMessage() for r in caplog.records if "partition assigned" in r.getMessage()]
    after = CheckpointStore(tmp_path / "state", topic).load(1)
    print("assigned log lines:", assigned)
    print("p1 checkpoint n_scored before", n1, "after", after.n_scored, "base", after.base)
    assert any("partition=1" in a for a in assigned), "partition 1 was never restored from its checkpoint"
    assert after.n_scored >= n1, "partition 1's checkpoint was replaced by a fresh state"
    assert any("partition=0" in a and "model's starting state" in a for a in assigned)
