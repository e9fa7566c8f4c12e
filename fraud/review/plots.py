"""PNG drawings for the review pages and the static report (matplotlib, object API: no pyplot
global state, so the web app may draw from several threads)."""
from __future__ import annotations

import io

import numpy as np
import pandas as pd

from fraud.review.clusters import SCENARIO_NAMES, Cluster, ClusterResult, cnode, tnode

CUSTOMER = "#3b6fb6"
TERMINAL = "#e08a1e"
HIGHLIGHT = "#d62728"


def _figure(w=6.4, h=4.2):
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    return Figure(figsize=(w, h), dpi=100, layout="constrained")


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def _short(s: str, n: int = 14) -> str:
    s = str(s)
    return s if len(s) <= n else s[: n - 1] + "…"


def subgraph_png(result: ClusterResult, cluster: Cluster, max_labels: int = 40) -> bytes:
    """The cluster's customers (blue circles) and terminals (orange squares), one edge per
    customer-terminal pair of its alerts (width = number of alerts)."""
    import networkx as nx

    a = result.alerts[result.alerts["cluster_id"] == cluster.id]
    g = nx.Graph()
    for (c, t), part in a.groupby(["customer_id", "terminal_id"], sort=True):
        g.add_edge(cnode(c), tnode(t), n=len(part))
    fig = _figure(6.4, 4.8)
    ax = fig.add_subplot()
    ax.set_axis_off()
    ax.set_title(f"cluster {cluster.id}: {len(cluster.customers)} customers, {len(cluster.terminals)} terminals")
    if g.number_of_nodes() == 0:
        return _png(fig)
    pos = nx.spring_layout(g, seed=0)
    for u, v, d in g.edges(data=True):
        ax.plot([pos[u][0], pos[v][0]], [pos[u][1], pos[v][1]], color="#999999",
                linewidth=0.6 + 0.8 * np.log1p(d["n"]), zorder=1)
    for kind, colour, marker in (("c:", CUSTOMER, "o"), ("t:", TERMINAL, "s")):
        nodes = [n for n in g.nodes if n.startswith(kind)]
        if nodes:
            xy = np.array([pos[n] for n in nodes])
            ax.scatter(xy[:, 0], xy[:, 1], s=90, c=colour, marker=marker, edgecolors="black", linewidths=0.5,
                       zorder=2, label="customer" if kind == "c:" else "terminal")
    if g.number_of_nodes() <= max_labels:
        for n in g.nodes:
            ax.annotate(_short(n[2:]), pos[n], fontsize=7, xytext=(4, 4), textcoords="offset points")
    ax.legend(loc="lower right", fontsize=8)
    return _png(fig)


def timeline_png(result: ClusterResult, cluster: Cluster) -> bytes:
    """The cluster's transactions over time: amount (y) and score (colour)."""
    a = result.alerts[result.alerts["cluster_id"] == cluster.id]
    fig = _figure(6.4, 3.2)
    ax = fig.add_subplot()
    ts = pd.to_datetime(a["timestamp"], utc=True).dt.tz_convert(None)
    sc = ax.scatter(ts, a["amount"], c=a["score"], cmap="viridis", vmin=0, vmax=max(1.0, float(a["score"].max())),
                    s=22, edgecolors="black", linewidths=0.3)
    fig.colorbar(sc, ax=ax, label="score")
    ax.set_ylabel("amount")
    ax.set_title("timeline of the cluster's alerts")
    fig.autofmt_xdate()
    return _png(fig)


def map_png(result: ClusterResult, cluster: Cluster | None = None) -> bytes:
    """The embedding map of every flagged entity (PCA of the entity embedding for refined
    components; small components on a grid at the right), the cluster's entities highlighted."""
    fig = _figure(6.4, 4.8)
    ax = fig.add_subplot()
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title("embedding map of flagged entities" + (f" (cluster {cluster.id} in red)" if cluster else ""))
    if not result.coords:
        return _png(fig)
    nodes = sorted(result.coords)
    xy = np.array([result.coords[n] for n in nodes])
    ax.scatter(xy[:, 0], xy[:, 1], s=6, c="#bbbbbb", linewidths=0)
    if cluster is not None:
        mine = {cnode(c) for c in cluster.customers} | {tnode(t) for t in cluster.terminals}
        sel = np.array([n in mine for n in nodes])
        if sel.any():
            ax.scatter(xy[sel, 0], xy[sel, 1], s=26, c=HIGHLIGHT, edgecolors="black", linewidths=0.4)
    return _png(fig)


def risk_png(result: ClusterResult, top: int = 20) -> bytes:
    cl = result.clusters[:top]
    fig = _figure(6.4, 0.8 + 0.22 * max(len(cl), 1))
    ax = fig.add_subplot()
    ax.barh([c.id for c in cl][::-1], [c.risk for c in cl][::-1], color=HIGHLIGHT)
    ax.set_xlabel("risk")
    ax.set_title(f"top {len(cl)} clusters by risk")
    ax.tick_params(axis="y", labelsize=7)
    return _png(fig)


def scores_png(result: ClusterResult) -> bytes:
    fig = _figure(6.4, 3.2)
    ax = fig.add_subplot()
    if len(result.alerts):
        ax.hist(result.alerts["score"], bins=40, color=CUSTOMER)
    ax.set_xlabel("score")
    ax.set_ylabel("alerts")
    ax.set_title("score distribution of the alerts")
    return _png(fig)


def scenario_mix_png(result: ClusterResult, top: int = 20) -> bytes | None:
    """Stacked bars: ground-truth scenario of each top cluster's alerts (None without ground truth)."""
    cl = [c for c in result.clusters[:top]]
    if not any(c.scenario_mix for c in cl):
        return None
    keys = sorted({int(k) for c in cl if c.scenario_mix for k in c.scenario_mix})
    fig = _figure(6.4, 3.6)
    ax = fig.add_subplot()
    bottom = np.zeros(len(cl))
    for k in keys:
        vals = np.array([(c.scenario_mix or {}).get(str(k), 0) for c in cl], dtype=float)
        ax.bar(range(len(cl)), vals, bottom=bottom, label=f"{k} {SCENARIO_NAMES.get(k, '')}")
        bottom += vals
    ax.set_xticks(range(len(cl)), [str(c.rank) for c in cl], fontsize=7)
    ax.set_xlabel("cluster rank")
    ax.set_ylabel("alerts")
    ax.set_title("ground-truth scenario mix of the top clusters")
    ax.legend(fontsize=7)
    return _png(fig)
