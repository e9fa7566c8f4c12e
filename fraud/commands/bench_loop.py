"""fraud bench loop: the closed loop under drift, arm by arm (issue 18; the harness is ``benchmarks.loop``, outside
the product)."""
from __future__ import annotations

import json

import click


def _arms(text: str) -> tuple:
    from benchmarks.loop import ARMS

    names = tuple(a.strip() for a in text.split(",") if a.strip())
    bad = [a for a in names if a not in (*ARMS, "full_fresh")]
    if bad or not names:
        raise click.BadParameter(f"{text!r}: arms are {', '.join((*ARMS, 'full_fresh'))}", param_hint="--arms")
    return names


def register(main: click.Group, bench: click.Group) -> None:
    @bench.command("loop")
    @click.option("--seed", default=3000, show_default=True, type=int, help="First world seed tried.")
    @click.option("--customers", default=300, show_default=True, type=int)
    @click.option("--terminals", default=600, show_default=True, type=int)
    @click.option("--weeks", default=16, show_default=True, type=int, help="Weeks in the world.")
    @click.option("--train-weeks", default=4, show_default=True, type=int, help="Initial training window.")
    @click.option("--onset-weeks", default=2, show_default=True, type=int,
                  help="Loop weeks before the new patterns start.")
    @click.option("--arms", default="frozen,no_labels,full,full_fresh", show_default=True,
                  help="Comma-separated arms (full_fresh: the full loop with fresh embeddings, when available).")
    @click.option("--budget", default=10, show_default=True, type=int, help="Cards alerted a day.")
    @click.option("--cases", default=5, show_default=True, type=int, help="Cases the analyst decides a day.")
    @click.option("--analyst", type=click.Choice(["cases", "cards"]), default="cases", show_default=True,
                  help="What the analyst works: clustered cases (fraud.review) or alerted cards.")
    @click.option("--json", "as_json", is_flag=True, help="Print only the JSON result.")
    def bench_loop(**kw):
        """Stream scoring with a daily card budget, a simulated analyst deciding the top cases by the ground truth,
        weekly retrain through the promotion gate and hot reload, on a world whose new fraud patterns start after
        training; per week and arm (frozen, retrained without labels, full loop): recall at budget, AP, alert
        precision; per new pattern: days to its first alert and to 50 % recall."""
        from benchmarks.loop import BenchConfig, LoopConfig, run_loop, table

        loop = LoopConfig(budget=kw["budget"], cases_per_day=kw["cases"], analyst=kw["analyst"])
        cfg = BenchConfig(seed=kw["seed"], customers=kw["customers"], terminals=kw["terminals"], weeks=kw["weeks"],
                          train_weeks=kw["train_weeks"], onset_weeks=kw["onset_weeks"], arms=_arms(kw["arms"]),
                          loop=loop)
        say = (lambda s: None) if kw["as_json"] else (lambda s: click.echo(s, err=True))
        res = run_loop(cfg, say=say)
        click.echo(json.dumps(res) if kw["as_json"] else table(res))
