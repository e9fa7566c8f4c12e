"""Clusters of flagged activity for analyst review (``cluster_alerts``).

Alerts of a time window become a bipartite customer-terminal graph of flagged activity only (cheap); its
connected components are candidate clusters and large ones are split (``refine``: HDBSCAN on walk
embeddings by default, or Louvain). With context (``context=``: the alerted entities' other
transactions, as the scorer's archive holds them), a ring's separate terminal stars are linked through
terminals whose distinct customers surge, since a detector alerts only part of a ring. Clusters are ranked
by a collusion risk (distinct customer-terminal pairs weighted by score percentile and amount, more for
many customers, colluding customers and surging terminals) and get stable ids (``"C"`` + SHA-1 of their
sorted tx_ids), so a recorded decision refers to exactly those transactions.
Each step and why: docs/review.md; measured figures: docs/benchmarks.md ("Review clustering").
"""
from __future__ import annotations

import hashlib
import logging
import math
from collections import Counter
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd

from fraud.errors import ConfigError
from fraud.schema import utc_timestamp

REQUIRED = ["tx_id", "timestamp", "customer_id", "terminal_id", "amount", "score"]
SCENARIO_NAMES = {0: "legit", 1: "high amount", 2: "compromised terminal", 3: "compromised customer",
                  4: "fraud ring", 5: "card testing", 6: "account takeover"}


def cnode(customer_id) -> str:
    return f"c:{customer_id}"


def tnode(terminal_id) -> str:
    return f"t:{terminal_id}"


@dataclass
class Cluster:
    id: str
    risk: float
    rank: int
    tx_ids: list
    customers: list
    terminals: list
    n_tx: int
    first_seen: str
    last_seen: str
    amount_at_risk: float
    score_sum: float
    score_mean: float
    score_min: float
    score_median: float
    score_max: float
    shared_terminals: list          # terminals used by >= 2 of the cluster's customers
    reasons: list                   # [[reason code, count], ...] most frequent first (top 5)
    scenario_mix: dict | None       # {"4": n, ...} when ground truth is stored, else None
    component: str                  # id of the flagged component it came from
    refined: bool                   # True when refinement (HDBSCAN or Louvain) split that component
    model_versions: list = field(default_factory=list)
    colluding_customers: list = field(default_factory=list)  # alerted at >= 2 of the shared terminals
    surging_terminals: list = field(default_factory=list)    # shared terminals with a customer surge (context)
    context_tx: int = 0             # context transactions of its customers at its terminals (0 without context)
    context_groups: int = 1         # alert groups that context linked into this cluster (1 = none)

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def dominant_scenario(self):
        if not self.scenario_mix:
            return None
        return int(max(self.scenario_mix.items(), key=lambda kv: (kv[1], -int(kv[0])))[0])


@dataclass
class ClusterResult:
    clusters: list                  # list[Cluster], highest risk first
    alerts: pd.DataFrame            # the clustered alerts with a ``cluster_id`` column
    graph: object                   # networkx.Graph (the flagged subgraph)
    embedding: dict                 # node -> vector (entities of refined components; may be empty)
    coords: dict                    # node -> (x, y) 2-D map of all flagged entities
    meta: dict

    def get(self, cluster_id: str) -> Cluster | None:
        for c in self.clusters:
            if c.id == cluster_id:
                return c
        return None

    def to_json_dict(self) -> dict:
        return {"clusters": [c.to_dict() for c in self.clusters], "meta": self.meta}


def tx_digest(tx_ids) -> str:
    """A hex digest of a set of transactions (order-free): cluster ids and the case book's "alerts seen"."""
    return hashlib.sha1("\n".join(sorted(str(t) for t in tx_ids)).encode("utf-8")).hexdigest()


def cluster_id_for(tx_ids) -> str:
    return "C" + tx_digest(tx_ids)[:12]


RISKS = {
    "collusion": "sum over customer-terminal pairs of max(pct(score_i) * log10(10 + amount_i)) "
                 "* (1 + log2(n_customers)) * (1 + log2(1 + n_colluding)) * (1 + log2(1 + n_surging)) "
                 "[n_surging: shared terminals with a customer surge in the context; 0 without context]",
    "score": "sum(score_i * log10(10 + amount_i)) * (1 + log2(n_customers))",
}


def risk_of(scores: np.ndarray, amounts: np.ndarray, n_customers: int) -> float:
    """The first ranking formula, ``risk="score"`` (see module docstring)."""
    scores = np.asarray(scores, dtype=float)
    amounts = np.clip(np.asarray(amounts, dtype=float), 0.0, None)
    base = float(np.sum(scores * np.log10(10.0 + amounts)))
    return base * (1.0 + math.log2(max(int(n_customers), 1)))


def colluding_customers(customers, terminals, seen: dict | None = None) -> list:
    """Customers with alerts at two or more *shared* terminals (terminals where two or more of
    the given customers were alerted): the signature of collusion (a ring's mules each visit
    several of the ring's terminals; a compromised terminal's victims share only that one).

    With ``seen`` (customer -> terminals it was seen at in the context, see ``cluster_alerts``),
    a customer counts at every one of the given (flagged) terminals it was seen at, alerted or
    not: a mule alerted once is still seen at the ring's other terminals. Plain sets: called once
    per cluster, on a few dozen alerts, where pandas' per-call cost would dominate. Ids as the store
    holds them (no missing values)."""
    pairs = list(zip(customers, terminals))
    if seen is not None and pairs:
        flagged = {t for _, t in pairs}
        pairs += [(c, t) for c in dict.fromkeys(c for c, _ in pairs) for t in seen.get(c, ()) if t in flagged]
    shared = _shared_terminals(pairs)
    at: dict = {}
    for c, t in pairs:
        if t in shared:
            at.setdefault(c, set()).add(t)
    return sorted(c for c, ts in at.items() if len(ts) >= 2)


