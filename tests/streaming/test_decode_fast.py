"""The decoder's fast paths (one-pass checks of a plain event, the C JSON scanner, one window test per poll) give
exactly what the per-event checks give: the same good events, hashes and dead letters with the same reasons."""
from __future__ import annotations

import json
from types import SimpleNamespace

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_decode import RULES, events, msg

from streaming import decode as dec

ids = st.one_of(st.sampled_from(["C1", "T-9", "x" * 128, "x" * 129, " C1", "C1 ", "", "é", "\u00a0"]),
                st.text(max_size=6), st.integers(0, 10**20), st.booleans(), st.none())
plain = st.fixed_dictionaries(
    {"tx_id": ids, "customer_id": ids, "terminal_id": ids,
     "timestamp": st.sampled_from(["2024-01-31T10:00:00.000000Z", "2024-01-31T10:00:00Z", "2024-02-03T10:00:00Z",
                                   "2004-01-01T00:00:00Z", "2024-01-31T12:00:00+02:00", "2024-13-01T00:00:00Z"]),
     "amount": st.one_of(st.floats(-1.0, 1e17), st.integers(-3, 2**60), st.sampled_from([0.0, -0.0, 2.0**53]))},
    optional={"label": st.one_of(st.integers(-1, 2), st.booleans(), st.none()),
              "scenario": st.one_of(st.integers(-1, 40000), st.none()), "extra": st.integers() | st.text(max_size=3)})
spaced = plain.map(lambda d: (" " + json.dumps(d) + " \n").encode())
broker_ms = st.sampled_from([int(pd.Timestamp("2024-02-01", tz="UTC").value // 10**6), -1, 0])


def _slow():
    """The per-event checks alone (no fast path)."""
    mp = pytest.MonkeyPatch()
    mp.setattr(dec, "_plain_event", lambda rec: None)
    mp.setattr(dec, "_all_in_window", lambda stamps, msgs, rules: False)
    mp.setattr(dec, "_parse", dec._JSON.decode)
    return mp


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.one_of(plain.map(lambda d: json.dumps(d).encode()), spaced, events), broker_ms),
                min_size=1, max_size=12))
def test_fast_paths_equal_the_per_event_checks(values):
    msgs = [msg(v, i, ts_ms=b) for i, (v, b) in enumerate(values)]
    clock = pytest.MonkeyPatch()  # a message without broker time is windowed by the wall clock: one instant
    clock.setattr(dec, "time", SimpleNamespace(time=lambda: 1_706_745_600.0))
    try:
        fast, fast_letters = dec.decode(msgs, RULES)
        mp = _slow()
        try:
            slow, slow_letters = dec.decode(msgs, RULES)
        finally:
            mp.undo()
    finally:
        clock.undo()
    assert {k: v for k, v in fast.__dict__.items() if k not in ("amount",)} == \
        {k: v for k, v in slow.__dict__.items() if k not in ("amount",)}
    assert [repr(a) for a in fast.amount] == [repr(a) for a in slow.amount]  # -0.0 stays -0.0
    assert [(x.msg.offset, x.kind, x.reason) for x in fast_letters] == \
        [(x.msg.offset, x.kind, x.reason) for x in slow_letters]


def test_a_plain_poll_takes_the_fast_paths():
    values = [json.dumps({"tx_id": f"t{i}", "timestamp": "2024-01-31T10:00:00Z", "customer_id": "C",
                          "terminal_id": "T", "amount": 1.5, "label": 0}).encode() for i in range(5)]
    msgs = [msg(v, i) for i, v in enumerate(values)]
    assert dec._plain_event(json.loads(values[0])) is not None
    good, letters = dec.decode(msgs, RULES)
    assert not letters and dec._all_in_window(good.ts, good.msgs, RULES) and good.tx == [f"t{i}" for i in range(5)]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.text(max_size=8), min_size=1, max_size=40))
def test_hashes_without_categorize_equal_the_categorized_ones(texts):
    """``_hashes`` hashes with ``categorize=False``: the same values as pandas' default (duplicates included)."""
    d = dec.Decoded(tx=list(texts), ts=[0] * len(texts), cust=list(reversed(texts)), term=["T"] * len(texts),
                    amount=[1.5] * len(texts), label=[-1] * len(texts), scenario=[-1] * len(texts),
                    attrs=[None] * len(texts), msgs=[None] * len(texts))
    key, content = dec._hashes(d)
    text = [f"0|{c}|T|1.5|-1|-1|None" for c in d.cust]
    ref = pd.util.hash_array(pd.array(d.tx + text, dtype=object).to_numpy()).view("int64").tolist()
    assert key + content == ref
