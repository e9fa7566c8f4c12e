"""The corpus of ``fraud bench faults``: its poison events are what they claim to be (no broker needed)."""
from __future__ import annotations

import json
import math
from collections import Counter

import pandas as pd
import pytest

from benchmarks import corpus as C

LIMIT = 256 * 1024


@pytest.fixture(scope="module")
def msgs():
    from fraud.simulate import simulate

    w = simulate(customers=60, terminals=120, days=12, seed=3)
    live = w[w["timestamp"] >= w["timestamp"].min() + pd.Timedelta(days=6)].reset_index(drop=True)
    return C.build(live, 300, seed=1, max_bytes=LIMIT)


def test_counts_and_expectations(msgs):
    cats = Counter(m.category for m in msgs)
    assert cats["good"] == 300
    bad = [m for m in msgs if m.expect == C.DEAD]
    assert len(bad) >= 40 and all(n >= 2 for c, n in cats.items() if c != "good")
    assert len({m.key for m in bad if m.category not in ("conflicting_duplicate",)}) == len(bad) - cats[
        "conflicting_duplicate"]
    assert {m.expect for m in msgs if m.category in ("extra_attr_type_change", "no_label")} == {C.SCORED}
    assert {m.expect for m in msgs if m.category == "replayed_duplicate"} == {C.SKIPPED}
    good_ids = [m.tx_id for m in msgs if m.category == "good"]
    assert len(set(good_ids)) == 300
    assert {m.tx_id for m in msgs if m.category in ("replayed_duplicate", "conflicting_duplicate")} <= set(good_ids)


def test_poison_shapes(msgs):
    by = {}
    for m in msgs:
        by.setdefault(m.category, []).append(m)
    assert all(len(m.value) > LIMIT for m in by["oversized"])
    assert all(100_000 <= len(m.value) < LIMIT for m in by["deep_nesting"])  # under the limit: parsed
    assert any(m.value is None for m in by["empty"]) and any(m.value == b"" for m in by["empty"])
    infs = [json.loads(m.value)["amount"] for m in by["amount_inf"]]
    assert all(math.isinf(a) for a in infs)
    assert all(abs(json.loads(m.value)["amount"]) > 10**399 for m in by["amount_huge_int"])
    assert {type(json.loads(m.value)["tx_id"]) for m in by["id_wrong_type"]} >= {dict, int, bool}
    for m in by["no_label"]:
        d = json.loads(m.value)
        assert "label" not in d and "scenario" not in d
    metas = {type(json.loads(m.value)["meta"]) for m in by["extra_attr_type_change"]}
    assert {dict, str, list} <= metas
    for m in by["conflicting_duplicate"]:
        orig = next(g for g in msgs if g.category == "good" and g.tx_id == m.tx_id)
        assert json.loads(m.value)["amount"] != json.loads(orig.value)["amount"] == pytest.approx(m.amount - 1.25)
    for m in by["replayed_duplicate"]:
        assert any(g.value == m.value and g.key == m.key for g in msgs if g.category == "good")


def test_deterministic():
    from fraud.simulate import simulate

    w = simulate(customers=60, terminals=120, days=12, seed=3)
    live = w[w["timestamp"] >= w["timestamp"].min() + pd.Timedelta(days=6)].reset_index(drop=True)
    a, b = (C.build(live, 200, seed=5, max_bytes=LIMIT) for _ in range(2))
    assert [(m.value, m.key, m.category) for m in a] == [(m.value, m.key, m.category) for m in b]
