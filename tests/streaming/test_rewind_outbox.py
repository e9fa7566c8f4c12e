"""After a failed batch: where each partition is read again (streaming.partitions.rewind), and the outbox that
holds a scored batch until every sink has it (streaming.outbox)."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from streaming.logwatch import LogWatch
from streaming.outbox import Outbox
from streaming.partitions import rewind


class _Consumer:
    def __init__(self):
        self.seeks = {}

    def seek(self, tp, offset):
        self.seeks[tp.partition] = offset


def _msgs(p, offsets):
    return [SimpleNamespace(partition=p, offset=o) for o in offsets]


def _watch():
    w = LogWatch("t", reset=lambda p, why: None, verified=lambda p, off: None)
    w.begin()
    return w


@pytest.mark.parametrize("next_offset", [None, 5, 5000])
def test_a_failed_batch_is_read_again_from_its_first_offset(next_offset):
    """Whatever the partition's position says (reset in an earlier cycle: None; a reset that failed in this
    batch: 5000, above the new log's offsets), the batch's own offsets are read again."""
    c, w = _Consumer(), _watch()
    rewind(c, "t", {0: SimpleNamespace(next_offset=next_offset)}, _msgs(0, [0, 1, 2, 3, 4]), w)
    assert c.seeks == {0: 0}


def test_a_partition_reset_by_this_batch_stays_at_its_log_start_and_a_verified_record_is_not_read_again():
    c, w = _Consumer(), _watch()
    w.reset_now.add(1)  # as LogWatch.check records a reset it made
    w.resume[2] = 60  # the restored partition's last consumed record (offset 59) was read again and dropped
    rewind(c, "t", {p: SimpleNamespace(next_offset=60) for p in (0, 1, 2)},
           _msgs(0, [7, 8]) + _msgs(1, [3]) + _msgs(2, [59, 60, 61]) + _msgs(3, [1]), w)
    assert c.seeks == {0: 7, 2: 60}  # partition 3 is not assigned here any more


def test_begin_forgets_the_previous_batch():
    w = _watch()
    w.reset_now.add(1)
    w.resume[2] = 60
    w.begin()
    assert w.reset_now == set() and w.resume == {}


class _Sink:
    def __init__(self, fail=0):
        self.fail, self.got = fail, []

    def write(self, results, columns=None):
        if self.fail:
            self.fail -= 1
            raise OSError("disk full")
        self.got.append(list(results["tx_id"]))


def _batch():
    cols = {"tx_id": np.array(["a", "b", "c"]), "kafka_partition": np.array([0, 1, 0], dtype=np.int32)}
    return pd.DataFrame(cols), cols


def test_the_outbox_writes_each_sink_once_resuming_at_the_one_that_failed():
    first, second, third = _Sink(), _Sink(fail=1), _Sink()
    box = Outbox()
    box.put(*_batch(), [first, second, third])
    assert box.try_deliver() is False and box.pending is not None
    with pytest.raises(RuntimeError, match="still pending"):
        box.put(*_batch(), [first])
    box.deliver()
    assert box.pending is None
    assert first.got == second.got == third.got == [["a", "b", "c"]]


def test_the_retry_waits_longer_after_each_failure_and_not_after_a_success():
    box = Outbox()
    box.put(*_batch(), [_Sink(fail=3)])
    waits = []
    for _ in range(4):
        box.try_deliver()
        waits.append(box.retry_in)
    assert waits == [0.5, 1.0, 2.0, 0.25] and box.pending is None


def test_a_verified_record_whose_clean_up_failed_is_checked_again():
    """The restored partition's last consumed record matches, but removing the archive files past it raised: the
    record stays to verify (the batch is read again from it), so the clean-up is not skipped for good."""
    from streaming.partitions import crc

    calls = []

    def verified(p, off):
        calls.append(off)
        if len(calls) == 1:
            raise OSError("disk full")

    w = LogWatch("t", reset=lambda p, why: None, verified=verified)
    rec = SimpleNamespace(partition=0, offset=59, timestamp=123, value=b"v")
    part = SimpleNamespace(verify=(59, 123, crc(b"v")), next_offset=60)
    w.begin()
    with pytest.raises(OSError):
        w.check([rec], {0: part})
    assert part.verify is not None and w.resume == {}
    c = _Consumer()
    rewind(c, "t", {0: part}, [rec], w)
    assert c.seeks == {0: 59}
    w.begin()
    assert w.check([rec], {0: part}) == [] and part.verify is None and w.resume == {0: 60}


@pytest.mark.parametrize("lost", [False, True], ids=["revoked", "lost"])
def test_partitions_lost_to_an_eviction_are_not_checkpointed(tmp_path, lost):
    """A revoke checkpoints its partitions in full (no commit); partitions lost to an eviction (kafka-python's
    on_partitions_lost: the group may have given them to another member already) are not checkpointed, and their
    archive rows not yet written are dropped (their owner reads them again from the last commit)."""
    from kafka import TopicPartition

    from fraud.archive import ArchiveWriter
    from streaming.loop import Scorer, ServeConfig

    s = Scorer(ServeConfig(bootstrap="127.0.0.1:1", topic="t", state_dir=str(tmp_path / "state")))
    s.archive = ArchiveWriter(tmp_path / "archive", "t")
    s.archive.write(pd.DataFrame({"tx_id": ["a"], "kafka_partition": [0], "kafka_offset": [3]}))
    s.parts[0] = SimpleNamespace()
    s.ck.dirty.add(0)
    checkpointed, waited = [], []
    s.ck.wait = lambda commit=True: waited.append(commit)  # a job in flight is finished (its failed rows dropped)
    s.ck.now = lambda parts, **kw: checkpointed.append(list(parts))
    s._on_revoked([TopicPartition("t", 0)], lost=lost)
    assert waited == [False] and checkpointed == ([] if lost else [[0]]) and s.parts == {} and 0 not in s.ck.dirty
    assert s.archive.pending == (0 if lost else 1)
