"""The small-poll fast paths equal their reference paths: GraphState.ids factorizes a list of text ids by a dict
as pd.factorize does a Series; ``shared_columns`` hands every reader the column it would read itself;
``streaming.batch.score`` through ``score_poll`` equals one ``score`` per partition."""
from __future__ import annotations

import copy

import numpy as np
import pandas as pd

from fraud.features.base import column, id_list, shared_columns, text_ids
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
        assert id_list(pd.DataFrame({"c": [1, 22]}), "c") == ["1", "22"]  # numbers read as text ids
        assert text_ids(rows, "customer_id") is None  # a missing id: not whole text
        whole = rows.iloc[:2]
        assert text_ids(whole, "customer_id") is id_list(whole, "customer_id") == ["a", "b"]
        other = rows.copy()
        assert column(other, "x") is not column(rows, "x")
    assert column(rows, "x") is not column(rows, "x")


def test_stream_polls_equal_one_score_per_partition(drift_bundle, drift_world):
    """``batch.score`` (the poll through ``score_poll``) equals scoring each partition's rows alone with ``score``,
    poll after poll with the states carried over: result columns and state counters."""
    rows = drift_world.sort_values("timestamp", kind="stable").iloc[-400:].reset_index(drop=True)
    part = np.random.default_rng(3).integers(0, 4, len(rows)).astype(np.int32)
    offs = np.arange(len(rows), dtype=np.int64)
    poll = {p: drift_bundle.new_state() for p in range(4)}
    alone = copy.deepcopy(poll)
    for lo in range(0, len(rows), 28):  # polls of 28 events: each partition's state carries over
        sl = slice(lo, lo + 28)
        frame, order, _ = batch.score(drift_bundle, "1", poll, rows.iloc[sl], part[sl], offs[sl], "tx")
        got = frame.set_index("tx_id")
        for p in range(4):
            mine = rows.iloc[sl][part[sl] == p].reset_index(drop=True)
            if not len(mine):
                continue
            ref = drift_bundle.score(mine, alone[p])
            np.testing.assert_array_equal(got.loc[ref["tx_id"], "score"].to_numpy(), ref["score"].to_numpy())
            assert got.loc[ref["tx_id"], "is_alert"].tolist() == ref["is_alert"].tolist()
            assert got.loc[ref["tx_id"], "reasons"].tolist() == ref["reasons"].tolist()
    assert [(s.n_scored, s.last_timestamp) for s in poll.values()] == [(s.n_scored, s.last_timestamp)
                                                                       for s in alone.values()]


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
