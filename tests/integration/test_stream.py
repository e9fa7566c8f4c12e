"""The live scorer against a real broker (Tansu, started here on a free port) and a real trained bundle
registered in a temporary MLflow store: end to end, dead letters, crash and restart (kill -9), rebalance
between two scorers, hot reload, and the start-up faults."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
import warnings
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from fraud.errors import BrokerError, RegistryError
from streaming.broker import LocalBroker, ensure_topics, free_port, wait_for_broker
from streaming.loop import Scorer, ServeConfig
from streaming.replay import encode_events, make_producer, replay
from fraud.archive import read as read_archive
from streaming.state import CheckpointStore

pytestmark = [pytest.mark.integration, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[2]
MODEL = "fraud-detector"


# -- fixtures ------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def broker():
    with LocalBroker() as b:
        wait_for_broker(b.bootstrap, timeout=30)
        yield b


@pytest.fixture(scope="module")
def world():
    from fraud.simulate import simulate

    return simulate(customers=150, terminals=300, days=24, seed=5)


@pytest.fixture(scope="module")
def reg(tmp_path_factory, world):
    """A bundle trained on the first 14 days, registered as version 1 (champion) in a temporary store."""
    from fraud import registry
    from fraud.training import TrainConfig, train

    d = tmp_path_factory.mktemp("mlflow")
    uri = f"sqlite:///{d / 'mlflow.db'}"
    registry.configure(uri)
    registry.quiet_mlflow()
    hist = world[world["timestamp"] < world["timestamp"].min() + pd.Timedelta(days=14)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = train(hist, TrainConfig(featurizers=("tabular",), unsupervised=("ecod",), supervised=None,
                                      alert_budget_per_day=15, warmup_days=3, eval_days=3))
        version = registry.log_and_register(res.bundle, name=MODEL, artifact_root=str(d / "artifacts"))
    live = world[world["timestamp"] >= world["timestamp"].min() + pd.Timedelta(days=14)].reset_index(drop=True)
    return SimpleNamespace(uri=uri, version=version, bundle=res.bundle, live=live, root=d)


def _cfg(broker, reg, tmp, topic, **kw) -> ServeConfig:
    base = dict(bootstrap=broker.bootstrap, topic=topic, group=f"g-{topic}", model_uri=f"models:/{MODEL}@champion",
                tracking_uri=reg.uri, alerts_db=f"sqlite:///{tmp / 'alerts.db'}", archive_dir=str(tmp / "archive"),
                state_dir=str(tmp / "state"), scores_topic=f"{topic}.scores", alerts_topic=f"{topic}.alerts",
                dlq_topic=f"{topic}.dlq", batch_size=200, poll_timeout_ms=50, checkpoint_interval=0.5,
                reload_interval=0.3, partitions=4,
                consumer_kw={"session_timeout_ms": 6000, "heartbeat_interval_ms": 500})
    base.update(kw)
    return ServeConfig(**base)


def _topic(name: str, broker, partitions: int = 4) -> str:
    t = f"{name}-{uuid.uuid4().hex[:6]}"
    ensure_topics(broker.bootstrap, {t: partitions, f"{t}.scores": 1, f"{t}.alerts": 1, f"{t}.dlq": 1})
    return t


def _start(cfg, **kw):
    s = Scorer(cfg, **kw)
    stop = threading.Event()
    th = threading.Thread(target=s.run, args=(stop,), daemon=True)
    th.start()
    return SimpleNamespace(scorer=s, stop=stop, thread=th)


def _halt(h, timeout=30):
    h.stop.set()
    h.thread.join(timeout)
    assert not h.thread.is_alive()


def _restored(state_dir, topic, partition, bundle):
    """(checkpoint, state) of a partition as a scorer restores it: a light checkpoint's state is its base plus
    the partition's archived events replayed (the archive recorded in the checkpoint)."""
    c = CheckpointStore(state_dir, topic).load(partition)
    if c.base is None:
        return c, c.state
    from streaming.partitions import restore_light

    st, _ = restore_light(c, bundle, CheckpointStore(state_dir, topic), None, topic)
    return c, st


