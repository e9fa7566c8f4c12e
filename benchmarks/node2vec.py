"""Node2Vec speed and quality (``fraud bench node2vec``): the graph of a window embedded end to end, and
``models.node2vec`` against the PyPI ``node2vec`` package on one subgraph, same parameters on both sides
and then each side's defaults (wall and CPU seconds, held-out link AUC). Figures: docs/benchmarks.md."""
from __future__ import annotations

import time

def _pypi_node2vec():
    """The PyPI ``node2vec`` package; it imports ``pkg_resources`` (absent with recent setuptools) only to
    read gensim's version, so a minimal stand-in is installed when the real one is missing."""
    import sys
    import types

    try:
        import pkg_resources  # noqa: F401
    except ModuleNotFoundError:
        from importlib.metadata import version

        shim = types.ModuleType("pkg_resources")
        shim.get_distribution = lambda name: types.SimpleNamespace(version=version(name))
        sys.modules["pkg_resources"] = shim
    from node2vec import Node2Vec as PyPINode2Vec

    return PyPINode2Vec


def _subgraph(g, target_nodes: int, seed: int):
    """Customers drawn at random with all their terminals until about ``target_nodes`` nodes."""
    import numpy as np

    rng = np.random.default_rng(seed)
    order = rng.permutation(g.n_customers)
    src, dst = g.src, g.dst
    by_c = np.split(np.argsort(src, kind="stable"), np.cumsum(np.bincount(src, minlength=g.n_customers))[:-1])
    chosen, terms, edges = [], set(), []
    for c in order:
        e = by_c[c]
        chosen.append(c)
        terms.update(dst[e].tolist())
        edges.append(e)
        if len(chosen) + len(terms) >= target_nodes:
            break
    e = np.concatenate(edges)
    return src[e], dst[e], g.count[e]


def _link_auc(emb, nc, new_pairs, seed=0):
    """AUC of dot-product scores: pairs that first appear after the embedding cutoff vs random pairs."""
    import numpy as np
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(seed)
    s, d = new_pairs
    rs = rng.integers(0, nc, len(s))
    rd = rng.integers(0, emb.shape[0] - nc, len(s))
    e = emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)
    pos = (e[s] * e[nc + d]).sum(1)
    neg = (e[rs] * e[nc + rd]).sum(1)
    return float(roc_auc_score(np.r_[np.ones(len(pos)), np.zeros(len(neg))], np.r_[pos, neg]))


def _simulated(seed: int, con):
    """A handbook-size simulated world, when no data is given."""
    from fraud.simulate import simulate

    with con.status("simulating a handbook-size world"):
        return simulate(customers=5000, terminals=10000, days=120, seed=seed)


def _compile_s() -> float:
    """Load (or compile once per environment, cached on disk) the numba kernels; timed apart from the runs."""
    import torch

    from models.node2vec import Node2Vec

    t0 = time.perf_counter()
    Node2Vec(dim=4, walk_length=4, walks_per_node=1).fit(torch.tensor([[0, 1], [1, 0]]), 2)
    Node2Vec(dim=4, walk_length=4, walks_per_node=1, workers=2).fit(torch.tensor([[0, 1], [1, 0]]), 2)
    return time.perf_counter() - t0


