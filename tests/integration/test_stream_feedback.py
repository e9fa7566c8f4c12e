"""Label feedback through a real broker (``streaming.feedback``): transactions sent without labels, their labels
sent later as label events, then later transactions. The later scores must equal scoring the same events with
the labels present from the start (per partition, from the model's starting state), also across a restart
whose light checkpoint carries the labels; without the labels they differ. A label event without a label is
dead-lettered with the reason."""
from __future__ import annotations

import json

import pandas as pd
import pytest
from streamkit import archive_ids, halt, new_topic, read_topic, serve_config, start, wait

from fraud.archive import read as read_archive
from streaming import feedback
from streaming.dlq import parse_dead_letter
from streaming.replay import encode_events, make_producer
from streaming.state import CheckpointStore

pytestmark = pytest.mark.integration


def _send_events(bootstrap, topic, df):
    values, keys = encode_events(df, labels=False)
    prod = make_producer(bootstrap)
    for k, v in zip(keys, values):
        prod.send(topic, key=k, value=v)
    prod.flush()
    prod.close()


def _reference(bundle, arch: pd.DataFrame, truth: pd.Series, labelled: set) -> pd.Series:
    """Each partition's archived events scored again in offset order from the model's starting state, the
    ``labelled`` tx_ids carrying their true label: the scores a scorer that knew those labels gives."""
    out = []
    for _, g in arch.groupby("kafka_partition"):
        g = g.sort_values("kafka_offset")
        rows = g[["tx_id", "timestamp", "customer_id", "terminal_id", "amount"]].reset_index(drop=True)
        lab = rows["tx_id"].map(lambda t: truth[t] if t in labelled else -1).astype("int8")
        rows = rows.assign(label=lab)
        out.append(pd.Series(bundle.score(rows, bundle.warm_state())["score"].to_numpy(), index=rows["tx_id"]))
    return pd.concat(out)


def test_labels_sent_later_count_as_if_the_events_had_carried_them(broker, reg, tmp_path):
    live, bundle = reg.live, reg.bundle
    t0 = live["timestamp"].min()
    early = live[live["timestamp"] < t0 + pd.Timedelta(days=3)].reset_index(drop=True)
    later = live[live["timestamp"] >= t0 + pd.Timedelta(days=8)].reset_index(drop=True)
    assert early["label"].sum() >= 3 and len(later) > 100
    truth = live.set_index("tx_id")["label"]
    topic = new_topic("feedback", broker)
    cfg = serve_config(broker, reg, tmp_path, topic, snapshot_events=10_000)  # light checkpoints only

    h = start(cfg)
    _send_events(broker.bootstrap, topic, early)
    wait(lambda: h.scorer.n_scored >= len(early), 60, "early events scored")
    bad = json.loads(encode_events(early.iloc[:1], labels=False)[0][0])
    prod = make_producer(broker.bootstrap)
    prod.send(topic, key=bad["customer_id"].encode(), value=json.dumps(bad).encode(), headers=feedback.HEADERS)
    prod.send(topic, key=bad["customer_id"].encode(), value=json.dumps({**bad, "label": 1}).encode())  # no header
    prod.flush()
    prod.close()
    assert feedback.send(early, broker.bootstrap, topic) == len(early)
    wait(lambda: h.scorer.n_events >= len(early) * 2 + 2, 60, "label events read")
    mid, late = later[later["timestamp"] < t0 + pd.Timedelta(days=9)], later[later["timestamp"] >= t0 +
                                                                              pd.Timedelta(days=9)]
    _send_events(broker.bootstrap, topic, mid)  # scored by the scorer that applied the labels
    wait(lambda: h.scorer.n_scored >= len(early) + len(mid), 60, "mid events scored")
    halt(h)  # the final checkpoint is light: its state is the base + the archive + the labels it carries
    cks = [CheckpointStore(cfg.state_dir, topic).load(p) for p in range(4)]
    assert all(c.base is not None for c in cks)  # light: the restart below must re-apply the labels
    assert sum(len(feedback.from_arrays(c.extras)) for c in cks) == len(early)

    h = start(cfg)
    _send_events(broker.bootstrap, topic, late)
    wait(lambda: h.scorer.n_scored >= len(late), 90, "late events scored after the restart")
    halt(h)

    arch = read_archive(tmp_path / "archive")
    archived = sorted(archive_ids(tmp_path / "archive"))
    assert archived == sorted(pd.concat([early, later])["tx_id"])  # label events are not archived
    got = arch.set_index("tx_id")["score"]
    want = _reference(bundle, arch, truth, set(early["tx_id"]))
    without = _reference(bundle, arch, truth, set())
    for part in (mid, late):  # before and after the restart
        ids = part["tx_id"]
        pd.testing.assert_series_equal(got[ids], want[ids], check_names=False, rtol=1e-9, atol=1e-12)
        assert (without[ids] - want[ids]).abs().max() > 1e-6  # the labels change these scores: the test can fail
    pd.testing.assert_series_equal(got[early["tx_id"]], without[early["tx_id"]], check_names=False, rtol=1e-9,
                                   atol=1e-12)  # scored before their labels came

    letters = [parse_dead_letter(m) for m in read_topic(broker.bootstrap, f"{topic}.dlq")]
    assert [x["error.kind"] for x in letters] == ["invalid", "conflict"]
    assert "label event without field 'label'" in letters[0]["error"]
    assert letters[0]["value"] == json.dumps(bad).encode()
    assert "needs the header fraud-event: label" in letters[1]["error"]  # a label sent as a plain event


