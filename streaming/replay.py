"""Replay a transaction file into a Kafka topic: time order, keyed by customer_id, JSON values.

Event format (one JSON object per message; the same fields as the canonical frame)::

    {"tx_id": "...", "timestamp": "2018-04-01T00:03:12.000000Z", "customer_id": "...",
     "terminal_id": "...", "amount": 57.16, "label": 0, "scenario": 0, ...other attributes}

``label`` / ``scenario`` are sent when present (simulations: ground truth for the demo; the bundle only
uses a label once its transaction is older than the feedback delay) unless ``labels=False``.
Pacing: ``rate`` events per second, or ``speedup`` x real time by event timestamps, or as fast as possible.
"""
from __future__ import annotations

import logging
import time
from typing import Callable

import numpy as np
import pandas as pd

from fraud.errors import ConfigError
from streaming.broker import parse_bootstrap

log = logging.getLogger("streaming.replay")


def encode_events(df: pd.DataFrame, labels: bool = True) -> tuple[list[bytes], list[bytes]]:
    """(values, keys) as UTF-8 JSON bytes, in row order."""
    cols = [c for c in df.columns if labels or c not in ("label", "scenario")]
    out = df[cols].copy()
    if "timestamp" in out and pd.api.types.is_datetime64_any_dtype(out["timestamp"].dtype):
        out["timestamp"] = out["timestamp"].dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    text = out.to_json(orient="records", lines=True, date_format="iso", double_precision=15)
    values = [line.encode() for line in text.splitlines() if line]
    keys = [str(k).encode() for k in df["customer_id"].to_numpy()]
    return values, keys


def make_producer(bootstrap: str, client_kw: dict | None = None, **kw):
    from kafka import KafkaProducer

    pkw = dict(linger_ms=5, acks=1, batch_size=64 * 1024, client_id="fraud-replay")
    pkw.update(kw)
    return KafkaProducer(bootstrap_servers=parse_bootstrap(bootstrap), **(client_kw or {}), **pkw)


def replay(df: pd.DataFrame, bootstrap: str, topic: str = "transactions", rate: float | None = None,
           speedup: float | None = None, labels: bool = True, client_kw: dict | None = None, producer=None,
           progress: Callable[[int, int], None] | None = None, stop=None) -> dict:
    """Produce ``df`` (canonical) to ``topic`` in time order. Returns {"sent", "seconds", "rate"}."""
    if rate is not None and speedup is not None:
        raise ConfigError("--rate and --speedup are exclusive: give one of them")
    if rate is not None and not rate > 0:
        raise ConfigError(f"--rate {rate!r}: must be > 0 events per second")
    if speedup is not None and not speedup > 0:
        raise ConfigError(f"--speedup {speedup!r}: must be > 0")
    df = df.sort_values("timestamp", kind="stable").reset_index(drop=True)
    values, keys = encode_events(df, labels=labels)
    own = producer is None
    prod = make_producer(bootstrap, client_kw) if own else producer
    n = len(values)
    ts = df["timestamp"].astype("int64").to_numpy() / 1e9 if n else np.empty(0)
    t0 = time.monotonic()
    send = prod.send
    step = 1 if (rate or speedup) else 1000
    try:
        for i in range(n):
            if rate is not None:
                due = t0 + i / rate
            elif speedup is not None:
                due = t0 + (ts[i] - ts[0]) / speedup
            else:
                due = None
            if due is not None:
                d = due - time.monotonic()
                if d > 0:
                    time.sleep(d)
            send(topic, key=keys[i], value=values[i])
            if progress is not None and (i % step == 0 or i == n - 1):
                progress(i + 1, n)
            if stop is not None and i % 1000 == 0 and stop.is_set():
                n = i + 1
                break
        prod.flush()
    finally:
        if own:
            prod.close(timeout=10)
    dt = time.monotonic() - t0
    log.info("replay done topic=%s sent=%d seconds=%.2f rate=%.0f/s", topic, n, dt, n / dt if dt else 0.0)
    return {"sent": n, "seconds": dt, "rate": n / dt if dt > 0 else float("inf")}
