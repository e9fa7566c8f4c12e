"""update_many (several independent states in one call, as the stream scorer's partitions) equals one update
per state, bit for bit, and leaves every state as the per-state updates leave it."""
from __future__ import annotations

import copy

import numpy as np
import pandas as pd
import pytest

from fraud.features.behaviour import BehaviourFeatures
from fraud.features.tabular import BaselineFeatures


@pytest.mark.parametrize("make", [BaselineFeatures, BehaviourFeatures], ids=["tabular", "behaviour"])
def test_update_many_equals_per_state_updates(make, random_world):
    df = random_world(60, 25, 40, seed=4)
    f = make().fit(df)
    # three partitions by customer (terminals are shared between them, as in Kafka), warmed on different history
    part = df["customer_id"].astype(int).to_numpy() % 3
    cut = int(len(df) * 0.8)
    hist, live = df.iloc[:cut], df.iloc[cut:]
    states = [f.new_state() for _ in range(3)]
    for k in range(3):
        f.update(states[k], hist[part[:cut] == k].reset_index(drop=True))
    ref = copy.deepcopy(states)
    for lo in range(0, len(live), 37):  # micro-batches, one with an empty partition
        b = live.iloc[lo:lo + 37]
        p = part[cut + lo:cut + lo + len(b)]
        groups = [b[p == k].reset_index(drop=True) for k in range(3)]
        if lo == 0:
            groups[1] = groups[1].iloc[:0]
        many = f.update_many(list(zip(states, groups)))
        one = [f.update(st, g) for st, g in zip(ref, groups)]
        expect = pd.concat(one, ignore_index=True)
        assert list(many.columns) == list(f.feature_names_)
        assert many.index.equals(pd.RangeIndex(len(expect)))
        np.testing.assert_array_equal(many.to_numpy(), expect.to_numpy())
    # the states absorbed the same events: one more batch per state gives the same features
    tail = df.iloc[-50:].reset_index(drop=True)
    for a, b in zip(states, ref):
        np.testing.assert_array_equal(f.update(a, tail).to_numpy(), f.update(b, tail).to_numpy())


def test_update_many_default_stacks_updates(random_world):
    """The contract's default (featurizers without their own update_many): updates stacked, index 0..n-1."""
    from fraud.features.base import Featurizer

    df = random_world(20, 10, 10, seed=1)
    f = BaselineFeatures().fit(df)
    s1, s2 = f.new_state(), f.new_state()
    a, b = df.iloc[:30], df.iloc[30:70]
    out = Featurizer.update_many(f, [(s1, a), (s2, b)])
    expect = np.vstack([f.update(f.new_state(), a).to_numpy(), f.update(f.new_state(), b).to_numpy()])
    assert out.index.equals(pd.RangeIndex(70))
    np.testing.assert_array_equal(out.to_numpy(), expect)
