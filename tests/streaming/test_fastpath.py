"""The stream's validation fast path gives exactly the reports of fraud.schema.validate_records."""
from __future__ import annotations

import copy
import json

import numpy as np
import pandas as pd
import pytest

from fraud.schema import validate_records
from streaming.fastpath import _plain, validate_events
from streaming.replay import encode_events


def _events(tiny_frame, n=40):
    reps = -(-n // len(tiny_frame))
    df = pd.concat([tiny_frame] * reps, ignore_index=True).head(n)
    df["tx_id"] = [f"tx{i}" for i in range(len(df))]
    df["timestamp"] = df["timestamp"] + pd.to_timedelta(np.arange(len(df)) * 1234567, unit="us")
    df["amount"] = df["amount"] + np.arange(len(df)) / 7.0
    df["scenario"] = np.int16(0)
    df["channel"] = ["web", "pos"] * (len(df) // 2) + ["web"] * (len(df) % 2)
    values, _ = encode_events(df)
    return [json.loads(v) for v in values]


def _same(records, lines=True):
    kw = {"source": "t", "lines": np.arange(len(records))} if lines else {"source": "t"}
    a = validate_records(copy.deepcopy(records), **kw)
    b = validate_events(copy.deepcopy(records), **kw)
    pd.testing.assert_frame_equal(a.valid, b.valid)
    assert a.n_rows == b.n_rows and a.n_rejected == b.n_rejected and a.line_kind == b.line_kind
    assert a.messages() == b.messages()
    pd.testing.assert_frame_equal(a.problems.reset_index(drop=True), b.problems.reset_index(drop=True),
                                  check_dtype=False)
    assert list(a.rejects["_line"]) == list(b.rejects["_line"])
    assert list(a.rejects["_reason"]) == list(b.rejects["_reason"])
    return b


def test_good_batch_identical(tiny_frame):
    recs = _events(tiny_frame)
    assert _plain(recs)  # the fast path is the one taken
    rep = _same(recs)
    assert rep.n_valid == len(recs) and rep.ok
    _same(recs, lines=False)
    # out of time order and with an int amount and a row marker: still identical
    recs2 = list(reversed(recs))
    recs2[0]["amount"] = 12
    for i, r in enumerate(recs2):
        r["__row"] = i
    _same(recs2)


@pytest.mark.parametrize("field,value", [
    ("tx_id", ""), ("tx_id", " x1 "), ("tx_id", 17), ("customer_id", None), ("terminal_id", "  "),
    ("timestamp", "2018-13-01T00:00:00Z"), ("timestamp", "yesterday"), ("timestamp", "2018-04-01 00:00:00"),
    ("timestamp", 1522540800), ("amount", -1.0), ("amount", "12.5"), ("amount", "abc"), ("amount", None),
    ("amount", True), ("amount", float("inf")), ("label", 2), ("label", "1"), ("scenario", -1),
    ("scenario", 1.5), ("extra", [1, 2]),
])
def test_bad_or_odd_event_identical(tiny_frame, field, value):
    recs = _events(tiny_frame, 12)
    recs[5][field] = value
    _same(recs)


def test_missing_field_and_duplicate_identical(tiny_frame):
    recs = _events(tiny_frame, 12)
    del recs[3]["amount"]
    _same(recs)
    recs = _events(tiny_frame, 12)
    recs[7]["tx_id"] = recs[2]["tx_id"]
    _same(recs)
    _same([])


def test_plain_frame_gives_the_reference_frame_and_the_row_order(tiny_frame):
    from streaming.fastpath import plain_frame

    recs = _events(tiny_frame, 30)
    shuffled = [recs[i] for i in np.random.default_rng(3).permutation(len(recs))]
    valid, order = plain_frame(copy.deepcopy(shuffled))
    pd.testing.assert_frame_equal(valid, validate_records(copy.deepcopy(shuffled), source="t").valid)
    # row i of the frame is record order[i] (the scorer maps rows back to Kafka messages with it)
    assert list(valid["tx_id"]) == [shuffled[i]["tx_id"] for i in order]
    assert plain_frame([dict(recs[0], amount=-1.0)]) is None  # not plainly valid: use the reference
