"""fraud bench handbook, fraud bench features; the code they run is ``benchmarks.handbook`` (with the models
of ``benchmarks.oracle`` and ``benchmarks.ours``) and ``benchmarks.features``."""
from __future__ import annotations

import json

import click

from fraud.commands.common import auto_preset, data_options


def register(main: click.Group, bench: click.Group) -> None:
    @bench.command("handbook")
    @data_options(rejects=False)
    @click.option("--protocol", type=click.Choice(["single", "prequential"]), default="single", show_default=True,
                  help="The book's single split (chapter 3) or its 4 prequential folds (chapters 5-7).")
    @click.option("--models", default=None, metavar="NAMES",
                  help="Comma-separated models from the registry (default: logistic_regression,random_forest,ours,"
                       "ours-unsupervised).")
    @click.option("--dates", type=click.Choice(["auto", "handbook", "end"]), default="auto", show_default=True,
                  help="Split dates: the book's (when the data covers them) or derived from the end of the data.")
    @click.option("--delay-days", type=int, default=None, help="Feedback delay in days (default: settings, 7).")
    @click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of the table.")
    @click.pass_obj
    def handbook_cmd(settings, data, columns, preset, protocol, models, dates, delay_days, as_json):
        """The Fraud Detection Handbook benchmark: the book's protocol, 15 features and baselines,
        our figures beside the book's published ones."""
        from rich.console import Console
        from rich.table import Table

        import benchmarks.oracle  # noqa: F401  registers the ceilings ("oracle", "oracle-unsupervised")
        import benchmarks.ours  # noqa: F401  registers our pipeline's models ("ours", "ours-unsupervised")
        from benchmarks.handbook import MODELS, run, table_rows
        from fraud.commands.common import load_or_fail

        err = Console(stderr=True)
        preset = auto_preset(data, columns, preset)
        names = [m.strip() for m in models.split(",") if m.strip()] if models else None
        delay = delay_days if delay_days is not None else (settings.feedback_delay_days if settings is not None else 7)
        with err.status(f"reading {data}" + (f" (preset {preset})" if preset else "")) as status:
            frame = load_or_fail(data, columns, preset)
            result = run(frame, protocol=protocol, models=names, dates=dates, delay_days=delay,
                         progress=lambda msg: status.update(msg))
        if as_json:
            click.echo(json.dumps(result, default=float))
            return
        t = Table(title=f"Handbook benchmark, {protocol} ({'book dates' if result['dates'] == 'handbook' else 'dates from the end of the data'})")
        for c in ("setting", "model", "AUC", "AP", "CP@100", "book AUC", "book AP", "book CP@100"):
            t.add_column(c, justify="left" if c in ("setting", "model") else "right", no_wrap=True)
        for row in table_rows(result):
            t.add_row(*row)
        out = Console()
        if not out.is_terminal:
            out = Console(width=120)
        out.print(t)
        for s in result["splits"]:
            out.print(f"  split: {s}")
        out.print("  seconds: " + ", ".join(f"{k}={v}" for k, v in result["seconds"].items())
                  + f"   models available: {', '.join(MODELS)}")
        if result["book"]:
            out.print("  book figures: the handbook's published test results on its own data (README table)")
        else:
            out.print("  (no published figures: the data does not cover the book's dates)")

    @bench.command("features")
    @data_options(rejects=False)
    @click.option("--repeat", default=1, show_default=True, help="Timed repetitions of the vectorized transform.")
    @click.option("--batch", default=1000, show_default=True, help="Rows per online update to time.")
    @click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
    def features_cmd(data, columns, preset, repeat, batch, as_json):
        """Time the 15 baseline features: the vectorized transform of the whole file and online
        micro-batch updates after 37 days of history."""
        from rich.console import Console

        from benchmarks.features import run_features
        from fraud.commands.common import load_or_fail

        preset = auto_preset(data, columns, preset)
        with Console(stderr=True).status(f"reading {data}") as status:
            res = run_features(lambda: load_or_fail(data, columns, preset), repeat=repeat, batch=batch, status=status)
        if as_json:
            click.echo(json.dumps(res))
        else:
            for k, v in res.items():
                click.echo(f"{k}: {v}")
