"""fraud train | score | retrain | evaluate, and fraud bench train | score | load: options, calls, printing.

The work is in ``fraud.training`` (stages, gate, registration); these commands read the inputs, call it
and print what came back.
"""
from __future__ import annotations

import contextlib
import json
import time
import warnings

import click

from fraud.commands.common import data_options


def register(main: click.Group, bench: click.Group) -> None:
    for cmd in (train, score, retrain, evaluate):
        main.add_command(cmd)
    for cmd in (bench_train, bench_score, bench_load):
        bench.add_command(cmd)


@contextlib.contextmanager
def _echo_training_warnings():
    """Run a training step; print its FraudTrainingWarnings (e.g. the unsupervised fallback) on stderr after it."""
    from fraud.training import FraudTrainingWarning

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", FraudTrainingWarning)
        yield
    for w in caught:
        if issubclass(w.category, FraudTrainingWarning):
            click.echo(f"warning: {w.message}", err=True)


def _console():
    from rich.console import Console

    return Console(stderr=True)


def _stage_printer(console):
    t0 = time.perf_counter()

    def say(msg):
        console.print(f"[dim]{time.perf_counter() - t0:7.1f}s[/dim] {msg}", highlight=False)

    return say


def _read(data, columns, preset, rejects=None, until=None, console=None):
    """Read + validate; keep only rows before ``until`` (filtered right after reading)."""
    from fraud.commands.common import load_or_fail

    df = load_or_fail(data, columns, preset, rejects=rejects)
    if until is not None:
        n = len(df)
        df = df[df["timestamp"] < until].reset_index(drop=True)
        if console is not None and len(df) < n:
            console.log(f"{n - len(df):,} transaction(s) at/after {until} ignored (train-until)")
    return df


def _quiet():
    """Quiet MLflow without importing it (``fraud.registry`` imports mlflow: seconds)."""
    import logging
    import os

    for k, v in (("GIT_PYTHON_REFRESH", "quiet"), ("MLFLOW_DISABLE_TELEMETRY", "true"), ("DO_NOT_TRACK", "true"),
                 ("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")):
        os.environ.setdefault(k, v)
    logging.getLogger("mlflow").setLevel(logging.ERROR)


def _train_config(settings, name, features, unsupervised_detectors, supervised, eval_days, seed, head_trees=None,
                  baseline_trees=None):
    from fraud.training.config import config_from_options

    cfg, skipped = config_from_options(settings, name, features, unsupervised_detectors, supervised, eval_days, seed,
                                       head_trees, baseline_trees)
    for n, why in skipped.items():
        click.echo(f"note: featurizer {n!r} skipped: {why}", err=True)
    return cfg


class _Count(click.ParamType):
    """A count >= 1, or "" for "not given" (the MLproject's empty parameters)."""

    name = "integer"

    def convert(self, value, param, ctx):
        """None for "" (or no value), else the value as an integer >= 1 (click's usage error otherwise)."""
        if value is None or value == "":
            return None
        return click.IntRange(min=1).convert(value, param, ctx)


def _model_options(f):
    for o in reversed([
        click.option("--features", default=None, metavar="LIST",
                     help="Featurizers, comma-separated (tabular,graph,sequence). Default: all available."),
        click.option("--detectors", "unsupervised_detectors", default=None, metavar="LIST",
                     help="Unsupervised detectors (default iforest,ecod,copod,hbos,autoencoder)."),
        click.option("--supervised", default="lightgbm", show_default=True,
                     help="Supervised head (lightgbm, hgb, none)."),
        click.option("--eval-days", default=7, show_default=True, type=int,
                     help="Length of the evaluation window (the most recent labelled days)."),
        click.option("--seed", default=None, type=int, help="Random seed (default: settings seed 0)."),
        click.option("--head-trees", default=None, type=_Count(),
                     help="Boosting rounds of the supervised head (default: the ensemble's, 300)."),
        click.option("--baseline-trees", default=None, type=_Count(),
                     help="Trees of the baseline guard's book-feature forest (default: the book's, 100)."),
    ]):
        f = o(f)
    return f


