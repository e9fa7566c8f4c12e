"""The live scorer against a real broker (Tansu, started once per test process) and a real trained bundle
registered in a temporary MLflow store (fixtures: conftest.py; helpers: streamkit.py): end to end with dead
letters, light checkpoints and metrics; the start-up faults; the broker and replay commands; undelivered
records; the stream benchmark; the reload check's store. Crash and restart, rebalance and reload, poison
events and a failing sink are in test_stream_restart.py, test_stream_group.py and test_stream_faults.py."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import numpy as np
import pytest

from fraud.archive import read as read_archive
from fraud.errors import BrokerError, RegistryError
from streaming.broker import LocalBroker, free_port, wait_for_broker
from streaming.loop import Scorer, ServeConfig
from streaming.replay import encode_events, make_producer
from streamkit import GROUP_KW, MODEL, ROOT, halt, new_topic, read_topic, restored, serve_config, start, wait

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_end_to_end_and_dead_letters(broker, reg, tmp_path):
    topic = new_topic("e2e", broker)
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
    h = start(serve_config(broker, reg, tmp_path, topic, max_message_bytes=10_000, metrics_port=port, snapshot_events=60))
    s = h.scorer
    wait(lambda: s.n_events >= total, 60, "all events consumed")
    import gc

    assert gc.get_freeze_count() > 0  # the running scorer froze its start-up heap (ServeConfig.gc_freeze)
    import httpx

    metrics = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    kept, revoke = {}, s._on_revoked
    s._on_revoked = lambda revoked: (kept.update({p: x.state for p, x in s.parts.items()}), revoke(revoked))
    halt(h)
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
    scores = read_topic(broker.bootstrap, f"{topic}.scores")
    assert {json.loads(m.value)["tx_id"] for m in scores} == set(good["tx_id"])
    alert_msgs = read_topic(broker.bootstrap, f"{topic}.alerts")
    assert len(alert_msgs) == int(arch["is_alert"].sum())
    assert all(m.key.decode() == json.loads(m.value)["customer_id"] for m in alert_msgs)
    # light checkpoints: a restored state (base file + archived events replayed) scores as the live one did
    nxt = reg.live.iloc[600:700].reset_index(drop=True)
    kinds = set()
    for p, g in arch.groupby("kafka_partition"):
        c, st = restored(tmp_path / "state", topic, int(p), reg.bundle)
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
    dl = read_topic(broker.bootstrap, f"{topic}.dlq")
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
    assert "fraud_late_events_total 0.0" in metrics  # the stream continues the model's time line


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
        msgs = read_topic(f"127.0.0.1:{port}", "cli-tx", partitions=3)
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
        topic = new_topic("deliv", b, partitions=1)
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
    """``fraud bench stream --ceiling`` end to end on a small scale: the raw, pass-through, null-model and scorer
    rates of the same events, and the latency of every event offered in the latency phase."""
    from benchmarks.stream import run_stream_bench

    res = run_stream_bench(f"models:/{MODEL}@champion", tracking_uri=reg.uri, bootstrap=broker.bootstrap,
                           data=reg.live, n_events=400, offered=200.0, seconds=1.0, verbose=False,
                           consumer_kw=dict(GROUP_KW), ceiling=True)
    assert res["events_measured"] == 200
    assert res["raw_rate"] > 0 and res["scorer_rate"] > 0 and res["passthrough_rate"] > 0
    assert res["ratio"] == pytest.approx(res["scorer_rate"] / res["raw_rate"], rel=1e-3, abs=1e-4)  # 4 decimals
    assert res["passthrough_ratio"] == pytest.approx(res["passthrough_rate"] / res["raw_rate"], rel=1e-3, abs=1e-4)
    assert res["scorer_share_of_passthrough"] == pytest.approx(res["scorer_rate"] / res["passthrough_rate"], rel=1e-3,
                                                               abs=1e-4)
    assert res["null_model_rate"] > 0  # the same scorer with a model that does no work
    assert res["null_model_share_of_passthrough"] == pytest.approx(res["null_model_rate"] / res["passthrough_rate"],
                                                                   rel=1e-3, abs=1e-4)
    assert 0 < res["p50_ms"] <= res["p99_ms"] < 60_000
    assert 0 <= res["alert_rate"] <= 1


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
