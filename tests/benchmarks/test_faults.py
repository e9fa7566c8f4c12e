"""``fraud bench faults`` on a small scale: 300 good events, the full poison corpus, the four faults with short
waits (a 3 s lock). Asserts the result's structure and that the scorer met issue 13's goal."""
from __future__ import annotations

import pytest

from benchmarks.faults import FaultConfig, run_faults

pytestmark = [pytest.mark.integration, pytest.mark.slow]

KEYS = {"events_sent", "sent_by_category", "expected", "scored", "lost", "lost_alerts", "duplicated_archive",
        "duplicated_alert_store", "dead_lettered", "bad_not_dead_lettered", "bad_scored",
        "dead_letters_without_reason", "good_dead_lettered", "odd_valid_scored", "odd_valid_sent",
        "duplicates_skipped", "duplicates_sent", "crashes", "restarts", "harness_kills", "final_exit_code",
        "faults", "crash_reasons", "goal_met", "seconds"}


@pytest.fixture(scope="module")
def result(tmp_path_factory, new_mlflow_store):
    work = tmp_path_factory.mktemp("faults")
    new_mlflow_store(work)  # the run's store (work/mlflow.db), its tables made once per test process
    cfg = FaultConfig(events=300, seed=3, workdir=str(work), customers=150,
                      terminals=300, rate=150.0, sink_seconds=2.0, lock_seconds=3.0, settle_timeout=30.0,
                      final_timeout=90.0, stall_timeout=40.0, ready_timeout=60.0,
                      session_timeout_ms=2000)  # joins in ~1 s instead of ~3 s (Tansu: ~half the session)
    return run_faults(cfg)


def test_structure(result):
    assert KEYS <= set(result)
    assert result["sent_by_category"]["good"] == 300
    assert result["events_sent"] == sum(result["sent_by_category"].values())
    assert result["expected"]["dead-lettered"] >= 40
    assert [f["fault"] for f in result["faults"]] == ["archive_unwritable", "alert_store_lock", "broker_restart",
                                                     "scorer_kill_9"]
    assert result["harness_kills"] == 1 and result["restarts"] >= 1


def test_goal_met(result):
    r = result
    assert r["crashes"] == 0, r["crash_reasons"]
    assert r["lost"] == 0 and r["lost_alerts"] == 0
    assert r["duplicated_archive"] == 0 and r["duplicated_alert_store"] == 0
    assert r["bad_not_dead_lettered"] == 0, r["missing_dead_letters"]
    assert r["bad_scored"] == 0 and r["good_dead_lettered"] == 0 and r["dead_letters_without_reason"] == 0
    assert r["odd_valid_scored"] == r["odd_valid_sent"]
    assert r["duplicates_skipped"] == r["duplicates_sent"]
    assert r["scored"] == r["expected"]["scored"]
    assert r["final_exit_code"] == 0
    assert r["goal_met"]