def _fmt_metrics(m: dict) -> str:
    def f(v):
        return "n/a" if v is None or v != v else f"{v:.4f}"

    return f"AP {f(m.get('ap'))}  AUC {f(m.get('auc'))}  CP@100 {f(m.get('cp@100'))}  (n={m.get('n')}, frauds={m.get('n_fraud')})"


@click.command()
@data_options(rejects=False)
@click.option("--train-from", default=None, metavar="DATE", help="First day of training examples (earlier = history).")
@click.option("--train-until", default=None, metavar="DATE", help="Nothing at or after this instant is read.")
@click.option("--unsupervised", is_flag=True, help="Ignore every label.")
@click.option("--labels", "labels_path", default=None, type=click.Path(dir_okay=False),
              help="CSV/Parquet of tx_id,label (analyst labels) overriding the file's labels.")
@click.option("--name", default=None, help="Registered model name (default fraud-detector).")
@_model_options
@click.option("--no-register", is_flag=True, help="Train and evaluate only (nothing logged).")
@click.option("--json", "as_json", is_flag=True, help="Print the metrics as JSON on stdout.")
@click.pass_obj
def train(settings, data, columns, preset, train_from, train_until, unsupervised, labels_path, name, features,
          unsupervised_detectors, supervised, eval_days, seed, head_trees, baseline_trees, no_register, as_json):
    """Train the scoring bundle, evaluate it on the most recent labelled window, register it in MLflow.

    Training examples are the transactions in [train-from, train-until); earlier ones are history.
    The evaluation window is [train-until - delay - eval-days, train-until - delay): the supervised
    head never learns from its labels. The first registered version gets the alias 'champion'.
    """
    from fraud.training import train as do_train
    from fraud.training.data import labels_from, to_utc
    from fraud.training.register import log_training

    _quiet()
    console = _console()
    say = _stage_printer(console)
    name = name or settings.model_name
    until = to_utc(train_until, "--train-until")
    cfg = _train_config(settings, name, features, unsupervised_detectors, supervised, eval_days, seed, head_trees,
                        baseline_trees)
    if not no_register:  # an unreachable store fails now, not after minutes of training
        from fraud import registry

        registry.configure(settings.tracking_uri)
    say(f"reading {data}")
    df = _read(data, columns, preset, until=until, console=console)
    labels = None if unsupervised else labels_from(labels_path)
    with _echo_training_warnings():
        res = do_train(df, cfg, train_from=train_from, train_until=until, labels=labels,
                       unsupervised=unsupervised, progress=say)
    w = res.windows
    say(f"evaluation window {w['eval_from']} .. {w['eval_until']}: {_fmt_metrics(res.metrics)}")
    version = None
    if not no_register:
        say(f"registering {name} in {settings.tracking_uri}")
        version = log_training(settings, res, name, df=df)
        say(f"registered models:/{name}/{version}")
    if as_json:
        click.echo(json.dumps({"name": name, "version": version, "metrics": res.metrics,
                               "windows": {k: str(v) for k, v in w.items()}, "warnings": res.warnings}, default=str))
    else:
        click.echo(f"model: {name} version {version}  threshold {res.bundle.threshold:.4f}")
        click.echo(f"evaluation [{w['eval_from']}, {w['eval_until']}): {_fmt_metrics(res.metrics)}")
        click.echo(f"training time: {res.timings['total']:.1f} s")


