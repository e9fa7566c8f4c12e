"""The scorer's bulk latency histogram exposes what prometheus_client's Histogram would."""
from __future__ import annotations

import numpy as np
import pytest
from prometheus_client import CollectorRegistry, Histogram, generate_latest

from streaming.metrics import LATENCY_BUCKETS, BulkHistogram, Metrics


def _lines(registry):
    return [line for line in generate_latest(registry).decode().splitlines() if "_created" not in line]


def test_bulk_histogram_text_equals_prometheus_histogram():
    r1, r2 = CollectorRegistry(), CollectorRegistry()
    ref = Histogram("fraud_latency_seconds", "latency", registry=r1, buckets=LATENCY_BUCKETS)
    bulk = BulkHistogram("fraud_latency_seconds", "latency", registry=r2, buckets=LATENCY_BUCKETS)
    # values on every bound too (le: a value equal to a bound is in that bucket), zero, and above the last bound
    v = np.r_[np.random.default_rng(0).exponential(0.02, 3000), LATENCY_BUCKETS, 0.0, 20.0]
    for x in v:
        ref.observe(x)
    bulk.observe_many(v[:100])
    bulk.observe_many(v[100:])
    bulk.observe_many([])
    a, b = _lines(r1), _lines(r2)
    assert [x for x in a if "_sum" not in x] == [x for x in b if "_sum" not in x]
    total = lambda lines: float(next(x for x in lines if x.startswith("fraud_latency_seconds_sum")).split()[1])  # noqa: E731
    assert total(b) == pytest.approx(total(a), rel=1e-12)
    bulk.observe(0.5)
    counts, s = bulk.snapshot()
    assert counts.sum() == len(v) + 1 and s == pytest.approx(v.sum() + 0.5)


def test_scorer_metrics_expose_the_latency_histogram():
    m = Metrics()
    m.latency.observe_many([0.004, 0.03])
    text = generate_latest(m.registry).decode()
    assert 'fraud_latency_seconds_bucket{le="0.005"} 1.0' in text
    assert "fraud_latency_seconds_count 2.0" in text


def test_metrics_bind_the_loopback_address_unless_told_otherwise():
    from streaming.broker import free_port
    from streaming.config import ServeConfig
    from streaming.metrics import Metrics

    assert ServeConfig(bootstrap="127.0.0.1:1").metrics_host == "127.0.0.1"
    m = Metrics()
    server, _ = m.serve(free_port())
    try:
        assert server.server_address[0] == "127.0.0.1"
    finally:
        m.close()
