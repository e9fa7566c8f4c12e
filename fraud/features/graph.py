"""Transaction-level features from the customer-terminal graph (``GraphFeatures``).

``fit(history)`` builds the graph of ``history`` (``fraud.graph.build_graph`` with cutoff = just after
the last row of history, optional ``window_days``), embeds its nodes (``embedder="node2vec"``:
``models.node2vec``; ``"gnn"``: ``models.gnn``, inductive), projects the embeddings to ``proj_dim``
dimensions with a PCA fitted on all nodes, and records static structure (k-core numbers).
Labels are not used by ``fit``.

Per transaction (customer c, terminal t, time ts), computed by an online state machine that sees
the rows in time order (``transform`` is the same machine run from an empty state, so replay in
any micro-batches equals ``transform`` exactly):

======================  ===========================================================================
column                  meaning
======================  ===========================================================================
g_c0..g_c{k-1}          customer embedding projection (fit-time embedding; an unseen customer gets
                        the inductive one: mean of the embeddings of its recent terminals known at fit)
g_t0..g_t{k-1}          terminal embedding projection (unseen: mean of its recent known customers)
g_cos                   cosine similarity of the two (full) embeddings: customer-terminal affinity
g_c_seen, g_t_seen      1 when the node was in the fit graph
g_c_core, g_t_core      k-core number of the node in the fit graph (0 when unseen)
g_pair_prior            prior transactions of this pair in the customer's recent-terminal memory
g_pair_share            g_pair_prior / prior transactions of the customer in that memory
g_c_ndist, g_t_ndist    distinct recent terminals of c / distinct recent customers of t
g_c_known               frauds of c whose label is known (transaction older than ts - delay)
g_t_known_cust          recent customers of t (other than c) with a known fraud anywhere
g_t_known_cust_share    the same divided by g_t_ndist
g_c_nbr_risk            recent terminals of c (other than t) where a known-fraud customer transacted
g_overlap               ring signal: max over c's ``overlap_terminals`` most recent other terminals t'
                        of |recent customers of t and of t', other than c| (dense blocks)
g_overlap_share         g_overlap / g_t_ndist
g_c_age_days            days since the customer's first transaction seen by the state (0 for the first)
g_t_new_cust(_share)    recent customers of t (other than c) first seen less than ``new_days`` ago
                        (mule rings recruit new accounts), and that divided by g_t_ndist
======================  ===========================================================================

``columns="online"`` keeps only the columns computed by the online state plus ``g_cos`` (drops the
projections, seen flags and core numbers: node-specific values frozen at fit time). Why it exists:
in a time-split evaluation the training rows precede the fit cutoff, so their frozen node values
already reflect their own later structure (a ring fully formed in the graph) while test rows of a
ring that starts after the cutoff see none: a train/test mismatch. On the 2,000-customer world the
frozen columns cost ring recall (see ``fraud.bench.ablation``; figures in the issue's closing note).

Information rule: the state absorbs a row only after computing its features; a fraud label is
released into the state only when its transaction is older than ``ts - delay_days`` of the
row being scored. Memory is bounded: a customer remembers its ``max_terminals`` most recent
terminals (LRU with counts), a terminal its ``max_customers`` most recent customers; known-fraud
counters and the first-seen time are one integer per node; pending labels wait at most the delay.

Stream feedback: rows scored without a label get it later through ``add_labels(state, rows)``; it is
used exactly as a label present at scoring time would be (tested).

Speed: the state machine is a Python loop (about 100-300 us per row on the shared 2-core machine:
347k rows in 73-103 s under load average ~15); a numba version is the next step if it matters.
"""
from __future__ import annotations

from collections import deque

import numpy as np
import pandas as pd

from fraud.errors import ConfigError
from fraud.features.base import Featurizer

_NS_DAY = 86_400 * 1_000_000_000