def run_node2vec(df=None, *, dataset: str | None = None, cutoff=None, window_days: int = 90, compare_nodes: int = 5000,
                 holdout_days: int = 14, defaults: bool = True, compare_sgns: bool = False, map_path=None,
                 seed: int = 0, con=None) -> dict:
    """The whole benchmark; ``df`` None: a handbook-size simulated world. ``con``: a rich console for progress."""
    import numpy as np
    import pandas as pd
    import torch
    from rich.console import Console

    from fraud.graph import build_graph
    from models.node2vec import Node2Vec

    con = con or Console(stderr=True)
    if df is None:
        df, dataset = _simulated(seed, con), "simulate(customers=5000, terminals=10000, days=120, seed=0)"
    cut = pd.Timestamp(cutoff) if cutoff else df["timestamp"].max().normalize() + pd.Timedelta(days=1)
    cut = cut.tz_localize("UTC") if cut.tzinfo is None else cut.tz_convert("UTC")
    t_compile = _compile_s()
    t0 = time.perf_counter()
    g = build_graph(df, cut, window_days)
    t_graph = time.perf_counter() - t0
    n = g.n_customers + g.n_terminals
    w = torch.as_tensor(np.log1p(np.concatenate([g.count, g.count])), dtype=torch.float64)
    params = Node2Vec(seed=seed).get_params()
    with con.status(f"node2vec on {n} nodes, {g.n_edges} edges"):
        t0 = time.perf_counter()
        m = Node2Vec(**params).fit(g.homogeneous_edge_index(), n, edge_weight=w)
        t_full = time.perf_counter() - t0
    res = {"dataset": str(dataset), "cutoff": str(cut), "window_days": window_days, "nodes": n, "edges": g.n_edges,
           "graph_s": round(t_graph, 3), "embed_s": round(t_full, 3), "walks_s": round(m.timings_["walks_s"], 3),
           "skipgram_s": round(m.timings_["skipgram_s"], 3), "numba_load_or_compile_s": round(t_compile, 2),
           "params": params}
    con.print(f"full graph: {n} nodes, {g.n_edges} edges: graph {t_graph:.2f} s, embed {t_full:.2f} s "
              f"(walks {m.timings_['walks_s']:.2f} s, skip-gram {m.timings_['skipgram_s']:.2f} s); numba kernels "
              f"loaded/compiled beforehand in {t_compile:.2f} s")
    res["compare"] = _compare_pypi(df, cut, window_days, holdout_days, compare_nodes, defaults, seed, con)
    if compare_sgns:
        res["sgns"] = _compare_sgns(df, cut, window_days, params, seed, con)
    if map_path:
        res["map"] = _map(df, g, m.embedding_, cut, window_days, map_path)
        con.print(f"map written to {res['map']}")
    return res


def _map(df, g, embedding, cut, window_days, map_path) -> str:
    """A PNG map of the embeddings coloured by log(1 + frauds involved)."""
    import numpy as np
    import pandas as pd

    from fraud.viz import embedding_map

    n = g.n_customers + g.n_terminals
    sub = df.loc[(df["timestamp"] < cut) & (df["timestamp"] >= cut - pd.Timedelta(days=window_days))]
    if "label" in sub.columns:
        fr_c = sub.groupby(sub["customer_id"].astype(str))["label"].sum()
        fr_t = sub.groupby(sub["terminal_id"].astype(str))["label"].sum()
        col = np.r_[fr_c.reindex(g.customers).fillna(0).to_numpy(), fr_t.reindex(g.terminals).fillna(0).to_numpy()]
    else:
        col = np.zeros(n)
    return str(embedding_map(embedding, np.log1p(col), map_path,
                             title=f"node2vec of {n} nodes, coloured by log(1 + frauds involved)"))


def table(res: dict) -> str:
    """The result as text: the full-graph figures, then one line per configuration of the comparison."""
    lines = [f"{k}: {v}" for k, v in res.items() if k != "compare"]
    c = res["compare"]
    lines.append(f"comparison: {c['nodes']} nodes, {c['edges']} edges, {c['heldout_pairs']} held-out pairs")
    lines.append(f"{'configuration':10s} {'implementation':44s} {'wall s':>8s} {'cpu s':>8s} {'link AUC':>9s}")
    for cfg in ("same", "defaults"):
        for r in c.get(cfg, {}).get("runs", []):
            lines.append(f"{cfg:10s} {r['name']:44s} {r['wall_s']:8.2f} {r['cpu_s']:8.2f} {r['link_auc']:9.4f}")
        if cfg in c:
            lines.append(f"{'':10s} speed-up (PyPI / ours): wall x{c[cfg]['speedup_wall']}, cpu x{c[cfg]['speedup_cpu']}")
    return "\n".join(lines)


# The configurations of the comparison with the PyPI package. "same": identical walk and skip-gram
# parameters on both sides (unweighted walks, 1 thread each); "defaults": each side's own defaults.
SAME = dict(dim=32, walk_length=20, walks_per_node=10, context_size=5, p=1.0, q=1.0, epochs=1, negative=5, lr=0.025)


