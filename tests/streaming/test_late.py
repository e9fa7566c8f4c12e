"""Events dated long before what their partition's state has seen are counted and named in a warning
(streaming.late): replaying a file from before the serving model's training cutoff alerts most events."""
from __future__ import annotations

import logging

import numpy as np
import pandas as pd
from prometheus_client import CollectorRegistry, Counter

from fraud.bundle import BundleState
from streaming.late import LateEvents


def _state(last):
    return BundleState([], last_timestamp=None if last is None else pd.Timestamp(last, tz="UTC"))


def _rows(*stamps):
    return pd.DataFrame({"timestamp": pd.to_datetime(list(stamps), utc=True)})


def _counter():
    return Counter("late", "test", registry=CollectorRegistry())


def test_only_events_over_the_lag_behind_their_own_partition_count(caplog):
    c = _counter()
    late = LateEvents(c, hours=24.0)
    states = {0: _state("2024-03-10 12:00"), 1: _state("2024-03-01 00:00"), 2: _state(None)}
    rows = _rows("2024-03-09 11:59", "2024-03-09 12:01", "2024-03-10 13:00",  # partition 0: one over 24 h
                 "2024-03-09 11:59",  # partition 1: ahead of its state
                 "2000-01-01 00:00")  # partition 2: a fresh state has no newest event, nothing is late
    part = np.array([0, 0, 0, 1, 2])
    with caplog.at_level(logging.WARNING, logger="streaming.late"):
        assert late.check(rows, part, states, model="7") == 1
        assert late.check(rows, part, states, model="7") == 1  # counted again, not warned again within a minute
    assert c._value.get() == 2
    warned = [r.getMessage() for r in caplog.records]
    assert len(warned) == 1 and "1 event(s)" in warned[0] and "2024-03-09 11:59" in warned[0] and "model 7" in warned[0]


def test_a_replay_from_before_the_models_cutoff_is_late_and_the_days_after_are_not(drift_bundle, drift_world):
    """The model's warm state ends at its training cutoff: the month before it is late, the days after are not."""
    st = drift_bundle.warm_state()
    assert st.last_timestamp is not None
    df = drift_world.sort_values("timestamp")
    before = df[df["timestamp"] < st.last_timestamp - pd.Timedelta(days=2)].tail(50)
    after = df[df["timestamp"] > st.last_timestamp].head(50)
    late = LateEvents(_counter())
    assert late.check(before.reset_index(drop=True), np.zeros(len(before), int), {0: st}) == len(before) > 0
    assert late.check(after.reset_index(drop=True), np.zeros(len(after), int), {0: st}) == 0


def test_a_late_batch_scored_into_the_state_does_not_move_its_newest_event_back(drift_bundle, drift_world):
    """A replay from before the cutoff goes on late batch after batch: each batch absorbed leaves the state's
    newest event where it was (it once became the batch's last, so only the first batch counted as late)."""
    st = drift_bundle.warm_state()
    cutoff = st.last_timestamp
    df = drift_world.sort_values("timestamp")
    before = df[df["timestamp"] < cutoff - pd.Timedelta(days=3)].tail(60).reset_index(drop=True)
    late = LateEvents(_counter())
    counted = 0
    for a in range(0, len(before), 20):
        batch = before.iloc[a:a + 20].reset_index(drop=True)
        counted += late.check(batch, np.zeros(len(batch), int), {0: st})
        drift_bundle.score(batch.drop(columns=["label", "scenario"], errors="ignore"), st)
        assert st.last_timestamp == cutoff
    assert counted == len(before)
    after = before.tail(5).reset_index(drop=True)  # the same cards an hour apart after the cutoff: it moves on
    after["timestamp"] = cutoff + pd.to_timedelta(np.arange(1, 6), unit="h")
    after["tx_id"] = [f"after-{i}" for i in range(5)]
    drift_bundle.score_poll(after.drop(columns=["label", "scenario"], errors="ignore"), [(0, len(after))], [st])
    assert st.last_timestamp == after["timestamp"].iloc[-1]


def test_a_state_dated_ahead_of_the_clock_does_not_make_the_present_late():
    """An event from a producer whose clock runs ahead left its state's newest event in the future: events of now
    are not counted late because of it."""
    now = pd.Timestamp.now(tz="UTC")
    states = {0: BundleState([], last_timestamp=now + pd.Timedelta(hours=30))}
    rows = pd.DataFrame({"timestamp": [now - pd.Timedelta(hours=1), now - pd.Timedelta(hours=30)]})
    assert LateEvents(_counter()).check(rows, np.zeros(2, int), states) == 1
