"""fraud bench worlds: the pipeline against the book-feature random forest on random worlds (issue 14; the harness
is ``benchmarks.worlds``, outside the product)."""
from __future__ import annotations

import json

import click

from fraud.commands.common import parse_seeds


def _seeds(text: str | None):
    from benchmarks.worlds import REPORT_SEEDS

    return parse_seeds(text, REPORT_SEEDS)


def register(main: click.Group, bench: click.Group) -> None:
    @bench.command("worlds")
    @click.option("--seeds", default=None, help="Comma-separated world seeds [default: the 20 report seeds 2000-2019].")
    @click.option("--customers", default=500, show_default=True, type=int)
    @click.option("--terminals", default=1000, show_default=True, type=int)
    @click.option("--days", default=70, show_default=True, type=int)
    @click.option("--test-days", default=14, show_default=True, type=int)
    @click.option("--budget", default=None, type=int, help="Cards alerted a day [default: 1 % of the customers, >= 5].")
    @click.option("--set", "sets", multiple=True, metavar="KEY=VALUE",
                  help="Training override, repeatable: graph.refresh_lr=0.05 (a featurizer's parameter) or a "
                       "TrainConfig field.")
    @click.option("--reach-back", is_flag=True,
                  help="Also recall at budget with card-days ranked by benchmarks.compromise (AP unchanged).")
    @click.option("--json", "as_json", is_flag=True, help="Print only the JSON result.")
    def bench_worlds(**kw):
        """Per random world: AP of the training pipeline and of the book's random forest on the same split, their
        ratio and the recall of aged-account rings (starting after training) at the card budget; worst and mean."""
        from benchmarks.worlds import WorldsConfig, run_worlds, table, train_overrides

        cfg = WorldsConfig(seeds=_seeds(kw["seeds"]), customers=kw["customers"], terminals=kw["terminals"],
                           days=kw["days"], test_days=kw["test_days"], budget=kw["budget"],
                           train=train_overrides(kw["sets"]), reach_back=kw["reach_back"])
        say = (lambda s: None) if kw["as_json"] else (lambda s: click.echo(s, err=True))
        res = run_worlds(cfg, say=say)
        click.echo(json.dumps(res) if kw["as_json"] else table(res))