def test_send_labels_sends_decisions_withdrawals_and_a_file_as_label_events(broker, reg, tmp_path):
    from click.testing import CliRunner

    from fraud.cli import main
    from fraud.store import AlertStore

    rows = reg.live.iloc[:4].reset_index(drop=True)
    url = f"sqlite:///{tmp_path / 'alerts.db'}"
    store = AlertStore(url)
    store.write_alerts(rows.assign(score=0.9, reasons=[[] for _ in range(4)]), "1")
    a, b, c, d = rows["tx_id"].astype(str)
    store.add_decision("fraud", "ann", [a, c])
    store.add_decision("legit", "ann", [b])
    store.undo_decisions([int(store.read_decisions().query("tx_id == @c")["id"].iloc[0])], "ann")
    topic = new_topic("send-labels", broker, partitions=1)
    r = CliRunner().invoke(main, ["send-labels", "--bootstrap", broker.bootstrap, "--topic", topic, "--alerts-db", url])
    assert r.exit_code == 0, r.output
    assert "sent 3 label(s)" in r.output and "(1 fraud, 2 genuine)" in r.output
    got = read_topic(broker.bootstrap, topic)
    assert all(feedback.is_label(m) for m in got)
    sent = {json.loads(m.value)["tx_id"]: (json.loads(m.value)["label"], m.key) for m in got}
    key = dict(zip(rows["tx_id"].astype(str), rows["customer_id"].astype(str).str.encode("utf-8")))
    assert sent == {a: (1, key[a]), b: (0, key[b]), c: (0, key[c])}  # c's fraud was undone: withdrawn

    path, data = tmp_path / "chargebacks.csv", tmp_path / "world.parquet"
    pd.DataFrame({"tx_id": [d, "no-such-tx"], "label": [1, 1]}).to_csv(path, index=False)
    reg.live.to_parquet(data)
    r = CliRunner().invoke(main, ["send-labels", "--bootstrap", broker.bootstrap, "--topic", topic, "--labels",
                                  str(path), "--data", str(data)])
    assert r.exit_code == 0, r.output
    assert "1 labelled tx_id(s) not found" in r.output and "'no-such-tx'" in r.output and "sent 1 label(s)" in r.output
    ev = json.loads(read_topic(broker.bootstrap, topic)[-1].value)
    assert ev["tx_id"] == d and ev["label"] == 1 and ev["amount"] == float(rows["amount"].iloc[3])


