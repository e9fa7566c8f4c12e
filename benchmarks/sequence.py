"""Speed of the sequence encoder (``fraud bench sequence``): batch encoding of every transaction (target
<= 120 s for the handbook's 1.75M) and one-event state updates (target median <= 1 ms)."""
from __future__ import annotations

import time


def _load(load, dataset, customers, terminals, days, seed, con):
    """``load()`` or a simulated world; returns (frame, its description)."""
    if load is not None:
        return load(), str(dataset)
    from fraud.simulate import simulate

    with con.status(f"simulating {customers} customers, {terminals} terminals, {days} days"):
        df = simulate(customers=customers, terminals=terminals, days=days, seed=seed)
    return df, f"simulate(customers={customers}, terminals={terminals}, days={days}, seed={seed})"


def _time_events(f, df, events, threads, con):
    """Per-event milliseconds of the encoder's state update and of ``featurizer.update`` on a 1-row frame,
    after warming a state on the rows before the timed ones (the per-event cost is O(1), independent of
    history length)."""
    import torch

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
    return model_ms, frame_ms, st_model


def _quantiles(ms) -> dict:
    import numpy as np

    return {"median": round(float(np.median(ms)), 4), "p99": round(float(np.percentile(ms, 99)), 4)}


def run_sequence(load=None, dataset=None, *, customers: int = 5000, terminals: int = 10000, days: int = 183,
                 fit_days: int = 30, epochs: int = 4, max_train_events: int = 300_000, events: int = 2000, threads: int = 1,
                 seed: int = 0, con=None) -> dict:
    """The whole benchmark. ``load``: a function returning the frame (timed: ``load_s``), described as
    ``dataset``; None: a simulated world of that size.
    Raises ValueError when the data has no more rows than ``events``."""
    import numpy as np
    import pandas as pd
    from rich.console import Console

    from fraud.features.sequence import SequenceFeatures

    con = con or Console(stderr=True)
    t0 = time.perf_counter()
    df, source = _load(load, dataset, customers, terminals, days, seed, con)
    t_load = time.perf_counter() - t0
    if len(df) <= events:
        raise ValueError(f"--events {events}: the data has only {len(df)} rows")
    hist = df.loc[df["timestamp"] < df["timestamp"].min() + pd.Timedelta(days=fit_days)]
    f = SequenceFeatures(epochs=epochs, max_train_events=max_train_events, random_state=seed)
    with con.status(f"fitting the encoder on {len(hist)} rows ({fit_days} days)"):
        t0 = time.perf_counter()
        f.fit(hist)
        t_fit = time.perf_counter() - t0
    con.print(f"fit: {t_fit:.1f} s; training NLL per epoch: " + ", ".join(f"{x:.3f}" for x in f.encoder_.train_loss_))
    with con.status(f"batch-encoding {len(df)} rows"):
        t0 = time.perf_counter()
        X = f.transform(df)
        t_batch = time.perf_counter() - t0
    con.print(f"batch encode: {len(df)} rows in {t_batch:.1f} s ({len(df) / t_batch:,.0f} rows/s)")
    model_ms, frame_ms, st_model = _time_events(f, df, events, threads, con)
    expected = X.iloc[len(df) - events:].to_numpy(dtype=float)
    return {
        "data": source, "rows": int(len(df)), "customers": int(df["customer_id"].nunique()),
        "load_s": round(t_load, 2), "fit_rows": int(len(hist)), "fit_s": round(t_fit, 2),
        "train_nll": [round(x, 4) for x in f.encoder_.train_loss_],
        "batch_encode_s": round(t_batch, 2), "batch_rows_per_s": round(len(df) / t_batch, 1),
        "batch_target_s": 120, "n_features": int(X.shape[1]),
        "event_update_threads": threads, "events_timed": int(events),
        "event_update_model_ms": _quantiles(model_ms), "event_update_featurizer_ms": _quantiles(frame_ms),
        "event_update_target_median_ms": 1.0,
        "state_bytes_per_customer": st_model.nbytes_per_customer(),
        "finite_features": bool(np.isfinite(expected).all()),
    }


def table(res: dict) -> str:
    """The result as text."""
    m, fr, threads = res["event_update_model_ms"], res["event_update_featurizer_ms"], res["event_update_threads"]
    return "\n".join([
        f"data: {res['data']}  rows {res['rows']}  customers {res['customers']}",
        f"fit: {res['fit_rows']} rows in {res['fit_s']} s  (NLL per epoch {res['train_nll']})",
        f"batch encode: {res['rows']} rows in {res['batch_encode_s']} s "
        f"({res['batch_rows_per_s']:,.0f} rows/s; target <= 120 s)",
        f"one event ({threads} thread(s)), encoder state update: median {m['median']:.3f} ms  "
        f"p99 {m['p99']:.3f} ms (target median <= 1 ms)",
        f"one event, featurizer.update on a 1-row frame: median {fr['median']:.3f} ms  p99 {fr['p99']:.3f} ms",
        f"state per customer: {res['state_bytes_per_customer']} bytes"])
