"""Label events (``streaming.feedback``) without a broker: telling them apart by header, the checkpoint arrays,
and which labelled transactions ``fraud send-labels`` sends."""
from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from fraud.errors import ConfigError
from streaming import feedback


def _msg(value: bytes, headers=None, partition=0, offset=0):
    return SimpleNamespace(value=value, headers=headers or [], partition=partition, offset=offset, key=b"k",
                           timestamp=1_700_000_000_000)


def test_split_keeps_arrival_order_and_reads_only_the_header():
    a, b = _msg(b"1"), _msg(b"2", feedback.HEADERS)
    c, d = _msg(b"3", [("other", b"label")]), _msg(b"4", [("trace", b"x"), *feedback.HEADERS])
    assert feedback.split([a, b, c, d]) == ([a, c], [b, d])
    assert feedback.split([a, c]) == ([a, c], [])


def test_checkpoint_arrays_round_trip():
    values = [b'{"tx_id": "1"}', b"", "é".encode() * 3]
    arrays = feedback.to_arrays(values)
    assert all(v.dtype != object for v in arrays.values())
    assert feedback.from_arrays(arrays) == values
    assert feedback.to_arrays([]) == {} and feedback.from_arrays({}) == []


def test_reapply_reads_back_what_encode_wrote():
    stamps = pd.to_datetime(["2024-01-01 00:00:01.5", "2024-01-02T00:00:00.000000007"], utc=True, format="ISO8601")
    rows = pd.DataFrame({"tx_id": ["a", "b"], "timestamp": stamps,
                         "customer_id": ["c1", "c2"], "terminal_id": ["t1", "t2"], "amount": [1.25, 0.1 + 0.2],
                         "label": np.array([1, 0], dtype=np.int8)})
    values, keys = feedback.encode(rows)
    assert keys == [b"c1", b"c2"] and json.loads(values[0])["label"] == 1
    got = []
    feedback.reapply(SimpleNamespace(add_labels=lambda st, r: got.append(r)), None, values)
    pd.testing.assert_frame_equal(got[0][list(rows.columns)], rows)


def test_labelled_transactions_joins_reports_missing_and_refuses_bad_labels():
    tx = pd.DataFrame({"tx_id": ["1", "2", "3"], "timestamp": pd.to_datetime(["2024-01-03", "2024-01-01",
                                                                              "2024-01-02T00:00:00.000000007"], utc=True,
                                                                          format="ISO8601"),
                       "customer_id": ["c"] * 3, "terminal_id": ["t"] * 3, "amount": [1.0, 2.0, 3.0],
                       "label": [-1, -1, -1]})
    rows, missing = feedback.labelled_transactions(pd.DataFrame({"tx_id": ["1", "2", "9", "2"],
                                                                 "label": [1, 1, 0, 0]}), tx)
    assert list(rows["tx_id"]) == ["2", "1"] and list(rows["label"]) == [0, 1] and missing == ["9"]
    with pytest.raises(ConfigError, match=r"row 2 \(tx_id '2'\) has label 7"):
        feedback.labelled_transactions(pd.DataFrame({"tx_id": ["1", "2"], "label": [1, 7]}), tx)
    with pytest.raises(ConfigError, match=r"missing column\(s\) \['label'\]"):
        feedback.labelled_transactions(pd.DataFrame({"tx_id": ["1"]}), tx)


def test_reapply_never_fails_a_restore(caplog):
    """A stored label the restore cannot read, or a model that refuses it: logged, the state kept, nothing raised."""
    state = object()

    def refuse(st, rows):
        raise ValueError("no")

    assert feedback.reapply(SimpleNamespace(add_labels=refuse), state, [b'{"tx_id": "x"}']) is state
    assert feedback.reapply(SimpleNamespace(add_labels=refuse), state, feedback.encode(pd.DataFrame({
        "tx_id": ["a"], "timestamp": pd.to_datetime(["2024-01-01"], utc=True), "customer_id": ["c"],
        "terminal_id": ["t"], "amount": [1.0], "label": [1]}))[0]) is state
    assert [r.levelname for r in caplog.records] == ["ERROR", "ERROR"]
    assert "label events not applied to the restored state: 1 of them" in caplog.records[0].getMessage()


def test_a_new_base_is_due_before_kept_labels_would_fall_out(monkeypatch):
    """The kept list holds the newest MAX_KEPT label events; once that many arrived since the base, the partition
    asks for a new base (``base = None``), so no label is in neither the base nor the list."""
    from streaming.partitions import Partition

    monkeypatch.setattr(feedback, "MAX_KEPT", 3)
    rows = pd.DataFrame({"tx_id": [f"t{i}" for i in range(2)], "timestamp": pd.to_datetime(["2024-01-01"] * 2,
                                                                                           utc=True),
                         "customer_id": ["c", "c"], "terminal_id": ["t", "t"], "amount": [1.0, 2.0],
                         "label": np.array([1, 0], np.int8)})
    values, _ = feedback.encode(rows)
    part = Partition(state=object(), base={"kind": "fresh"}, seen=None)
    d = SimpleNamespace(msgs=[_msg(v, feedback.HEADERS, offset=i) for i, v in enumerate(values)])
    bundle = SimpleNamespace(add_labels=lambda st, r: len(r))
    monkeypatch.setattr(feedback, "to_frame", lambda dd: (rows.iloc[:len(dd.msgs)], np.arange(len(dd.msgs))))
    assert feedback._apply(bundle, {0: part}, d) == [] and part.base is not None and part.labels_since_base == 2
    assert feedback._apply(bundle, {0: part}, d) == [] and part.base is None and len(part.labels) == 3
