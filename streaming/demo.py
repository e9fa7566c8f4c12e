"""The streaming half of ``make demo``: broker -> scorer (subprocess) -> replay -> figures -> stop.

``run_demo(workdir, data, tracking_uri)`` needs:

* a model registered as ``models:/<name>@champion`` in the MLflow store ``tracking_uri`` (e.g. trained by
  ``fraud.training.train`` on the first weeks of a simulated world and registered with
  ``fraud.registry.log_and_register``);
* ``data``: canonical transactions to replay (a DataFrame or a .csv/.parquet path), e.g. the few days that
  follow the training window of the same world.

It starts a local Tansu broker on a free port, runs ``fraud serve`` in a subprocess (alert store, archive,
state and logs under ``workdir``), replays ``data`` keyed by customer at ``rate`` events/s, waits until every
event is scored, prints throughput, latency percentiles (from the scorer's Prometheus histogram) and the top
alerts, stops the scorer with SIGTERM (flush, checkpoint, commit) and the broker, and returns the figures.
"""
from __future__ import annotations

import math
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

from streaming.broker import LocalBroker, ensure_topics, free_port
from streaming.replay import replay


def _metrics(port: int) -> str:
    import httpx

    try:
        return httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2).text
    except Exception:  # noqa: BLE001 - not up yet
        return ""


def _value(text: str, name: str) -> float:
    m = re.search(rf"^{re.escape(name)} ([0-9.e+-]+)$", text, re.M)
    return float(m.group(1)) if m else 0.0


def _dead(text: str) -> float:
    return sum(float(v) for v in re.findall(r'^fraud_dead_letters_total{[^}]*} ([0-9.e+-]+)$', text, re.M))


def histogram_quantile(text: str, name: str, q: float) -> float:
    """Prometheus-style quantile (linear within the bucket) of histogram ``name`` in exposition ``text``."""
    buckets = []
    for le, v in re.findall(rf'^{re.escape(name)}_bucket{{le="([^"]+)"}} ([0-9.e+-]+)$', text, re.M):
        buckets.append((math.inf if le == "+Inf" else float(le), float(v)))
    if not buckets or buckets[-1][1] == 0:
        return float("nan")
    buckets.sort()
    total = buckets[-1][1]
    rank = q * total
    prev_le, prev_c = 0.0, 0.0
    for le, c in buckets:
        if c >= rank:
            if math.isinf(le):
                return prev_le
            return prev_le + (le - prev_le) * ((rank - prev_c) / (c - prev_c) if c > prev_c else 0.0)
        prev_le, prev_c = le, c
    return prev_le