def _wait(cond, timeout=60.0, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


def _read_topic(bootstrap, topic, partitions=1, timeout=15.0):
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


def _archive_ids(path) -> pd.Series:
    df = read_archive(path)
    return df["tx_id"] if len(df) else pd.Series([], dtype=str)


# -- tests ---------------------------------------------------------------------------------------------
def test_end_to_end_and_dead_letters(broker, reg, tmp_path):
    topic = _topic("e2e", broker)
    good = reg.live.iloc[:600]
    values, keys = encode_events(good)
    ok = json.loads(values[0])
    bad = {
        "malformed_json": b'{"tx_id": "bad-1", "amount": ',
        "not_an_object": b"[1, 2, 3]",
        "missing": json.dumps({k: v for k, v in ok.items() if k != "amount"} | {"tx_id": "bad-3"}).encode(),
        "wrong_type": json.dumps(ok | {"tx_id": "bad-4", "amount": "twelve"}).encode(),
        "negative": json.dumps(ok | {"tx_id": "bad-5", "amount": -5.0}).encode(),
        "non_finite": b'{"tx_id": "bad-6", "timestamp": "2024-01-01T00:00:00Z", "customer_id": "c", '
                      b'"terminal_id": "t", "amount": Infinity}',
        "bad_time": json.dumps(ok | {"tx_id": "bad-7", "timestamp": "not-a-date"}).encode(),
        "oversized": json.dumps(ok | {"tx_id": "bad-8", "pad": "x" * 20000}).encode(),
    }
    prod = make_producer(broker.bootstrap)
    bad_iter = iter(bad.values())
    for i, (v, k) in enumerate(zip(values, keys)):
        prod.send(topic, key=k, value=v)
        if i % 70 == 35:
            b = next(bad_iter, None)
            if b is not None:
                prod.send(topic, key=b"bad", value=b)
    for b in bad_iter:
        prod.send(topic, key=b"bad", value=b)
    prod.flush()
    prod.close()
    total = len(values) + len(bad)

    port = free_port()
    # snapshot_events=60: light checkpoints, with new bases (serialised states) taken along the way
    h = _start(_cfg(broker, reg, tmp_path, topic, max_message_bytes=10_000, metrics_port=port, snapshot_events=60))
    s = h.scorer
    _wait(lambda: s.n_events >= total, 60, "all events consumed")
    import gc

    assert gc.get_freeze_count() > 0  # the running scorer froze its start-up heap (ServeConfig.gc_freeze)
    import httpx

    metrics = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    kept, revoke = {}, s._on_revoked
    s._on_revoked = lambda revoked: (kept.update({p: x.state for p, x in s.parts.items()}), revoke(revoked))
    _halt(h)
    assert gc.get_freeze_count() == 0  # and close() gave it back to the collector

    # every good event scored exactly once, in every sink
    assert s.n_scored == len(good)
    arch = read_archive(tmp_path / "archive")
    assert len(arch) == len(good) and arch["tx_id"].is_unique and set(arch["tx_id"]) == set(good["tx_id"])
    assert {"score", "is_alert", "reasons", "model_version", "kafka_partition", "kafka_offset"} <= set(arch.columns)
    assert (arch["model_version"] == reg.version).all()
    from fraud.store import AlertStore

    alerts = AlertStore(f"sqlite:///{tmp_path / 'alerts.db'}").read_alerts()
    assert set(alerts["tx_id"]) == set(arch.loc[arch["is_alert"], "tx_id"])
    scores = _read_topic(broker.bootstrap, f"{topic}.scores")
    assert {json.loads(m.value)["tx_id"] for m in scores} == set(good["tx_id"])
    alert_msgs = _read_topic(broker.bootstrap, f"{topic}.alerts")
    assert len(alert_msgs) == int(arch["is_alert"].sum())
    assert all(m.key.decode() == json.loads(m.value)["customer_id"] for m in alert_msgs)
    # light checkpoints: a restored state (base file + archived events replayed) scores as the live one did
    nxt = reg.live.iloc[600:700].reset_index(drop=True)
    kinds = set()
    for p, g in arch.groupby("kafka_partition"):
        c, st = _restored(tmp_path / "state", topic, int(p), reg.bundle)
        assert c.base is not None and c.state is None and c.offset == g["kafka_offset"].max() + 1
        kinds.add(c.base["kind"])
        live = kept[int(p)]
        assert st.n_scored == live.n_scored == c.n_scored == len(g)
        np.testing.assert_allclose(reg.bundle.score(nxt, st)["score"], reg.bundle.score(nxt, live)["score"],
                                   rtol=1e-6, atol=1e-9)
    assert "file" in kinds
    bases = sorted(p.name for p in (tmp_path / "state").glob("*.base-o*.ckpt"))
    assert len(bases) == len({b.split(".base-")[0] for b in bases})  # one base file per partition (old ones pruned)

    # one scoring path: per partition, the stream's scores equal one bundle.score call over that partition
    for p, g in arch.groupby("kafka_partition"):
        g = g.sort_values("kafka_offset")
        rows = good.set_index("tx_id").loc[g["tx_id"]].reset_index()[good.columns]
        ref = reg.bundle.score(rows, reg.bundle.warm_state())  # a partition without checkpoint starts warm
        np.testing.assert_allclose(g["score"].to_numpy(), ref["score"].to_numpy(), rtol=1e-9, atol=1e-12)

    # dead letters: each kind, original bytes, error and source in headers; counted
    # (the JSON literal Infinity is not JSON: malformed)
    assert dict(s.dlq.counts) == {"malformed_json": 2, "not_an_object": 1, "oversized": 1, "invalid": 4}
    dl = _read_topic(broker.bootstrap, f"{topic}.dlq")
    assert len(dl) == len(bad)
    by_value = {}
    for m in dl:
        h_ = {k: v.decode() for k, v in m.headers}
        assert h_["source.topic"] == topic and int(h_["source.offset"]) >= 0 and h_["error"]
        by_value[m.value if "truncated" not in h_ else bad["oversized"]] = h_
    assert set(by_value) == set(bad.values())
    assert by_value[bad["oversized"]]["error.kind"] == "oversized"
    assert int(by_value[bad["oversized"]]["original.size"]) == len(bad["oversized"])
    assert "negative amount" in by_value[bad["negative"]]["error"]
    assert "not finite" in by_value[bad["non_finite"]]["error"]
    assert "must be a JSON number" in by_value[bad["wrong_type"]]["error"]
    assert "'amount'" in by_value[bad["missing"]]["error"]
    assert "timestamp" in by_value[bad["bad_time"]]["error"]
    assert by_value[bad["malformed_json"]]["error.kind"] == "malformed_json"
    # metrics on the HTTP port
    assert f'fraud_model_version{{version="{reg.version}"}} 1.0' in metrics
    assert 'fraud_dead_letters_total{kind="invalid"} 4.0' in metrics
    assert f"fraud_scored_total {float(len(good))}" in metrics
    assert "fraud_latency_seconds_count" in metrics


def test_crash_restart_loses_nothing_and_duplicates_nothing(broker, reg, tmp_path):
    topic = _topic("crash", broker)
    data = reg.live.iloc[:1500]
    env = dict(os.environ, MLFLOW_TRACKING_URI=reg.uri, PYTHONWARNINGS="ignore")
    cmd = [sys.executable, "-m", "fraud.cli", "serve", "--bootstrap", broker.bootstrap, "--topic", topic,
           "--group", f"g-{topic}", "--tracking-uri", reg.uri, "--alerts-db", f"sqlite:///{tmp_path / 'alerts.db'}",
           "--archive", str(tmp_path / "archive"), "--state-dir", str(tmp_path / "state"),
           "--scores-topic", f"{topic}.scores", "--alerts-topic", f"{topic}.alerts", "--dlq-topic", f"{topic}.dlq",
           "--checkpoint-interval", "0.3", "--batch-size", "40", "--session-timeout-ms", "6000"]
    log1 = open(tmp_path / "serve1.log", "wb")
    p1 = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log1, stderr=subprocess.STDOUT)
    _wait(lambda: b"partition assigned" in (tmp_path / "serve1.log").read_bytes() or p1.poll() is not None, 90,
          "the first scorer to join the group")
    assert p1.poll() is None, (tmp_path / "serve1.log").read_text()[-3000:]
    stop = threading.Event()
    th = threading.Thread(target=replay, args=(data, broker.bootstrap, topic), kwargs={"rate": 250, "stop": stop},
                          daemon=True)
    th.start()
    try:
        _wait(lambda: len(_archive_ids(tmp_path / "archive")) >= 400, 90, "the first scorer to archive events")
        time.sleep(0.2)  # between two checkpoints (every 0.3 s): batches scored and sunk but not checkpointed
    finally:
        p1.send_signal(signal.SIGKILL)  # kill -9 mid-stream: no flush, no checkpoint, no commit
        p1.wait(10)
    done_before = len(_archive_ids(tmp_path / "archive"))
    assert done_before < len(data), "the kill was not mid-stream"
    from fraud.store import AlertStore

    store = AlertStore(f"sqlite:///{tmp_path / 'alerts.db'}")
    ck_at_kill = CheckpointStore(tmp_path / "state", topic).offsets()
    alerts_at_kill = set(store.read_alerts()["tx_id"]) if store.count_alerts() else set()
    log2 = open(tmp_path / "serve2.log", "wb")
    p2 = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log2, stderr=subprocess.STDOUT)
    try:
        th.join(60)
        _wait(lambda: len(_archive_ids(tmp_path / "archive")) >= len(data), 90, "the restarted scorer to catch up")
        time.sleep(1.0)  # anything re-scored twice would show up now
    finally:
        p2.send_signal(signal.SIGTERM)
        rc = p2.wait(30)
    assert rc == 0, (tmp_path / "serve2.log").read_text()[-3000:]
    arch = read_archive(tmp_path / "archive")
    alerts = store.read_alerts()
    log_text = (tmp_path / "serve2.log").read_text()
    # events the first scorer had consumed (and whose alerts it had written) after its last checkpoint: the
    # restarted scorer consumed and scored them again; the idempotent sinks kept one copy
    pos = arch.set_index("tx_id")[["kafka_partition", "kafka_offset"]]
    redone = [t for t in alerts_at_kill
              if pos.loc[t, "kafka_offset"] >= ck_at_kill.get(int(pos.loc[t, "kafka_partition"]), 0)]
    m = __import__("re").search(r"scorer stopped events=(\d+)", log_text)
    scored_msgs = [json.loads(x.value)["tx_id"] for x in _read_topic(broker.bootstrap, f"{topic}.scores")]
    print(f"\ncrash-restart proof: {len(data)} events produced; kill -9 after {done_before} archived; checkpoints at "
          f"kill {dict(sorted(ck_at_kill.items()))} (= {sum(ck_at_kill.values())} events); restarted scorer consumed "
          f"{m.group(1) if m else '?'}; alerts in the store at kill {len(alerts_at_kill)}, of which {len(redone)} "
          f"past the checkpoint (re-scored after restart, not duplicated); final archive rows {len(arch)} "
          f"(unique {arch['tx_id'].nunique()}, missing {len(set(data['tx_id']) - set(arch['tx_id']))}); "
          f"alert store rows {len(alerts)} (unique {alerts['tx_id'].nunique()}); scores topic messages "
          f"{len(scored_msgs)} (unique {len(set(scored_msgs))}: at-least-once, consumers dedupe by tx_id)")
    assert m and int(m.group(1)) + sum(ck_at_kill.values()) == len(data)
    assert set(arch["tx_id"]) == set(data["tx_id"])  # 0 missing
    assert len(arch) == len(data)  # 0 duplicated in the archive
    assert alerts["tx_id"].is_unique and set(alerts["tx_id"]) == set(arch.loc[arch["is_alert"], "tx_id"])
    assert "state=restored" in log_text
    # the final checkpoints cover every event, and each partition's state saw each of its events once
    for p, g in arch.groupby("kafka_partition"):
        c, st = _restored(tmp_path / "state", topic, int(p), reg.bundle)
        assert c.offset == g["kafka_offset"].max() + 1
        assert st.n_scored == len(g)


