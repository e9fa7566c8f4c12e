"""update_many (several independent states in one call, as the stream scorer's partitions) equals one update
per state, bit for bit, and leaves every state as the per-state updates leave it."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from fraud.features.base import assert_update_many_equals_updates
from fraud.features.behaviour import BehaviourFeatures
from fraud.features.tabular import BaselineFeatures


@pytest.mark.parametrize("make", [BaselineFeatures, BehaviourFeatures], ids=["tabular", "behaviour"])
def test_update_many_equals_per_state_updates(make, random_world):
    df = random_world(60, 25, 40, seed=4)
    f = make().fit(df)
    # three partitions by customer (terminals are shared between them, as in Kafka), warmed on different history
    cut = int(len(df) * 0.8)
    states, ref = assert_update_many_equals_updates(f, df.iloc[:cut], df.iloc[cut:],
                                                    df["customer_id"].astype(int).to_numpy() % 3)
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
