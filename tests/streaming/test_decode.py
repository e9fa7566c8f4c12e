"""Stream events are decoded one at a time, strictly: every event is either a canonical row or a dead letter
with its reason, never an exception, and never judged by its neighbours."""
from __future__ import annotations

import json
import time
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fraud.schema import validate_frame
from streaming.decode import ATTRIBUTES, EventRules, decode, to_frame
from streaming.replay import encode_events

NOW_MS = int(pd.Timestamp("2024-02-01", tz="UTC").value // 10**6)
RULES = EventRules(max_bytes=256 * 1024)


def msg(value, offset=0, partition=0, ts_ms=NOW_MS):
    if isinstance(value, dict):
        value = json.dumps(value).encode()
    elif isinstance(value, str):
        value = value.encode()
    return SimpleNamespace(value=value, key=b"k", partition=partition, offset=offset, timestamp=ts_ms)


def good(**kw):
    ev = {"tx_id": "t1", "timestamp": "2024-01-31T10:00:00.000000Z", "customer_id": "C1", "terminal_id": "T1",
          "amount": 12.5}
    ev.update(kw)
    return ev


def verdict(value):
    """('ok', row) or (kind, reason) for one message."""
    d, letters = decode([msg(value)], RULES)
    if letters:
        return letters[0].kind, letters[0].reason
    return "ok", d


def test_plain_events_give_the_canonical_frame(tiny_frame):
    values, _ = encode_events(tiny_frame)
    d, letters = decode([msg(v, i) for i, v in enumerate(values)], RULES)
    assert not letters
    rows, order = to_frame(d)
    ref = validate_frame(tiny_frame.copy(), source="t").valid
    pd.testing.assert_frame_equal(rows.reset_index(drop=True), ref.reset_index(drop=True), check_dtype=False)
    assert str(rows["timestamp"].dtype) == "datetime64[ns, UTC]" and rows["amount"].dtype == np.float64
    assert rows["label"].dtype == np.int8 and list(order) == list(range(len(values)))


@pytest.mark.parametrize("value,kind,words", [
    (good(timestamp="9999-12-31T00:00:00Z"), "out_of_window", "ahead of the broker time"),
    (good(timestamp="0001-01-01T00:00:00Z"), "out_of_window", "older than the broker time"),
    (good(timestamp="2200-01-01T00:00:00Z"), "out_of_window", "ahead"),
    (good(timestamp="2004-01-01T00:00:00Z"), "out_of_window", "days older"),
    (good(timestamp="yesterday"), "invalid", "not an ISO-8601 time"),
    (good(timestamp=1706700000), "invalid", "must be an ISO-8601 text"),
    ("[" * 100000, "malformed_json", "nested too deeply"),
    ('{"tx_id": "t", "amount": NaN}', "malformed_json", "NaN is not JSON (not finite)"),
    (json.dumps(good()).replace("12.5", "1" + "0" * 400), "invalid", "too large"),
    (json.dumps(good()).replace("12.5", "1e400"), "invalid", "not finite"),
    (good(amount=True), "invalid", "not bool"),
    (good(amount="12.5"), "invalid", "not str"),
    (good(amount=-1), "invalid", "negative amount"),
    (good(amount=None), "invalid", "not null"),
    (good(customer_id={"a": 1}), "invalid", "not dict"),
    (good(terminal_id=["T1"]), "invalid", "not list"),
    (good(tx_id=True), "invalid", "not bool"),
    (good(tx_id="   "), "invalid", "empty id"),
    (good(tx_id="x" * 200), "invalid", "longer than 128"),
    (good(customer_id="\ud800x"), "invalid", "not valid Unicode"),
    (good(label=2), "invalid", "'label'"),
    (good(label=True), "invalid", "'label'"),
    ({k: v for k, v in good().items() if k != "amount"}, "invalid", "missing field(s) 'amount'"),
    ("[1, 2]", "not_an_object", "list"),
    ("", "malformed_json", "empty message"),
    (b"\xff\xfe{", "malformed_json", "malformed JSON"),
    ("x" * (256 * 1024 + 1), "oversized", "exceeds the limit"),
])
def test_each_bad_event_is_a_dead_letter_with_its_reason(value, kind, words):
    got, reason = verdict(value)
    assert got == kind, reason
    assert words in reason


def test_ids_are_texts_never_numbers():
    kind, reason = verdict(good(customer_id=12345678901234567890))
    assert kind == "invalid" and "an id must be a JSON text, not int" in reason


def test_timestamps_with_offsets_and_naive_ones_are_utc():
    for text, want in [("2024-01-31T12:00:00+02:00", "2024-01-31T10:00:00"), ("2024-01-31 10:00:00", None),
                       ("2024-01-31T10:00:00.123456789Z", None)]:
        ok, d = verdict(good(timestamp=text))
        assert ok == "ok"
        ref = pd.Timestamp(want or text.rstrip("Z"), tz="UTC" if "+" not in text else None)
        ref = ref.tz_convert("UTC") if ref.tzinfo else ref.tz_localize("UTC")
        assert d.ts[0] == ref.value


def test_a_poll_without_labels_next_to_labelled_events_is_all_valid():
    evs = [good(tx_id="a", label=1, scenario=2), good(tx_id="b"), good(tx_id="c", label=0)]
    d, letters = decode([msg(e, i) for i, e in enumerate(evs)], RULES)
    assert not letters
    rows, _ = to_frame(d)
    assert rows["label"].tolist() == [1, -1, 0] and rows["scenario"].tolist() == [2, -1, -1]


def test_attributes_whose_type_changes_are_one_json_text_and_flush_to_the_archive(tmp_path):
    from fraud.archive import ArchiveWriter

    evs = [good(tx_id="a", channel={"web": 1}), good(tx_id="b", channel="pos"), good(tx_id="c", channel=[1, "x"]),
           good(tx_id="d")]
    d, letters = decode([msg(e, i) for i, e in enumerate(evs)], RULES)
    assert not letters
    rows, _ = to_frame(d)
    assert rows[ATTRIBUTES].tolist()[:3] == ['{"channel":{"web":1}}', '{"channel":"pos"}', '{"channel":[1,"x"]}']
    assert pd.isna(rows[ATTRIBUTES].iloc[3])
    sink = ArchiveWriter(tmp_path, "transactions")
    for i in range(len(rows)):  # one micro-batch per event: the flush concatenates their columns
        part = rows.iloc[[i]].reset_index(drop=True).assign(kafka_partition=np.int32(0), kafka_offset=np.int64(i))
        sink.write(part)
    assert sink.flush()
    back = pd.read_parquet(next(tmp_path.glob("date=*/*.parquet")))
    assert back["tx_id"].tolist() == ["a", "b", "c", "d"]


def test_window_is_measured_from_the_broker_time_of_each_message():
    old = msg(good(timestamp="2018-04-01T00:00:00Z"), ts_ms=NOW_MS)
    assert not decode([old], RULES)[1]  # under 10 years old
    ahead = msg(good(timestamp="2024-02-01T23:00:00Z"), ts_ms=NOW_MS)
    assert not decode([ahead], RULES)[1]  # 23 h ahead
    far = msg(good(timestamp="2024-02-02T01:00:00Z"), ts_ms=NOW_MS)
    assert decode([far], RULES)[1][0].kind == "out_of_window"
    no_ts = msg(good(timestamp=pd.Timestamp.now(tz="UTC").strftime("%Y-%m-%dT%H:%M:%SZ")), ts_ms=-1)
    assert not decode([no_ts], RULES)[1]  # no broker time: the wall clock


# -- property: thousands of generated events, no exception, each event scored or dead-lettered ------------
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12)
timestamps = st.one_of(
    st.datetimes(min_value=pd.Timestamp("0001-01-02").to_pydatetime(),
                 max_value=pd.Timestamp("9999-12-30").to_pydatetime()).map(lambda t: t.isoformat() + "Z"),
    st.datetimes(min_value=pd.Timestamp("2015-01-01").to_pydatetime(),
                 max_value=pd.Timestamp("2024-02-01").to_pydatetime()).map(lambda t: t.isoformat()),
    json_values)
