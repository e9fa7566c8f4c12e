"""``fraud bench stream --trace``: the per-event join of latencies to their cycles (benchmarks.stream.CycleTrace)."""
import numpy as np

from benchmarks.stream import CycleTrace


def _cycle(t, ts, handoff_after, n_proc=10.0, ck=False):
    """A traced cycle whose poll ran [t, t + 2] ms and whose results were handed over ``handoff_after`` ms later."""
    return {"poll0": t, "poll1": t + 2.0, "n": len(ts), "ts": list(ts), "score": 6.0, "sinks": 1.0, "gc": 0.0,
            "ck_in_flight": ck, "proc0": t + 2.0, "proc1": t + 2.0 + n_proc, "cpu_thread": n_proc,
            "cpu_proc": n_proc, "handoff": t + 2.0 + handoff_after}


def test_per_event_parts_add_up_and_passed_polls_are_counted():
    tr = CycleTrace(scorer=None)
    rng = np.random.default_rng(0)
    t, cycles = 1000.0, []
    for k in range(40):
        ts = np.sort(t - rng.uniform(0, 15, size=int(rng.integers(1, 8))))
        cycles.append(_cycle(t, ts, 12.0 + k % 5, ck=k % 10 == 0))
        t += 20.0
    # an event created long before the two polls before its own: passed over by them
    cycles.append(_cycle(t, [t - 55.0, t - 1.0], 30.0, n_proc=28.0))
    tr.cycles = cycles
    tr.writer = [(cycles[5]["poll0"], cycles[5]["handoff"] + 1.0, "job")]
    ev = tr.per_event()
    n = sum(len(c["ts"]) for c in cycles)
    assert all(len(v) == n for v in ev.values())
    want = np.concatenate([c["handoff"] - np.asarray(c["ts"]) for c in cycles])
    np.testing.assert_allclose(ev["lat"], want)
    np.testing.assert_allclose(ev["age_at_poll"] + ev["after_poll"], ev["lat"])
    assert ev["polls_passed"][-2] == 2 and ev["polls_passed"][-1] == 0
    assert ev["writer_overlap"][ev["poll_n"] > 0].max() > 0  # the cycle under the job
    s = tr.summary(q=95.0)
    assert s["n"] == n and 0 < s["n_slow"] < n
    slow, rest = s["lat"]
    assert slow > rest and s["process"][0] > s["process"][1]  # the slow events are the long last cycle's


def test_empty_trace_summarises_to_nothing():
    assert CycleTrace(scorer=None).summary() == {}
