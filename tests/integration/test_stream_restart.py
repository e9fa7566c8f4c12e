"""The live scorer restarted: killed with kill -9 mid-stream and started again (nothing lost, nothing
duplicated), and a broker that comes back empty (its new log read from the start)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from fraud.archive import read as read_archive
from streaming.broker import LocalBroker, ensure_topics, free_port, wait_for_broker
from streaming.replay import replay
from streaming.state import CheckpointStore
from streamkit import (ROOT, SESSION_MS, archive_ids, events, halt, new_topic, read_topic, restored, send,
                      serve_config, start, wait)

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_crash_restart_loses_nothing_and_duplicates_nothing(broker, reg, tmp_path):
    topic = new_topic("crash", broker)
    data = reg.live.iloc[:1500]
    env = dict(os.environ, MLFLOW_TRACKING_URI=reg.uri, PYTHONWARNINGS="ignore")
    cmd = [sys.executable, "-m", "fraud.cli", "serve", "--bootstrap", broker.bootstrap, "--topic", topic,
           "--group", f"g-{topic}", "--tracking-uri", reg.uri, "--alerts-db", f"sqlite:///{tmp_path / 'alerts.db'}",
           "--archive", str(tmp_path / "archive"), "--state-dir", str(tmp_path / "state"),
           "--scores-topic", f"{topic}.scores", "--alerts-topic", f"{topic}.alerts", "--dlq-topic", f"{topic}.dlq",
           "--checkpoint-interval", "0.3", "--batch-size", "40", "--session-timeout-ms", str(SESSION_MS)]
    log1 = open(tmp_path / "serve1.log", "wb")
    p1 = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log1, stderr=subprocess.STDOUT)
    wait(lambda: b"partition assigned" in (tmp_path / "serve1.log").read_bytes() or p1.poll() is not None, 90,
          "the first scorer to join the group")
    assert p1.poll() is None, (tmp_path / "serve1.log").read_text()[-3000:]
    stop = threading.Event()
    th = threading.Thread(target=replay, args=(data, broker.bootstrap, topic), kwargs={"rate": 500, "stop": stop},
                          daemon=True)
    th.start()
    try:
        wait(lambda: len(archive_ids(tmp_path / "archive")) >= 400, 90, "the first scorer to archive events")
        time.sleep(0.2)  # between two checkpoints (every 0.3 s): batches scored and sunk but not checkpointed
    finally:
        p1.send_signal(signal.SIGKILL)  # kill -9 mid-stream: no flush, no checkpoint, no commit
        p1.wait(10)
    done_before = len(archive_ids(tmp_path / "archive"))
    assert done_before < len(data), "the kill was not mid-stream"
    from fraud.store import AlertStore

    store = AlertStore(f"sqlite:///{tmp_path / 'alerts.db'}")
    ck_at_kill = CheckpointStore(tmp_path / "state", topic).offsets()
    alerts_at_kill = set(store.read_alerts()["tx_id"]) if store.count_alerts() else set()
    log2 = open(tmp_path / "serve2.log", "wb")
    p2 = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log2, stderr=subprocess.STDOUT)
    try:
        th.join(60)
        wait(lambda: len(archive_ids(tmp_path / "archive")) >= len(data), 90, "the restarted scorer to catch up")
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
    scored_msgs = [json.loads(x.value)["tx_id"] for x in read_topic(broker.bootstrap, f"{topic}.scores")]
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
        c, st = restored(tmp_path / "state", topic, int(p), reg.bundle)
        assert c.offset == g["kafka_offset"].max() + 1
        assert st.n_scored == len(g)


def test_a_broker_that_comes_back_empty_is_detected_and_its_new_log_read_from_the_start(reg, tmp_path):
    """Tansu keeps its log in memory: restarted, it comes back empty and offsets start again at 0. The scorer
    sees that the record it consumed last is gone, counts a reset, keeps the old archive and scores every new
    event (a consumer that kept its position would skip the new log's first events)."""
    port = free_port()
    b1 = LocalBroker(port=port).start()
    try:
        wait_for_broker(b1.bootstrap, timeout=30)
        # 2 partitions, where Tansu gives 4 to a topic it creates on a client's metadata request: after the
        # restart the topic is made either by the ensure_topics below or, first, by the scorer's own consumer
        # (kafka-python 3.0.12 asks with auto-creation on, whatever allow_auto_create_topics says). The second
        # changes the partition count under the group, whose rejoin kafka-python can leave unapplied when its join
        # outlasts a poll (before streaming.rejoin: nothing of partitions 2-3 scored, no commit ever again)
        topic = new_topic("reset", b1, partitions=2)
        first, second = reg.live.iloc[:150], reg.live.iloc[150:300]
        send(b1.bootstrap, topic, events(first))
        h = start(serve_config(b1, reg, tmp_path, topic))
        s = h.scorer
        wait(lambda: s.n_scored >= len(first) and not s.ck.dirty, 90, "the first log to be scored and checkpointed")
        b1.stop()
        b2 = LocalBroker(port=port).start()
        try:
            wait_for_broker(b2.bootstrap, timeout=30)
            ensure_topics(b2.bootstrap, {topic: 2, f"{topic}.scores": 1, f"{topic}.alerts": 1, f"{topic}.dlq": 1})
            time.sleep(1.0)
            send(b2.bootstrap, topic, events(second))
            wait(lambda: s.n_scored >= len(first) + len(second), 120, "the new log to be scored")
            time.sleep(1.0)
        finally:
            halt(h)
            b2.stop()
    finally:
        b1.stop()
    arch = read_archive(tmp_path / "archive")
    assert set(arch["tx_id"]) == set(first["tx_id"]) | set(second["tx_id"]) and arch["tx_id"].is_unique
    resets = sum(m.samples[0].value for m in s.metrics.offset_resets.collect() for _ in [0] if m.samples)
    assert resets >= 1
    assert list((tmp_path / "archive").glob("date=*/part-*~1-p*.parquet"))  # the old log's files, kept