def run_demo(workdir, data, tracking_uri: str, model_uri: str = "models:/fraud-detector@champion",
             rate: float | None = 1000.0, partitions: int = 4, top: int = 10, timeout: float = 300.0,
             echo=print) -> dict:
    from fraud.store import AlertStore

    wd = Path(workdir)
    wd.mkdir(parents=True, exist_ok=True)
    if not isinstance(data, pd.DataFrame):
        from fraud.io import read_transactions

        data = read_transactions(str(data)).valid
    data = data.sort_values("timestamp", kind="stable").reset_index(drop=True)
    n = len(data)
    alerts_db = f"sqlite:///{wd / 'alerts.db'}"
    port = free_port()
    broker = LocalBroker(log_path=str(wd / "broker.log")).start()
    scorer = None
    try:
        echo(f"broker: {broker.bootstrap} (tansu, in memory)")
        ensure_topics(broker.bootstrap, {"transactions": partitions, "scores": 1, "alerts": 1, "transactions.dlq": 1})
        cmd = [sys.executable, "-m", "fraud.cli", "serve", "--bootstrap", broker.bootstrap, "--model", model_uri,
               "--tracking-uri", tracking_uri, "--alerts-db", alerts_db, "--archive", str(wd / "archive"),
               "--state-dir", str(wd / "state"), "--metrics-port", str(port), "--session-timeout-ms", "6000",
               "--checkpoint-interval", "2"]
        env = dict(os.environ, PYTHONWARNINGS="ignore")
        log = open(wd / "serve.log", "wb")
        scorer = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
        echo(f"scorer: pid {scorer.pid}, model {model_uri}, metrics http://127.0.0.1:{port}/metrics, "
             f"log {wd / 'serve.log'}")
        deadline = time.monotonic() + 120
        while _value(_metrics(port), "fraud_assigned_partitions") < 1:  # model loaded, group joined
            if scorer.poll() is not None:
                raise RuntimeError(f"the scorer exited with code {scorer.returncode}: see {wd / 'serve.log'}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"the scorer did not start within 120 s: see {wd / 'serve.log'}")
            time.sleep(0.5)
        span = f"{data['timestamp'].min():%Y-%m-%d} .. {data['timestamp'].max():%Y-%m-%d}" if n else "-"
        echo(f"replaying {n} events ({span}) at {rate or 'max'} events/s ...")
        t0 = time.monotonic()
        rep = replay(data, broker.bootstrap, "transactions", rate=rate)
        deadline = time.monotonic() + timeout
        text = _metrics(port)
        while _value(text, "fraud_scored_total") + _dead(text) < n:
            if scorer.poll() is not None:
                raise RuntimeError(f"the scorer exited with code {scorer.returncode}: see {wd / 'serve.log'}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"only {_value(text, 'fraud_events_total'):.0f} of {n} events scored in time")
            time.sleep(0.2)
            text = _metrics(port)
        wall = time.monotonic() - t0
        res = {
            "events": n, "replay_rate": rep["rate"], "scored": int(_value(text, "fraud_scored_total")),
            "alerts": int(_value(text, "fraud_alerts_total")),
            "throughput": n / wall if wall > 0 else float("nan"),
            "p50_ms": 1000 * histogram_quantile(text, "fraud_latency_seconds", 0.50),
            "p99_ms": 1000 * histogram_quantile(text, "fraud_latency_seconds", 0.99),
        }
        echo(f"scored {res['scored']} events in {wall:.1f}s: {res['throughput']:.0f} events/s end to end "
             f"(replay offered {res['replay_rate']:.0f}/s); alerts {res['alerts']}")
        echo(f"latency produce -> score written: p50 {res['p50_ms']:.1f} ms, p99 {res['p99_ms']:.1f} ms "
             "(from the histogram buckets)")
        # stop the scorer first: SIGTERM flushes the alert store, checkpoints and commits
        scorer.send_signal(signal.SIGTERM)
        rc = scorer.wait(60)
        echo(f"scorer stopped (exit code {rc})")
        alerts = AlertStore(alerts_db).read_alerts()
        if len(alerts):
            topa = alerts.sort_values("score", ascending=False).head(top)
            echo(f"top {len(topa)} alerts:")
            for r in topa.itertuples():
                sc = "" if pd.isna(r.scenario) else f" scenario={int(r.scenario)}"
                echo(f"  {r.score:.3f} {r.tx_id} {r.timestamp:%Y-%m-%d %H:%M} customer={r.customer_id} "
                     f"terminal={r.terminal_id} amount={r.amount:.2f}{sc} reasons={'; '.join(r.reasons)}")
            if "scenario" in alerts and alerts["scenario"].notna().any():
                res["alert_precision"] = float((alerts["scenario"].fillna(0) > 0).mean())
                echo(f"alerts that are simulated frauds: {res['alert_precision']:.1%}")
        res["top_alerts"] = alerts.sort_values("score", ascending=False).head(top)["tx_id"].tolist() if len(alerts) else []
        return res
    finally:
        if scorer is not None and scorer.poll() is None:
            scorer.send_signal(signal.SIGTERM)
            try:
                scorer.wait(30)
            except subprocess.TimeoutExpired:
                scorer.kill()
        broker.stop()
        echo("broker stopped")
