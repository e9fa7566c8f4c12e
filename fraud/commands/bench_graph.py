"""fraud bench ablation, fraud bench node2vec (graph features and embeddings: quality and speed); the code they
run is ``benchmarks.ablation`` and ``benchmarks.node2vec``."""
from __future__ import annotations

import json

import click

from fraud.commands.common import auto_preset, data_options, load_or_fail


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
        import torch
        from rich.console import Console

        from benchmarks.ablation import run, table
        from fraud.errors import ConfigError

        torch.set_num_threads(max(1, torch_threads))
        con = Console(stderr=True)
        df = load_or_fail(data, columns, auto_preset(data, columns, preset))
        try:
            extra = [int(b) for b in extra_budgets.split(",") if b.strip()]
        except ValueError:
            raise ConfigError(f"--extra-budgets: {extra_budgets!r} is not a comma list of integers") from None
        with con.status("ablation: featurizing and training (see notes below)"):
            res = run(df, last_days=last_days, embedder=embedder, graph_columns=graph_columns,
                      delay_days=settings.feedback_delay_days if settings else 7, seed=seed,
                      sets=[s.strip() for s in sets.split(",") if s.strip()], budget=budget, test_days=test_days,
                      train_days=train_days, dataset=str(data), extra_budgets=extra, log=lambda m: con.print(m))
        click.echo(json.dumps(res, indent=1) if as_json else table(res, budget))

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
        import torch

        from benchmarks.node2vec import run_node2vec, table

        torch.set_num_threads(max(1, torch_threads))
        df = load_or_fail(data, columns, auto_preset(data, columns, preset)) if data else None
        res = run_node2vec(df, dataset=data, cutoff=cutoff, window_days=window_days, compare_nodes=compare_nodes,
                           holdout_days=holdout_days, defaults=defaults, compare_sgns=compare_sgns,
                           map_path=map_path, seed=seed)
        click.echo(json.dumps(res, indent=1) if as_json else table(res))
