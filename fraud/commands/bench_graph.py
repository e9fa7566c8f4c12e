"""fraud bench ablation, fraud bench node2vec (graph embeddings: quality and speed).

``fraud bench node2vec --data /work/shared/data/handbook/transactions.parquet --preset handbook
--compare-nodes 15000 --json``: this Node2Vec against the PyPI ``node2vec`` package on the whole
handbook graph of the 90 days before 2018-09-17 (14,975 nodes, 292,641 edges; the last 14 days give
10,745 new customer-terminal pairs, the held-out links), one thread each side, one run (2-core machine
shared with other jobs, load average 8-12: wall times are inflated and swing with the load; CPU seconds
are steadier):

===========  ===========================================  ========  =======  ========
config       implementation                                wall s    CPU s   link AUC
===========  ===========================================  ========  =======  ========
same         ours (numba walks + numba SGNS)                  6.87     1.83    0.9951
same         ours walks + gensim Word2Vec                   122.04    14.65    0.9952
same         PyPI node2vec (networkx walks + gensim)      1140.34    93.28    0.9953
defaults     ours (the same parameters: our defaults)       17.60     2.28    0.9951
defaults     PyPI node2vec, its defaults                    953.97   412.47    0.9955
===========  ===========================================  ========  =======  ========

"same": dim 32, walk length 20, 10 walks per node, window 5, 5 negatives, 1 epoch, learning rate 0.025,
no subsampling, every node kept (``min_count=1``), p = q = 1, unweighted. Speed-up PyPI / ours: x50.9 in
CPU seconds, x166 wall (x15 wall in an earlier run at a lower load, before the alias table: see
``models.node2vec``). The AUCs agree to 0.0002, within their standard error (~0.0005 with 10,745
held-out pairs); ours is not measurably better. PyPI defaults: dimensions 128, walk length 80, 10 walks,
gensim's ``window=5, min_count=5, sample=1e-3, epochs=5``: 0.0004 more link AUC than our defaults for
x181 the CPU time (x54 wall). Of the PyPI package's time in "same", 970 s wall of 1140 were its
transition probabilities and walks (networkx, pure Python). Full graph (14,978 nodes, weighted walks)
in the same run: 11.8 s wall (walks 3.5 s, skip-gram 8.0 s) under that load; about 2.4 s (walks 0.6 s,
skip-gram 1.8 s, measured apart, unweighted) when the
machine was quieter. Peak memory of the whole command 2.1 GB (the PyPI transition tables).
"""
from __future__ import annotations

import json
import time

import click

from fraud.commands.common import data_options, load_or_fail


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


