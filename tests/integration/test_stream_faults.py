"""The live scorer under issue 13's faults: poison events, replays and conflicting ids never stop it, and a
failing archive write loses and duplicates nothing."""
from __future__ import annotations

import json
import threading
import time

import numpy as np
import pytest

from fraud.archive import read as read_archive
from streaming.replay import replay
from streaming.state import CheckpointStore
from streamkit import (archive_ids, events, halt, new_topic, read_topic, replayed_scores, send, serve_config, start,
                      wait)

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_poison_events_replays_and_conflicts_never_stop_the_scorer(broker, reg, tmp_path):
    topic = new_topic("poison", broker)
    good = events(reg.live.iloc[:240])
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
    send(broker.bootstrap, topic, mixed + poison)
    h = start(serve_config(broker, reg, tmp_path, topic, max_message_bytes=256 * 1024))
    s = h.scorer
    try:
        wait(lambda: s.n_scored >= 120, 90, "the first 120 events")
        # later polls: exact replays (skipped), same ids with other content (conflicts), and the rest
        replays = good[:20]
        conflicts = [r | {"amount": r["amount"] + 1.0} for r in good[20:25]]
        send(broker.bootstrap, topic, replays + conflicts + good[120:])
        wait(lambda: s.n_scored >= len(good) and sum(s.dlq.counts.values()) >= 12, 90, "every event")
        time.sleep(1.0)
        assert h.thread.is_alive()
    finally:
        halt(h)
    arch = read_archive(tmp_path / "archive")
    assert s.n_scored == len(good) and len(arch) == len(good) and arch["tx_id"].is_unique
    assert dict(s.dlq.counts) == {"out_of_window": 3, "malformed_json": 1, "invalid": 3, "conflict": 5}
    assert s.metrics.replays._value.get() == 20
    assert arch.set_index("tx_id").loc[[good[10 + i]["tx_id"] for i in range(3)], "attributes"].tolist() == [
        '{"channel":{"web":1}}', '{"channel":"pos"}', '{"channel":[1,"x"]}']
    # no poison event reached a state: every score equals a replay of the scored events alone
    ref = replayed_scores(arch, reg.bundle)
    np.testing.assert_allclose(arch.set_index("tx_id")["score"], ref.loc[arch["tx_id"]].to_numpy(), rtol=1e-9,
                               atol=1e-12)
    dl = read_topic(broker.bootstrap, f"{topic}.dlq")
    kinds = [dict(m.headers)["error.kind"].decode() for m in dl]
    assert sorted(kinds) == sorted(["out_of_window"] * 3 + ["malformed_json"] + ["invalid"] * 3 + ["conflict"] * 5)
    assert all(dict(m.headers)["error"] for m in dl)


def test_a_failing_archive_write_loses_nothing_and_duplicates_nothing(broker, reg, tmp_path):
    """The archive's day folders are blocked (a file where a folder must go) for a while: checkpoints fail,
    their buffers are kept and written once the folder can be made; nothing is committed past them."""
    topic = new_topic("sinkfail", broker)
    data = reg.live.iloc[:600]
    days = sorted({str(d) for d in data["timestamp"].dt.strftime("%Y-%m-%d")})
    (tmp_path / "archive").mkdir()
    for d in days:
        (tmp_path / "archive" / f"date={d}").write_text("not a folder")
    h = start(serve_config(broker, reg, tmp_path, topic))
    s = h.scorer
    try:
        th = threading.Thread(target=replay, args=(data, broker.bootstrap, topic), kwargs={"rate": 300},
                              daemon=True)
        th.start()
        wait(lambda: s.metrics.checkpoint_failures._value.get() >= 2 and s.n_scored >= 200, 90,
              "failed checkpoints while scoring")
        assert CheckpointStore(tmp_path / "state", topic).offsets() == {}  # nothing checkpointed past them
        for d in days:
            (tmp_path / "archive" / f"date={d}").unlink()
        th.join(60)
        wait(lambda: s.n_scored >= len(data) and len(archive_ids(tmp_path / "archive")) >= len(data), 90,
              "the archive to catch up")
    finally:
        halt(h)
    arch = read_archive(tmp_path / "archive")
    from fraud.store import AlertStore

    alerts = AlertStore(f"sqlite:///{tmp_path / 'alerts.db'}").read_alerts()
    assert len(arch) == len(data) and set(arch["tx_id"]) == set(data["tx_id"])  # 0 lost, 0 duplicated
    assert alerts["tx_id"].is_unique and set(alerts["tx_id"]) == set(arch.loc[arch["is_alert"], "tx_id"])
    offs = CheckpointStore(tmp_path / "state", topic).offsets()
    assert sum(offs.values()) == len(data)
