"""fraud bench evasion: recall at the card budget per adaptive-fraud tactic, before and after adaptation (issue 18;
the harness is ``benchmarks.evasion``, outside the product)."""
from __future__ import annotations

import json

import click

from fraud.commands.common import parse_seeds


def _seeds(text: str | None):
    from benchmarks.evasion import SEEDS

    return parse_seeds(text, SEEDS)


def register(main: click.Group, bench: click.Group) -> None:
    @bench.command("evasion")
    @click.option("--seeds", default=None, help="Comma-separated world seeds [default: 3000,3001,3002].")
    @click.option("--customers", default=500, show_default=True, type=int)
    @click.option("--terminals", default=1000, show_default=True, type=int)
    @click.option("--train-days", default=56, show_default=True, type=int, help="Days before the tactics start.")
    @click.option("--budget", default=None, type=int, help="Cards alerted a day [default: 1 % of the customers, >= 5].")
    @click.option("--cases", default=None, type=int,
                  help="Cases the loop's analyst decides a day [default: the budget].")
    @click.option("--scale", default=1.0, show_default=True, type=float, help="Fraudsters' activity multiplier.")
    @click.option("--loop/--no-loop", default=True, show_default=True,
                  help="Also run benchmarks.loop's full arm for two weeks.")
    @click.option("--activity-alarm", is_flag=True,
                  help="Train every arm's model with the label-free activity alarm (fraud.detectors.activity).")
    @click.option("--terminal-alarm/--no-terminal-alarm", default=None,
                  help="Train every arm's model with / without the terminal alarm (fraud.detectors.activity."
                       "terminal_alarm) [default: TrainConfig's].")
    @click.option("--reach-back", is_flag=True,
                  help="Also rank card-days by benchmarks.compromise's cases (a day's card-days lifted by the "
                       "most surprising terminal they used that day): arms *_reach, and a second loop using them.")
    @click.option("--expose", default=0, show_default=True, type=click.IntRange(0),
                  help="Of the loop's budget and cases a day, the cards kept for those used at the terminals of the "
                       "analyst's confirmed frauds that day (fraud.review.exposure: a compromised terminal's other "
                       "visitors); 0: none.")
    @click.option("--set", "sets", multiple=True, metavar="KEY=VALUE",
                  help="Training override for every arm, repeatable: graph.refresh_lr=0.05 (a featurizer's "
                       "parameter) or a TrainConfig field.")
    @click.option("--json", "as_json", is_flag=True, help="Print only the JSON result.")
    def bench_evasion(**kw):
        """Per random world with fraud.evasion's five tactics injected after the training window: recall at the
        card budget per tactic of the current model, of the book's random forest, of the model retrained with the
        first week's labels (week 2), and of the full loop in week 2 (benchmarks.loop); beside them the ceilings
        any ranking reaches at the budget (oracle: every fraud first; tactic_first: the tactic's own first)."""
        from benchmarks.evasion import EvasionConfig, run_evasion, table
        from benchmarks.worlds import train_overrides

        cfg = EvasionConfig(seeds=_seeds(kw["seeds"]), customers=kw["customers"], terminals=kw["terminals"],
                            train_days=kw["train_days"], budget=kw["budget"], cases=kw["cases"],
                            scale=kw["scale"], loop=kw["loop"], activity_alarm=kw["activity_alarm"],
                            terminal_alarm=kw["terminal_alarm"], reach_back=kw["reach_back"], expose=kw["expose"],
                            train=train_overrides(kw["sets"], "bench evasion"))
        say = (lambda s: None) if kw["as_json"] else (lambda s: click.echo(s, err=True))
        res = run_evasion(cfg, say=say)
        click.echo(json.dumps(res) if kw["as_json"] else table(res))
