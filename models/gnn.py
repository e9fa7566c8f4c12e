"""An inductive heterogeneous GraphSAGE for the bipartite customer-terminal graph.

Architecture: per node type a linear input layer on standardized node features, then ``layers``
``HeteroConv`` layers over ``SAGEConv`` (mean aggregation, one conv per edge direction), ReLU
between layers; full batch (``NeighborLoader`` needs pyg-lib, which is absent).

Self-supervised training by link prediction on time-ordered edges: edges are sorted by
``edge_time`` (first transaction of the pair); the first ``train_frac`` of them form the message
graph, the later ones are the positives to predict (score = dot product of the two embeddings),
against as many random customer-terminal pairs as negatives (binary cross-entropy). Optionally,
``node_labels={"customer": y}`` (1 fraud, 0 genuine, -1 unknown) adds a supervised head on the
customer embeddings with weight ``label_weight``: the caller passes only labels older than its
feedback delay.

Inductive by construction: no learned per-id embedding. A node's input is its feature vector,
computed by the caller from the node's own observed transactions (``fraud.graph`` node features:
counts, degree, amount statistics, activity span), so ``embed(data)`` works on any graph with the
same feature columns: a customer or terminal never seen in training gets an embedding from its
features and its observed neighbourhood (``tests/models/test_gnn.py``).

``models`` never imports ``fraud``: this module takes a PyG ``HeteroData`` with node types
``customer``/``terminal`` and edge types ``(customer, pays, terminal)`` / ``(terminal, paid_by, customer)``.
"""
from __future__ import annotations

import numpy as np
import torch

EDGE = ("customer", "pays", "terminal")
REV = ("terminal", "paid_by", "customer")


class _Net(torch.nn.Module):
    def __init__(self, in_c: int, in_t: int, hidden: int, out: int, layers: int):
        from torch_geometric.nn import HeteroConv, SAGEConv

        super().__init__()
        self.lin = torch.nn.ModuleDict({"customer": torch.nn.Linear(in_c, hidden),
                                        "terminal": torch.nn.Linear(in_t, hidden)})
        self.convs = torch.nn.ModuleList()
        for i in range(layers):
            d = out if i == layers - 1 else hidden
            self.convs.append(HeteroConv({EDGE: SAGEConv((hidden, hidden), d), REV: SAGEConv((hidden, hidden), d)},
                                         aggr="sum"))
        self.head = torch.nn.Linear(out, 1)

    def forward(self, x_dict, edge_index_dict):
        h = {k: torch.relu(self.lin[k](x)) for k, x in x_dict.items()}
        for i, conv in enumerate(self.convs):
            new = conv(h, edge_index_dict)
            h = {k: new.get(k, h[k]) for k in h}  # a node type without incoming edges keeps its state
            if i < len(self.convs) - 1:
                h = {k: torch.relu(v) for k, v in h.items()}
        return h


class HeteroSAGE:
    """Parameters are stored only; ``fit`` sets ``net_``, ``x_mean_``, ``x_std_``, ``history_``."""

    def __init__(self, hidden: int = 32, out: int = 32, layers: int = 2, epochs: int = 60, lr: float = 0.01,
                 train_frac: float = 0.8, label_weight: float = 1.0, seed: int = 0):
        self.hidden = hidden
        self.out = out
        self.layers = layers
        self.epochs = epochs
        self.lr = lr
        self.train_frac = train_frac
        self.label_weight = label_weight
        self.seed = seed

    def _inputs(self, data):
        x = {k: (data[k].x - self.x_mean_[k]) / self.x_std_[k] for k in ("customer", "terminal")}
        ei = {EDGE: data[EDGE].edge_index, REV: data[EDGE].edge_index.flip(0)}
        return x, ei

    def fit(self, data, edge_time=None, node_labels: dict | None = None) -> "HeteroSAGE":
        torch.manual_seed(int(self.seed))
        gen = torch.Generator().manual_seed(int(self.seed))
        self.x_mean_ = {k: data[k].x.mean(0) for k in ("customer", "terminal")}
        self.x_std_ = {k: data[k].x.std(0, unbiased=False).clamp(min=1e-6) for k in ("customer", "terminal")}
        ei = data[EDGE].edge_index
        E = ei.shape[1]
        t = torch.as_tensor(np.asarray(edge_time) if edge_time is not None else np.arange(E))
        order = torch.argsort(t, stable=True)
        n_msg = max(1, min(E - 1, int(round(self.train_frac * E))))
        msg, pos = ei[:, order[:n_msg]], ei[:, order[n_msg:]]
        nc, nt = data["customer"].num_nodes, data["terminal"].num_nodes
        x = {k: (data[k].x - self.x_mean_[k]) / self.x_std_[k] for k in ("customer", "terminal")}
        eid = {EDGE: msg, REV: msg.flip(0)}
        net = _Net(x["customer"].shape[1], x["terminal"].shape[1], self.hidden, self.out, self.layers)
        opt = torch.optim.Adam(net.parameters(), lr=self.lr)
        ylab = None
        if node_labels is not None and "customer" in node_labels:
            ylab = torch.as_tensor(np.asarray(node_labels["customer"]), dtype=torch.float32)
        bce = torch.nn.functional.binary_cross_entropy_with_logits
        hist = []
        for _ in range(int(self.epochs)):
            net.train()
            opt.zero_grad()
            h = net(x, eid)
            neg = torch.stack([torch.randint(0, nc, (pos.shape[1],), generator=gen),
                               torch.randint(0, nt, (pos.shape[1],), generator=gen)])
            ps = (h["customer"][pos[0]] * h["terminal"][pos[1]]).sum(-1)
            ns = (h["customer"][neg[0]] * h["terminal"][neg[1]]).sum(-1)
            loss = bce(ps, torch.ones_like(ps)) + bce(ns, torch.zeros_like(ns))
            if ylab is not None and self.label_weight > 0:
                known = ylab >= 0
                if bool(known.any()):
                    logit = net.head(h["customer"][known]).squeeze(-1)
                    loss = loss + self.label_weight * bce(logit, ylab[known])
            loss.backward()
            opt.step()
            hist.append(loss.item())
        self.net_ = net.eval()
        self.history_ = hist
        return self

    @torch.no_grad()
    def embed(self, data):
        """(customer embeddings, terminal embeddings) as float32 numpy arrays, for any graph with the
        same node-feature columns (inductive: new nodes included)."""
        if not hasattr(self, "net_"):
            raise AttributeError("HeteroSAGE is not fitted; call fit(data) first")
        x, ei = self._inputs(data)
        h = self.net_(x, ei)
        return h["customer"].numpy().astype(np.float32), h["terminal"].numpy().astype(np.float32)

    @torch.no_grad()
    def link_scores(self, data, customers, terminals) -> np.ndarray:
        """Dot-product link scores of (customer index, terminal index) pairs in ``data``."""
        zc, zt = self.embed(data)
        return (zc[np.asarray(customers)] * zt[np.asarray(terminals)]).sum(-1)
