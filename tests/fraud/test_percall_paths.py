"""The small-poll fast paths equal their reference paths: GraphState.ids factorizes a list of text ids by a dict
as pd.factorize does a Series; ``shared_columns`` hands every reader the column it would read itself;
``streaming.batch.score`` through ``score_poll`` equals the per-partition ``score_many`` path."""
from __future__ import annotations

import copy

import numpy as np
import pandas as pd

from fraud.features.base import column, id_list, shared_columns
from fraud.features.graph import GraphState
from streaming import batch


def test_graph_ids_of_a_text_list_equal_the_series_path():
    rng = np.random.default_rng(11)
    fast, ref = GraphState(50, 50, 50), GraphState(50, 50, 50)
    fit_index = {f"c{i}": i for i in range(0, 40, 3)}
    for _ in range(30):
        ids = [f"c{i}" for i in rng.integers(0, 60, rng.integers(0, 12))]
        got = fast.ids(list(ids), True, fit_index)
        want = ref.ids(pd.Series(pd.array(ids, dtype="str")), True, fit_index)
        np.testing.assert_array_equal(got, want)
    assert fast.c_ids == ref.c_ids and fast.n_c == ref.n_c
    np.testing.assert_array_equal(fast.c_fit[:fast.n_c], ref.c_fit[:ref.n_c])


def test_shared_columns_read_once_and_only_inside_the_context():
    rows = pd.DataFrame({"customer_id": pd.array(["a", "b", None], dtype="str"), "x": [1, 2, 3]})
    assert column(rows, "x") is not column(rows, "x")  # outside: a plain rows[name]
    with shared_columns():
        assert column(rows, "x") is column(rows, "x")
        assert id_list(rows, "customer_id") is id_list(rows, "customer_id")
        assert id_list(rows, "customer_id")[:2] == ["a", "b"] and pd.isna(id_list(rows, "customer_id")[2])
        other = rows.copy()
        assert column(other, "x") is not column(rows, "x")
    assert column(rows, "x") is not column(rows, "x")


class _ManyOnly:
    """A model offering score_many only (the scorer's Bundle protocol), delegating to a real bundle."""

    def __init__(self, bundle):
        self.bundle = bundle

    def score_many(self, groups):
        return self.bundle.score_many(groups)


def test_score_poll_equals_the_score_many_path(drift_bundle, drift_world):
    rows = drift_world.sort_values("timestamp", kind="stable").iloc[-400:].reset_index(drop=True)
    part = np.random.default_rng(3).integers(0, 4, len(rows)).astype(np.int32)
    offs = np.arange(len(rows), dtype=np.int64)
    poll = {p: drift_bundle.new_state() for p in range(4)}
    many = copy.deepcopy(poll)
    for lo in range(0, len(rows), 28):  # polls of 28 events: each partition's state carries over
        sl = slice(lo, lo + 28)
        a = batch.score(drift_bundle, "1", poll, rows.iloc[sl], part[sl], offs[sl], "tx")
        b = batch.score(_ManyOnly(drift_bundle), "1", many, rows.iloc[sl], part[sl], offs[sl], "tx")
        assert a[0].columns.tolist() == b[0].columns.tolist()
        for c in a[0].columns:
            assert a[0][c].tolist() == b[0][c].tolist(), c
        np.testing.assert_array_equal(a[0]["score"].to_numpy(), b[0]["score"].to_numpy())
    assert [(s.n_scored, s.last_timestamp) for s in poll.values()] == [(s.n_scored, s.last_timestamp)
                                                                       for s in many.values()]


def test_drift_bins_of_a_small_batch_equal_searchsorted_per_feature():
    from fraud.drift import DriftWindow

    rng = np.random.default_rng(5)
    f = 9
    edges = [np.unique(rng.normal(size=rng.integers(0, 9))) for _ in range(f)]
    profile = {"features": [f"x{j}" for j in range(f)], "edges": edges, "score_edges": np.linspace(0.1, 0.9, 9),
               "shares": [np.full(len(e) + 2, 1.0 / (len(e) + 2)) for e in edges], "score_shares": np.full(11, 1 / 11)}
    w = DriftWindow(profile)
    for n in (1, 7, 28, 3000):  # 3000: the per-feature search
        X = rng.normal(size=(n, f))
        X[rng.random((n, f)) < 0.1] = np.nan
        X[rng.random((n, f)) < 0.05] = np.inf
        X[rng.random((n, f)) < 0.05] = -np.inf
        ties = rng.random((n, f)) < 0.2  # values exactly on an edge
        for j in range(f):
            if len(edges[j]):
                X[ties[:, j], j] = rng.choice(edges[j], ties[:, j].sum())
        want = np.stack([np.searchsorted(edges[j], X[:, j], side="left") for j in range(f)], axis=1)
        fin = ~np.isnan(X)
        np.testing.assert_array_equal(w._bins(X)[fin], want[fin])  # NaN goes to its own bin after