def _heldout(df, cut, window_days, holdout_days, target_nodes, seed):
    """The comparison subgraph (customers drawn at random with all their terminals, window ending
    ``holdout_days`` before ``cut``) and its held-out links: pairs of its nodes first seen in the last days."""
    import numpy as np
    import pandas as pd

    from fraud.graph import build_graph

    early = cut - pd.Timedelta(days=holdout_days)
    g = build_graph(df, early, window_days)
    s, d, _ = _subgraph(g, target_nodes, seed)
    cu, ci = np.unique(s, return_inverse=True)
    tu, ti = np.unique(d, return_inverse=True)
    later = df.loc[(df["timestamp"] >= early) & (df["timestamp"] < cut)]
    cmap = {g.customers[c]: k for k, c in enumerate(cu)}
    tmap = {g.terminals[t]: k for k, t in enumerate(tu)}
    pairs = {(cmap[c], tmap[t]) for c, t in zip(later["customer_id"].astype(str), later["terminal_id"].astype(str))
             if c in cmap and t in tmap}
    new = np.array(sorted(pairs - set(zip(ci.tolist(), ti.tolist()))), dtype=np.int64).reshape(-1, 2)
    return len(cu), len(tu), ci, ti, new


def _timed(fn):
    t0, c0 = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - t0, time.process_time() - c0


def _compare_pypi(df, cut, window_days, holdout_days, target_nodes, defaults, seed, con) -> dict:
    """This Node2Vec vs the PyPI ``node2vec`` package on one subgraph: wall and CPU time (one thread each side)
    and held-out link AUC, with the same parameters on both sides and (``defaults``) with each side's defaults."""
    import networkx as nx
    import numpy as np
    import torch

    from models.node2vec import Node2Vec

    nc, nt, ci, ti, new = _heldout(df, cut, window_days, holdout_days, target_nodes, seed)
    nsub = nc + nt
    ei = torch.as_tensor(np.stack([np.r_[ci, ti + nc], np.r_[ti + nc, ci]]), dtype=torch.long)
    G = nx.Graph()
    G.add_edges_from(zip(ci.tolist(), (ti + nc).tolist()))
    PyPI = _pypi_node2vec()
    out = {"nodes": nsub, "edges": len(ci), "heldout_days": holdout_days, "heldout_pairs": int(len(new)),
           "threads": 1, "same_params": {**SAME, "sample": 0, "min_count": 1, "edge_weights": None},
           "note": "wall and CPU seconds of one run each, end to end (walks + skip-gram; PyPI: transition "
                   "probabilities + walks + gensim Word2Vec), one thread each side; link AUC: cosine of customer "
                   "and terminal embeddings, held-out new pairs vs random pairs"}

    def auc(emb):
        return round(_link_auc(emb, nc, (new[:, 0], new[:, 1]), seed), 4) if len(new) else float("nan")

    def pypi_emb(model, dim):
        emb = np.zeros((nsub, dim), np.float32)
        keys = np.asarray([int(k) for k in model.wv.index_to_key], dtype=np.int64)
        emb[keys] = model.wv.vectors
        return emb

    def ours(name, **kw):
        with con.status(f"{name} on the {nsub}-node subgraph"):
            m, wall, cpu = _timed(lambda: Node2Vec(seed=seed, workers=1, **kw).fit(ei, nsub))
        r = {"name": name, "wall_s": round(wall, 3), "cpu_s": round(cpu, 3), "link_auc": auc(m.embedding_),
             "walks_s": round(m.timings_["walks_s"], 3), "skipgram_s": round(m.timings_["skipgram_s"], 3),
             "params": {k: v for k, v in m.get_params().items() if k not in ("keep_walks", "symmetric", "max_tries")}}
        con.print(f"  {name}: {wall:.2f} s (cpu {cpu:.2f} s), link AUC {r['link_auc']:.4f}")
        return r

    def pypi(name, init_kw, fit_kw):
        def run():
            t0 = time.perf_counter()
            ref = PyPI(G, workers=1, quiet=True, seed=seed, **init_kw)
            t_walks = time.perf_counter() - t0
            return ref, ref.fit(seed=seed, workers=1, **fit_kw), t_walks
        with con.status(f"{name} on the {nsub}-node subgraph"):
            (ref, model, t_walks), wall, cpu = _timed(run)
        r = {"name": name, "wall_s": round(wall, 3), "cpu_s": round(cpu, 3),
             "link_auc": auc(pypi_emb(model, ref.dimensions)), "walks_s": round(t_walks, 3),
             "skipgram_s": round(wall - t_walks, 3),
             "params": {"dimensions": ref.dimensions, "walk_length": ref.walk_length, "num_walks": ref.num_walks,
                        "p": ref.p, "q": ref.q, "window": model.window, "negative": model.negative,
                        "epochs": model.epochs, "sample": model.sample, "min_count": model.min_count,
                        "alpha": model.alpha, "sg": model.sg}}
        con.print(f"  {name}: {wall:.2f} s (cpu {cpu:.2f} s), link AUC {r['link_auc']:.4f}")
        return r

    con.print(f"comparison subgraph: {nsub} nodes, {len(ci)} edges, {len(new)} held-out pairs")
    same = [ours("ours (numba walks + numba SGNS)", **SAME),
            ours("ours walks + gensim Word2Vec", backend="gensim", **SAME),
            pypi("PyPI node2vec (networkx walks + gensim)",
                 dict(dimensions=SAME["dim"], walk_length=SAME["walk_length"], num_walks=SAME["walks_per_node"],
                      p=SAME["p"], q=SAME["q"]),
                 dict(window=SAME["context_size"], min_count=1, sg=1, negative=SAME["negative"],
                      epochs=SAME["epochs"], sample=0, alpha=SAME["lr"]))]
    out["same"] = {"runs": same, "speedup_wall": round(same[2]["wall_s"] / same[0]["wall_s"], 1),
                   "speedup_cpu": round(same[2]["cpu_s"] / same[0]["cpu_s"], 1)}
    con.print(f"same parameters: PyPI / ours = x{out['same']['speedup_wall']} wall, x{out['same']['speedup_cpu']} cpu")
    if defaults:
        dflt = [ours("ours, defaults"), pypi("PyPI node2vec, defaults", {}, {})]
        out["defaults"] = {"runs": dflt, "speedup_wall": round(dflt[1]["wall_s"] / dflt[0]["wall_s"], 1),
                           "speedup_cpu": round(dflt[1]["cpu_s"] / dflt[0]["cpu_s"], 1)}
        con.print(f"defaults: PyPI / ours = x{out['defaults']['speedup_wall']} wall, "
                  f"x{out['defaults']['speedup_cpu']} cpu")
    return out


