"""The live scorer in its consumer group and registry: partitions handed between two scorers with their
states, and a new champion swapped in between batches."""
from __future__ import annotations

import warnings

import pytest

from fraud.archive import read as read_archive
from streaming.replay import replay
from streamkit import MODEL, halt, new_topic, restored, serve_config, start, wait

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_rebalance_between_two_scorers(broker, reg, tmp_path):
    topic = new_topic("rebal", broker)
    data = reg.live.iloc[:1000]
    cfg = serve_config(broker, reg, tmp_path, topic)
    a = start(cfg)
    replay(data.iloc[:500], broker.bootstrap, topic)
    wait(lambda: a.scorer.n_events >= 500, 60, "scorer A to consume the first half")
    b = start(cfg)
    wait(lambda: len(b.scorer.parts) > 0 and len(a.scorer.parts) > 0
          and len(a.scorer.parts) + len(b.scorer.parts) == 4, 60, "the partitions to be split")
    parts_a, parts_b = set(a.scorer.parts), set(b.scorer.parts)
    assert parts_a.isdisjoint(parts_b)
    replay(data.iloc[500:], broker.bootstrap, topic)
    wait(lambda: a.scorer.n_scored + b.scorer.n_scored >= len(data), 60, "both scorers to finish")
    halt(b)
    halt(a)
    arch = read_archive(tmp_path / "archive")
    assert len(arch) == len(data) and set(arch["tx_id"]) == set(data["tx_id"])
    assert b.scorer.n_scored > 0 and a.scorer.n_scored > 500
    # state followed each partition: its final checkpoint has seen every event of the partition, including
    # those scored by the other scorer before the handover
    for p, g in arch.groupby("kafka_partition"):
        c, st = restored(tmp_path / "state", topic, int(p), reg.bundle)
        assert st.n_scored == len(g)
    moved = [p for p in parts_b if (arch["kafka_partition"] == p).any()]
    assert moved, "no partition changed hands"


def test_hot_reload_swaps_between_batches(broker, reg, tmp_path):
    from fraud import registry

    topic = new_topic("reload", broker)
    data = reg.live.iloc[:600]
    # the shared bundle registered under a name of this test's own (the store is shared: other tests keep
    # finding version 1 of MODEL as champion)
    name = f"{MODEL}-{topic}"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        registry.configure(reg.uri)
        v1 = registry.log_and_register(reg.bundle, name=name, artifact_root=str(reg.root / "artifacts"))
    h = start(serve_config(broker, reg, tmp_path, topic, reload_interval=0.2, model_uri=f"models:/{name}@champion"))
    s = h.scorer
    replay(data.iloc[:300], broker.bootstrap, topic)
    wait(lambda: s.n_scored >= 300, 60, "the first half")
    # a version that cannot be loaded: the current model is kept, the failure counted
    real = s.resolver
    s.resolver = lambda name, alias, uri: "999"
    wait(lambda: s.metrics.reload_failures._value.get() >= 1, 20, "a failed reload")
    assert s.version == v1
    s.resolver = real
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        v2 = registry.log_and_register(reg.bundle, name=name, artifact_root=str(reg.root / "artifacts"),
                                       champion_if_first=False)
        registry.set_alias(name, "champion", v2)
    wait(lambda: s.version == v2, 60, "the swap to the new champion")
    replay(data.iloc[300:], broker.bootstrap, topic)
    wait(lambda: s.n_scored >= 600, 60, "the second half")
    halt(h)
    arch = read_archive(tmp_path / "archive").set_index("tx_id")
    assert len(arch) == 600 and arch.index.is_unique
    assert (arch.loc[data["tx_id"].iloc[:300], "model_version"] == v1).all()
    assert (arch.loc[data["tx_id"].iloc[300:], "model_version"] == v2).all()
    assert s.metrics.reloads._value.get() == 1
    # the new version's states were rebuilt from the archive: each final checkpoint has absorbed every event
    # of its partition (first half by warm-up, second half by scoring)
    for p, g in arch.reset_index().groupby("kafka_partition"):
        c, st = restored(tmp_path / "state", topic, int(p), reg.bundle)
        assert c.model_version == v2 and st.n_scored == len(g)
