"""streaming.ahead.SendAhead: topic writes of a batch beside the next one, in order, never lost, never committed
before they are written (a checkpoint's ``take`` drains first and raises while a write fails)."""
from __future__ import annotations

import threading
import time

import pytest

from streaming.ahead import SendAhead


def test_jobs_run_in_submission_order_whether_in_the_background_or_at_once():
    done, ahead = [], SendAhead(min_rows=100)

    def job(i, slow):
        def run():
            if slow:
                time.sleep(0.02)  # a background job still running when the next one is submitted
            done.append((i, threading.current_thread().name))
        return run

    sizes = [500, 10, 300, 99, 1000, 5]
    for i, n in enumerate(sizes):
        ahead.submit(job(i, n >= 100), n)
    ahead.drain()
    assert [i for i, _ in done] == list(range(len(sizes)))
    on_thread = [i for i, name in done if name.startswith("fraud-send-ahead")]
    assert on_thread == [i for i, n in enumerate(sizes) if n >= 100]  # small batches: on the caller's thread
    assert not ahead.pending
    ahead.close()


def test_none_runs_every_job_at_once_and_errors_propagate():
    ahead = SendAhead(min_rows=None)
    names = []
    ahead.submit(lambda: names.append(threading.current_thread().name), 10**6)
    assert names == [threading.current_thread().name] and not ahead.pending
    with pytest.raises(ZeroDivisionError):
        ahead.submit(lambda: 1 / 0, 10**6)
    assert not ahead.pending  # an error at once propagates as before: the batch is read again


def test_a_background_failure_is_written_again_by_the_next_drain():
    calls, ahead = [], SendAhead(min_rows=1)

    def flaky():
        calls.append(threading.current_thread().name)
        if len(calls) == 1:
            raise TimeoutError("producer buffer full")

    ahead.submit(flaky, 10)
    ahead.drain()  # the thread's try failed: done again here, on this thread
    assert len(calls) == 2 and calls[1] == threading.current_thread().name
    assert not ahead.pending
    ahead.close()


def test_a_write_that_keeps_failing_stays_pending_and_no_checkpoint_takes_past_it():
    from streaming.checkpoint import Checkpointer
    from streaming.config import ServeConfig
    from streaming.metrics import Metrics
    from streaming.sinks import TrackedProducer

    broken = {"on": True}
    sent_ok = []

    def write():
        if broken["on"]:
            raise ConnectionError("broker gone")
        sent_ok.append(1)

    ahead = SendAhead(min_rows=1)
    ck = Checkpointer(ServeConfig(bootstrap="127.0.0.1:1"), None, Metrics(), {})
    ck.drain = ahead.drain
    producer = TrackedProducer(producer=None)
    producer._pending = ["a record sent before"]
    ck.attach(producer, [], None, None)
    ahead.submit(write, 10)
    for _ in range(2):  # every checkpoint attempt fails and takes nothing: its offsets cannot be committed
        with pytest.raises(ConnectionError):
            ck.take([], version="1")
        assert ahead.pending and producer._pending == ["a record sent before"]
    with pytest.raises(ConnectionError):
        ahead.submit(lambda: sent_ok.append("next batch"), 10)  # the next batch waits behind it
    broken["on"] = False
    job = ck.take([], version="1")  # written at last: the checkpoint goes ahead
    assert sent_ok == [1] and not ahead.pending and job.sent == ["a record sent before"]
    ahead.close()


def test_close_logs_a_write_that_still_fails(caplog):
    ahead = SendAhead(min_rows=1)

    def fail():
        raise ConnectionError("broker gone")

    ahead.submit(fail, 10)
    ahead.close()
    assert "read again on restart" in caplog.text