def _compare_sgns(df, cut, window_days, params, seed, con) -> dict:
    """numba vs gensim vs torch skip-gram on the same walks: time and held-out link AUC (new pairs of the last 14 days)."""
    import numpy as np
    import pandas as pd

    from fraud.graph import build_graph
    from models.node2vec import Node2Vec

    early_cut = cut - pd.Timedelta(days=14)
    g = build_graph(df, early_cut, window_days - 14)
    later = df.loc[(df["timestamp"] >= early_cut) & (df["timestamp"] < cut)]
    ci, ti = g.customer_index, g.terminal_index
    known = set(zip(g.src.tolist(), g.dst.tolist()))
    pairs = {(ci[c], ti[t]) for c, t in zip(later["customer_id"].astype(str), later["terminal_id"].astype(str))
             if c in ci and t in ti}
    new = np.array(sorted(pairs - known), dtype=np.int64).reshape(-1, 2)
    n = g.n_customers + g.n_terminals
    params = {**params, "walks_per_node": 4, "workers": 1}  # keeps the torch side within minutes on a shared machine
    base = Node2Vec(**params)
    walks = base.random_walks(g.homogeneous_edge_index(), n)
    out = {"nodes": n, "new_pairs": int(len(new)), "walks_per_node": params["walks_per_node"]}
    for backend in ("numba", "gensim", "torch"):
        m = Node2Vec(**{**params, "backend": backend})
        m.num_nodes_ = n
        with con.status(f"skip-gram with {backend}"):
            t0 = time.perf_counter()
            emb = getattr(m, "_train_" + backend)(walks, n)
            dt = time.perf_counter() - t0
        auc = _link_auc(emb, g.n_customers, (new[:, 0], new[:, 1]), seed) if len(new) else float("nan")
        out[backend] = {"seconds": round(dt, 2), "link_auc": round(auc, 4)}
        con.print(f"skip-gram {backend}: {dt:.2f} s, held-out link AUC {auc:.4f}")
    return out
