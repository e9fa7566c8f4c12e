"""Prometheus metrics of the scorer (own registry per scorer, so several can live in one process), served with
its probes on the metrics port: ``/metrics`` (Prometheus text), ``/healthz`` (200 while the process serves HTTP)
and ``/readyz`` (200 when ``Metrics.ready()`` says so: the scorer sets it to "model loaded and consumer
connected"; 503 with the reason otherwise)."""
from __future__ import annotations

import json
import logging
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import choose_encoder
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily

# finer around tens of ms, where a latency objective sits (a quantile is interpolated inside its bucket)
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.015, 0.02, 0.025, 0.03, 0.04, 0.05, 0.06, 0.075, 0.1, 0.25, 0.5,
                   1.0, 2.5, 5.0, 10.0)


class BulkHistogram:
    """A Prometheus histogram that takes a micro-batch of observations in one call (``observe_many``: one
    numpy bucket search; prometheus_client's ``Histogram.observe`` per event cost ~2 us each, ~4% of the
    scorer's time at full rate). Exposed through the custom-collector API with the same text as a
    ``Histogram`` (``_bucket{le=...}``, ``_count``, ``_sum``)."""

    def __init__(self, name: str, documentation: str, buckets=LATENCY_BUCKETS, registry=None):
        self.name, self.documentation = name, documentation
        self.bounds = np.asarray(sorted(float(b) for b in buckets), dtype=np.float64)
        self._counts = np.zeros(len(self.bounds) + 1, dtype=np.int64)  # the last one: above every bound
        self._sum = 0.0
        self._lock = threading.Lock()
        if registry is not None:
            registry.register(self)

    def observe(self, value: float) -> None:
        self.observe_many(np.asarray([value], dtype=np.float64))

    def observe_many(self, values) -> None:
        v = np.asarray(values, dtype=np.float64)
        if not len(v):
            return
        idx = np.searchsorted(self.bounds, v, side="left")  # first bound >= value (le semantics)
        add = np.bincount(idx, minlength=len(self._counts))
        with self._lock:
            self._counts += add
            self._sum += float(v.sum())

    def snapshot(self) -> tuple[np.ndarray, float]:
        with self._lock:
            return self._counts.copy(), self._sum

    def collect(self):
        counts, total = self.snapshot()
        cum = np.cumsum(counts)
        buckets = [(repr(float(b)), int(c)) for b, c in zip(self.bounds, cum[:-1])] + [("+Inf", int(cum[-1]))]
        yield HistogramMetricFamily(self.name, self.documentation, buckets=buckets, sum_value=total)

    def describe(self):
        return [HistogramMetricFamily(self.name, self.documentation)]


