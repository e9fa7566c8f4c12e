"""``python -m benchmarks.broker_growth``: a bare consumer's poll time and the local broker's CPU per bucket."""
import pytest

from benchmarks.broker_growth import measure

pytestmark = pytest.mark.integration  # a real local broker


def test_buckets_cover_the_run_and_measure_polls_and_broker_cpu():
    rows = measure(seconds=3.0, rate=500.0, bucket=1.0, work_ms=5.0)
    assert 2 <= len(rows) <= 4 and [r["from_s"] for r in rows] == sorted(r["from_s"] for r in rows)
    assert all(r["poll_ms"] > 0 and r["events_per_poll"] >= 1 and 0 < r["broker_core_share"] < 2 for r in rows)
