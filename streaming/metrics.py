"""Prometheus metrics of the scorer (own registry per scorer, so several can live in one process)."""
from __future__ import annotations

import time

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Metrics:
    def __init__(self):
        r = self.registry = CollectorRegistry()
        self.events = Counter("fraud_events", "Events consumed (valid and invalid)", registry=r)
        self.scored = Counter("fraud_scored", "Events scored", registry=r)
        self.alerts = Counter("fraud_alerts", "Alerts raised", registry=r)
        self.dead_letters = Counter("fraud_dead_letters", "Events sent to the dead-letter topic", ["kind"],
                                    registry=r)
        self.events_per_s = Gauge("fraud_events_per_second", "Events consumed per second (last interval)",
                                  registry=r)
        self.lag = Gauge("fraud_consumer_lag", "Consumer lag (high watermark - position)", ["partition"],
                         registry=r)
        self.latency = Histogram("fraud_latency_seconds", "Produce-to-score-written latency", registry=r,
                                 buckets=LATENCY_BUCKETS)
        self.batch_seconds = Histogram("fraud_batch_seconds", "Processing time per micro-batch", registry=r,
                                       buckets=LATENCY_BUCKETS)
        self.model_version = Gauge("fraud_model_version", "Loaded model version (value 1 on the current one)",
                                   ["version"], registry=r)
        self.assigned = Gauge("fraud_assigned_partitions", "Partitions of the input topic assigned to this scorer",
                              registry=r)
        self.reloads = Counter("fraud_model_reloads", "Model swaps", registry=r)
        self.reload_failures = Counter("fraud_model_reload_failures", "Failed model loads (current kept)",
                                       registry=r)
        self.checkpoints = Counter("fraud_checkpoints", "Checkpoints written (all partitions)", registry=r)
        self._rate_t = time.monotonic()
        self._rate_n = 0
        self._server = None

    def set_version(self, version) -> None:
        self.model_version.clear()
        self.model_version.labels(version=str(version)).set(1)

    def tick_rate(self, n: int) -> None:
        self._rate_n += n
        now = time.monotonic()
        if now - self._rate_t >= 1.0:
            self.events_per_s.set(self._rate_n / (now - self._rate_t))
            self._rate_t, self._rate_n = now, 0

    def serve(self, port: int, addr: str = "0.0.0.0"):
        self._server = start_http_server(port, addr=addr, registry=self.registry)
        return self._server

    def close(self) -> None:
        if self._server is not None:
            server, _thread = self._server
            server.shutdown()
            self._server = None