def test_rebalance_between_two_scorers(broker, reg, tmp_path):
    topic = _topic("rebal", broker)
    data = reg.live.iloc[:1000]
    cfg = _cfg(broker, reg, tmp_path, topic)
    a = _start(cfg)
    replay(data.iloc[:500], broker.bootstrap, topic)
    _wait(lambda: a.scorer.n_events >= 500, 60, "scorer A to consume the first half")
    b = _start(cfg)
    _wait(lambda: len(b.scorer.parts) > 0 and len(a.scorer.parts) > 0
          and len(a.scorer.parts) + len(b.scorer.parts) == 4, 60, "the partitions to be split")
    parts_a, parts_b = set(a.scorer.parts), set(b.scorer.parts)
    assert parts_a.isdisjoint(parts_b)
    replay(data.iloc[500:], broker.bootstrap, topic)
    _wait(lambda: a.scorer.n_scored + b.scorer.n_scored >= len(data), 60, "both scorers to finish")
    _halt(b)
    _halt(a)
    arch = read_archive(tmp_path / "archive")
    assert len(arch) == len(data) and set(arch["tx_id"]) == set(data["tx_id"])
    assert b.scorer.n_scored > 0 and a.scorer.n_scored > 500
    # state followed each partition: its final checkpoint has seen every event of the partition, including
    # those scored by the other scorer before the handover
    for p, g in arch.groupby("kafka_partition"):
        c, st = _restored(tmp_path / "state", topic, int(p), reg.bundle)
        assert st.n_scored == len(g)
    moved = [p for p in parts_b if (arch["kafka_partition"] == p).any()]
    assert moved, "no partition changed hands"


