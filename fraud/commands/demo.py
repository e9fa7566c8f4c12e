"""fraud demo: the end-to-end tour that ``make demo`` runs.

simulate -> validate -> benchmark table (the book's protocol on the simulated world) -> train and register
-> live scoring from a local Kafka-compatible broker (replay, throughput, latency, top alerts) -> cluster review.
Each step runs the real ``fraud`` command in a subprocess (so the transcript shows what a user would type);
everything lives under ``--workdir`` with its own MLflow store, so the repository's default store is untouched.
"""
from __future__ import annotations

import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

import click


def register(main: click.Group, bench: click.Group) -> None:
    @main.command()
    @click.option("--workdir", default=".demo", show_default=True, type=click.Path(file_okay=False),
                  help="Where the demo's data, MLflow store, alert store and logs go (recreated).")
    @click.option("--customers", default=1500, show_default=True)
    @click.option("--terminals", default=3000, show_default=True)
    @click.option("--days", default=75, show_default=True, help="Simulated days; the last 15 are not trained on.")
    @click.option("--stream-days", default=3, show_default=True, help="Days after training replayed through Kafka.")
    @click.option("--warm-days", default=0, show_default=True,
                  help="Days before the training end replayed first (not needed: the model carries its "
                       "training-cutoff state, and replaying them would count those days twice).")
    @click.option("--rate", default=1000.0, show_default=True, help="Replay rate, events/s.")
    @click.option("--seed", default=7, show_default=True)
    @click.option("--skip-stream", is_flag=True, help="Stop after training (no broker).")
    def demo(workdir, customers, terminals, days, stream_days, warm_days, rate, seed, skip_stream):
        """Run the end-to-end demo (simulate, validate, benchmark, train, stream, review)."""
        import shutil

        import pandas as pd

        wd = Path(workdir).resolve()
        if wd.exists():
            shutil.rmtree(wd)
        wd.mkdir(parents=True)
        env = dict(os.environ, MLFLOW_TRACKING_URI=f"sqlite:///{wd / 'mlflow.db'}",
                   FRAUD_ARTIFACT_ROOT=str(wd / "artifacts"), PYTHONWARNINGS="ignore")
        start = pd.Timestamp("2024-01-01", tz="UTC")
        train_until = start + pd.Timedelta(days=days - 15)
        world = wd / "world.parquet"
        t_all = time.monotonic()

        def step(title):
            click.secho(f"\n== {title}", bold=True)

        def fraud(*args, check=True):
            cmd = [sys.executable, "-m", "fraud.cli", *map(str, args)]
            click.echo("$ fraud " + " ".join(shlex.quote(str(a)) for a in args))
            rc = subprocess.run(cmd, env=env).returncode
            if check and rc != 0:
                raise click.ClickException(f"step failed (exit {rc}): fraud {' '.join(map(str, args))}")
            return rc

        step("1/6 simulate a labelled world (scenarios 1-6)")
        fraud("simulate", "--customers", customers, "--terminals", terminals, "--days", days, "--seed", seed,
              "--start", start.date(), "--out", world)
        step("2/6 validate it")
        fraud("validate", "--data", world)
        step("3/6 the book's protocol on this world (single split): baselines beside the book's figures")
        fraud("bench", "handbook", "--data", world, "--protocol", "single")
        step(f"4/6 train and register (training data before {train_until.date()})")
        fraud("train", "--data", world, "--train-until", train_until.date(), "--name", "fraud-detector")
        if skip_stream:
            click.echo(f"\ndemo finished in {time.monotonic() - t_all:.0f} s (stream skipped)")
            return
        step(f"5/6 live scoring: local broker, scorer (starting from the model's training-cutoff state), "
             f"replay of {stream_days} new days" + (f" after {warm_days} earlier days" if warm_days else ""))
        from fraud.io import read_transactions
        from streaming.demo import run_demo

        df = read_transactions(world).valid
        lo = train_until - pd.Timedelta(days=warm_days)
        hi = train_until + pd.Timedelta(days=stream_days)
        events = df[(df["timestamp"] >= lo) & (df["timestamp"] < hi)].drop(columns=["label", "scenario"])
        os.environ.update({k: env[k] for k in ("MLFLOW_TRACKING_URI", "FRAUD_ARTIFACT_ROOT")})
        res = run_demo(wd / "stream", events, tracking_uri=env["MLFLOW_TRACKING_URI"], rate=rate,
                       echo=click.echo)
        alerts_db = f"sqlite:///{wd / 'stream' / 'alerts.db'}"
        truth = df.set_index("tx_id")
        step("6/6 analyst review: clusters of flagged activity")
        # the scorer's archive (every scored event) is the context that links a ring's alert groups
        fraud("review", "clusters", "--alerts-db", alerts_db, "--archive", wd / "stream" / "archive", "--top", 5,
              check=False)
        from fraud.store import AlertStore

        alerts = AlertStore(alerts_db).read_alerts()
        if len(alerts):
            hit = truth.reindex(alerts["tx_id"])["label"].fillna(0).astype(int)
            click.echo(f"\nalerts in the store: {len(alerts)}; of them truly fraudulent (simulation ground truth): "
                       f"{int(hit.sum())} ({hit.mean():.0%})")
        click.echo(f"stream: {res.get('throughput', float('nan')):.0f} events/s end to end, latency p50 "
                   f"{res.get('p50_ms', float('nan')):.1f} ms, p99 {res.get('p99_ms', float('nan')):.1f} ms")
        click.echo(f"demo finished in {time.monotonic() - t_all:.0f} s; everything is under {wd}")