@click.command()
@data_options(rejects=True)
@click.option("--model", "model_uri", default=None, help="Model URI (default models:/NAME@champion).")
@click.option("--out", "out", required=True, type=click.Path(dir_okay=False), help="Output .parquet (or .csv).")
@click.option("--alerts-db", default=None, help="Also write alerts to this alert store (SQL URL).")
@click.option("--batch-size", default=10_000, show_default=True, type=int, help="Micro-batch size of the replay.")
@click.option("--trust-local", is_flag=True,
              help="--model is a local model folder you built yourself: load its bundle.pkl unverified "
                   "(registered models are always verified against the registry).")
def score(data, columns, preset, rejects, model_uri, out, alerts_db, batch_size, trust_local):
    """Score a file as a replay in time order through the registered bundle."""
    from fraud import registry

    settings = click.get_current_context().obj
    registry.quiet_mlflow()
    console = _console()
    model_uri = model_uri or f"models:/{settings.model_name}@champion"
    bundle = registry.load_bundle(model_uri, tracking_uri=settings.tracking_uri, key=settings.bundle_key,
                                  trust_local=trust_local)
    df = _read(data, columns, preset, rejects=rejects)
    bundle.check_columns(df, source=str(data))
    t0 = time.perf_counter()
    res = _score_with_progress(bundle, df, batch_size, console)
    dt = time.perf_counter() - t0
    res = _write_scores(res, out)
    msg = f"scored {len(res):,} transactions in {dt:.1f} s ({len(res) / max(dt, 1e-9):,.0f} tx/s) with " \
          f"{model_uri} (version {bundle.version}); {int(res['is_alert'].sum()):,} alerts; written to {out}"
    if alerts_db:
        msg += f"; {_store_alerts(df, res, alerts_db, bundle.version):,} new alert(s) stored in {alerts_db}"
    click.echo(msg)


def _score_with_progress(bundle, df, batch_size: int, console):
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    with Progress(TextColumn("scoring"), BarColumn(), TextColumn("{task.completed:,}/{task.total:,}"),
                  TimeRemainingColumn(), console=console, transient=True) as prog:
        task = prog.add_task("score", total=len(df))
        return bundle.score_frame(df, batch_size=batch_size, progress=lambda done, n: prog.update(task, completed=done))


def _write_scores(res, out):
    """``res`` (reasons as lists of strings) written to ``out``: Parquet, or CSV with reasons as JSON."""
    from fraud.io import write_transactions

    res = res.copy()
    res["reasons"] = res["reasons"].map(lambda r: [str(x) for x in r])
    if str(out).lower().endswith((".parquet", ".pq")):
        write_transactions(res, out)
    else:
        res.assign(reasons=res["reasons"].map(json.dumps)).to_csv(out, index=False)
    return res


def _store_alerts(df, res, alerts_db: str, version) -> int:
    """Write the alerts of ``res`` (with their transactions from ``df``) to the alert store; the number new."""
    from fraud.store import AlertStore

    al = res[res["is_alert"].to_numpy()]
    rows = df.set_index("tx_id").loc[al["tx_id"]].reset_index()
    rows = rows.assign(score=al["score"].to_numpy(), reasons=al["reasons"].to_numpy())
    return AlertStore(alerts_db).write_alerts(rows, model_version=version)


@click.command()
@click.option("--data", default=None, type=click.Path(dir_okay=False), help="Transactions file.")
@click.option("--archive", default=None, type=click.Path(file_okay=False),
              help="The stream scorer's Parquet archive (DIR/date=YYYY-MM-DD/*.parquet).")
@click.option("--columns", default=None, metavar="MAP", help="Column mapping for --data.")
@click.option("--preset", default=None, type=click.Choice(["handbook", "canonical"]))
@click.option("--labels", "labels_path", default=None, type=click.Path(dir_okay=False),
              help="CSV/Parquet of tx_id,label (analyst labels).")
@click.option("--alerts-db", default=None, help="Take analyst labels from this alert store.")
@click.option("--unreviewed", type=click.Choice(["genuine", "unknown"]), default="genuine", show_default=True,
              help="Events no analyst decided and not labelled fraud: genuine (0, not reported) or unknown "
                   "(skipped by the supervised head, the baseline guard and the gate; without chargebacks, a "
                   "missed fraud labelled genuine teaches the head that its pattern is genuine).")