def _shared_terminals(pairs) -> set:
    """Terminals at which two or more of the (customer, terminal) pairs' customers were seen."""
    visitors: dict = {}
    for c, t in pairs:
        visitors.setdefault(t, set()).add(c)
    return {t for t, cs in visitors.items() if len(cs) >= 2}


def collusion_risk(customers, terminals, pct, amounts, seen: dict | None = None, n_surging: int = 0,
                   n_colluding: int | None = None) -> float:
    """The default ranking formula, ``risk="collusion"`` (see module docstring). ``pct``: each
    alert's score percentile among all clustered alerts, in (0, 1]; ids, amounts and percentiles as the
    store and ``cluster_alerts`` give them (no missing values). ``n_colluding``: the number of
    :func:`colluding_customers`, when the caller has them already."""
    amounts = np.clip(np.asarray(amounts, dtype=float), 0.0, None)
    v = np.asarray(pct, dtype=float) * np.log10(10.0 + amounts)
    customers, terminals = list(customers), list(terminals)
    if not customers:
        return 0.0
    best: dict = {}
    for c, t, x in zip(customers, terminals, v.tolist()):
        if (c, t) not in best or x > best[(c, t)]:
            best[(c, t)] = x
    base = float(np.sum(np.array([best[k] for k in sorted(best)])))   # pair order as pandas' group-by gave it
    n_cust = len(set(customers))
    n_coll = len(colluding_customers(customers, terminals, seen)) if n_colluding is None else n_colluding
    return base * (1.0 + math.log2(n_cust)) * (1.0 + math.log2(1 + n_coll)) * (1.0 + math.log2(1 + int(n_surging)))


# -- context (the alerted entities' other transactions) --------------------------------------
CONTEXT_REQUIRED = ["timestamp", "customer_id", "terminal_id"]


def prepare_context(context: pd.DataFrame, alerts: pd.DataFrame, since=None, until=None,
                    where: str = "context") -> pd.DataFrame:
    """The context rows that can link alerts: transactions (canonical frame, e.g. the stream
    scorer's archive or ``fraud score`` output) of the *alerted* customers inside the clustering
    window (``since``/``until`` when given, else the alerts' first..last timestamp). Returns the
    distinct (customer_id, terminal_id) pairs with a count ``n`` of transactions."""
    missing = [c for c in CONTEXT_REQUIRED if c not in context.columns]
    if missing:
        raise ConfigError(f"{where}: lacks column(s) {missing}; present: {list(context.columns)}")
    if not len(alerts) or not len(context):
        return pd.DataFrame({"customer_id": pd.Series([], dtype=object), "terminal_id": pd.Series([], dtype=object),
                             "n": pd.Series([], dtype=np.int64)})
    try:
        ts = pd.to_datetime(context["timestamp"], utc=True)
    except (ValueError, TypeError) as e:
        raise ConfigError(f"{where}: column 'timestamp' is not date/time ({e})") from None
    lo = _utc(since, "--since") if since is not None else alerts["timestamp"].min()
    hi = _utc(until, "--until") if until is not None else alerts["timestamp"].max() + pd.Timedelta(microseconds=1)
    cust = context["customer_id"].astype(str)
    keep = (ts >= lo).to_numpy() & (ts < hi).to_numpy() & cust.isin(set(alerts["customer_id"])).to_numpy()
    c = pd.DataFrame({"customer_id": cust.to_numpy()[keep].astype(object),
                      "terminal_id": context["terminal_id"].astype(str).to_numpy()[keep].astype(object)})
    return c.groupby(["customer_id", "terminal_id"], sort=True).size().rename("n").reset_index()


