"""Getting the consumer out of a group join that kafka-python finished but never applied.

kafka-python 3.0.x: when a change of the subscribed topics' metadata (the input topic created again with another
partition count, partitions added) makes the group leader rejoin, and the join outlasts one ``poll``, the leader
records the new metadata while the join is in flight, so ``need_rejoin()`` turns false; the next polls never
await the finished join. The member sends no heartbeats (the broker drops it) and every offset commit fails from
then on: the scorer would never commit again, and partitions added to the topic would be read by no one
(docs/streaming.md, "A join kafka-python never applies").
Between polls :func:`unstick` asks for the rejoin again; the next poll then completes a join and applies it.
"""
from __future__ import annotations

import logging

log = logging.getLogger("streaming.rejoin")


def stuck(consumer) -> bool:
    """True when the consumer's group member has a join under way that no poll will complete: it is rejoining,
    yet its coordinator says no rejoin is needed. False for a consumer without a group coordinator (manual
    assignment) or another client's internals."""
    co = getattr(consumer, "_coordinator", None)
    if co is None or getattr(co, "group_id", None) is None or not getattr(co, "rejoining", False):
        return False
    try:
        return not co.need_rejoin()
    except Exception:  # noqa: BLE001 - internals of another version: never stop the scorer over a probe
        return False


def unstick(consumer, counter=None) -> bool:
    """If :func:`stuck`, ask the coordinator to rejoin (the next poll joins and applies the assignment), count it
    on ``counter`` and log it. Returns True when it asked."""
    if not stuck(consumer):
        return False
    consumer._coordinator.request_rejoin()
    if counter is not None:
        counter.inc()
    log.warning("consumer group join was left unapplied by kafka-python (a metadata change during a rejoin): "
                "rejoining the group")
    return True
