"""Helpers shared by the live-scorer tests (tests/integration/test_stream*.py): a scorer's settings against the
test broker and store, topics, a scorer on a thread, waits and reads. The fixtures (broker, registered bundle)
are in this folder's conftest.py.

Group settings: a consumer's first join to Tansu takes about half the session timeout (measured: 3.0 s at
6000 ms, 1.0 s at 2000 ms) and a killed member leaves its group only when its session times out, so the tests
use 2000 ms sessions with 500 ms heartbeats (4 heartbeats per session; the product's default stays 10000 ms).
"""
from __future__ import annotations

import json
import threading
import time
import uuid
from pathlib import Path
from types import SimpleNamespace

import pandas as pd

from fraud.archive import read as read_archive
from streaming.broker import ensure_topics
from streaming.loop import Scorer, ServeConfig
from streaming.replay import encode_events, make_producer
from streaming.state import CheckpointStore

ROOT = Path(__file__).resolve().parents[2]
MODEL = "fraud-detector"
VERIFIED = "verified"  # the registered model of the verified_models fixture (conftest)
SESSION_MS = 2000
GROUP_KW = {"session_timeout_ms": SESSION_MS, "heartbeat_interval_ms": 500}


def serve_config(broker, reg, tmp, topic, **kw) -> ServeConfig:
    base = dict(bootstrap=broker.bootstrap, topic=topic, group=f"g-{topic}", model_uri=f"models:/{MODEL}@champion",
                tracking_uri=reg.uri, alerts_db=f"sqlite:///{tmp / 'alerts.db'}", archive_dir=str(tmp / "archive"),
                state_dir=str(tmp / "state"), scores_topic=f"{topic}.scores", alerts_topic=f"{topic}.alerts",
                dlq_topic=f"{topic}.dlq", batch_size=200, poll_timeout_ms=50, checkpoint_interval=0.5,
                reload_interval=0.3, partitions=4, consumer_kw=dict(GROUP_KW))
    base.update(kw)
    return ServeConfig(**base)


def new_topic(name: str, broker, partitions: int = 4) -> str:
    """A fresh input topic (and its scores, alerts and dead-letter topics): tests share one broker."""
    t = f"{name}-{uuid.uuid4().hex[:6]}"
    ensure_topics(broker.bootstrap, {t: partitions, f"{t}.scores": 1, f"{t}.alerts": 1, f"{t}.dlq": 1})
    return t


def start(cfg, **kw):
    s = Scorer(cfg, **kw)
    stop = threading.Event()
    th = threading.Thread(target=s.run, args=(stop,), daemon=True)
    th.start()
    return SimpleNamespace(scorer=s, stop=stop, thread=th)


def halt(h, timeout=30):
    h.stop.set()
    h.thread.join(timeout)
    assert not h.thread.is_alive()


def restored(state_dir, topic, partition, bundle):
    """(checkpoint, state) of a partition as a scorer restores it: a light checkpoint's state is its base plus
    the partition's archived events replayed (the archive recorded in the checkpoint)."""
    c = CheckpointStore(state_dir, topic).load(partition)
    if c.base is None:
        return c, c.state
    from streaming.partitions import restore_light

    st, _ = restore_light(c, bundle, CheckpointStore(state_dir, topic), None, topic)
    return c, st


def wait(cond, timeout=60.0, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


def read_topic(bootstrap, topic, partitions=1, timeout=15.0):
    """Every message of ``topic`` (its first ``partitions``), read until three empty polls in a row."""
    from kafka import KafkaConsumer, TopicPartition

    c = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                      auto_offset_reset="earliest")
    tps = [TopicPartition(topic, p) for p in range(partitions)]
    c.assign(tps)
    c.seek_to_beginning(*tps)
    out, idle = [], 0
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and idle < 3:
        got = c.poll(timeout_ms=300)
        n = sum(len(v) for v in got.values())
        idle = idle + 1 if n == 0 else 0
        for recs in got.values():
            out.extend(recs)
    c.close()
    return out


def archive_ids(path) -> pd.Series:
    df = read_archive(path)
    return df["tx_id"] if len(df) else pd.Series([], dtype=str)


def events(df, **changes) -> list[dict]:
    values, _ = encode_events(df)
    return [json.loads(v) | changes for v in values]


def send(bootstrap, topic, records) -> None:
    """Produce ``records`` (dicts, or bytes sent as they are) keyed by customer."""
    prod = make_producer(bootstrap)
    for r in records:
        if isinstance(r, dict):
            prod.send(topic, key=str(r.get("customer_id", "x")).encode(), value=json.dumps(r).encode())
        else:
            prod.send(topic, key=b"bad", value=r)
    prod.flush()
    prod.close()


def replayed_scores(arch, bundle):
    """Each partition's archived events scored again from the model's starting state, in offset order: what
    the scorer's scores must be if nothing but these events reached the state."""
    out = []
    for _, g in arch.groupby("kafka_partition"):
        g = g.sort_values("kafka_offset")
        rows = g.drop(columns=["score", "is_alert", "reasons", "model_version", "kafka_partition",
                               "kafka_offset"]).reset_index(drop=True)
        out.append(pd.DataFrame({"tx_id": g["tx_id"].to_numpy(),
                                 "ref": bundle.score(rows, bundle.warm_state())["score"].to_numpy()}))
    return pd.concat(out).set_index("tx_id")["ref"]