def terminal_surge(context: pd.DataFrame, lo=None, hi=None, days: int = 10) -> pd.Series:
    """terminal -> surge: the most distinct customers the terminal had in any ``days``-day
    window of the context, as a robust z-score against all terminals of the context
    ((x - median) / (1.4826 * MAD), MAD floored at 1). A ring's terminal, busy with its mules
    for about ten days, gets many more distinct customers than usual; a compromised terminal or a
    genuine one keeps its normal traffic."""
    ts = pd.to_datetime(context["timestamp"], utc=True)
    keep = np.ones(len(context), dtype=bool)
    if lo is not None:
        keep &= (ts >= lo).to_numpy()
    if hi is not None:
        keep &= (ts < hi).to_numpy()
    if not keep.any():
        return pd.Series(dtype=float)
    ts = ts[keep]
    day0 = ts.min().floor("D")
    d = pd.DataFrame({"t": context["terminal_id"].astype(str).to_numpy()[keep],
                      "c": context["customer_id"].astype(str).to_numpy()[keep],
                      "d": ((ts - day0) // pd.Timedelta(days=1)).to_numpy()}).drop_duplicates()
    n_days = int(d["d"].max()) + 1
    best = None
    for start in range(0, max(n_days - days, 0) + 1):
        w = d[(d["d"] >= start) & (d["d"] < start + days)].groupby("t")["c"].nunique()
        best = w if best is None else best.combine(w, max, fill_value=0)
    med = float(best.median())
    mad = max(float((best - med).abs().median()), 1.0)
    return ((best - med) / (1.4826 * mad)).astype(float)


def read_context(archive=None, path=None) -> pd.DataFrame | None:
    """Context transactions for ``cluster_alerts(context=...)``: the stream scorer's archive
    folder (``archive``: day-partitioned Parquet, ``streaming.sinks.ArchiveSink``) and/or a
    transaction file (``path``: CSV or Parquet, read and validated by ``fraud.io``, e.g. the output
    of ``fraud score``). None when neither is given. (One read of a :class:`ContextSource`.)"""
    if archive is None and path is None:
        return None
    return ContextSource(archive, path, refresh_s=0).get()[1]


_CONTEXT_COLUMNS = ["tx_id", "timestamp", "customer_id", "terminal_id", "amount", "score"]  # score: the strength percentile


def _context_part(where: str, f: pd.DataFrame) -> pd.DataFrame:
    missing = [c for c in CONTEXT_REQUIRED if c not in f.columns]
    if missing:
        raise ConfigError(f"{where}: lacks column(s) {missing}; present: {list(f.columns)}")
    return f[[c for c in _CONTEXT_COLUMNS if c in f.columns]]


def _context_frame(frames) -> pd.DataFrame | None:
    """``(where, frame)`` pairs -> the context frame (context columns, one row per tx_id, the last wins)."""
    if not frames:
        return None
    ctx = pd.concat([_context_part(where, f) for where, f in frames], ignore_index=True)
    if "tx_id" in ctx.columns:
        ctx = ctx.drop_duplicates("tx_id", keep="last")
    return ctx.reset_index(drop=True)


class ContextSource:
    """The context of a long-running review app, kept current: the archive's files are read as they appear
    (each file once: the scorer writes a file under a temporary name and renames it when complete, and never
    changes it after; a file it removes on restart is dropped here too) and the context file again when its
    size or modification time changes. Looked at no more often than every ``refresh_s`` seconds.

    ``look()`` -> a number that changes when the files do (cheap: a listing and a stat; the app keys its view on
    it on every request); ``get()`` -> ``(version, context)``, reading what changed (the app's refresh thread
    calls it). Same frame as :func:`read_context` over the same files."""

    def __init__(self, archive=None, path=None, refresh_s: float = 30.0):
        from pathlib import Path

        if archive is not None and not Path(archive).is_dir():
            raise ConfigError(f"--archive: {str(archive)!r} is not a folder")
        if not refresh_s >= 0:
            raise ConfigError(f"--context-refresh {refresh_s!r}: must be >= 0 seconds")
        self.archive, self.path, self.refresh_s = archive, path, float(refresh_s)
        self._files: dict = {}
        self._unreadable: set = set()      # archive files that could not be read (each said once)
        self._path_sig = None
        self._path_frame = None
        self._checked: float | None = None
        self._listing = None
        self._looks = 0
        self._version = 0
        self._ctx: pd.DataFrame | None = None

    def look(self) -> int:
        """A number that changes when the archive's files or the context file changed (looked at no more often
        than every ``refresh_s`` seconds; nothing is read)."""
        import time
        from pathlib import Path

        now = time.monotonic()
        if self._checked is not None and now - self._checked < self.refresh_s:
            return self._looks
        self._checked = now
        names = ()
        if self.archive is not None:
            from fraud.archive import paths

            names = tuple(sorted(str(f) for f in paths(self.archive)))
        sig = None
        if self.path is not None:
            st = Path(self.path).stat()
            sig = (st.st_size, st.st_mtime_ns)
        if (names, sig) != self._listing:
            self._listing = (names, sig)
            self._looks += 1
        return self._looks

    def get(self) -> tuple[int, pd.DataFrame | None]:
        """(version, context) as the files are now: new archive files are read, removed ones dropped, the
        context file read again if it changed."""
        from pathlib import Path

        changed = self._version == 0
        if self.archive is not None:
            from fraud.archive import paths

            names = [str(f) for f in paths(self.archive)]
            for gone in set(self._files) - set(names):
                del self._files[gone]
                changed = True
            for f in names:
                if f not in self._files and f not in self._unreadable:
                    try:
                        self._files[f] = _context_part(f"--archive {str(self.archive)!r}", pd.read_parquet(f))
                    except FileNotFoundError:  # removed by a restarting scorer between listing and reading
                        continue
                    except Exception as e:  # noqa: BLE001 - one foreign or damaged file must not stop the context
                        self._unreadable.add(f)
                        logging.getLogger(__name__).warning(
                            "--archive %r: left out of the context, cannot read %s (%s: %s)", str(self.archive), f,
                            e.__class__.__name__, str(e).split("\n")[0][:200])
                        continue
                    changed = True
            if not self._files and self._version == 0:
                raise ConfigError(f"--archive: {str(self.archive)!r} holds no date=*/*.parquet files")
        if self.path is not None:
            from fraud.io import load_transactions

            st = Path(self.path).stat()
            sig = (st.st_size, st.st_mtime_ns)
            if sig != self._path_sig:
                self._path_frame = _context_part(f"--context {str(self.path)!r}", load_transactions(self.path))
                self._path_sig = sig
                changed = True
        if changed:
            frames = [(f, self._files[f]) for f in sorted(self._files)]
            if self._path_frame is not None:
                frames.append((str(self.path), self._path_frame))
            self._ctx = _context_frame(frames)
            self._version += 1
        return self._version, self._ctx


def _seen_terminals(a: pd.DataFrame, visits: pd.DataFrame | None) -> dict:
    """customer -> set of terminals it was seen at: its alerts plus its context transactions."""
    seen: dict = {}
    for c, t in zip(a["customer_id"], a["terminal_id"]):
        seen.setdefault(c, set()).add(t)
    if visits is not None:
        for c, t in zip(visits["customer_id"], visits["terminal_id"]):
            seen.setdefault(c, set()).add(t)
    return seen


def context_links(a: pd.DataFrame, keys, seen: dict, min_shared: int = 2, min_share: float = 0.5,
                  via: set | None = None, via_mode: str = "both") -> list:
    """Pairs of alert groups (``keys``: one group key per alert) that context links: groups X and
    Y with at least ``min_shared`` alerted customers (2 or more each: a one-customer group is never
    linked) are linked when at least ``min_shared`` of X's alerted customers were *seen* (alerted
    or in the context) at one of Y's flagged terminals, and the same holds from Y to X, and those
    customers are at least ``min_share`` of each group's alerted customers. Only alerted customers
    of the two groups count, so a popular genuine terminal visited by many unrelated customers
    links nothing. ``via``: when given, only these terminals can carry a link (the surging ones,
    see ``terminal_surge``): X's customers must be seen at a ``via`` terminal of Y and Y's at one
    of X (``via_mode="both"``), or, with ``via_mode="either"``, at any flagged terminal as long as
    one of the two groups has a ``via`` terminal (looser: measured larger, less pure clusters).
    Returns ``[(X, Y, n_X_at_Y, n_Y_at_X), ...]`` with X < Y."""
    cust: dict = {}
    term: dict = {}
    for k, c, t in zip(keys, a["customer_id"], a["terminal_id"]):
        cust.setdefault(k, set()).add(c)
        term.setdefault(k, set()).add(t)
    stars = sorted(k for k, cs in cust.items() if len(cs) >= max(min_shared, 2))
    groups_at: dict = {}
    for k in stars:
        for t in term[k]:
            if via is None or via_mode == "either" or t in via:
                groups_at.setdefault(t, []).append(k)
    hits: dict = {}
    for x in stars:
        for c in cust[x]:
            for t in seen.get(c, ()):
                for y in groups_at.get(t, ()):
                    if y != x:
                        hits.setdefault((x, y), set()).add(c)
    out = []
    for (x, y), s in sorted(hits.items()):
        if x >= y:
            continue
        if via is not None and via_mode == "either" and not ((term[x] | term[y]) & via):
            continue
        back = hits.get((y, x), set())
        if min(len(s), len(back)) < min_shared:
            continue
        if len(s) / len(cust[x]) < min_share or len(back) / len(cust[y]) < min_share:
            continue
        out.append((x, y, len(s), len(back)))
    return out


# -- graph ----------------------------------------------------------------------------------
def flagged_graph(alerts: pd.DataFrame):
    """The flagged subgraph: customers and terminals linked by alerts (see module docstring)."""
    import networkx as nx

    g = nx.Graph()
    if len(alerts) == 0:
        return g
    a = alerts.sort_values(["customer_id", "terminal_id"], kind="stable")   # pairs in order, rows in order
    cust, term = a["customer_id"].tolist(), a["terminal_id"].tolist()
    tx = [str(x) for x in a["tx_id"]]
    score, amount = a["score"].to_numpy(dtype=float), a["amount"].to_numpy(dtype=float)
    starts = [i for i in range(len(a)) if i == 0 or (cust[i], term[i]) != (cust[i - 1], term[i - 1])]
    for lo, hi in zip(starts, starts[1:] + [len(a)]):
        c, t = cust[lo], term[lo]
        cn, tn = cnode(c), tnode(t)
        g.add_node(cn, kind="customer", entity=str(c))
        g.add_node(tn, kind="terminal", entity=str(t))
        g.add_edge(cn, tn, n=hi - lo, tx_ids=tx[lo:hi], score=float(score[lo:hi].sum()),
                   amount=float(amount[lo:hi].sum()))
    return g


# -- embeddings -----------------------------------------------------------------------------
def deepwalk_embedding(graph, nodes=None, dim: int = 16, walks_per_node: int | None = None, walk_length: int = 20,
                       window: int = 5, epochs: int | None = None, seed: int = 0, weight: str | None = None) -> dict:
    """DeepWalk: uniform random walks (or, with ``weight``, steps proportional to that edge attribute) and
    skip-gram, i.e. ``models.node2vec.Node2Vec`` with p = q = 1 and its numba skip-gram (no gensim: a
    production install has no dev extras). node -> vector, deterministic for a seed (one thread).
    ``walks_per_node`` defaults to 20000 // n clipped to [5, 40] and ``epochs`` to 5 (3 from 1,000
    nodes): small graphs get more walks so that their embedding is not noise, large ones stay cheap."""
    return _node2vec(graph, nodes, dim, seed, walks_per_node, epochs, walk_length=walk_length, window=window,
                     weight=weight)


def node2vec_embedding(graph, nodes=None, dim: int = 16, seed: int = 0, walks_per_node: int | None = None,
                       epochs: int | None = None) -> dict:
    """``models.node2vec.Node2Vec`` (p = q = 1) on the flagged subgraph, with the same walk and
    epoch defaults as :func:`deepwalk_embedding`."""
    return _node2vec(graph, nodes, dim, seed, walks_per_node, epochs)


def _node2vec(graph, nodes, dim, seed, walks_per_node, epochs, walk_length=20, window=5, weight=None) -> dict:
    import torch

    from models.node2vec import Node2Vec

    nodes = sorted(graph.nodes) if nodes is None else list(nodes)
    n = len(nodes)
    if not n:
        return {}
    index = {x: i for i, x in enumerate(nodes)}
    pairs = [(a, b) for a, b in graph.edges if a in index and b in index]
    e = np.array([[index[a], index[b]] for a, b in pairs], dtype=np.int64).reshape(-1, 2)
    edge_index = torch.from_numpy(np.concatenate([e.T, e[:, ::-1].T], axis=1).copy())
    w = None
    if weight is not None:
        w = np.array([float(graph.edges[a, b].get(weight, 1.0)) for a, b in pairs], dtype=np.float64)
        w = torch.from_numpy(np.concatenate([w, w]))
    walks = int(np.clip(20000 // n, 5, 40)) if walks_per_node is None else walks_per_node
    ep = (5 if n < 1000 else 3) if epochs is None else epochs
    model = Node2Vec(dim=dim, walk_length=walk_length, walks_per_node=walks, context_size=window, epochs=ep,
                     seed=seed)
    emb = np.asarray(model.fit(edge_index, n, edge_weight=w).embedding_)
    return {x: emb[i].astype(np.float64) for x, i in index.items()}


def _embed(graph, nodes, embedder: str, dim: int, seed: int, weight=None) -> dict:
    if embedder == "node2vec":
        return node2vec_embedding(graph, nodes, dim=dim, seed=seed)
    if embedder == "deepwalk":
        return deepwalk_embedding(graph, nodes, dim=dim, seed=seed, weight=weight)
    raise ConfigError(f"embedder: {embedder!r} is not one of deepwalk, node2vec")


# -- clustering -----------------------------------------------------------------------------
_utc = utc_timestamp


def _prepare(alerts: pd.DataFrame, since=None, until=None) -> pd.DataFrame:
    missing = [c for c in REQUIRED if c not in alerts.columns]
    if missing:
        raise ConfigError(f"alerts lack column(s) {missing}; present: {list(alerts.columns)}")
    a = alerts.copy()
    a["timestamp"] = pd.to_datetime(a["timestamp"], utc=True)
    if since is not None:
        a = a[a["timestamp"] >= _utc(since, "--since")]
    if until is not None:
        a = a[a["timestamp"] < _utc(until, "--until")]
    for col in ("tx_id", "customer_id", "terminal_id"):
        a[col] = a[col].astype(str)
    a["amount"] = a["amount"].astype(float)
    a["score"] = a["score"].astype(float)
    if "reasons" not in a.columns:
        a["reasons"] = [[] for _ in range(len(a))]
    if "scenario" not in a.columns:
        a["scenario"] = np.nan
    return a.sort_values(["timestamp", "tx_id"]).reset_index(drop=True)


def reason_code(reason) -> str:
    """The code of a reason string: its first word ("detector:copod 0.99" -> "detector:copod",
    "feature:g_c_known high (3.00 vs p50 0.00)" -> "feature:g_c_known"), so that counts group
    the same cause whatever its value."""
    s = str(reason).strip()
    return s.split()[0] if s else s


class _Rows:
    """The clustered alerts' columns as plain arrays, read once: a cluster's summary then gathers its rows by
    position (pandas' per-call cost on a few dozen rows, for hundreds of clusters, was most of a grouping)."""

    def __init__(self, a: pd.DataFrame):
        self.tx = np.array([str(x) for x in a["tx_id"]], dtype=object)
        self.customer = a["customer_id"].to_numpy(dtype=object)
        self.terminal = a["terminal_id"].to_numpy(dtype=object)
        self.score = a["score"].to_numpy(dtype=float)
        self.amount = a["amount"].to_numpy(dtype=float)
        self.pct = a["_pct"].to_numpy(dtype=float)
        self.timestamp = a["timestamp"].array
        self.reasons = a["reasons"].to_numpy(dtype=object)
        self.scenario = pd.to_numeric(a["scenario"], errors="coerce").to_numpy(dtype=float)
        mv = a["model_version"] if "model_version" in a.columns else pd.Series([None] * len(a), dtype=object)
        self.model_version = mv.to_numpy(dtype=object)


def _summarise(rows: _Rows, idx: np.ndarray, component: str, refined: bool, risk: str = "collusion",
               seen: dict | None = None, visits_n: dict | None = None, n_groups: int = 1,
               surging: set | None = None) -> Cluster:
    """One cluster of the alerts at positions ``idx`` (their original order) of ``rows``."""
    cust, term = rows.customer[idx].tolist(), rows.terminal[idx].tolist()
    tx_ids = sorted(rows.tx[idx].tolist())
    customers, terminals = sorted(set(cust)), sorted(set(term))
    shared = sorted(_shared_terminals(zip(cust, term)))
    reasons = Counter()
    for r in rows.reasons[idx]:
        if isinstance(r, (list, tuple, np.ndarray)):
            reasons.update(reason_code(x) for x in r)
        elif isinstance(r, str) and r:
            reasons[reason_code(r)] += 1
    sc = rows.scenario[idx]
    sc = sc[~np.isnan(sc)].astype(int)
    mix = {str(k): int(v) for k, v in sorted(Counter(sc.tolist()).items())} if len(sc) else None
    s, amounts = rows.score[idx], rows.amount[idx]
    mv = sorted({str(x) for x in rows.model_version[idx] if not pd.isna(x)})
    colluding = colluding_customers(cust, term, seen)
    if risk == "collusion":
        n_surging = len(set(shared) & surging) if surging else 0
        value = collusion_risk(cust, term, rows.pct[idx], amounts, seen, n_surging, len(colluding))
    else:
        value = risk_of(s, amounts, len(customers))
    ts = rows.timestamp[idx]
    return Cluster(
        id=cluster_id_for(tx_ids), risk=round(value, 6), rank=0,
        tx_ids=tx_ids, customers=customers, terminals=terminals, n_tx=len(tx_ids),
        first_seen=ts.min().isoformat(), last_seen=ts.max().isoformat(),
        amount_at_risk=round(float(amounts.sum()), 2), score_sum=round(float(s.sum()), 6),
        score_mean=round(float(s.mean()), 6), score_min=round(float(s.min()), 6),
        score_median=round(float(np.median(s)), 6), score_max=round(float(s.max()), 6),
        shared_terminals=shared, reasons=[[k, int(v)] for k, v in reasons.most_common(5)],
        scenario_mix=mix, component=component, refined=refined, model_versions=mv,
        colluding_customers=colluding, surging_terminals=sorted(set(shared) & surging) if surging else [],
        context_tx=int(sum(visits_n.get((c, t), 0) for c in customers for t in terminals)) if visits_n else 0,
        context_groups=int(n_groups),
    )


def _groups(keys: np.ndarray):
    """(key, positions in original order) per distinct key, keys in sorted order (as a sorted group-by)."""
    order = np.argsort(keys, kind="stable")
    sk = keys[order]
    cuts = [0] + [i for i in range(1, len(sk)) if sk[i] != sk[i - 1]] + [len(sk)]
    return [(sk[lo], order[lo:hi]) for lo, hi in zip(cuts, cuts[1:]) if hi > lo]


def _louvain_labels(g, comp, resolution: float, seed: int) -> dict:
    """Louvain communities (networkx, seeded) of one flagged component, edges weighted by their
    number of alerts: node -> community index (communities ordered by their smallest node)."""
    import networkx as nx

    comms = nx.community.louvain_communities(g.subgraph(comp), weight="n", resolution=resolution, seed=seed)
    out = {}
    for j, cm in enumerate(sorted((sorted(c) for c in comms), key=lambda c: c[0])):
        for n in cm:
            out[n] = j
    return out


def _noise_groups(cn: np.ndarray, tn: np.ndarray, min_nodes: int, seed: int) -> list[str]:
    """Group keys of transactions between two HDBSCAN-noise entities (customer nodes ``cn``, terminal nodes
    ``tn``): the connected components they form, and within a component of at least ``min_nodes`` entities its
    Louvain communities (edges weighted by alerts): over a long window the leftovers join into one web of
    unrelated false alarms, too large to review as one group (docs/review.md)."""
    import networkx as nx

    h = nx.Graph()
    for c, t in zip(cn, tn):
        h.add_edge(c, t, n=h.get_edge_data(c, t, {"n": 0})["n"] + 1)
    key_of = {}
    for j, sub in enumerate(sorted((sorted(s) for s in nx.connected_components(h)), key=lambda s: s[0])):
        lab = _louvain_labels(h, sub, 1.0, seed) if len(sub) >= min_nodes else dict.fromkeys(sub, None)
        for node in sub:
            key_of[node] = f"noise{j}" if lab[node] is None else f"noise{j}.{lab[node]}"
    return [key_of[c] for c in cn]


def cluster_alerts(alerts: pd.DataFrame, since=None, until=None, min_refine_nodes: int = 12,
                   min_cluster_size: int = 4, dim: int = 16, embedder: str = "deepwalk", seed: int = 0,
                   map_coords: bool = True, selection: str = "eom", walk_weight: str | None = None,
                   refine: str = "hdbscan", resolution: float = 1.0, risk: str = "collusion",
                   context: pd.DataFrame | None = None, link_min_shared: int = 2,
                   link_min_share: float = 0.25, link_min_surge: float | None = 2.5,
                   context_collusion: bool = False, surge_risk: bool = True,
                   surge_gather: bool = True, link_via: str = "both") -> ClusterResult:
    """Cluster alerts (rows of ``AlertStore.read_alerts()``) for review; see the module docstring.

    ``since``/``until`` bound the time window (``until`` exclusive). ``min_refine_nodes``: a flagged
    component with at least this many entities is refined. ``refine``: "hdbscan" (default: HDBSCAN
    over an entity embedding: ``min_cluster_size``, ``selection`` = its cluster_selection_method, ``embedder``
    "deepwalk" or "node2vec", ``walk_weight`` an edge attribute that biases the walks) or "louvain"
    (Louvain communities of the flagged subgraph, ``resolution``). ``risk``:
    "collusion" (default) or "score" (the first formula); see the module docstring.

    ``context``: optional canonical transactions (timestamp, customer_id, terminal_id; e.g. the
    scorer's archive, see ``read_context``), used only for linking and ranking (step 3b of the
    module docstring); clusters' members stay alerts. Without it the result is exactly the
    context-free one. ``link_min_surge``: surge z-score a terminal needs to carry a link (None: any
    flagged terminal); ``link_min_shared``/``link_min_share``/``link_via``: see ``context_links``;
    ``surge_gather``: alerts at a surging terminal join its majority group; ``context_collusion``:
    colluding customers counted from the context; ``surge_risk``: the surging-terminal factor of
    the collusion risk. The last three exist to measure each part's effect (gather and the risk factor on by
    default, context collusion off).
    """
    import networkx as nx

    if min_cluster_size < 2:
        raise ConfigError(f"min_cluster_size: {min_cluster_size!r} must be >= 2")
    if refine not in ("louvain", "hdbscan"):
        raise ConfigError(f"refine: {refine!r} is not one of louvain, hdbscan")
    if risk not in RISKS:
        raise ConfigError(f"risk: {risk!r} is not one of {', '.join(RISKS)}")
    if not resolution > 0:
        raise ConfigError(f"resolution: {resolution!r} must be > 0")
    if link_via not in ("both", "either"):
        raise ConfigError(f"link_via: {link_via!r} is not one of both, either")
    if int(link_min_shared) < 1 or not 0.0 <= float(link_min_share) <= 1.0:
        raise ConfigError(f"link_min_shared/link_min_share: {link_min_shared!r}/{link_min_share!r} must be "
                          f">= 1 and in [0, 1]")
    a = _prepare(alerts, since, until)
    g = flagged_graph(a)
    comps = sorted((sorted(c) for c in nx.connected_components(g)), key=lambda c: (-len(c), c[0]))
    comp_of = {}
    comp_ids = []
    for comp in comps:
        cid = "K" + hashlib.sha1("\n".join(comp).encode("utf-8")).hexdigest()[:10]
        comp_ids.append(cid)
        for node in comp:
            comp_of[node] = cid

    embedding: dict = {}
    node_label: dict = {}
    refined_comps: set = set()
    big = [c for c in comps if len(c) >= max(min_refine_nodes, 2 * min_cluster_size)]
    if big and (refine == "hdbscan" or map_coords):
        big_nodes = [n for c in big for n in c]
        embedding = _embed(g.subgraph(big_nodes), big_nodes, embedder, dim, seed, walk_weight)
    for comp in big:
        if refine == "louvain":
            lab = _louvain_labels(g, comp, resolution, seed)
        else:
            from sklearn.cluster import HDBSCAN

            X = np.stack([embedding[n] for n in comp])
            X = X / np.maximum(np.linalg.norm(X, axis=1, keepdims=True), 1e-12)
            labels = HDBSCAN(min_cluster_size=min_cluster_size, min_samples=min(3, min_cluster_size),
                             cluster_selection_method=selection, copy=True).fit_predict(X)
            lab = {n: int(x) for n, x in zip(comp, labels)}
        if len(set(lab.values()) - {-1}) >= 2:
            refined_comps.add(comp_of[comp[0]])
            node_label.update(lab)

    # assign each transaction to a group key: Louvain labels every entity and a transaction goes
    # with its terminal's community (rings and compromised terminals are terminal-centred);
    # HDBSCAN: its customer's cluster, else its terminal's, else grouped among the noise
    first, second = ("t", "c") if refine == "louvain" else ("c", "t")
    cn = ("c:" + a["customer_id"]).to_numpy()
    tn = ("t:" + a["terminal_id"]).to_numpy()
    ends = {"c": cn, "t": tn}
    keys = []
    noise_edges: dict = {}
    for i in range(len(a)):
        comp = comp_of[cn[i]]
        if comp not in refined_comps:
            keys.append(comp)
            continue
        l1, l2 = node_label.get(ends[first][i], -1), node_label.get(ends[second][i], -1)
        if l1 >= 0:
            keys.append(f"{comp}/{l1}")
        elif l2 >= 0:
            keys.append(f"{comp}/{l2}")
        else:
            keys.append(None)
            noise_edges.setdefault(comp, []).append(i)
    for comp, idx in noise_edges.items():
        for i, k in zip(idx, _noise_groups(cn[idx], tn[idx], max(min_refine_nodes, 2 * min_cluster_size), seed)):
            keys[i] = f"{comp}/{k}"
    seen = visits_n = via = None
    links: list = []
    n_groups: dict = {}
    if context is not None:
        visits = prepare_context(context, a, since, until)
        seen = _seen_terminals(a, visits)
        visits_n = {(c, t): int(n) for c, t, n in zip(visits["customer_id"], visits["terminal_id"], visits["n"])}
        via = set()
        if link_min_surge is not None and len(a):
            lo = _utc(since, "--since") if since is not None else a["timestamp"].min()
            hi = _utc(until, "--until") if until is not None else a["timestamp"].max() + pd.Timedelta(microseconds=1)
            # the alerts are transactions of the window too (an archive holds them anyway)
            both = pd.concat([context[[c for c in ("tx_id", *CONTEXT_REQUIRED) if c in context.columns]],
                              a[["tx_id", *CONTEXT_REQUIRED]]], ignore_index=True)
            if "tx_id" in context.columns:
                both = both.drop_duplicates("tx_id", keep="first")
            surge = terminal_surge(both, lo, hi)
            via = set(surge.index[surge >= link_min_surge])
        if surge_gather and via:
            # every alert at a surging terminal (>= 2 alerted customers) joins the group that holds
            # most of that terminal's alerts: a ring terminal's mules stay with their terminal
            # even when their other alerts put them in another group
            at = pd.DataFrame({"t": a["terminal_id"].to_numpy(), "c": a["customer_id"].to_numpy(), "k": keys})
            at = at[at["t"].isin(via)]
            multi = at.groupby("t")["c"].nunique()
            owner = {}
            for t, part in at[at["t"].isin(multi.index[multi >= 2])].groupby("t", sort=True):
                vc = part["k"].value_counts()
                owner[t] = min(k for k in vc.index if vc[k] == vc.iloc[0])
            keys = [owner.get(t, k) for t, k in zip(a["terminal_id"], keys)]
        links = context_links(a, keys, seen, link_min_shared, link_min_share,
                              via if link_min_surge is not None else None, link_via)
        parent = {}

        def find(x):
            while parent.get(x, x) != x:
                x = parent[x]
            return x

        for x, y, _, _ in links:
            rx, ry = find(x), find(y)
            if rx != ry:
                parent[max(rx, ry)] = min(rx, ry)
        for k in set(keys):
            n_groups[find(k)] = n_groups.get(find(k), 0) + 1
        keys = [find(k) for k in keys]
    a["_key"] = keys
    # the score's percentile among the clustered alerts (the collusion risk's evidence unit)
    a["_pct"] = a["score"].rank(method="average", pct=True) if len(a) else a["score"]

    clusters, id_of_key = [], {}
    rows = _Rows(a)
    for key, idx in _groups(a["_key"].to_numpy(dtype=object)):
        comp = key.split("/")[0]
        cl = _summarise(rows, idx, comp, comp in refined_comps, risk, seen if context_collusion else None,
                        visits_n, n_groups.get(key, 1), via if surge_risk else None)
        clusters.append(cl)
        id_of_key[key] = cl.id
    clusters.sort(key=lambda c: (-c.risk, c.id))
    for r, c in enumerate(clusters, start=1):
        c.rank = r
    a["cluster_id"] = a["_key"].map(id_of_key)
    a = a.drop(columns=["_key", "_pct"])

    coords = _map_coords(g, embedding, seed) if map_coords else {}
    meta = {"n_alerts": int(len(a)), "n_entities": int(g.number_of_nodes()), "n_components": len(comps),
            "n_refined_components": len(refined_comps), "n_clusters": len(clusters), "embedder": embedder,
            "refine": refine, "resolution": resolution if refine == "louvain" else None,
            "min_refine_nodes": min_refine_nodes, "min_cluster_size": min_cluster_size, "seed": seed,
            "since": None if since is None else str(since), "until": None if until is None else str(until),
            "risk": risk, "risk_formula": RISKS[risk], "context": context is not None,
            "context_links": len(links),
            "context_pairs": None if visits_n is None else len(visits_n)}
    return ClusterResult(clusters=clusters, alerts=a, graph=g, embedding=embedding, coords=coords, meta=meta)


def _map_coords(g, embedding: dict, seed: int) -> dict:
    """2-D map of every flagged entity: PCA of the embedding for refined components; entities of
    small components (not embedded) are placed by a seeded spring layout of their component,
    shifted onto a grid beside the embedded cloud."""
    import networkx as nx

    coords: dict = {}
    if embedding:
        nodes = sorted(embedding)
        X = np.stack([embedding[n] for n in nodes])
        if len(nodes) >= 3:
            from sklearn.decomposition import PCA

            Y = PCA(n_components=2, random_state=seed).fit_transform(X)
        else:
            Y = np.zeros((len(nodes), 2))
        span = float(np.abs(Y).max()) or 1.0
        Y = Y / span
        for n, y in zip(nodes, Y):
            coords[n] = (float(y[0]), float(y[1]))
    rest = [sorted(c) for c in nx.connected_components(g.subgraph([n for n in g.nodes if n not in coords]))]
    rest.sort(key=lambda c: (-len(c), c[0]))
    cols = max(int(math.ceil(math.sqrt(max(len(rest), 1)))), 1)
    for j, comp in enumerate(rest):
        gx, gy = 1.6 + 0.35 * (j % cols), -1.0 + 0.35 * (j // cols)
        if len(comp) == 1:
            pos = {comp[0]: np.zeros(2)}
        else:
            pos = nx.spring_layout(g.subgraph(comp), seed=seed, scale=0.12)
        for n in comp:
            coords[n] = (float(gx + pos[n][0]), float(gy + pos[n][1]))
    return coords


# -- quality --------------------------------------------------------------------------------
def quality(result: ClusterResult, ring_scenario: int = 4, top_k: int = 10, ring_total: int | None = None) -> dict:
    """Cluster purity and ring share (needs ``scenario`` ground truth in the alerts).

    purity: sum over clusters of the size of its most frequent scenario class (0 = legit alert)
    divided by the number of alerts. ring_share_top_k: ring-scenario alerts inside the ``top_k``
    highest-risk clusters divided by the ring-scenario alerts (what clustering and ranking can
    reach: it does not depend on the detector's recall). ring_share_top_k_of_all: the same count
    divided by ``ring_total``, every ring transaction of the period (alerted or not), when given.
    top_k_load: share of all alerts inside the ``top_k`` clusters (the review work they hold; a
    ranking that puts everything in ten huge clusters has a high ring share and a load near 1), and
    top_k_lift = ring_share_top_k / top_k_load (1 = no better than taking alerts at random).
    ring_clusters: how many clusters hold ring alerts, and how many hold 80% of them. largest_cluster: alerts
    in the largest cluster (what one review of a group can mean).
    """
    a = result.alerts
    sc = pd.to_numeric(a["scenario"], errors="coerce") if "scenario" in a.columns else pd.Series(dtype=float)
    if len(a) == 0 or sc.isna().all():
        return {"purity": None, "ring_share_top_k": None, "note": "no scenario ground truth in the alerts"}
    sc = sc.fillna(0).astype(int)
    tab = pd.crosstab(a["cluster_id"], sc)
    purity = float(tab.max(axis=1).sum() / max(len(a), 1))
    ring = a[sc == ring_scenario]
    top_ids = {c.id for c in result.clusters[:top_k]}
    n_ring = int(len(ring))
    in_top = int(ring["cluster_id"].isin(top_ids).sum())
    per = ring["cluster_id"].value_counts()
    n80 = int(np.searchsorted(np.cumsum(per.to_numpy()), 0.8 * n_ring) + 1) if n_ring else 0
    load = float(a["cluster_id"].isin(top_ids).mean())
    share = in_top / n_ring if n_ring else None
    weighted = {}
    for cid, row in tab.iterrows():
        weighted[cid] = float(row.max() / row.sum())
    return {
        "n_alerts": int(len(a)), "n_clusters": len(result.clusters), "purity": round(purity, 4),
        "largest_cluster": max((c.n_tx for c in result.clusters), default=0),
        "ring_alerts": n_ring, "ring_in_top_k": in_top, "top_k": top_k,
        "ring_share_top_k": round(share, 4) if share is not None else None,
        "ring_total": ring_total,
        "ring_share_top_k_of_all": round(in_top / ring_total, 4) if ring_total else None,
        "top_k_alerts": int(a["cluster_id"].isin(top_ids).sum()), "top_k_load": round(load, 4),
        "top_k_lift": round(share / load, 3) if share is not None and load > 0 else None,
        "ring_clusters": int(len(per)), "ring_clusters_80pct": n80,
        "top_k_purity": [round(weighted[c.id], 4) for c in result.clusters[:top_k]],
        "top_k_dominant": [c.dominant_scenario for c in result.clusters[:top_k]],
    }