@click.option("--name", default=None, help="Registered model name (default fraud-detector).")
@click.option("--ap-margin", default=0.01, show_default=True, type=float,
              help="The challenger must beat the champion's AP by this much.")
@click.option("--window-days", default=None, type=int,
              help="Train the challenger on the latest N days (default: all the data).")
@click.option("--if-drift", "if_drift", default=None, type=float, metavar="PSI",
              help="Retrain only when the champion's max PSI (features and score) over the data's last "
                   "--drift-days exceeds PSI (else say why not and exit 0).")
@click.option("--drift-days", default=7.0, show_default=True, type=float,
              help="The drift window: the data's last N days (logged as drift.* metrics at every retrain).")
@_model_options
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def retrain(settings, data, archive, columns, preset, labels_path, alerts_db, unreviewed, name, ap_margin,
            window_days, if_drift, drift_days, features, unsupervised_detectors, supervised, eval_days, seed,
            head_trees, baseline_trees, as_json):
    """Train a challenger on the latest data + analyst labels and promote it only if it wins.

    Champion and challenger are compared on the most recent labelled window whose labels neither
    trained on; 'champion' moves only if the challenger's AP beats the champion's by --ap-margin and
    its CP@100 is not worse. Decision, both metric sets and the reason become MLflow tags. The champion's drift
    on the latest --drift-days (``fraud monitor``) is logged too; with --if-drift it decides whether to retrain.
    """
    from fraud import registry
    from fraud.training import read_archive, retrain_flow
    from fraud.training.data import labels_from
    from fraud.training.register import log_training

    registry.quiet_mlflow()
    say = _stage_printer(_console())
    if bool(data) == bool(archive):
        raise click.UsageError("give exactly one of --data or --archive")
    name = name or settings.model_name
    cfg = _train_config(settings, name, features, unsupervised_detectors, supervised, eval_days, seed, head_trees,
                        baseline_trees)
    labels = labels_from(labels_path, alerts_db)  # first: a wrong --alerts-db fails before the data is read
    say(f"reading {data or archive}")
    df = _read(data, columns, preset) if data else read_archive(archive)
    drift_metrics, drift_tags, skip = _drift_gate(settings, name, df, if_drift, drift_days, say)
    if skip is not None:
        click.echo(json.dumps({"decision": "skipped", "reason": skip, **drift_metrics}) if as_json else
                   f"no retrain: {skip}")
        return

    def log(res, tags):
        res.metrics.update(drift_metrics)
        return log_training(settings, res, name, extra_tags={**tags, **drift_tags}, run_name="retrain-challenger",
                            df=df)

    with _echo_training_warnings():
        out = retrain_flow(settings, df, cfg, name=name, labels=labels, ap_margin=ap_margin,
                           window_days=window_days, progress=say, log=log, unreviewed=unreviewed)
    if as_json:
        click.echo(json.dumps(out, default=str))
    else:
        click.echo(f"gate window [{out['window'][0]}, {out['window'][1]})")
        click.echo(f"champion   v{out['champion_version']}: {_fmt_metrics(out['champion'])}")
        click.echo(f"challenger v{out['challenger_version']}: {_fmt_metrics(out['challenger'])}")
        click.echo(f"decision: {out['decision']} - {out['reason']}")