field_values = {
    "tx_id": st.one_of(st.text(max_size=140), st.text(st.characters(exclude_categories=()), max_size=5),
                       st.integers(), json_values),
    "timestamp": timestamps,
    "customer_id": st.one_of(st.text(max_size=10), st.integers(), json_values),
    "terminal_id": st.one_of(st.text(max_size=10), json_values),
    "amount": st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(min_value=-10**30,
                                                                                 max_value=10**400), json_values),
    "label": st.one_of(st.integers(-1, 2), json_values),
    "scenario": st.one_of(st.integers(-5, 40000), json_values),
    "extra": json_values,
}
events = st.one_of(
    st.fixed_dictionaries({}, optional=field_values).map(lambda d: json.dumps(d).encode()),
    st.binary(max_size=60),
    json_values.map(lambda v: json.dumps(v).encode()))


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(events, min_size=1, max_size=12))
def test_property_every_event_is_scored_or_dead_lettered_alone_as_in_company(values):
    msgs = [msg(v, i) for i, v in enumerate(values)]
    d, letters = decode(msgs, RULES)
    assert len(d) + len(letters) == len(msgs)
    assert sorted([m.offset for m in d.msgs] + [x.msg.offset for x in letters]) == list(range(len(msgs)))
    for x in letters:
        assert x.kind and x.reason
    rows, _ = to_frame(d)  # the good ones always make a frame
    assert len(rows) == len(d)
    if len(rows):
        assert (rows["amount"] >= 0).all() and np.isfinite(rows["amount"]).all()
        assert rows["tx_id"].str.len().min() > 0
    for m in msgs:  # the verdict on an event never depends on its neighbours
        alone, alone_letters = decode([m], RULES)
        assert (len(alone) == 1) == any(g is m for g in d.msgs)


def test_a_time_no_frame_can_hold_is_dead_lettered_not_failing_the_poll():
    """Broker time and event time both in 2300 pass the window, but datetime64[ns] ends in 2262: the event must be
    a dead letter of its own (it used to raise in ``to_frame`` and fail its poll, again and again)."""
    from streaming.decode import EventRules, decode, to_frame

    ok = {"tx_id": "a", "timestamp": "2024-01-01T00:00:00Z", "customer_id": "c", "terminal_id": "t", "amount": 1.0}
    far = {**ok, "tx_id": "b", "timestamp": "2300-01-01T00:00:00Z"}
    msgs = [SimpleNamespace(value=json.dumps(e).encode(), timestamp=t, partition=0, offset=i, key=b"c", headers=[])
            for i, (e, t) in enumerate([(ok, 1_704_067_200_000), (far, 10_413_792_000_000)])]
    good, letters = decode(msgs, EventRules(max_age_days=200_000))
    assert good.tx == ["a"] and [x.kind for x in letters] == ["out_of_window"]
    assert "outside the times the scorer can hold" in letters[0].reason
    assert len(to_frame(good)[0]) == 1
