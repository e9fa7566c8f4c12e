"""fraud bench sequence: speed of the sequence encoder (batch encode, one-event update)."""
from __future__ import annotations

import json
import time

import click

from fraud.commands.common import data_options, load_or_fail


def register(main: click.Group, bench: click.Group) -> None:
    @bench.command("sequence")
    @data_options(required=False, rejects=False)
    @click.option("--customers", default=5000, show_default=True, help="Without --data: simulated customers.")
    @click.option("--terminals", default=10000, show_default=True, help="Without --data: simulated terminals.")
    @click.option("--days", default=183, show_default=True, help="Without --data: simulated days (handbook size).")
    @click.option("--fit-days", default=30, show_default=True, help="Fit the encoder on the first N days.")
    @click.option("--epochs", default=4, show_default=True, help="Self-supervised training epochs.")
    @click.option("--max-train-events", default=300_000, show_default=True, help="Training budget (events).")
    @click.option("--events", default=2000, show_default=True, help="Single events timed (the last N rows).")
    @click.option("--threads", default=1, show_default=True,
                  help="torch.set_num_threads for the single-event timing (as the stream scorer runs).")
    @click.option("--seed", default=0, show_default=True)
    @click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
    def sequence(data, columns, preset, customers, terminals, days, fit_days, epochs, max_train_events, events,
                 threads, seed, as_json):
        """Encode every transaction in batch (target <= 120 s for 1.75M) and time one-event updates
        (target median <= 1 ms). Without --data, a handbook-sized simulated world is used."""
        import numpy as np
        import pandas as pd
        import torch
        from rich.console import Console

        from fraud.features.sequence import SequenceFeatures

        con = Console(stderr=True)
        t0 = time.perf_counter()
        if data:
            df = load_or_fail(data, columns, preset)
            source = str(data)
        else:
            from fraud.simulate import simulate

            with con.status(f"simulating {customers} customers, {terminals} terminals, {days} days"):
                df = simulate(customers=customers, terminals=terminals, days=days, seed=seed)
            source = f"simulate(customers={customers}, terminals={terminals}, days={days}, seed={seed})"
        t_load = time.perf_counter() - t0
        if len(df) <= events:
            raise click.ClickException(f"--events {events}: the data has only {len(df)} rows")
        hist = df.loc[df["timestamp"] < df["timestamp"].min() + pd.Timedelta(days=fit_days)]
        f = SequenceFeatures(epochs=epochs, max_train_events=max_train_events, random_state=seed)
        with con.status(f"fitting the encoder on {len(hist)} rows ({fit_days} days)"):
            t0 = time.perf_counter()
            f.fit(hist)
            t_fit = time.perf_counter() - t0
        con.print(f"fit: {t_fit:.1f} s; training NLL per epoch: "
                  + ", ".join(f"{x:.3f}" for x in f.encoder_.train_loss_))
        with con.status(f"batch-encoding {len(df)} rows"):
            t0 = time.perf_counter()
            X = f.transform(df)
            t_batch = time.perf_counter() - t0
        con.print(f"batch encode: {len(df)} rows in {t_batch:.1f} s ({len(df) / t_batch:,.0f} rows/s)")
        # one-event updates: warm a state on the rows before the timed ones (per-event cost is O(1),
        # independent of history length), then time each event alone
        old_threads = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            n = len(df)
            warm = df.iloc[max(0, n - events - 100_000):n - events]
            timed = df.iloc[n - events:]
            enc = f.encoder_
            st_model = f.new_state()
            f.update(st_model, warm)
            st_frame = f.new_state()
            f.update(st_frame, warm)
            ev = f._events(timed)
            model_ms, frame_ms = [], []
            with con.status(f"timing {events} single-event updates ({threads} torch thread(s))"):
                for i in range(len(timed)):
                    args = [e[i:i + 1] for e in ev]
                    a = time.perf_counter()
                    enc.process(st_model, *args)
                    model_ms.append((time.perf_counter() - a) * 1e3)
                for i in range(len(timed)):
                    row = timed.iloc[i:i + 1]
                    a = time.perf_counter()
                    f.update(st_frame, row)
                    frame_ms.append((time.perf_counter() - a) * 1e3)
        finally:
            torch.set_num_threads(old_threads)
        expected = X.iloc[n - events:].to_numpy(dtype=float)
        res = {
            "data": source, "rows": int(len(df)), "customers": int(df["customer_id"].nunique()),
            "load_s": round(t_load, 2), "fit_rows": int(len(hist)), "fit_s": round(t_fit, 2),
            "train_nll": [round(x, 4) for x in f.encoder_.train_loss_],
            "batch_encode_s": round(t_batch, 2), "batch_rows_per_s": round(len(df) / t_batch, 1),
            "batch_target_s": 120, "n_features": int(X.shape[1]),
            "event_update_threads": threads, "events_timed": int(events),
            "event_update_model_ms": {"median": round(float(np.median(model_ms)), 4),
                                      "p99": round(float(np.percentile(model_ms, 99)), 4)},
            "event_update_featurizer_ms": {"median": round(float(np.median(frame_ms)), 4),
                                           "p99": round(float(np.percentile(frame_ms, 99)), 4)},
            "event_update_target_median_ms": 1.0,
            "state_bytes_per_customer": st_model.nbytes_per_customer(),
            "finite_features": bool(np.isfinite(expected).all()),
        }
        if as_json:
            click.echo(json.dumps(res, indent=1))
            return
        click.echo(f"data: {source}  rows {res['rows']}  customers {res['customers']}")
        click.echo(f"fit: {res['fit_rows']} rows in {res['fit_s']} s  (NLL per epoch {res['train_nll']})")
        click.echo(f"batch encode: {res['rows']} rows in {res['batch_encode_s']} s "
                   f"({res['batch_rows_per_s']:,.0f} rows/s; target <= 120 s)")
        m, fr = res["event_update_model_ms"], res["event_update_featurizer_ms"]
        click.echo(f"one event ({threads} thread(s)), encoder state update: median {m['median']:.3f} ms  "
                   f"p99 {m['p99']:.3f} ms (target median <= 1 ms)")
        click.echo(f"one event, featurizer.update on a 1-row frame: median {fr['median']:.3f} ms  p99 {fr['p99']:.3f} ms")
        click.echo(f"state per customer: {res['state_bytes_per_customer']} bytes")
