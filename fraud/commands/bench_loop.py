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


def _tactics(text: str) -> tuple:
    from benchmarks.loop import check_tactics
    from fraud.errors import ConfigError

    try:
        return check_tactics(tuple(a.strip() for a in text.split(",") if a.strip()))
    except ConfigError as e:
        raise click.BadParameter(str(e), param_hint="--tactics") from None


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
    @click.option("--tactics", default="", metavar="LIST",
                  help="Comma-separated evasion tactics (fraud.evasion: under_usual, slow_testing, aged_mules, "
                       "rotated_terminals, spread_ring; or all) injected from the onset to the end as further new "
                       "patterns [default: none].")
    @click.option("--tactic-scale", default=None, type=float,
                  help="The tactics' activity (fraud.evasion.inject's scale) [default: customers / 500, the "
                       "evasion bench's rate per card].")
    @click.option("--unreviewed", type=click.Choice(["genuine", "unknown", "reliable"]), default="genuine",
                  show_default=True,
                  help="Label of a loop event no analyst decided, for the weekly retrain: genuine (0, 'not "
                       "reported', as fraud retrain reads an archive), unknown (skipped by the supervised head, "
                       "the baseline guard and the promotion gate; the label-free detectors still fit on it) or "
                       "reliable (genuine when the model that scored it live put it below --reliable-quantile of "
                       "its own live scores, a 'reliable negative'; unknown above: the near misses).")
    @click.option("--reliable-quantile", default=0.97, show_default=True, type=click.FloatRange(0, 1, min_open=True,
                                                                                               max_open=True),
                  help="With --unreviewed reliable: the quantile of each model version's live scores below which "
                       "an unreviewed loop event counts as genuine (0.97: the best of 0.8, 0.9, 0.97 on "
                       "development worlds; it then did as genuine on the four worlds of docs/benchmarks.md).")
    @click.option("--explore", default=0, show_default=True, type=int,
                  help="Of the analyst's --cases a day, those taken from the cards the budget did not alert, "
                       "ranked by the model's label-free detectors alone (exploration: labels for patterns the "
                       "head does not score high yet); recall at budget still counts the budget's alerts only.")
    @click.option("--expose", default=0, show_default=True, type=click.IntRange(0),
                  help="Of --budget and --cases a day, the cards kept for those used at the terminals of the "
                       "analyst's confirmed frauds that day (fraud.review.exposure: a compromised terminal's other "
                       "visitors, each decided by the analyst); slots no exposed card takes go to the next cards by "
                       "score.")
    @click.option("--chargebacks", default=0.0, show_default=True, type=click.FloatRange(0, 1),
                  help="Share of fraud cards whose holders dispute the charges: their frauds reach the weekly "
                       "retrains --chargeback-days after they happened, in every retrained arm (labels from "
                       "outside the alert budget; 0: the analyst's decisions are the only loop labels).")
    @click.option("--chargeback-days", default=7, show_default=True, type=click.IntRange(0),
                  help="Days from a disputed fraud to its label (7: the handbook's feedback delay).")
    @click.option("--live-labels", type=click.Choice(["events", "sent"]), default="events", show_default=True,
                  help="Which labels reach the scorer's features: events (every event carries its true label, as a "
                       "replayed simulation) or sent (none in the events; the full loop's analyst decisions and "
                       "the disputes are sent back each day, as fraud send-labels does).")
    @click.option("--set", "sets", multiple=True, metavar="KEY=VALUE",
                  help="Training override, repeatable: a TrainConfig field or FEATURIZER.PARAM (as bench worlds).")
    @click.option("--json", "as_json", is_flag=True, help="Print only the JSON result.")
    def bench_loop(**kw):
        """Stream scoring with a daily card budget, a simulated analyst deciding the top cases by the ground truth,
        weekly retrain through the promotion gate and hot reload, on a world whose new fraud patterns start after
        training (with --tactics, adaptive fraudsters too); per week and arm (frozen, retrained without labels,
        full loop, and the oracle ceiling): recall at budget, AP, alert precision; per new pattern: days to its
        first alert and to 50 % recall, recall per week. The retrain's label policy (--unreviewed: whether a loop
        event no analyst decided is genuine, unknown, or genuine only below the scoring model's own score
        quantile), exploration (--explore) and cardholder disputes (--chargebacks) are options; figures per option
        in docs/benchmarks.md, "Closed loop"."""
        from benchmarks.loop import FAST_TRAIN, BenchConfig, LoopConfig, run_loop, table
        from benchmarks.worlds import train_overrides

        loop = LoopConfig(budget=kw["budget"], cases_per_day=kw["cases"], analyst=kw["analyst"],
                          unreviewed=kw["unreviewed"], explore=kw["explore"], expose=kw["expose"],
                          reliable_quantile=kw["reliable_quantile"], chargebacks=kw["chargebacks"],
                          chargeback_days=kw["chargeback_days"], live_labels=kw["live_labels"],
                          train_kw={**FAST_TRAIN, **train_overrides(kw["sets"])})
        cfg = BenchConfig(seed=kw["seed"], customers=kw["customers"], terminals=kw["terminals"], weeks=kw["weeks"],
                          train_weeks=kw["train_weeks"], onset_weeks=kw["onset_weeks"], arms=_arms(kw["arms"]),
                          loop=loop, tactics=_tactics(kw["tactics"]), tactic_scale=kw["tactic_scale"])
        say = (lambda s: None) if kw["as_json"] else (lambda s: click.echo(s, err=True))
        res = run_loop(cfg, say=say)
        click.echo(json.dumps(res) if kw["as_json"] else table(res))
