"""fraud bench feedback: detection of the live scorer with and without label feedback; the code it runs is
``benchmarks.feedback``."""
from __future__ import annotations

import json

import click

from fraud.commands.common import auto_preset, data_options, load_or_fail


def register(main: click.Group, bench: click.Group) -> None:
    @bench.command("feedback")
    @data_options(required=True, rejects=False)
    @click.option("--model", "model_uri", default=None, help="Model URI [default: models:/<model_name>@champion].")
    @click.option("--since", default=None, metavar="DATE",
                  help="Score the events from here [default: the model's training cutoff].")
    @click.option("--budget", default=10, show_default=True, help="Cards alerted (and decided) a day.")
    @click.option("--chargeback-days", default=7, show_default=True,
                  help="Days after which every fraud is reported (the analyst_chargebacks arm).")
    @click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
    @click.pass_obj
    def feedback(settings, data, columns, preset, model_uri, since, budget, chargeback_days, as_json):
        """The events after the model's cutoff scored day by day as the live scorer scores them: with every label
        in the events (a replayed simulation), with none (a live stream without feedback), with the analyst's
        daily decisions sent back (fraud send-labels), and with chargebacks too. AP and recall at budget."""
        from benchmarks.feedback import run_feedback, table
        from fraud import registry
        from fraud.errors import ConfigError
        from fraud.training.data import to_utc

        registry.quiet_mlflow()
        model_uri = model_uri or f"models:/{settings.model_name}@champion"
        bundle = registry.load_bundle(model_uri, tracking_uri=settings.tracking_uri, key=settings.bundle_key)
        df = load_or_fail(data, columns, auto_preset(data, columns, preset))
        if "label" not in df.columns:
            raise ConfigError(f"--data {data}: no label column (the bench needs the ground truth)")
        start = to_utc(since or (bundle.config or {}).get("train_until"), "--since")
        res = run_feedback(bundle, df, start, budget=budget, chargeback_days=chargeback_days,
                           delay_days=int((bundle.config or {}).get("feedback_delay_days", 7)))
        res.update(model=model_uri, version=bundle.version, since=str(start))
        click.echo(json.dumps(res, default=float) if as_json else table(res))