class DriftGauges:
    """The drift of the scored traffic against the model's training window (``fraud.drift``), exposed as gauges:
    ``fraud_feature_psi{feature=...}``, ``fraud_score_psi`` and ``fraud_drift_window_events`` (events in the
    window). The scorer's :class:`fraud.drift.DriftWindow` counts bins per micro-batch; the PSIs are computed at
    most every ``interval`` seconds, on a scrape. Nothing is exposed while the model has no drift profile."""

    def __init__(self, registry=None, interval: float = 10.0):
        self.window = None
        self.interval = float(interval)
        self._cache: tuple[float, dict] | None = None
        self._lock = threading.Lock()
        if registry is not None:
            registry.register(self)

    def watch(self, bundle, days: int = 7) -> None:
        """Count ``bundle``'s scored batches (its ``observer``) against its profile, from an empty window."""
        from fraud.drift import DriftWindow

        profile = getattr(bundle, "drift_profile", None)
        with self._lock:
            self.window = DriftWindow(profile, getattr(bundle, "feature_names", None), days) if profile else None
            self._cache = None
        if self.window is not None or getattr(bundle, "observer", None) is not None:
            bundle.observer = self.window.update if self.window is not None else None

    def values(self) -> dict | None:
        with self._lock:
            w, cache = self.window, self._cache
            if w is None:
                return None
            now = time.monotonic()
            if cache is None or now - cache[0] >= self.interval:
                self._cache = cache = (now, w.psi())
            return cache[1]

    def collect(self):
        v = self.values()
        if v is None:
            return
        g = GaugeMetricFamily("fraud_feature_psi", "PSI of a feature over the drift window vs the training window",
                              labels=["feature"])
        for name, x in v["features"].items():
            g.add_metric([name], x)
        yield g
        yield GaugeMetricFamily("fraud_score_psi", "PSI of the score over the drift window vs the training window",
                                value=v["score"])
        yield GaugeMetricFamily("fraud_drift_window_events", "Scored events in the drift window", value=v["n"])

    def describe(self):
        return []


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
        self.lag = Gauge("fraud_consumer_lag", "Consumer lag (high watermark - position; negative when the log "
                         "ended below the position: it shrank)", ["partition"],
                         registry=r)
        self.latency = BulkHistogram("fraud_latency_seconds", "Produce-to-score-written latency", registry=r,
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
        self.checkpoint_failures = Counter("fraud_checkpoint_failures", "Checkpoints that failed (their writes are "
                                           "retried by the next one; offsets not committed)", registry=r)
        self.sink_failures = Counter("fraud_sink_failures", "Writes of a scored batch to a sink that failed (the "
                                     "batch waits, nothing is polled or committed, until every sink has it)",
                                     registry=r)
        self.replays = Counter("fraud_replayed_events", "Events skipped: their tx_id was already scored with the "
                               "same content", registry=r)
        self.offset_resets = Counter("fraud_offset_resets", "Partitions whose log no longer held the position this "
                                     "scorer had reached (log replaced or truncated); read again from its start",
                                     ["partition"], registry=r)
        self.late_events = Counter("fraud_late_events", "Events dated over late_event_hours before the newest event "
                                   "their partition's state had seen (scored; they alert far too often)", registry=r)
        self.labels = Counter("fraud_labels", "Label events read (streaming.feedback): result=applied (handed to the "
                              "partition's state) or rejected (dead-lettered)", ["result"], registry=r)
        self.rejoins = Counter("fraud_consumer_rejoins", "Group joins kafka-python finished but never applied, "
                               "asked again (streaming.rejoin)", registry=r)
        self.drift = DriftGauges(registry=r)
        self._rate_t = time.monotonic()
        self._rate_n = 0
        self._server = None
        # () -> (ready, reason); the scorer replaces it (model loaded, consumer connected)
        self.ready: Callable[[], tuple[bool, str]] = lambda: (True, "")

    def set_version(self, version) -> None:
        self.model_version.clear()
        self.model_version.labels(version=str(version)).set(1)

    def set_model(self, bundle, version) -> None:
        """A model is installed: its version gauge, and its drift counted from an empty window."""
        self.set_version(version)
        self.drift.watch(bundle)

    def consumed(self, n: int) -> None:
        """``n`` events consumed: the counter, and the rate gauge once a second."""
        self.events.inc(n)
        self._rate_n += n
        now = time.monotonic()
        if now - self._rate_t >= 1.0:
            self.events_per_s.set(self._rate_n / (now - self._rate_t))
            self._rate_t, self._rate_n = now, 0

    def serve(self, port: int, addr: str = "127.0.0.1"):
        """Serve /metrics, /healthz and /readyz on ``addr:port`` from a daemon thread; returns (server, thread)."""
        server = ThreadingHTTPServer((addr, port), _handler(self))
        server.daemon_threads = True
        thread = threading.Thread(target=server.serve_forever, name="metrics-http", daemon=True)
        thread.start()
        self._server = (server, thread)
        logging.getLogger("streaming.metrics").info("metrics on http://%s:%d/metrics", addr, port)
        return self._server

    def scored_batch(self, n: int, n_alerts: int) -> None:
        """Count a scored micro-batch and its alerts."""
        self.scored.inc(n)
        self.alerts.inc(n_alerts)

    def close(self) -> None:
        if self._server is not None:
            server, _thread = self._server
            server.shutdown()
            server.server_close()
            self._server = None


def _handler(metrics: Metrics):
    """The request handler of :meth:`Metrics.serve` bound to ``metrics``."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - http.server's name
            path = self.path.split("?", 1)[0]
            if path in ("/metrics", "/"):
                encoder, ctype = choose_encoder(self.headers.get("Accept", ""))
                self._send(200, encoder(metrics.registry), ctype)
            elif path == "/healthz":
                self._send(200, b'{"status": "ok"}\n', "application/json")
            elif path == "/readyz":
                try:
                    ok, reason = metrics.ready()
                except Exception as e:  # noqa: BLE001 - a probe answers, whatever the check raised
                    ok, reason = False, f"readiness check failed: {e.__class__.__name__}: {e}"
                body = json.dumps({"status": "ready" if ok else "not ready", "reason": reason}) + "\n"
                self._send(200 if ok else 503, body.encode(), "application/json")
            else:
                self._send(404, b"not found: try /metrics, /healthz or /readyz\n", "text/plain")

        def _send(self, code: int, body: bytes, ctype: str) -> None:
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):  # scrapes every few seconds: no access log
            pass

    return Handler