def test_hot_reload_swaps_between_batches(broker, reg, tmp_path):
    from fraud import registry

    topic = _topic("reload", broker)
    data = reg.live.iloc[:600]
    h = _start(_cfg(broker, reg, tmp_path, topic, reload_interval=0.2))
    s = h.scorer
    replay(data.iloc[:300], broker.bootstrap, topic)
    _wait(lambda: s.n_scored >= 300, 60, "the first half")
    # a version that cannot be loaded: the current model is kept, the failure counted
    real = s.resolver
    s.resolver = lambda name, alias, uri: "999"
    _wait(lambda: s.metrics.reload_failures._value.get() >= 1, 20, "a failed reload")
    assert s.version == reg.version
    s.resolver = real
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        registry.configure(reg.uri)
        v2 = registry.log_and_register(reg.bundle, name=MODEL, artifact_root=str(reg.root / "artifacts"),
                                       champion_if_first=False)
        registry.set_alias(MODEL, "champion", v2)
    _wait(lambda: s.version == v2, 60, "the swap to the new champion")
    replay(data.iloc[300:], broker.bootstrap, topic)
    _wait(lambda: s.n_scored >= 600, 60, "the second half")
    _halt(h)
    arch = read_archive(tmp_path / "archive").set_index("tx_id")
    assert len(arch) == 600 and arch.index.is_unique
    assert (arch.loc[data["tx_id"].iloc[:300], "model_version"] == reg.version).all()
    assert (arch.loc[data["tx_id"].iloc[300:], "model_version"] == v2).all()
    assert s.metrics.reloads._value.get() == 1
    # the new version's states were rebuilt from the archive: each final checkpoint has absorbed every event
    # of its partition (first half by warm-up, second half by scoring)
    for p, g in arch.reset_index().groupby("kafka_partition"):
        c, st = _restored(tmp_path / "state", topic, int(p), reg.bundle)
        assert c.model_version == v2 and st.n_scored == len(g)