def _drift_gate(settings, name: str, df, if_drift: float | None, days: float, say) -> tuple[dict, dict, str | None]:
    """The champion's drift on the last ``days`` of ``df``: (MLflow metrics, tags, why the retrain is skipped or
    None). Without a champion or its drift profile nothing is measured and the retrain goes on."""
    from fraud import drift, registry
    from fraud.commands.monitor import drift_of
    from fraud.errors import FraudError

    trigger = "schedule" if if_drift is None else f"if-drift {if_drift:g}"
    try:
        champion = registry.load_bundle(f"models:/{name}@champion", tracking_uri=settings.tracking_uri,
                                        key=settings.bundle_key)
        r = drift_of(champion, df, days)
    except FraudError as e:
        say(f"drift not measured ({e}): retraining")
        return {}, {"drift.trigger": f"{trigger}: drift not measured"}, None
    say(f"drift of champion v{champion.version} over the last {days:g} days: max PSI {r['max_psi']:.4f} "
        f"({', '.join(f'{k}={v:.3f}' for k, v, _ in drift.summary(r, top=3))})")
    if if_drift is not None and not r["max_psi"] > if_drift:
        why = (f"max PSI {r['max_psi']:.4f} of champion v{champion.version} over ({r['window'][0]}, "
               f"{r['window'][1]}] is not above --if-drift {if_drift:g}")
        return drift.mlflow_fields(r, trigger)[0], {}, why
    if if_drift is not None:
        trigger += f": max PSI {r['max_psi']:.4f}"
    metrics, tags = drift.mlflow_fields(r, trigger)
    return metrics, tags, None


@click.command()
@data_options(rejects=False)
@click.option("--model", "model_uri", default=None, help="Model URI (default models:/NAME@champion).")
@click.option("--from", "date_from", default=None, metavar="DATE", help="Window start (default: until - 7 days).")
@click.option("--until", "date_until", default=None, metavar="DATE",
              help="Window end, exclusive (default: last transaction - delay, i.e. labels known now).")
