"""The customer-terminal transaction graph, built from a time window strictly before a cutoff.

``build_graph(df, cutoff, window_days=None)`` aggregates canonical transactions with
``timestamp < cutoff`` (and ``>= cutoff - window_days`` when given) into a bipartite graph:

* nodes: customers (index ``0..n_customers-1``) and terminals (``0..n_terminals-1``), in order of
  first appearance; ``customer_index`` / ``terminal_index`` map ids to indices;
* one edge per (customer, terminal) pair that transacted, with attributes ``count``,
  ``amount`` (total), ``first_time`` and ``last_time`` (int64 ns since epoch, UTC);
* node features ``customer_x`` / ``terminal_x`` computed only from the node's own observed
  transactions in the window (log count, log degree, amount mean / std / max, active span,
  log total): the inductive input of the GNN (``models.gnn``): a node never seen in training gets
  an embedding from these features and its neighbourhood.

No transaction at or after ``cutoff`` ever enters (``tests/fraud/test_graph.py``).
Labels are not part of the graph: delay-respecting label signals are added by the callers
(``fraud.features.graph``) with an explicit label cutoff.

Views: ``to_heterodata()`` (PyG ``HeteroData``: node types ``customer`` / ``terminal``, edge types
``(customer, pays, terminal)`` and the reverse ``(terminal, paid_by, customer)``),
``to_networkx()`` (bipartite ``networkx.Graph``, node ids ``"c:<id>"`` / ``"t:<id>"``, attribute
``bipartite`` 0/1, edge attributes as above) and ``homogeneous_edge_index()`` (undirected
``[2, 2E]`` with customers ``0..nc-1`` and terminals ``nc..nc+nt-1``, for node2vec).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from fraud.errors import ConfigError, SchemaError
from fraud.schema import utc_timestamp

NODE_FEATURES = ["log_count", "log_degree", "log_amount_mean", "log_amount_std", "log_amount_max",
                 "active_days", "log_total"]
EDGE_TYPE = ("customer", "pays", "terminal")
REV_EDGE_TYPE = ("terminal", "paid_by", "customer")


@dataclass
class TxGraph:
    """Aggregated bipartite customer-terminal graph (see module doc)."""

    cutoff: pd.Timestamp
    start: pd.Timestamp | None
    customers: np.ndarray  # customer ids (str), index = node index
    terminals: np.ndarray  # terminal ids (str)
    src: np.ndarray  # int64 customer index per edge
    dst: np.ndarray  # int64 terminal index per edge
    count: np.ndarray  # int64 transactions per edge
    amount: np.ndarray  # float64 total amount per edge
    first_time: np.ndarray  # int64 ns
    last_time: np.ndarray  # int64 ns
    customer_x: np.ndarray  # float32 [nc, len(NODE_FEATURES)]
    terminal_x: np.ndarray  # float32 [nt, len(NODE_FEATURES)]
    n_transactions: int = 0

    @property
    def n_customers(self) -> int:
        return len(self.customers)

    @property
    def n_terminals(self) -> int:
        return len(self.terminals)

    @property
    def n_edges(self) -> int:
        return len(self.src)

    @property
    def customer_index(self) -> dict:
        return {c: i for i, c in enumerate(self.customers)}

    @property
    def terminal_index(self) -> dict:
        return {t: i for i, t in enumerate(self.terminals)}

    def homogeneous_edge_index(self):
        """Undirected LongTensor [2, 2E]: customers 0..nc-1, terminals nc..nc+nt-1."""
        import torch

        s = torch.as_tensor(self.src, dtype=torch.long)
        d = torch.as_tensor(self.dst, dtype=torch.long) + self.n_customers
        return torch.stack([torch.cat([s, d]), torch.cat([d, s])])

    def to_heterodata(self):
        """PyG HeteroData with node features ``x`` and edge attributes [log count, log amount]."""
        import torch
        from torch_geometric.data import HeteroData

        data = HeteroData()
        data["customer"].x = torch.as_tensor(self.customer_x, dtype=torch.float32)
        data["terminal"].x = torch.as_tensor(self.terminal_x, dtype=torch.float32)
        ei = torch.as_tensor(np.stack([self.src, self.dst]), dtype=torch.long)
        ea = torch.as_tensor(np.stack([np.log1p(self.count), np.log1p(self.amount)], axis=1), dtype=torch.float32)
        data[EDGE_TYPE].edge_index = ei
        data[EDGE_TYPE].edge_attr = ea
        data[EDGE_TYPE].first_time = torch.as_tensor(self.first_time)
        data[EDGE_TYPE].last_time = torch.as_tensor(self.last_time)
        data[REV_EDGE_TYPE].edge_index = ei.flip(0)
        data[REV_EDGE_TYPE].edge_attr = ea
        return data

    def to_networkx(self):
        """Bipartite networkx Graph; nodes "c:<id>" (bipartite=0) and "t:<id>" (bipartite=1)."""
        import networkx as nx

        g = nx.Graph()
        g.add_nodes_from((f"c:{c}" for c in self.customers), bipartite=0, kind="customer")
        g.add_nodes_from((f"t:{t}" for t in self.terminals), bipartite=1, kind="terminal")
        ft = pd.to_datetime(self.first_time, utc=True)
        lt = pd.to_datetime(self.last_time, utc=True)
        cs, ts = self.customers, self.terminals
        g.add_edges_from(
            (f"c:{cs[s]}", f"t:{ts[d]}", {"count": int(n), "amount": float(a), "first_time": f, "last_time": la})
            for s, d, n, a, f, la in zip(self.src, self.dst, self.count, self.amount, ft, lt)
        )
        return g


def _node_features(idx: np.ndarray, n: int, amount: np.ndarray, t_ns: np.ndarray, degree: np.ndarray) -> np.ndarray:
    cnt = np.bincount(idx, minlength=n).astype(np.float64)
    tot = np.bincount(idx, weights=amount, minlength=n)
    sq = np.bincount(idx, weights=amount * amount, minlength=n)
    safe = np.maximum(cnt, 1.0)
    mean = tot / safe
    std = np.sqrt(np.maximum(sq / safe - mean * mean, 0.0))
    mx = np.zeros(n)
    np.maximum.at(mx, idx, amount)
    tmin = np.full(n, np.iinfo(np.int64).max, dtype=np.int64)
    tmax = np.full(n, np.iinfo(np.int64).min, dtype=np.int64)
    np.minimum.at(tmin, idx, t_ns)
    np.maximum.at(tmax, idx, t_ns)
    span = np.where(cnt > 0, (tmax - tmin) / 86_400e9, 0.0)
    x = np.stack([np.log1p(cnt), np.log1p(degree), np.log1p(mean), np.log1p(std), np.log1p(mx),
                  np.log1p(span), np.log1p(tot)], axis=1)
    return x.astype(np.float32)


def build_graph(df: pd.DataFrame, cutoff, window_days: float | None = None) -> TxGraph:
    """Graph of the transactions with ``cutoff - window_days <= timestamp < cutoff``.

    ``cutoff``: anything ``pd.Timestamp`` accepts (naive = UTC). Transactions at or after it
    never enter. ``window_days=None`` keeps all history before the cutoff.
    """
    for col in ("timestamp", "customer_id", "terminal_id", "amount"):
        if col not in df.columns:
            raise SchemaError(f"build_graph: column {col!r} missing; columns present: {list(df.columns)}")
    cutoff = utc_timestamp(cutoff, "build_graph: cutoff")
    if window_days is not None and not window_days > 0:
        raise ConfigError(f"build_graph: window_days={window_days!r} must be > 0")
    ts = df["timestamp"]
    mask = np.array(ts < cutoff, dtype=bool)
    start = None
    if window_days is not None:
        start = cutoff - pd.Timedelta(days=float(window_days))
        mask = mask & np.asarray(ts >= start, dtype=bool)
    sub = df.loc[mask]
    cust_codes, customers = pd.factorize(sub["customer_id"].astype(str), sort=False)
    term_codes, terminals = pd.factorize(sub["terminal_id"].astype(str), sort=False)
    nc, nt = len(customers), len(terminals)
    amount = sub["amount"].to_numpy(dtype=np.float64)
    t_ns = sub["timestamp"].to_numpy(dtype="datetime64[ns]").astype(np.int64)
    cust_codes = cust_codes.astype(np.int64)
    term_codes = term_codes.astype(np.int64)
    key = cust_codes * max(nt, 1) + term_codes
    ukey, inv = np.unique(key, return_inverse=True)
    ne = len(ukey)
    src = ukey // max(nt, 1)
    dst = ukey % max(nt, 1)
    count = np.bincount(inv, minlength=ne).astype(np.int64)
    total = np.bincount(inv, weights=amount, minlength=ne)
    first = np.full(ne, np.iinfo(np.int64).max, dtype=np.int64)
    last = np.full(ne, np.iinfo(np.int64).min, dtype=np.int64)
    np.minimum.at(first, inv, t_ns)
    np.maximum.at(last, inv, t_ns)
    cdeg = np.bincount(src, minlength=nc)
    tdeg = np.bincount(dst, minlength=nt)
    return TxGraph(
        cutoff=cutoff, start=start,
        customers=np.asarray(customers, dtype=object), terminals=np.asarray(terminals, dtype=object),
        src=src, dst=dst, count=count, amount=total, first_time=first, last_time=last,
        customer_x=_node_features(cust_codes, nc, amount, t_ns, cdeg),
        terminal_x=_node_features(term_codes, nt, amount, t_ns, tdeg),
        n_transactions=int(mask.sum()),
    )
