"""Archive sink: day partitions, offset-named files, exactly-once after a crash via discard_from."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from fraud.archive import ArchiveWriter
from fraud.archive import read as read_archive


def _results(partition: int, offsets, day: str = "2024-01-01") -> pd.DataFrame:
    n = len(offsets)
    return pd.DataFrame({
        "tx_id": [f"p{partition}-{o}" for o in offsets],
        "timestamp": pd.to_datetime([f"{day} 10:00"] * n, utc=True) + pd.to_timedelta(np.arange(n), unit="s"),
        "customer_id": ["c"] * n, "terminal_id": ["t"] * n, "amount": np.ones(n),
        "kafka_partition": np.full(n, partition, dtype=np.int32), "kafka_offset": np.asarray(offsets, dtype=np.int64),
        "score": np.linspace(0, 1, n), "is_alert": np.zeros(n, dtype=bool), "reasons": [[] for _ in range(n)],
        "model_version": "1",
    })


def test_flush_names_files_by_day_partition_offsets(tmp_path):
    a = ArchiveWriter(tmp_path, "transactions")
    a.write(_results(0, range(0, 5)))
    a.write(_results(1, range(0, 3), day="2024-01-02"))
    files = a.flush()
    assert len(files) == 2 and a.pending == 0
    names = sorted(f.relative_to(tmp_path).as_posix() for f in files)
    assert names == ["date=2024-01-01/part-transactions-p0000-o000000000000-000000000004.parquet",
                     "date=2024-01-02/part-transactions-p0001-o000000000000-000000000002.parquet"]
    back = read_archive(tmp_path)
    assert len(back) == 8 and back["reasons"].map(list).tolist() == [[]] * 8
    assert not list(tmp_path.rglob(".*.tmp"))


def test_discard_from_removes_uncheckpointed_files(tmp_path):
    a = ArchiveWriter(tmp_path, "transactions")
    a.write(_results(0, range(0, 10)))
    a.flush()
    a.write(_results(0, range(10, 20)))
    a.write(_results(2, range(10, 20)))
    a.flush()
    (tmp_path / "date=2024-01-01" / ".part-transactions-p0000-o1-2.parquet.tmp").write_bytes(b"half")
    # the scorer checkpointed partition 0 at offset 10, then wrote 10..19 and died
    assert a.discard_from(0, 10) == 1
    df = read_archive(tmp_path)
    assert sorted(df.loc[df.kafka_partition == 0, "kafka_offset"]) == list(range(10))
    assert len(df[df.kafka_partition == 2]) == 10  # other partitions untouched
    assert not list(tmp_path.rglob(".*.tmp"))
    # a file straddling the restart point keeps only the offsets below it
    assert a.discard_from(0, 4) == 1
    df = read_archive(tmp_path)
    assert sorted(df.loc[df.kafka_partition == 0, "kafka_offset"]) == [0, 1, 2, 3]
    assert [f[3] for f in a.files(0)] == [3]


def test_encode_results_is_byte_identical_to_json_dumps():
    import json

    from streaming.sinks import _json_default, encode_results

    r = _results(0, range(6))
    r["tx_id"] = ["a", 'q"uote', "ünï", "tab\tx", "7", "z"]
    r["amount"] = [0.1, 1e-7, 123456789.125, 0.0, 3.0, 1 / 3]
    r["score"] = np.array([0.0, 1.0, 0.5, 1 / 7, 2 / 3, 0.999999])
    r["is_alert"] = [False, True, False, True, True, False]
    r["reasons"] = [[], ["amount_z", "tx_7d"], None, ["x\"y"], ["é"], []]
    ts = r["timestamp"].dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ").to_numpy()
    want = []
    for i in range(len(r)):
        rec = {"tx_id": r["tx_id"][i], "timestamp": ts[i], "customer_id": r["customer_id"][i],
               "terminal_id": r["terminal_id"][i], "amount": float(r["amount"][i]), "score": float(r["score"][i]),
               "is_alert": bool(r["is_alert"][i]),
               "reasons": [str(x) for x in (r["reasons"][i] if r["reasons"][i] is not None else [])],
               "model_version": r["model_version"][i]}
        want.append(json.dumps(rec, default=_json_default).encode())
    assert encode_results(r) == want
    assert encode_results(r.iloc[:0]) == []


def test_concat_columns_equals_pd_concat():
    from streaming.sinks import concat_columns, frame_columns

    a = _results(0, range(3))
    a["tx_id"] = pd.array(a["tx_id"], dtype="str")
    b = _results(1, range(3, 5), day="2024-01-02")
    b["tx_id"] = pd.array(b["tx_id"], dtype="str")
    want = pd.concat([a, b], ignore_index=True)
    pd.testing.assert_frame_equal(concat_columns([frame_columns(a), frame_columns(b)]), want)
    # an attribute whose dtype differs between batches: pandas' own promotion
    a2, b2 = a.assign(extra=np.array([1, 2, 3])), b.assign(extra=np.array([0.5, np.nan]))
    pd.testing.assert_frame_equal(concat_columns([frame_columns(a2), frame_columns(b2)]),
                                  pd.concat([a2, b2], ignore_index=True))
    # column sets that differ between batches: pd.concat itself
    pd.testing.assert_frame_equal(concat_columns([frame_columns(a2), frame_columns(b)]),
                                  pd.concat([a2, b], ignore_index=True))


def test_archive_files_are_those_of_per_group_to_parquet(tmp_path):
    """The flush writes, per (day, partition), the file pandas' to_parquet of the offset-sorted group writes
    (same rows and dtypes), whether batches come as frames or column dicts."""
    import pyarrow.parquet as pq

    from streaming.sinks import frame_columns

    batches = [_results(0, [5, 6]), _results(1, [0, 1, 2]), _results(0, [3, 4], day="2024-01-02"),
               _results(0, [7]), _results(1, [3], day="2024-01-02")]
    batches[0].loc[1, "reasons"] = ["amount_z"]
    a = ArchiveWriter(tmp_path / "cols", "transactions")
    for b in batches[:3]:
        a.write(b, columns=frame_columns(b))
    for b in batches[3:]:
        a.write(b)
    assert a.pending == 9
    files = a.flush()
    df = pd.concat(batches, ignore_index=True)
    day = df["timestamp"].dt.strftime("%Y-%m-%d")
    want = []
    for (d, p), g in df.groupby([day, df["kafka_partition"]], sort=True):
        g = g.sort_values("kafka_offset", kind="stable").reset_index(drop=True)
        ref = tmp_path / f"ref-{d}-{p}.parquet"
        g.to_parquet(ref, index=False)
        want.append((f"date={d}/part-transactions-p{p:04d}-o{g.kafka_offset.iloc[0]:012d}-"
                     f"{g.kafka_offset.iloc[-1]:012d}.parquet", ref))
    assert [f.relative_to(tmp_path / "cols").as_posix() for f in files] == [w for w, _ in want]
    for f, (_, ref) in zip(files, want):
        pd.testing.assert_frame_equal(pd.read_parquet(f), pd.read_parquet(ref))
        got, ref_schema = pq.read_schema(f), pq.read_schema(ref)
        assert got.names == ref_schema.names
        for name in got.names:
            if name != "reasons":
                assert got.field(name).equals(ref_schema.field(name)), name
        # one Arrow conversion per flush: a group whose reasons are all empty keeps list<string> (pandas'
        # per-group conversion infers list<null> there), so every file of the archive has one schema
        assert str(got.field("reasons").type) == "list<element: string>"


def test_alert_store_sink_buffers_alert_rows_only(tmp_path):
    from fraud.store import AlertStore
    from streaming.sinks import AlertStoreSink, frame_columns

    store = AlertStore(f"sqlite:///{tmp_path}/a.db")
    sink = AlertStoreSink(store)
    r1, r2 = _results(0, range(4)), _results(1, range(4))
    r1["is_alert"] = [False, True, False, True]
    r1["reasons"] = [[], ["amount_z"], [], ["tx_7d", "x"]]
    r2["is_alert"] = [True, False, False, False]
    sink.write(r1, columns=frame_columns(r1))
    sink.write(r2)
    sink.write(r1, columns=frame_columns(r1))  # re-delivered: skipped by tx_id
    sink.flush()
    got = store.read_alerts().sort_values("tx_id")
    assert got["tx_id"].tolist() == ["p0-1", "p0-3", "p1-0"]
    assert sink.inserted == 3


def test_archive_drop_partitions_forgets_their_buffered_rows(tmp_path):
    a = ArchiveWriter(tmp_path, "transactions")
    mixed = pd.concat([_results(0, range(3)), _results(1, range(2))], ignore_index=True)
    a.write(mixed)
    a.write(_results(1, range(2, 4)))
    a.drop_partitions([1])
    assert a.pending == 3
    a.flush()
    assert sorted(read_archive(tmp_path)["tx_id"]) == ["p0-0", "p0-1", "p0-2"]


def test_flush_steps_wait_at_the_gate(tmp_path):
    """The writer thread's gate is called before each step: concatenation, Arrow conversion, every file."""
    calls = []
    a = ArchiveWriter(tmp_path, "transactions")
    a.write(_results(0, range(3)))
    a.write(_results(1, range(2), day="2024-01-02"))
    files = a.flush(gate=lambda: calls.append("archive"))
    assert len(files) == 2 and calls == ["archive"] * 4
    from fraud.store import AlertStore
    from streaming.sinks import AlertStoreSink

    sink = AlertStoreSink(AlertStore(f"sqlite:///{tmp_path / 'a.db'}"))
    r = _results(0, range(2))
    r["is_alert"] = [True, False]
    sink.write(r)
    sink.flush(gate=lambda: calls.append("store"))
    assert calls.count("store") == 2 and sink.inserted == 1


