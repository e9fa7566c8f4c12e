"""A group join kafka-python finished but never applied (streaming.rejoin): without a second request the member
keeps no partitions for good; with :func:`streaming.rejoin.unstick` between polls it joins and reads again."""
from __future__ import annotations

import time
import uuid

import pytest
from kafka import KafkaConsumer, KafkaProducer

from streaming import rejoin
from streaming.broker import ensure_topics
from streaming.metrics import Metrics
from streamkit import GROUP_KW

pytestmark = pytest.mark.integration  # the session broker (tests/integration/conftest.py)


def _consumer(broker, topic):
    return KafkaConsumer(topic, bootstrap_servers=broker.bootstrap, group_id=f"g-{topic}", enable_auto_commit=False,
                         auto_offset_reset="earliest", **GROUP_KW)


def _read(c, secs: float, nudge=None) -> int:
    got, end = 0, time.monotonic() + secs
    while time.monotonic() < end:
        got += sum(len(v) for v in c.poll(timeout_ms=50).values())
        if nudge is not None:
            nudge(c)
    return got


def _leave_join_unapplied(c) -> None:
    """What kafka-python 3.0.x does when a metadata change makes the leader rejoin and the join outlasts a poll:
    the join is under way while the coordinator no longer asks for one (the leader recorded the new metadata)."""
    co = c._coordinator
    co.request_rejoin()
    deadline = time.monotonic() + 10
    while not (co.rejoining and co._join_task is not None and not co._join_task.is_done):
        assert time.monotonic() < deadline, "could not start a rejoin"
        c.poll(timeout_ms=0)
    co.rejoin_needed = False


def test_a_join_left_unapplied_is_asked_again_and_the_member_reads_on(broker):
    topic = f"rejoin-{uuid.uuid4().hex[:8]}"
    ensure_topics(broker.bootstrap, {topic: 2})
    prod = KafkaProducer(bootstrap_servers=broker.bootstrap)
    c = _consumer(broker, topic)
    try:
        for i in range(6):
            prod.send(topic, value=b"a", partition=i % 2)
        prod.flush()
        assert _read(c, 4.0) == 6 and len(c.assignment()) == 2 and not rejoin.stuck(c)

        _leave_join_unapplied(c)
        assert rejoin.stuck(c)
        for i in range(8):
            prod.send(topic, value=b"b", partition=i % 2)
        prod.flush()
        metrics = Metrics()
        got = _read(c, 8.0, nudge=lambda cc: rejoin.unstick(cc, metrics.rejoins))
        assert got == 8, f"read {got} of 8 events after the unapplied join"
        # the member is in the group again (without the second request it sends no heartbeats, the broker drops it
        # after a session timeout, and every commit fails: a scorer would never commit again)
        c.commit()
        assert metrics.rejoins._value.get() >= 1
        assert len(c.assignment()) == 2 and not rejoin.stuck(c)
    finally:
        c.close(autocommit=False)
        prod.close(timeout=1)


def test_without_a_group_nothing_is_probed(broker):
    """A manually assigned consumer (no group: the bench's raw reader) is never stuck and never nudged."""
    from kafka import TopicPartition

    topic = f"rejoin-{uuid.uuid4().hex[:8]}"
    ensure_topics(broker.bootstrap, {topic: 1})
    c = KafkaConsumer(bootstrap_servers=broker.bootstrap, group_id=None)
    try:
        c.assign([TopicPartition(topic, 0)])
        c.poll(timeout_ms=50)
        assert not rejoin.stuck(c) and not rejoin.unstick(c)
    finally:
        c.close()


@pytest.mark.parametrize("obj", [object(), None])
def test_other_clients_are_left_alone(obj):
    assert not rejoin.stuck(obj) and not rejoin.unstick(obj)