class GraphState:
    """Online state of ``GraphFeatures`` (plain picklable containers, bounded per node)."""

    def __init__(self):
        self.cust_terms: dict = {}  # c -> {t: count} in recency order (LRU)
        self.term_custs: dict = {}  # t -> {c: count} in recency order (LRU)
        self.pending: deque = deque()  # (time_ns, c, t) of fraud rows whose label is not yet usable
        self.known_c: dict = {}  # c -> known frauds
        self.known_t_cust: dict = {}  # t -> set of known-fraud customers seen there (bounded)
        self.first_seen: dict = {}  # c -> time (ns) of its first transaction seen by this state
        self.last_time: int | None = None


def _lru_add(d: dict, key, cap: int) -> None:
    n = d.pop(key, 0)
    d[key] = n + 1
    if len(d) > cap:
        del d[next(iter(d))]


class GraphFeatures(Featurizer):
    def __init__(self, embedder: str = "node2vec", dim: int = 32, proj_dim: int = 8, window_days: float | None = None,
                 walk_length: int = 20, walks_per_node: int = 10, p: float = 1.0, q: float = 1.0,
                 gnn_epochs: int = 60, delay_days: float = 7.0, max_terminals: int = 32,
                 max_customers: int = 64, max_known: int = 64, overlap_terminals: int = 8, new_days: float = 14.0, columns: str = "all",
                 seed: int = 0):
        self.embedder = embedder
        self.dim = dim
        self.proj_dim = proj_dim
        self.window_days = window_days
        self.walk_length = walk_length
        self.walks_per_node = walks_per_node
        self.p = p
        self.q = q
        self.gnn_epochs = gnn_epochs
        self.delay_days = delay_days
        self.max_terminals = max_terminals
        self.max_customers = max_customers
        self.max_known = max_known
        self.overlap_terminals = overlap_terminals
        self.new_days = new_days
        self.columns = columns
        self.seed = seed

    # ------------------------------------------------------------------ fit
    def fit(self, df: pd.DataFrame, y=None) -> "GraphFeatures":
        from fraud.graph import build_graph

        if self.columns not in ("all", "online"):
            raise ConfigError(f"GraphFeatures: columns={self.columns!r} must be 'all' or 'online'")
        if self.embedder not in ("node2vec", "gnn"):
            raise ConfigError(f"GraphFeatures: embedder={self.embedder!r} must be 'node2vec' or 'gnn'")
        if len(df) == 0:
            raise ConfigError("GraphFeatures.fit: history is empty")
        cutoff = df["timestamp"].max() + pd.Timedelta(microseconds=1)
        g = build_graph(df, cutoff, self.window_days)
        nc, nt = g.n_customers, g.n_terminals
        if self.embedder == "node2vec":
            import torch

            from models.node2vec import Node2Vec

            w = torch.as_tensor(np.log1p(np.concatenate([g.count, g.count])), dtype=torch.float64)
            n2v = Node2Vec(dim=self.dim, walk_length=self.walk_length, walks_per_node=self.walks_per_node,
                           p=self.p, q=self.q, seed=self.seed).fit(g.homogeneous_edge_index(), nc + nt, edge_weight=w)
            emb = n2v.embedding_
            emb_c, emb_t = emb[:nc], emb[nc:]
        else:
            from models.gnn import HeteroSAGE

            gnn = HeteroSAGE(hidden=self.dim, out=self.dim, epochs=self.gnn_epochs, seed=self.seed)
            gnn.fit(g.to_heterodata(), edge_time=g.first_time)
            emb_c, emb_t = gnn.embed(g.to_heterodata())
        allemb = np.concatenate([emb_c, emb_t]).astype(np.float64)
        self.mean_ = allemb.mean(0)
        k = min(self.proj_dim, allemb.shape[1], max(len(allemb) - 1, 1))
        _, _, vt = np.linalg.svd(allemb - self.mean_, full_matrices=False)
        comps = np.zeros((self.proj_dim, allemb.shape[1]))
        comps[:k] = vt[:k]
        self.components_ = comps
        self.emb_c_ = emb_c.astype(np.float64)
        self.emb_t_ = emb_t.astype(np.float64)
        self.c_index_ = g.customer_index
        self.t_index_ = g.terminal_index
        self.core_c_, self.core_t_ = self._cores(g)
        self.graph_summary_ = {"customers": nc, "terminals": nt, "edges": g.n_edges, "transactions": g.n_transactions,
                               "cutoff": str(g.cutoff)}
        self.all_names_ = ([f"g_c{i}" for i in range(self.proj_dim)] + [f"g_t{i}" for i in range(self.proj_dim)]
                               + ["g_cos", "g_c_seen", "g_t_seen", "g_c_core", "g_t_core", "g_pair_prior",
                                  "g_pair_share", "g_c_ndist", "g_t_ndist", "g_c_known", "g_t_known_cust",
                                  "g_t_known_cust_share", "g_c_nbr_risk", "g_overlap", "g_c_age_days",
                                  "g_t_new_cust", "g_overlap_share", "g_t_new_cust_share"])
        static = set(self.all_names_[:2 * self.proj_dim]) | {"g_c_seen", "g_t_seen", "g_c_core", "g_t_core"}
        self.feature_names_ = [c for c in self.all_names_ if self.columns == "all" or c not in static]
        return self

    @staticmethod
    def _cores(g):
        import networkx as nx

        h = nx.Graph()
        nc = g.n_customers
        h.add_nodes_from(range(nc + g.n_terminals))
        h.add_edges_from(zip(g.src.tolist(), (g.dst + nc).tolist()))
        core = nx.core_number(h)
        arr = np.array([core[i] for i in range(nc + g.n_terminals)], dtype=np.float64)
        return arr[:nc], arr[nc:]

    # --------------------------------------------------------------- online
    def new_state(self) -> GraphState:
        return GraphState()

    def transform(self, df: pd.DataFrame) -> pd.DataFrame:
        self._check_fitted()
        return self.update(self.new_state(), df)

    def update(self, state: GraphState, rows: pd.DataFrame) -> pd.DataFrame:
        self._check_fitted()
        n = len(rows)
        k = self.proj_dim
        cust = rows["customer_id"].astype(str).tolist()
        term = rows["terminal_id"].astype(str).tolist()
        t_ns = rows["timestamp"].to_numpy(dtype="datetime64[ns]").astype(np.int64).tolist()
        lab = (rows["label"].to_numpy(dtype=np.int64).tolist() if "label" in rows.columns else [0] * n)
        delay = int(round(float(self.delay_days) * _NS_DAY))
        cidx, tidx = self.c_index_, self.t_index_
        emb_c, emb_t = self.emb_c_, self.emb_t_
        ndim = emb_c.shape[1]
        cust_terms, term_custs = state.cust_terms, state.term_custs
        known_c, known_t_cust, pending = state.known_c, state.known_t_cust, state.pending
        maxT, maxC, maxK, maxO = self.max_terminals, self.max_customers, self.max_known, self.overlap_terminals
        S = np.zeros((n, 16))
        first_seen = state.first_seen
        new_ns = int(round(float(self.new_days) * _NS_DAY))
        ec = np.zeros((n, ndim))
        et = np.zeros((n, ndim))
        empty: dict = {}
        for i in range(n):
            c, t, ts = cust[i], term[i], t_ns[i]
            # release labels older than ts - delay
            lim = ts - delay
            while pending and pending[0][0] < lim:
                _, pc, pt = pending.popleft()
                known_c[pc] = known_c.get(pc, 0) + 1
                s = known_t_cust.get(pt)
                if s is None:
                    s = known_t_cust[pt] = {}
                if pc not in s:
                    s[pc] = 1
                    if len(s) > maxK:
                        del s[next(iter(s))]
            ct = cust_terms.get(c, empty)
            tc = term_custs.get(t, empty)
            ci, ti = cidx.get(c), tidx.get(t)
            # embeddings (inductive for unseen nodes: mean over known recent neighbours incl. this one)
            if ci is not None:
                ec[i] = emb_c[ci]
            else:
                nb = [tidx[x] for x in ct if x in tidx and x != t]
                if ti is not None:
                    nb.append(ti)
                if nb:
                    ec[i] = emb_t[nb].mean(0)
            if ti is not None:
                et[i] = emb_t[ti]
            else:
                nb = [cidx[x] for x in tc if x in cidx and x != c]
                if ci is not None:
                    nb.append(ci)
                if nb:
                    et[i] = emb_c[nb].mean(0)
            pair = ct.get(t, 0)
            tot_c = sum(ct.values()) if ct else 0
            kc = 0
            nw = 0
            young = ts - new_ns
            for u in tc:
                if u != c:
                    if u in known_c:
                        kc += 1
                    if first_seen[u] > young:
                        nw += 1
            nbr = 0
            best = 0
            for x in ct:
                if x != t:
                    s = known_t_cust.get(x)
                    if s and (len(s) > 1 or c not in s):
                        nbr += 1
            if tc and ct:
                tc_keys = tc.keys()
                c_in_tc = c in tc
                j = 0
                for x in reversed(ct.keys()):  # the most recent terminals first
                    if x == t:
                        continue
                    j += 1
                    if j > maxO:
                        break
                    ox = term_custs[x]
                    ov = len(tc_keys & ox.keys())
                    if c_in_tc and c in ox:
                        ov -= 1
                    if ov > best:
                        best = ov
            ndt = len(tc) - (1 if c in tc else 0)
            S[i, 0] = 1.0 if ci is not None else 0.0
            S[i, 1] = 1.0 if ti is not None else 0.0
            S[i, 2] = self.core_c_[ci] if ci is not None else 0.0
            S[i, 3] = self.core_t_[ti] if ti is not None else 0.0
            S[i, 4] = pair
            S[i, 5] = pair / tot_c if tot_c else 0.0
            S[i, 6] = len(ct)
            S[i, 7] = len(tc)
            S[i, 8] = known_c.get(c, 0)
            S[i, 9] = kc
            S[i, 10] = kc / ndt if ndt > 0 else 0.0
            S[i, 11] = nbr
            S[i, 12] = best
            fs = first_seen.get(c)
            S[i, 13] = (ts - fs) / _NS_DAY if fs is not None else 0.0
            S[i, 14] = nw
            S[i, 15] = nw / ndt if ndt > 0 else 0.0
            if fs is None:
                first_seen[c] = ts
            # absorb the row
            if ct is empty:
                ct = cust_terms[c] = {}
            _lru_add(ct, t, maxT)
            if tc is empty:
                tc = term_custs[t] = {}
            _lru_add(tc, c, maxC)
            if lab[i] == 1:
                pending.append((ts, c, t))
            state.last_time = ts
        nrm = np.linalg.norm(ec, axis=1) * np.linalg.norm(et, axis=1)
        cos = np.where(nrm > 0, (ec * et).sum(1) / np.where(nrm > 0, nrm, 1.0), 0.0)
        has_c = np.abs(ec).sum(1) > 0
        has_t = np.abs(et).sum(1) > 0
        pc = np.where(has_c[:, None], (ec - self.mean_) @ self.components_.T, 0.0)
        pt = np.where(has_t[:, None], (et - self.mean_) @ self.components_.T, 0.0)
        ov_share = np.where(S[:, 7] > 0, S[:, 12] / np.maximum(S[:, 7], 1), 0.0)
        out = np.column_stack([pc, pt, cos, S[:, :15], ov_share, S[:, 15]])
        out = pd.DataFrame(out, index=rows.index, columns=self.all_names_)
        return out if self.columns == "all" else out[self.feature_names_]

    def add_labels(self, state: GraphState, rows: pd.DataFrame) -> int:
        """Feedback for the stream: fraud labels of earlier rows (timestamp, customer_id, terminal_id,
        label) that arrived after those rows were scored. Each becomes usable, as in ``update``, for rows
        more than the delay after its transaction. Returns the number of frauds queued."""
        import bisect

        fr = rows.loc[rows["label"].to_numpy() == 1]
        t_ns = fr["timestamp"].to_numpy(dtype="datetime64[ns]").astype(np.int64).tolist()
        for ts, c, t in zip(t_ns, fr["customer_id"].astype(str), fr["terminal_id"].astype(str)):
            bisect.insort(state.pending, (ts, c, t))
        return len(t_ns)

    def save(self, path) -> None:
        import joblib

        joblib.dump(self, path)

    @staticmethod
    def load(path) -> "GraphFeatures":
        import joblib

        return joblib.load(path)