def test_a_dead_letter_the_broker_refuses_as_too_large_is_sent_again_without_payload():
    """A topic whose record limit is below the letter (refused at delivery, in the future) would fail every
    checkpoint's resend and pause the input for good: the letter goes again without key and value; a score
    record is sent again unchanged (nothing of it may be dropped)."""
    from kafka.errors import MessageSizeTooLargeError
    from kafka.future import Future

    from streaming.dlq import DeadLetterSink
    from streaming.sinks import TrackedProducer

    class Producer:
        def __init__(self):
            self.sent = []

        def send(self, topic, **kw):
            self.sent.append((topic, kw))
            return Future()

    raw = Producer()
    tp = TrackedProducer(raw)
    DeadLetterSink(tp, "dlq").send(b"x" * 100, b"k", "malformed_json", "bad json", "tx", 0, 7)
    tp.send("scores", key=b"t1", value=b"{}")
    taken = tp.take()
    for r in taken:
        r.future.failure(MessageSizeTooLargeError("refused by the broker"))
    again = tp.resend(taken)
    (t1, letter), (t2, score) = raw.sent[-2:]
    assert (t1, letter["key"], letter["value"]) == ("dlq", None, b"")
    assert ("value.dropped", b"1") in letter["headers"] and ("source.offset", b"7") in letter["headers"]
    assert (t2, score) == ("scores", {"key": b"t1", "value": b"{}"})
    assert [s.kw for s in again] == [letter, score]


def test_a_dead_letter_the_producer_refuses_as_too_large_goes_without_payload_and_a_score_is_never_cut():
    from kafka.errors import MessageSizeTooLargeError
    from kafka.future import Future

    from streaming.dlq import DeadLetterSink
    from streaming.sinks import TrackedProducer

    class Producer:  # a record limit of 50 bytes, checked on send as kafka-python does
        def __init__(self):
            self.sent = []

        def send(self, topic, **kw):
            if len(kw.get("value") or b"") + len(kw.get("key") or b"") > 50:
                raise MessageSizeTooLargeError("over the limit")
            self.sent.append((topic, kw))
            return Future()

    raw = Producer()
    tp = TrackedProducer(raw)
    DeadLetterSink(tp, "dlq").send(b"x" * 100, b"k", "malformed_json", "bad json", "tx", 0, 7)
    (topic, letter), = raw.sent
    assert (topic, letter["key"], letter["value"]) == ("dlq", None, b"")
    assert ("value.dropped", b"1") in letter["headers"] and len(tp.take()) == 1
    with pytest.raises(MessageSizeTooLargeError):
        tp.send("scores", key=b"t1", value=b"y" * 100)
