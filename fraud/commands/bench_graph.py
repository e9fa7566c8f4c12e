"""fraud bench ablation, fraud bench node2vec (graph embeddings: quality and speed)."""
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
    @click.option("--compare-sgns", is_flag=True, help="Also time gensim vs torch skip-gram on the same walks.")
    @click.option("--map", "map_path", default=None, type=click.Path(dir_okay=False),
                  help="Write a PNG map of the embeddings coloured by fraud involvement.")
    @click.option("--seed", default=0, show_default=True)
    @click.option("--torch-threads", default=1, show_default=True,
                  help="torch intra-op threads (1 avoids threads spinning against each other on a shared machine).")
    @click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
    def node2vec_bench(data, columns, preset, window_days, cutoff, compare_nodes, compare_sgns, map_path, seed, torch_threads, as_json):
        """Node2Vec speed: the graph of a window embedded end to end, and the ratio to the PyPI node2vec package."""
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
        t0 = time.perf_counter()
        g = build_graph(df, cut, window_days)
        t_graph = time.perf_counter() - t0
        n = g.n_customers + g.n_terminals
        w = torch.as_tensor(np.log1p(np.concatenate([g.count, g.count])), dtype=torch.float64)
        params = dict(dim=32, walk_length=20, walks_per_node=10, context_size=5, p=1.0, q=1.0, seed=seed)
        with con.status(f"node2vec on {n} nodes, {g.n_edges} edges"):
            t0 = time.perf_counter()
            m = Node2Vec(**params).fit(g.homogeneous_edge_index(), n, edge_weight=w)
            t_full = time.perf_counter() - t0
        res = {"dataset": str(data), "cutoff": str(cut), "window_days": window_days, "nodes": n, "edges": g.n_edges,
               "graph_s": round(t_graph, 3), "embed_s": round(t_full, 3), "walks_s": round(m.timings_["walks_s"], 3),
               "skipgram_s": round(m.timings_["skipgram_s"], 3), "params": params}
        con.print(f"full graph: {n} nodes, {g.n_edges} edges: graph {t_graph:.2f} s, embed {t_full:.2f} s "
                  f"(walks {m.timings_['walks_s']:.2f} s, skip-gram {m.timings_['skipgram_s']:.2f} s)")
        # the same subgraph through both implementations
        s, d, cnt = _subgraph(g, compare_nodes, seed)
        cu, ci = np.unique(s, return_inverse=True)
        tu, ti = np.unique(d, return_inverse=True)
        nsub = len(cu) + len(tu)
        ei = torch.as_tensor(np.stack([np.r_[ci, ti + len(cu)], np.r_[ti + len(cu), ci]]), dtype=torch.long)
        t0 = time.perf_counter()
        ours = Node2Vec(**params).fit(ei, nsub)
        t_ours = time.perf_counter() - t0
        import networkx as nx

        G = nx.Graph()
        G.add_edges_from(zip(ci.tolist(), (ti + len(cu)).tolist()))
        PyPI = _pypi_node2vec()
        with con.status(f"PyPI node2vec on the {nsub}-node subgraph"):
            t0 = time.perf_counter()
            ref = PyPI(G, dimensions=32, walk_length=20, num_walks=10, p=1.0, q=1.0, workers=1, quiet=True, seed=seed)
            t_ref_walks = time.perf_counter() - t0
            ref.fit(window=5, min_count=1, sg=1, negative=5, workers=1, seed=seed, epochs=1, sample=0)
            t_ref = time.perf_counter() - t0
        res["compare"] = {"nodes": nsub, "edges": len(s), "ours_s": round(t_ours, 3), "pypi_node2vec_s": round(t_ref, 3),
                          "speedup": round(t_ref / t_ours, 1), "ours_walks_s": round(ours.timings_["walks_s"], 3),
                          "pypi_walks_s": round(t_ref_walks, 3),
                          "walks_speedup": round(t_ref_walks / ours.timings_["walks_s"], 1)}
        con.print(f"subgraph {nsub} nodes, {len(s)} edges: ours {t_ours:.2f} s, PyPI node2vec {t_ref:.2f} s, "
                  f"speed-up x{t_ref / t_ours:.1f}; walks (PyPI: transition probabilities + walks) "
                  f"ours {ours.timings_['walks_s']:.2f} s, PyPI {t_ref_walks:.2f} s, x{t_ref_walks / ours.timings_['walks_s']:.1f}")
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
                click.echo(f"{k}: {v}")


def _compare_sgns(df, cut, window_days, params, seed, con) -> dict:
    """gensim vs torch skip-gram on the same walks: time and held-out link AUC (new pairs of the last 14 days)."""
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
    params = {**params, "walks_per_node": 4}  # keeps the torch side within minutes on a shared machine
    base = Node2Vec(**params)
    walks = base.random_walks(g.homogeneous_edge_index(), n)
    out = {"nodes": n, "new_pairs": int(len(new)), "walks_per_node": params["walks_per_node"]}
    for backend in ("gensim", "torch"):
        m = Node2Vec(**params, backend=backend)
        m.num_nodes_ = n
        with con.status(f"skip-gram with {backend}"):
            t0 = time.perf_counter()
            emb = m._train_gensim(walks, n) if backend == "gensim" else m._train_torch(walks, n)
            dt = time.perf_counter() - t0
        auc = _link_auc(emb, g.n_customers, (new[:, 0], new[:, 1]), seed) if len(new) else float("nan")
        out[backend] = {"seconds": round(dt, 2), "link_auc": round(auc, 4)}
        con.print(f"skip-gram {backend}: {dt:.2f} s, held-out link AUC {auc:.4f}")
    return out