def test_follow_sends_each_decision_once_and_an_undo_as_label_0(broker, reg, tmp_path):
    import threading

    from fraud.store import AlertStore

    rows = reg.live.iloc[:3].reset_index(drop=True)
    store = AlertStore(f"sqlite:///{tmp_path / 'alerts.db'}")
    store.write_alerts(rows.assign(score=0.9, reasons=[[] for _ in range(3)]), "1")
    a, b, c = rows["tx_id"].astype(str)
    topic, pos = new_topic("follow", broker, partitions=1), tmp_path / "sent.json"
    stop = threading.Event()
    store.add_decision("fraud", "ann", [a, b])
    assert feedback.follow(store, broker.bootstrap, topic, stop, passes=2, interval=0.1, position=pos) == 2
    store.undo_decisions([int(store.read_decisions().query("tx_id == @b")["id"].iloc[0])], "ann")
    store.add_decision("legit", "ann", [c])
    # a new follower (a restart) reads the position: only the undo and the new decision go out
    assert feedback.follow(store, broker.bootstrap, topic, stop, passes=1, position=pos) == 2
    got = [json.loads(m.value) for m in read_topic(broker.bootstrap, topic)]
    pairs = [(e["tx_id"], e["label"]) for e in got]
    assert len(pairs) == 4 and set(pairs[:2]) == {(a, 1), (b, 1)} and set(pairs[2:]) == {(b, 0), (c, 0)}
    assert json.loads(pos.read_text()) == {a: 1, b: 0, c: 0}


def test_a_model_swap_keeps_the_labels(broker, reg, tmp_path):
    """A hot reload rebuilds the states from the archive, which holds no labels: the partition's kept label events
    are applied again, so the new model's later scores are those of events that carried their labels."""
    import copy

    live, bundle = reg.live, reg.bundle
    t0 = live["timestamp"].min()
    early = live[live["timestamp"] < t0 + pd.Timedelta(days=3)].reset_index(drop=True)
    mid = live[(live["timestamp"] >= t0 + pd.Timedelta(days=8)) & (live["timestamp"] < t0 + pd.Timedelta(days=9))]
    truth = live.set_index("tx_id")["label"]
    current = {"version": "1"}

    def load(uri, tracking_uri):
        b = copy.copy(bundle)
        b.version = uri.rsplit("/", 1)[-1] if uri[-1].isdigit() else "1"
        return b

    topic = new_topic("feedback-swap", broker)
    h = start(serve_config(broker, reg, tmp_path, topic), loader=load, resolver=lambda *a: current["version"])
    _send_events(broker.bootstrap, topic, early)
    wait(lambda: h.scorer.n_scored >= len(early), 60, "early events scored")
    feedback.send(early, broker.bootstrap, topic)
    wait(lambda: h.scorer.n_events >= 2 * len(early), 60, "label events read")
    current["version"] = "2"
    wait(lambda: h.scorer.version == "2", 60, "the model swapped")
    _send_events(broker.bootstrap, topic, mid)
    wait(lambda: h.scorer.n_scored >= len(early) + len(mid), 60, "mid events scored by the new model")
    halt(h)

    arch = read_archive(tmp_path / "archive")
    assert set(arch.loc[arch["tx_id"].isin(mid["tx_id"]), "model_version"]) == {"2"}
    got = arch.set_index("tx_id")["score"]
    want = _reference(bundle, arch, truth, set(early["tx_id"]))
    without = _reference(bundle, arch, truth, set())
    ids = mid["tx_id"]
    pd.testing.assert_series_equal(got[ids], want[ids], check_names=False, rtol=1e-9, atol=1e-12)
    assert (without[ids] - want[ids]).abs().max() > 1e-6


def test_send_labels_with_nothing_decided_since_says_so_and_succeeds(tmp_path):
    from click.testing import CliRunner

    from fraud.cli import main
    from fraud.store import AlertStore

    AlertStore(f"sqlite:///{tmp_path / 'a.db'}")
    r = CliRunner().invoke(main, ["send-labels", "--bootstrap", "127.0.0.1:1", "--alerts-db",
                                  f"sqlite:///{tmp_path / 'a.db'}", "--since", "2024-01-01"])
    assert r.exit_code == 0 and "no labels to send" in r.output