def test_registry_unavailable_at_start_names_the_uri(broker, tmp_path):
    bad = f"sqlite:///{tmp_path / 'missing' / 'dir' / 'mlflow.db'}"
    cfg = ServeConfig(bootstrap=broker.bootstrap, tracking_uri=bad, state_dir=str(tmp_path / "state"))
    with pytest.raises(RegistryError) as e:
        Scorer(cfg).load_model()
    assert "models:/fraud-detector@champion" in str(e.value) and str(tmp_path / "missing") in str(e.value)


def test_broker_unavailable_retries_with_backoff_then_fails(caplog):
    addr = f"127.0.0.1:{free_port()}"
    with pytest.raises(BrokerError) as e:
        wait_for_broker(addr, timeout=1.6, initial=0.2)
    assert addr in str(e.value)
    lines = [r.getMessage() for r in caplog.records if "broker unavailable" in r.getMessage()]
    assert len(lines) >= 2 and "retry_in=0.2s" in lines[0] and "retry_in=0.4s" in lines[1]


def test_cli_broker_and_replay(tmp_path, reg):
    """`fraud broker` prints its bootstrap and stops on SIGTERM; `fraud replay` produces a file in time order,
    keyed by customer_id."""
    port = free_port()
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    b = subprocess.Popen([sys.executable, "-m", "fraud.cli", "broker", "--port", str(port), "--topic", "cli-tx:3"],
                         cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        line = b.stdout.readline().decode().strip()
        assert line == f"bootstrap: 127.0.0.1:{port}"
        data = reg.live.iloc[:200]
        path = tmp_path / "tx.parquet"
        data.to_parquet(path)
        r = subprocess.run([sys.executable, "-m", "fraud.cli", "replay", "--data", str(path), "--bootstrap",
                            f"127.0.0.1:{port}", "--topic", "cli-tx", "--rate", "2000"], cwd=ROOT, env=env,
                           capture_output=True, timeout=120)
        assert r.returncode == 0, r.stderr.decode()[-2000:]
        assert "sent 200 events to cli-tx" in r.stdout.decode()
        msgs = _read_topic(f"127.0.0.1:{port}", "cli-tx", partitions=3)
        assert len(msgs) == 200
        assert all(m.key.decode() == json.loads(m.value)["customer_id"] for m in msgs)
        for p in {m.partition for m in msgs}:  # time order within each partition
            ts = [json.loads(m.value)["timestamp"] for m in sorted(msgs, key=lambda m: m.offset) if m.partition == p]
            assert ts == sorted(ts)
        since = data["timestamp"].iloc[150]  # --since: only events at or after it (the model's cutoff, say)
        r = subprocess.run([sys.executable, "-m", "fraud.cli", "replay", "--data", str(path), "--bootstrap",
                            f"127.0.0.1:{port}", "--topic", "cli-tx2", "--since", since.isoformat()], cwd=ROOT,
                           env=env, capture_output=True, timeout=120)
        want = int((data["timestamp"] >= since).sum())
        assert r.returncode == 0 and f"sent {want} events to cli-tx2" in r.stdout.decode(), r.stderr.decode()[-2000:]
    finally:
        b.send_signal(signal.SIGTERM)
        rc = b.wait(20)
    assert rc == 0 and b"broker stopped" in b.stderr.read()


def test_undelivered_records_fail_the_checkpoint():
    """kafka-python's flush returns even when records failed; the scorer's producer keeps each send's future
    and the checkpoint's check raises (so nothing is committed) when one was not delivered: here the broker
    goes away before the second batch and its delivery times out."""
    from kafka import KafkaProducer

    from streaming.sinks import TrackedProducer

    with LocalBroker() as b:
        wait_for_broker(b.bootstrap, timeout=30)
        topic = _topic("deliv", b, partitions=1)
        prod = TrackedProducer(KafkaProducer(bootstrap_servers=b.bootstrap, request_timeout_ms=1000,
                                             delivery_timeout_ms=2000, retries=1, linger_ms=0))
        try:
            prod.send(topic, key=b"a", value=b"x" * 100)
            taken = prod.take()
            prod.flush()
            TrackedProducer.check(taken)  # delivered: no error
            assert len(taken) == 1 and taken[0].future.succeeded() and prod.take() == []
            b.stop()
            prod.send(topic, key=b"b", value=b"y" * 100)
            prod.send(topic, key=b"c", value=b"z" * 100)
            taken = prod.take()
            prod.flush(timeout=30)
            with pytest.raises(BrokerError, match=r"2 of 2 records .* not delivered"):
                TrackedProducer.check(taken)
        finally:
            prod.close(timeout=1)


def test_bench_stream_measures_rates_and_latency(broker, reg):
    """``fraud bench stream`` end to end on a small scale: the raw, pass-through and scorer rates of the same
    events, and the latency of every event offered in the latency phase."""
    from benchmarks.stream import run_stream_bench

    res = run_stream_bench(f"models:/{MODEL}@champion", tracking_uri=reg.uri, bootstrap=broker.bootstrap,
                           data=reg.live, n_events=400, offered=200.0, seconds=1.0, verbose=False)
    assert res["events_measured"] == 200
    assert res["raw_rate"] > 0 and res["scorer_rate"] > 0 and res["passthrough_rate"] > 0
    assert res["ratio"] == pytest.approx(res["scorer_rate"] / res["raw_rate"], rel=1e-3, abs=1e-4)  # 4 decimals
    assert res["passthrough_ratio"] == pytest.approx(res["passthrough_rate"] / res["raw_rate"], rel=1e-3, abs=1e-4)
    assert res["scorer_share_of_passthrough"] == pytest.approx(res["scorer_rate"] / res["passthrough_rate"], rel=1e-3,
                                                               abs=1e-4)
    assert 0 < res["p50_ms"] <= res["p99_ms"] < 60_000
    assert 0 <= res["alert_rate"] <= 1


# -- issue 13: poison events, replays, a failing sink, a replaced log ----------------------------------------
def _events(df, **changes) -> list[dict]:
    values, _ = encode_events(df)
    return [json.loads(v) | changes for v in values]


def _send(bootstrap, topic, records) -> None:
    """Produce ``records`` (dicts, or bytes sent as they are) keyed by customer."""
    prod = make_producer(bootstrap)
    for r in records:
        if isinstance(r, dict):
            prod.send(topic, key=str(r.get("customer_id", "x")).encode(), value=json.dumps(r).encode())
        else:
            prod.send(topic, key=b"bad", value=r)
    prod.flush()
    prod.close()


def _replayed_scores(arch, bundle):
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


def test_poison_events_replays_and_conflicts_never_stop_the_scorer(broker, reg, tmp_path):
    topic = _topic("poison", broker)
    good = _events(reg.live.iloc[:240])
    for i, v in enumerate(({"web": 1}, "pos", [1, "x"], None)):  # an attribute whose type changes: valid
        good[10 + i]["channel"] = v
    for r in good[40:60]:  # no label/scenario next to labelled events: valid
        r.pop("label", None)
        r.pop("scenario", None)
    ok = good[0]
    poison = [json.dumps(ok | {"tx_id": "p1", "timestamp": "9999-12-31T00:00:00Z"}).encode(),
              json.dumps(ok | {"tx_id": "p2", "timestamp": "0001-01-01T00:00:00Z"}).encode(),
              json.dumps(ok | {"tx_id": "p3", "timestamp": "2200-01-01T00:00:00Z"}).encode(),
              b"[" * 100_000,
              json.dumps(ok | {"tx_id": "p5"}).replace(f'"amount": {json.dumps(ok["amount"])}',
                                                        '"amount": 1' + "0" * 400).encode(),
              json.dumps(ok | {"tx_id": "p6", "amount": True}).encode(),
              json.dumps(ok | {"tx_id": "p7", "customer_id": {"id": 1}}).encode()]
    mixed = []
    for i, r in enumerate(good[:120]):
        mixed.append(r)
        if i % 15 == 7 and poison:
            mixed.append(poison.pop())
    _send(broker.bootstrap, topic, mixed + poison)
    h = _start(_cfg(broker, reg, tmp_path, topic, max_message_bytes=256 * 1024))
    s = h.scorer
    try:
        _wait(lambda: s.n_scored >= 120, 90, "the first 120 events")
        # later polls: exact replays (skipped), same ids with other content (conflicts), and the rest
        replays = good[:20]
        conflicts = [r | {"amount": r["amount"] + 1.0} for r in good[20:25]]
        _send(broker.bootstrap, topic, replays + conflicts + good[120:])
        _wait(lambda: s.n_scored >= len(good) and sum(s.dlq.counts.values()) >= 12, 90, "every event")
        time.sleep(1.0)
        assert h.thread.is_alive()
    finally:
        _halt(h)
    arch = read_archive(tmp_path / "archive")
    assert s.n_scored == len(good) and len(arch) == len(good) and arch["tx_id"].is_unique
    assert dict(s.dlq.counts) == {"out_of_window": 3, "malformed_json": 1, "invalid": 3, "conflict": 5}
    assert s.metrics.replays._value.get() == 20
    assert arch.set_index("tx_id").loc[[good[10 + i]["tx_id"] for i in range(3)], "attributes"].tolist() == [
        '{"channel":{"web":1}}', '{"channel":"pos"}', '{"channel":[1,"x"]}']
    # no poison event reached a state: every score equals a replay of the scored events alone
    ref = _replayed_scores(arch, reg.bundle)
    np.testing.assert_allclose(arch.set_index("tx_id")["score"], ref.loc[arch["tx_id"]].to_numpy(), rtol=1e-9,
                               atol=1e-12)
    dl = _read_topic(broker.bootstrap, f"{topic}.dlq")
    kinds = [dict(m.headers)["error.kind"].decode() for m in dl]
    assert sorted(kinds) == sorted(["out_of_window"] * 3 + ["malformed_json"] + ["invalid"] * 3 + ["conflict"] * 5)
    assert all(dict(m.headers)["error"] for m in dl)


def test_a_failing_archive_write_loses_nothing_and_duplicates_nothing(broker, reg, tmp_path):
    """The archive's day folders are blocked (a file where a folder must go) for a while: checkpoints fail,
    their buffers are kept and written once the folder can be made; nothing is committed past them."""
    topic = _topic("sinkfail", broker)
    data = reg.live.iloc[:600]
    days = sorted({str(d) for d in data["timestamp"].dt.strftime("%Y-%m-%d")})
    (tmp_path / "archive").mkdir()
    for d in days:
        (tmp_path / "archive" / f"date={d}").write_text("not a folder")
    h = _start(_cfg(broker, reg, tmp_path, topic))
    s = h.scorer
    try:
        th = threading.Thread(target=replay, args=(data, broker.bootstrap, topic), kwargs={"rate": 300},
                              daemon=True)
        th.start()
        _wait(lambda: s.metrics.checkpoint_failures._value.get() >= 2 and s.n_scored >= 200, 90,
              "failed checkpoints while scoring")
        assert CheckpointStore(tmp_path / "state", topic).offsets() == {}  # nothing checkpointed past them
        for d in days:
            (tmp_path / "archive" / f"date={d}").unlink()
        th.join(60)
        _wait(lambda: s.n_scored >= len(data) and len(_archive_ids(tmp_path / "archive")) >= len(data), 90,
              "the archive to catch up")
    finally:
        _halt(h)
    arch = read_archive(tmp_path / "archive")
    from fraud.store import AlertStore

    alerts = AlertStore(f"sqlite:///{tmp_path / 'alerts.db'}").read_alerts()
    assert len(arch) == len(data) and set(arch["tx_id"]) == set(data["tx_id"])  # 0 lost, 0 duplicated
    assert alerts["tx_id"].is_unique and set(alerts["tx_id"]) == set(arch.loc[arch["is_alert"], "tx_id"])
    offs = CheckpointStore(tmp_path / "state", topic).offsets()
    assert sum(offs.values()) == len(data)


def test_a_broker_that_comes_back_empty_is_detected_and_its_new_log_read_from_the_start(reg, tmp_path):
    """Tansu keeps its log in memory: restarted, it comes back empty and offsets start again at 0. The scorer
    sees that the record it consumed last is gone, counts a reset, keeps the old archive and scores every new
    event (a consumer that kept its position would skip the new log's first events)."""
    port = free_port()
    b1 = LocalBroker(port=port).start()
    try:
        wait_for_broker(b1.bootstrap, timeout=30)
        topic = _topic("reset", b1, partitions=2)
        first, second = reg.live.iloc[:150], reg.live.iloc[150:300]
        _send(b1.bootstrap, topic, _events(first))
        h = _start(_cfg(b1, reg, tmp_path, topic, partitions=2))
        s = h.scorer
        _wait(lambda: s.n_scored >= len(first) and not s.ck.dirty, 90, "the first log to be scored and checkpointed")
        b1.stop()
        b2 = LocalBroker(port=port).start()
        try:
            wait_for_broker(b2.bootstrap, timeout=30)
            ensure_topics(b2.bootstrap, {topic: 2, f"{topic}.scores": 1, f"{topic}.alerts": 1, f"{topic}.dlq": 1})
            time.sleep(1.0)
            _send(b2.bootstrap, topic, _events(second))
            _wait(lambda: s.n_scored >= len(first) + len(second), 120, "the new log to be scored")
            time.sleep(1.0)
        finally:
            _halt(h)
            b2.stop()
    finally:
        b1.stop()
    arch = read_archive(tmp_path / "archive")
    assert set(arch["tx_id"]) == set(first["tx_id"]) | set(second["tx_id"]) and arch["tx_id"].is_unique
    resets = sum(m.samples[0].value for m in s.metrics.offset_resets.collect() for _ in [0] if m.samples)
    assert resets >= 1
    assert list((tmp_path / "archive").glob("date=*/part-*~1-p*.parquet"))  # the old log's files, kept


def test_the_reload_check_reads_the_scorers_own_store(reg, tmp_path):
    """The scorer resolves its alias in ServeConfig.tracking_uri, whatever store the process is configured for
    (the resolver used to drop the URI and ask the process-wide store)."""
    from fraud import registry
    from streaming.model import default_resolver

    from mlflow.tracking import MlflowClient

    want = str(MlflowClient(reg.uri, registry_uri=reg.uri).get_model_version_by_alias(MODEL, "champion").version)
    other = f"sqlite:///{tmp_path / 'other.db'}"
    registry.configure(other)
    try:
        assert default_resolver(MODEL, "champion", reg.uri) == want
        assert registry._state["tracking_uri"] == other
    finally:
        registry.configure(reg.uri)
