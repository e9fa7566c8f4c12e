"""The scorer's drift gauges: a Scorer.process on fake Kafka messages (no broker) with a real small bundle counts
the batch against the bundle's training profile, and /metrics shows fraud_feature_psi and fraud_score_psi."""
from __future__ import annotations

import copy
import time
import urllib.request
from types import SimpleNamespace

import numpy as np
import pytest

from fraud import drift
from streaming.metrics import Metrics

@pytest.fixture(scope="module")
def world(drift_world):
    return drift_world


@pytest.fixture(scope="module")
def bundle(drift_bundle):
    """The session's light bundle, copied: the metrics attach an observer to it."""
    return copy.copy(drift_bundle)


def _messages(df, start=0):
    from streaming.replay import encode_events

    values, keys = encode_events(df)
    now = time.time() * 1000
    return [SimpleNamespace(topic="t", partition=0, offset=start + i, timestamp=now, key=k, value=v, headers=[],
                            serialized_value_size=len(v), serialized_key_size=len(k or b""))
            for i, (k, v) in enumerate(zip(keys, values))]


def _scorer(bundle, tmp_path):
    from streaming.config import ServeConfig
    from streaming.loop import Scorer
    from streaming.partitions import fresh

    s = Scorer(ServeConfig(bootstrap="127.0.0.1:9", topic="t", group="g", model_uri="models:/m/1",
                           state_dir=str(tmp_path)))
    s._install(bundle)
    s.sinks, s.archive = [], None
    s.dlq = SimpleNamespace(send=lambda *a, **k: None, counts={})
    s.parts[0] = fresh(bundle, s.cfg, None)
    return s


def test_scorer_batches_show_up_as_drift_gauges_on_the_metrics_endpoint(bundle, world, tmp_path):
    s = _scorer(bundle, tmp_path)
    rows = world.iloc[-1500:].reset_index(drop=True)
    out = s.process(_messages(rows.iloc[:700]))
    out2 = s.process(_messages(rows.iloc[700:], start=700))
    assert len(out) + len(out2) == 1500
    server, _ = s.metrics.serve(0)
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{server.server_address[1]}/metrics", timeout=5) as r:
            text = r.read().decode()
    finally:
        s.metrics.close()
    gauges = {line.split(" ")[0]: float(line.split(" ")[1]) for line in text.splitlines()
              if line.startswith(("fraud_feature_psi{", "fraud_score_psi", "fraud_drift_window_events"))}
    assert gauges["fraud_drift_window_events"] == 1500
    assert {f'fraud_feature_psi{{feature="{c}"}}' for c in bundle.feature_names} <= set(gauges)
    # the gauges are the PSIs of the scored batch's features and scores against the training profile
    X = bundle.features_online(rows, bundle.warm_state())
    want = drift.compare(bundle.drift_profile, X.to_numpy(), np.r_[out["score"], out2["score"]])
    assert gauges["fraud_score_psi"] == pytest.approx(want["score"], rel=1e-6)
    assert gauges['fraud_feature_psi{feature="TX_AMOUNT"}'] == pytest.approx(want["features"]["TX_AMOUNT"], rel=1e-6)


def test_a_new_model_starts_an_empty_window_and_a_model_without_profile_exports_none(bundle, world, tmp_path):
    import copy

    from prometheus_client import generate_latest

    m = Metrics()
    m.drift.interval = 0.0
    m.set_model(bundle, "1")
    bundle.score(world.iloc[-200:].reset_index(drop=True), bundle.warm_state())
    assert m.drift.values()["n"] == 200
    m.set_model(bundle, "2")
    assert m.drift.values()["n"] == 0
    old = copy.copy(bundle)
    old.drift_profile = None
    m.set_model(old, "3")
    assert old.observer is None and "fraud_score_psi" not in generate_latest(m.registry).decode()
    bundle.observer = None
