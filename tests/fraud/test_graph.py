import numpy as np
import pandas as pd
import pytest

from fraud.errors import ConfigError, SchemaError
from fraud.graph import EDGE_TYPE, NODE_FEATURES, REV_EDGE_TYPE, build_graph


def test_cutoff_is_strict_and_later_rows_never_enter(tiny_frame):
    cut = pd.Timestamp("2024-01-05 08:00", tz="UTC")  # t4 is exactly at the cutoff
    g = build_graph(tiny_frame, cut)
    assert g.n_transactions == 4
    assert int(g.count.sum()) == 4
    assert g.last_time.max() < cut.value
    # changing anything at or after the cutoff changes nothing
    other = tiny_frame.copy()
    later = other["timestamp"] >= cut
    other.loc[later, "amount"] = 999.0
    other.loc[later, "customer_id"] = "Z"
    other.loc[later, "terminal_id"] = "W"
    h = build_graph(other, cut)
    assert list(h.customers) == list(g.customers) and list(h.terminals) == list(g.terminals)
    for a in ("src", "dst", "count", "amount", "first_time", "last_time", "customer_x", "terminal_x"):
        np.testing.assert_array_equal(getattr(g, a), getattr(h, a))


def test_edge_attributes_and_window(tiny_frame):
    g = build_graph(tiny_frame, "2024-01-11")
    assert g.n_customers == 2 and g.n_terminals == 2 and g.n_edges == 4
    ci, ti = g.customer_index, g.terminal_index
    e = {(g.customers[s], g.terminals[d]): k for k, (s, d) in enumerate(zip(g.src, g.dst))}
    k = e[("A", "X")]  # t0, t3, t5
    assert g.count[k] == 3 and g.amount[k] == pytest.approx(110.0)
    assert g.first_time[k] == pd.Timestamp("2024-01-01 10:00", tz="UTC").value
    assert g.last_time[k] == pd.Timestamp("2024-01-06 13:00", tz="UTC").value
    assert ci["A"] == 0 and ti["X"] == 0
    w = build_graph(tiny_frame, "2024-01-11", window_days=2)  # 2024-01-09 .. 2024-01-10
    assert w.n_transactions == 2 and set(w.customers) == {"A", "B"}
    assert g.customer_x.shape == (2, len(NODE_FEATURES))


def test_views(tiny_frame):
    g = build_graph(tiny_frame, "2024-01-11")
    nx_g = g.to_networkx()
    assert set(nx_g.nodes) == {"c:A", "c:B", "t:X", "t:Y"}
    assert nx_g.nodes["c:A"]["bipartite"] == 0 and nx_g.nodes["t:X"]["bipartite"] == 1
    assert nx_g.edges["c:A", "t:X"]["count"] == 3
    data = g.to_heterodata()
    assert data["customer"].x.shape == (2, len(NODE_FEATURES))
    assert data[EDGE_TYPE].edge_index.shape == (2, 4)
    assert (data[REV_EDGE_TYPE].edge_index == data[EDGE_TYPE].edge_index.flip(0)).all()
    ei = g.homogeneous_edge_index()
    assert ei.shape == (2, 8) and int(ei.max()) == 3


def test_bad_input(tiny_frame):
    with pytest.raises(SchemaError, match="amount"):
        build_graph(tiny_frame.drop(columns="amount"), "2024-01-11")
    with pytest.raises(ConfigError, match="window_days"):
        build_graph(tiny_frame, "2024-01-11", window_days=0)
