"""fraud monitor: drift of the archived traffic against the model's training window (PSI per feature and for the
score, ``fraud.drift``); the drift check ``fraud retrain --if-drift`` shares."""
from __future__ import annotations

import json

import click


def register(main: click.Group, bench: click.Group) -> None:
    main.add_command(monitor)


def drift_of(bundle, events, days: float, lookback_days: float = 30.0) -> dict:
    """``fraud.drift.report`` with its refusals (no profile, no events) as a FraudError."""
    from fraud import drift
    from fraud.errors import ModelError

    try:
        return drift.report(bundle, events, days=days, lookback_days=lookback_days)
    except ValueError as e:
        raise ModelError(str(e)) from None


@click.command()
@click.option("--archive", required=True, type=click.Path(file_okay=False),
              help="The stream scorer's Parquet archive (DIR/date=YYYY-MM-DD/*.parquet).")
@click.option("--model", "model_uri", default=None, help="Model URI (default models:/NAME@champion).")
@click.option("--days", default=7.0, show_default=True, type=float, help="The window: the archive's last N days.")
@click.option("--lookback-days", default=30.0, show_default=True, type=float,
              help="Only when the features are recomputed (see above): history before the window.")
@click.option("--top", default=None, type=int, help="Print only the N most drifted features.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def monitor(settings, archive, model_uri, days, lookback_days, top, as_json):
    """PSI per feature and for the score of the archive's last N days against the model's training window.

    Features as the scorer computed them: the model's state as of its training cutoff, every archived event
    after the cutoff replayed. Where that cannot be done (the model keeps no such state, the archive begins more
    than a day after the cutoff, or the window starts before it) they are recomputed (vectorized path) over the
    window and --lookback-days before it, which reads longer windows short. The output says which. The score is
    the model's own. Verdict: PSI > 0.25 drifted, > 0.1 watch, else stable."""
    from fraud import drift, registry
    from fraud.archive import events
    from fraud.commands.train import _quiet

    _quiet()
    registry.quiet_mlflow()
    model_uri = model_uri or f"models:/{settings.model_name}@champion"
    bundle = registry.load_bundle(model_uri, tracking_uri=settings.tracking_uri, key=settings.bundle_key)
    r = drift_of(bundle, events(archive), days, lookback_days)
    if as_json:
        click.echo(json.dumps({"model": model_uri, "version": bundle.version, **r}, default=str))
        return
    click.echo(f"{model_uri} (version {bundle.version}): {r['n']:,} events in ({r['window'][0]}, {r['window'][1]}] "
               f"vs training window {r['reference_window']}; features {r['features_from']}")
    click.echo(drift.table(r, top))
    n_drifted = sum(v > drift.DRIFTED for v in [r["score"], *r["features"].values()])
    click.echo(f"max PSI {r['max_psi']:.4f} ({drift.verdict(r['max_psi'])}); {n_drifted} drifted")
