"""The event log's entity index: ``rows_of`` equals a scan of the column through appends, evictions (time-ordered
and not), buffer moves and a checkpoint round trip, compiled and without numba."""
import numpy as np
import pytest

from fraud.features import eventlog
from fraud.features.eventlog import EventLog

COLUMNS = {"code": np.int64, "ts": np.int64, "amount": np.float64}


def _check(log: EventLog, rng) -> None:
    live = log["code"]
    for k in (1, 3, 12):
        wanted = np.unique(rng.integers(0, 420, k))  # some codes never seen, some beyond the index's size
        ref = np.flatnonzero(np.isin(live, wanted))
        got = log.rows_of("code", wanted)
        np.testing.assert_array_equal(got, ref)
        np.testing.assert_array_equal(log["amount"][got], log["amount"][ref])


@pytest.mark.parametrize("compiled", [True, False])
@pytest.mark.parametrize("in_order", [True, False])
def test_rows_of_equals_a_scan(monkeypatch, compiled, in_order):
    if not compiled:
        monkeypatch.setattr(eventlog, "_WALK", [None])
    rng = np.random.default_rng(7 + in_order)
    log, now = EventLog(**COLUMNS), 0
    for step in range(150):
        n = int(rng.integers(0, 40))
        top = 50 + 2 * step  # new entities keep appearing
        ts = now + np.sort(rng.integers(0, 1000, n)) if in_order else now + rng.integers(-3000, 1000, n)
        log.append(code=rng.integers(0, top, n), ts=ts, amount=rng.random(n))
        now += 1000
        if step % 3 == 0:
            log.evict(now - 20_000)
        if step % 50 == 49:  # a checkpoint round trip: the index is rebuilt from the columns
            log = EventLog.from_arrays(log.to_arrays("x."), "x.", COLUMNS, log._ts_sorted)
        _check(log, rng)
    assert log._ts_sorted == in_order


def test_an_empty_log_and_no_codes():
    log = EventLog(**COLUMNS)
    assert log.rows_of("code", np.array([1, 2])).tolist() == []
    log.append(code=np.array([4, 5, 4]), ts=np.array([1, 2, 3]), amount=np.zeros(3))
    assert log.rows_of("code", np.array([], dtype=np.int64)).tolist() == []
    assert log.rows_of("code", np.array([4])).tolist() == [0, 2]


@pytest.mark.parametrize("in_order", [True, False])
def test_find_matches_events_by_time_and_values_in_order(in_order):
    """``find``: per query, the kept event with its time and code (-1: none); queries sharing a key take the events
    sharing it in kept order; a query beyond them, or of a code or time never kept, finds none."""
    rng = np.random.default_rng(3)
    log = EventLog(**COLUMNS)
    ts = np.sort(rng.integers(0, 60, 300)) if in_order else rng.integers(0, 60, 300)
    log.append(code=rng.integers(0, 4, 300), ts=ts, amount=np.zeros(300))
    log.evict(5 if in_order else -1)
    assert log._ts_sorted == in_order
    q_ts, q_code = rng.integers(-5, 70, 400), rng.integers(0, 6, 400)
    got = log.find(q_ts, code=q_code)
    taken: dict = {}
    for i, (t, c) in enumerate(zip(q_ts, q_code)):  # the reference: a scan per query
        same = np.flatnonzero((log["ts"] == t) & (log["code"] == c))
        k = taken[(t, c)] = taken.get((t, c), -1) + 1
        assert got[i] == (same[k] if k < len(same) else -1), i
    assert (got >= 0).any() and (got < 0).any()
    assert log.find(np.zeros(0, np.int64), code=np.zeros(0, np.int64)).tolist() == []
    assert EventLog(**COLUMNS).find(np.array([1]), code=np.array([1])).tolist() == [-1]