@click.option("--log", "log_run", is_flag=True, help="Log the metrics as an MLflow run tagged with the model version.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def evaluate(settings, data, columns, preset, model_uri, date_from, date_until, log_run, as_json):
    """Evaluate a registered model on a labelled window of a file (AP, AUC, CP@100).

    Features come from a replay of the whole file before the window's end (vectorized path)."""
    from fraud import registry
    from fraud.training.evaluation import labelled_window, score_window, window_metrics
    from fraud.training.register import log_evaluation

    registry.quiet_mlflow()
    model_uri = model_uri or f"models:/{settings.model_name}@champion"
    bundle = registry.load_bundle(model_uri, tracking_uri=settings.tracking_uri, key=settings.bundle_key)
    df = _read(data, columns, preset)
    if "label" not in df:
        raise click.UsageError(f"{data}: no 'label' column: nothing to evaluate against")
    start, until = labelled_window(df, settings.feedback_delay_days, date_from, date_until)
    m = window_metrics(score_window(bundle, df, start, until))
    if log_run:
        log_evaluation(settings, m, model_uri, bundle.version, data, start, until)
    if as_json:
        click.echo(json.dumps({"model": model_uri, "version": bundle.version, "window": [str(start), str(until)],
                               "metrics": m}))
    else:
        click.echo(f"{model_uri} (version {bundle.version}) on [{start}, {until}): {_fmt_metrics(m)}")


# -- benchmarks ------------------------------------------------------------------------------
@click.command("train")
@data_options(required=False, rejects=False)
@_model_options
@click.option("--customers", default=2000, show_default=True, help="Simulated world size when --data is absent.")
@click.option("--days", default=90, show_default=True)
@click.option("--register/--no-register", default=False, show_default=True,
              help="Also log + register into a temporary MLflow store (timed separately).")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def bench_train(settings, data, columns, preset, features, unsupervised_detectors, supervised, eval_days, seed,
                head_trees, baseline_trees, customers, days, register, as_json):
    """Time a full training run (read + features + detectors + evaluation) on a file or a simulated world."""
    from benchmarks import training as bench
    from fraud.training import train as do_train

    say = _stage_printer(_console())
    t0 = time.perf_counter()
    df, src = (_read(data, columns, preset), str(data)) if data else bench.simulated(customers, days)
    t_read = time.perf_counter() - t0
    c1 = time.process_time()
    cfg = _train_config(settings, "bench", features, unsupervised_detectors, supervised, eval_days, seed, head_trees,
                        baseline_trees)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = do_train(df, cfg, progress=say)
    out = {"data": src, "transactions": len(df), "read_s": round(t_read, 2),
           "train_s": round(res.timings["total"], 2), "train_cpu_s": round(time.process_time() - c1, 2),
           "featurizers": list(cfg.featurizers),
           "stages_s": {k: round(v, 2) for k, v in res.timings.items()},
           "metrics": {k: res.metrics.get(k) for k in ("ap", "auc", "cp@100")}}
    if register:
        out["register_s"] = bench.register_seconds(settings, res)
    out["total_s"] = round(time.perf_counter() - t0, 2)
    _print_out(out, as_json)


def _print_out(out: dict, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(out))
    else:
        for k, v in out.items():
            click.echo(f"{k}: {v}")


@click.command("score")
@data_options(required=False, rejects=False)
@click.option("--model", "model_uri", default=None,
              help="Registered model to score with (default: train one in memory on the first 2/3 of the data).")
@_model_options
@click.option("--customers", default=2000, show_default=True, help="Simulated world size when --data is absent.")
@click.option("--days", default=90, show_default=True)
@click.option("--batch-size", default=10_000, show_default=True, type=int)
@click.option("--explain", default=None, type=click.Choice(["alerts", "all", "none"]),
              help="Reason codes for: alerts (default), all rows, none (to see their cost).")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def bench_score(settings, data, columns, preset, model_uri, features, unsupervised_detectors, supervised,
                eval_days, seed, head_trees, baseline_trees, customers, days, batch_size, explain,
                as_json):
    """Scoring rate of the one scoring path (score_frame replay in micro-batches), with a per-stage breakdown."""
    from benchmarks import training as bench
    say = _stage_printer(_console())
    test, src = (_read(data, columns, preset), str(data)) if data else bench.simulated(customers, days)
    if model_uri:
        from fraud import registry

        registry.quiet_mlflow()
        bundle = registry.load_bundle(model_uri, tracking_uri=settings.tracking_uri, key=settings.bundle_key)
    else:
        cfg = _train_config(settings, "bench", features, unsupervised_detectors, supervised, eval_days, seed,
                            head_trees, baseline_trees)
        bundle = bench.trained_bundle(test, cfg, say)
    if explain:
        bundle.explain = explain
    say(f"scoring {len(test):,} transactions in micro-batches of {batch_size:,}")
    out = {"data": src, **bench.score_rate(bundle, test, batch_size), **bench.batch100_latency(bundle, test, batch_size)}
    head = bench.head_speed(bundle, test)
    if head:
        out["head_predict"] = head
    _print_out(out, as_json)


@click.command("load")
@click.option("--model", "model_uri", default=None, help="Model URI (default models:/NAME@champion).")
@click.option("--repeat", default=3, show_default=True)
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def bench_load(settings, model_uri, repeat, as_json):
    """Load time of a registered bundle: direct artifact unpickling vs mlflow.pyfunc.load_model."""
    from benchmarks import training as bench
    from fraud import registry

    registry.quiet_mlflow()
    registry.configure(settings.tracking_uri)
    model_uri = model_uri or f"models:/{settings.model_name}@champion"
    out = {"model": model_uri}
    for via in ("artifact", "pyfunc"):
        ts = [bench.timed_load(model_uri, via) for _ in range(repeat)]
        out[f"{via}_s_min"] = round(min(ts), 4)
    out["ratio_pyfunc_over_artifact"] = round(out["pyfunc_s_min"] / max(out["artifact_s_min"], 1e-9), 2)
    click.echo(json.dumps(out) if as_json else "\n".join(f"{k}: {v}" for k, v in out.items()))
