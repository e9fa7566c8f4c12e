"""Checks of the featurizer contract (``fraud.features.base``) shared by the contract suite and the featurizer
tests that run them on their own parameters."""
from __future__ import annotations

import copy

import numpy as np
import pandas as pd

from fraud.features.base import Featurizer, replay, shared_columns


def assert_replay_equals_transform(featurizer: Featurizer, df: pd.DataFrame, batch_sizes=(1, 7, 1000),
                                   atol: float = 1e-5) -> None:
    """Test helper: online replay at several micro-batch sizes equals the batch transform."""
    expected = featurizer.transform(df)
    for bs in batch_sizes:
        got = replay(featurizer, df, batch_size=bs)
        assert list(got.columns) == list(expected.columns), (bs, list(got.columns))
        np.testing.assert_allclose(got.to_numpy(dtype=float), expected.to_numpy(dtype=float), atol=atol, rtol=1e-5,
                                   err_msg=f"replay with batch_size={bs} differs from transform")


def assert_update_many_equals_updates(featurizer: Featurizer, hist: pd.DataFrame, live: pd.DataFrame, part,
                                      n_parts: int = 3, batch: int = 37, atol: float = 0.0) -> tuple[list, list]:
    """Test helper: ``update_many`` over ``n_parts`` independent states (``part``: the state of each row of
    ``hist`` then ``live``, e.g. a customer hash: the stream's Kafka partitions) equals one ``update`` per state,
    micro-batch by micro-batch (``atol`` 0: bit for bit), one batch with an empty group, and ``update_many_matrix``
    (where a featurizer has it) equals ``update_many`` bit for bit; ``update_many`` runs
    inside ``shared_columns`` (the bundle's way), ``update`` outside. Each state first absorbs
    its part of ``hist``. Returns (the update_many states, the per-state update states) for further checks."""
    part = np.asarray(part)
    hp, lp = part[:len(hist)], part[len(hist):len(hist) + len(live)]
    states = [featurizer.new_state() for _ in range(n_parts)]
    for k in range(n_parts):
        featurizer.update(states[k], hist[hp == k].reset_index(drop=True))
    ref = copy.deepcopy(states)
    fast = getattr(featurizer, "update_many_matrix", None)  # the bundle's frameless path: bit for bit the frame's
    mats = copy.deepcopy(states) if fast is not None else None
    for lo in range(0, len(live), batch):
        b, p = live.iloc[lo:lo + batch], lp[lo:lo + batch]
        groups = [b[p == k].reset_index(drop=True) for k in range(n_parts)]
        if lo == 0:
            groups[-1] = groups[-1].iloc[:0]
        with shared_columns():  # as the bundle runs it: each group's columns read once for all featurizers
            many = featurizer.update_many(list(zip(states, groups)))
            if fast is not None:
                got = fast(list(zip(mats, groups)))
                want = many.to_numpy(dtype=np.float64)
                assert got.dtype == np.float64 and np.array_equal(got, want, equal_nan=True), \
                    f"update_many_matrix differs from update_many (rows {lo}..)"
        one = pd.concat([featurizer.update(st, g) for st, g in zip(ref, groups)], ignore_index=True)
        assert list(many.columns) == list(one.columns) and many.index.equals(pd.RangeIndex(len(one)))
        np.testing.assert_allclose(many.to_numpy(dtype=float), one.to_numpy(dtype=float), rtol=0 if not atol else
                                   atol, atol=atol, err_msg=f"update_many differs from update (rows {lo}..)")
    return states, ref