def register(main: click.Group, bench: click.Group) -> None:
    @bench.command("ablation")
    @data_options(rejects=False)
    @click.option("--budget", default=100, show_default=True, help="Daily alert budget (cards) for recall.")
    @click.option("--extra-budgets", default="10,25,50", show_default=True,
                  help="More daily budgets reported under recall_at_budgets (comma list, empty for none).")
    @click.option("--sets", default=",".join(["tabular", "tabular+graph", "tabular+sequence", "all"]),
                  show_default=True, help="Feature sets to compare (comma list).")
    @click.option("--test-days", default=21, show_default=True, help="Test period: the last N days.")
    @click.option("--train-days", default=28, show_default=True, help="Detector training days (labels older than the delay).")
    @click.option("--last-days", default=None, type=int, help="Use only the last N days of the data.")
    @click.option("--embedder", default="node2vec", type=click.Choice(["node2vec", "gnn"]), show_default=True)
    @click.option("--graph-columns", default="online", type=click.Choice(["online", "all"]), show_default=True,
                  help="GraphFeatures columns: 'online' drops the node values frozen at fit (see fraud.features.graph).")
    @click.option("--seed", default=0, show_default=True)
    @click.option("--torch-threads", default=1, show_default=True,
                  help="torch intra-op threads (1 avoids threads spinning against each other on a shared machine).")
    @click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
    @click.pass_obj
    def ablation(settings, data, columns, preset, budget, extra_budgets, sets, test_days, train_days, last_days,
                 embedder, graph_columns, seed, torch_threads, as_json):
        """Same supervised detector on feature sets (tabular, +graph, +sequence, all): AP, AUC, recall at budget."""
        import pandas as pd
        from rich.console import Console

        from fraud.bench.ablation import run_ablation
        from fraud.errors import ConfigError

        import torch

        torch.set_num_threads(max(1, torch_threads))
        con = Console(stderr=True)
        df = load_or_fail(data, columns, preset)
        if last_days:
            df = df.loc[df["timestamp"] >= df["timestamp"].max().normalize() + pd.Timedelta(days=1 - last_days)]
        try:
            extra = [int(b) for b in extra_budgets.split(",") if b.strip()]
        except ValueError:
            raise ConfigError(f"--extra-budgets: {extra_budgets!r} is not a comma list of integers") from None
        delay = settings.feedback_delay_days if settings else 7
        params = {"graph": {"embedder": embedder, "delay_days": delay, "seed": seed, "columns": graph_columns},
                  "tabular": {"delay_days": delay}}
        with con.status("ablation: featurizing and training (see notes below)"):
            res = run_ablation(df, sets=[s.strip() for s in sets.split(",") if s.strip()], budget=budget,
                               test_days=test_days, train_days=train_days, delay_days=delay, seed=seed,
                               featurizer_params=params, dataset=str(data), extra_budgets=extra,
                               log=lambda m: con.print(m))
        if as_json:
            click.echo(json.dumps(res, indent=1))
            return
        scen = sorted({k for r in res["feature_sets"].values() for k in r["recall_at_budget"]},
                      key=lambda k: (k == "all", k))
        click.echo(f"dataset {res['dataset']}  split {res['split']['split']}  train rows {res['n_train']}  "
                   f"test rows {res['n_test']}  test frauds per scenario {res['test_frauds']}")
        click.echo(f"{'feature set':18s} {'AP':>7s} {'AUC':>7s}  " + " ".join(f"R@{budget}[{s}]".rjust(11) for s in scen))
        for name, r in res["feature_sets"].items():
            click.echo(f"{name:18s} {r['ap']:7.4f} {r['auc']:7.4f}  "
                       + " ".join(f"{r['recall_at_budget'].get(s, float('nan')):11.3f}" for s in scen))
            for b, rb in r.get("recall_at_budgets", {}).items():
                click.echo(f"{'  @' + b:18s} {'':7s} {'':7s}  "
                           + " ".join(f"{rb.get(s, float('nan')):11.3f}" for s in scen))
        for name, why in res["skipped"].items():
            click.echo(f"skipped {name}: {why}")

    @bench.command("node2vec")
    @data_options(required=False, rejects=False)
    @click.option("--window-days", default=90, show_default=True, help="Graph window before the cutoff.")
    @click.option("--cutoff", default=None, help="Graph cutoff (default: the day after the last transaction).")
    @click.option("--compare-nodes", default=5000, show_default=True,
                  help="Nodes of the subgraph embedded by both this Node2Vec and the PyPI node2vec package.")
    @click.option("--holdout-days", default=14, show_default=True,
                  help="The comparison embeds the window ending this many days before the cutoff; customer-terminal "
                       "pairs first seen in these days are the held-out links of the link AUC.")
    @click.option("--defaults/--no-defaults", default=True, show_default=True,
                  help="Also compare each side with its own default parameters (the PyPI defaults take minutes).")
    @click.option("--compare-sgns", is_flag=True, help="Also time numba vs gensim vs torch skip-gram on the same walks.")
    @click.option("--map", "map_path", default=None, type=click.Path(dir_okay=False),
                  help="Write a PNG map of the embeddings coloured by fraud involvement.")
    @click.option("--seed", default=0, show_default=True)
    @click.option("--torch-threads", default=1, show_default=True,
                  help="torch intra-op threads (1 avoids threads spinning against each other on a shared machine).")
    @click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
    def node2vec_bench(data, columns, preset, window_days, cutoff, compare_nodes, holdout_days, defaults, compare_sgns,
                       map_path, seed, torch_threads, as_json):
        """Node2Vec speed and quality: the graph of a window embedded end to end, and this Node2Vec against the
        PyPI node2vec package on one subgraph (same parameters on both sides, then each side's defaults):
        wall and CPU seconds, and the held-out link AUC of every configuration."""
        import numpy as np
        import pandas as pd
        import torch
        from rich.console import Console

        from fraud.graph import build_graph
        from models.node2vec import Node2Vec

        torch.set_num_threads(max(1, torch_threads))
        con = Console(stderr=True)
        if data:
            df = load_or_fail(data, columns, preset)
        else:
            from fraud.simulate import simulate

            data = "simulate(customers=5000, terminals=10000, days=120, seed=0)"
            with con.status("simulating a handbook-size world"):
                df = simulate(customers=5000, terminals=10000, days=120, seed=seed)
        cut = pd.Timestamp(cutoff) if cutoff else df["timestamp"].max().normalize() + pd.Timedelta(days=1)
        cut = cut.tz_localize("UTC") if cut.tzinfo is None else cut.tz_convert("UTC")
        # numba kernels: compiled once per environment and cached on disk; timed apart from the runs
        t0 = time.perf_counter()
        Node2Vec(dim=4, walk_length=4, walks_per_node=1).fit(torch.tensor([[0, 1], [1, 0]]), 2)
        Node2Vec(dim=4, walk_length=4, walks_per_node=1, workers=2).fit(torch.tensor([[0, 1], [1, 0]]), 2)
        t_compile = time.perf_counter() - t0
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
        res = {"dataset": str(data), "cutoff": str(cut), "window_days": window_days, "nodes": n, "edges": g.n_edges,
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
            from fraud.viz import embedding_map

            sub = df.loc[(df["timestamp"] < cut) & (df["timestamp"] >= cut - pd.Timedelta(days=window_days))]
            if "label" in sub.columns:
                fr_c = sub.groupby(sub["customer_id"].astype(str))["label"].sum()
                fr_t = sub.groupby(sub["terminal_id"].astype(str))["label"].sum()
                col = np.r_[fr_c.reindex(g.customers).fillna(0).to_numpy(), fr_t.reindex(g.terminals).fillna(0).to_numpy()]
            else:
                col = np.zeros(n)
            p = embedding_map(m.embedding_, np.log1p(col), map_path,
                              title=f"node2vec of {n} nodes, coloured by log(1 + frauds involved)")
            res["map"] = str(p)
            con.print(f"map written to {p}")
        if as_json:
            click.echo(json.dumps(res, indent=1))
        else:
            for k, v in res.items():
                if k != "compare":
                    click.echo(f"{k}: {v}")
            c = res["compare"]
            click.echo(f"comparison: {c['nodes']} nodes, {c['edges']} edges, {c['heldout_pairs']} held-out pairs")
            click.echo(f"{'configuration':10s} {'implementation':44s} {'wall s':>8s} {'cpu s':>8s} {'link AUC':>9s}")
            for cfg in ("same", "defaults"):
                for r in c.get(cfg, {}).get("runs", []):
                    click.echo(f"{cfg:10s} {r['name']:44s} {r['wall_s']:8.2f} {r['cpu_s']:8.2f} {r['link_auc']:9.4f}")
                if cfg in c:
                    click.echo(f"{'':10s} speed-up (PyPI / ours): wall x{c[cfg]['speedup_wall']}, cpu x{c[cfg]['speedup_cpu']}")


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
