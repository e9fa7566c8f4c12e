import numpy as np
import pandas as pd
import pytest
import torch



from fraud.graph import build_graph
from models.gnn import HeteroSAGE


def _frame(n_cust=40, n_term=30, n=1500, seed=0):
    rng = np.random.default_rng(seed)
    c = rng.integers(0, n_cust, n)
    t = (c * 7 + rng.integers(0, 4, n)) % n_term  # each customer uses a few terminals
    ts = pd.Timestamp("2024-01-01", tz="UTC") + pd.to_timedelta(np.sort(rng.integers(0, 30 * 86400, n)), unit="s")
    return pd.DataFrame({"tx_id": [str(i) for i in range(n)], "timestamp": ts, "customer_id": [f"c{x}" for x in c],
                         "terminal_id": [f"t{x}" for x in t], "amount": rng.gamma(2.0, 20.0, n)})


def test_inductive_embedding_of_unseen_customer():
    df = _frame()
    g = build_graph(df, "2024-01-31")
    m = HeteroSAGE(hidden=16, out=8, epochs=30, seed=0)
    with pytest.raises(AttributeError):
        m.embed(g.to_heterodata())
    assert m.fit(g.to_heterodata(), edge_time=g.first_time) is m
    assert m.history_[-1] < m.history_[0]  # the link-prediction loss goes down
    # a new customer appears after training: its embedding comes from its features and neighbours
    new = pd.DataFrame({"tx_id": ["n1", "n2", "n3"], "timestamp": pd.to_datetime(["2024-02-01"] * 3, utc=True),
                        "customer_id": ["new"] * 3, "terminal_id": ["t3", "t3", "t4"], "amount": [30.0, 40.0, 50.0]})
    g2 = build_graph(pd.concat([df, new], ignore_index=True), "2024-02-02")
    assert "new" not in g.customer_index and "new" in g2.customer_index
    zc, zt = m.embed(g2.to_heterodata())
    z_new = zc[g2.customer_index["new"]]
    assert np.isfinite(z_new).all() and np.abs(z_new).sum() > 0
    # the same new customer at other terminals gets another embedding: it depends on the neighbourhood
    other = new.assign(terminal_id=["t20", "t21", "t21"])
    g3 = build_graph(pd.concat([df, other], ignore_index=True), "2024-02-02")
    z_other = m.embed(g3.to_heterodata())[0][g3.customer_index["new"]]
    assert not np.allclose(z_new, z_other)
    # trained link scores: observed pairs score above random pairs
    s_pos = m.link_scores(g.to_heterodata(), g.src, g.dst)
    rng = np.random.default_rng(1)
    s_neg = m.link_scores(g.to_heterodata(), rng.integers(0, g.n_customers, 500), rng.integers(0, g.n_terminals, 500))
    assert s_pos.mean() > s_neg.mean()


def test_same_seed_same_embeddings_and_labels_head():
    g = build_graph(_frame(seed=1), "2024-01-31")
    data = g.to_heterodata()
    y = np.full(g.n_customers, -1)
    y[:5] = 1
    y[5:15] = 0
    a = HeteroSAGE(hidden=8, out=8, epochs=10, seed=3).fit(data, edge_time=g.first_time, node_labels={"customer": y})
    b = HeteroSAGE(hidden=8, out=8, epochs=10, seed=3).fit(data, edge_time=g.first_time, node_labels={"customer": y})
    np.testing.assert_allclose(a.embed(data)[0], b.embed(data)[0], atol=1e-6)
    assert all(k.endswith("_") for k in vars(a) if k not in ("hidden", "out", "layers", "epochs", "lr", "train_frac",
                                                              "label_weight", "seed"))
    assert isinstance(a.net_, torch.nn.Module)
