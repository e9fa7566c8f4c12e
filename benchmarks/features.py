"""Speed of the 15 baseline features (``fraud bench features``): the vectorized transform of a whole file and
online micro-batch updates after 37 days of history."""
from __future__ import annotations

import time


def run_features(load, *, repeat: int = 1, batch: int = 1000, status=None) -> dict:
    """``load()``: the canonical frame (timed with validation); ``status``: a rich status for progress."""
    import numpy as np

    from fraud.features.tabular import BaselineFeatures

    say = status.update if status is not None else (lambda msg: None)
    t0 = time.perf_counter()
    frame = load()
    t_read = time.perf_counter() - t0
    f = BaselineFeatures().fit(frame)
    times = []
    for i in range(repeat):
        say(f"transform {i + 1}/{repeat} of {len(frame):,} rows")
        t0 = time.perf_counter()
        f.transform(frame)
        times.append(time.perf_counter() - t0)
    say("online updates")
    upd, st = _time_updates(f, frame, batch)
    return {"rows": len(frame), "read_validate_s": round(t_read, 2), "transform_s": round(min(times), 2),
            "rows_per_s": round(len(frame) / min(times)), "update_batch": batch,
            "update_ms_median": round(1000 * float(np.median(upd)), 1) if upd else None,
            "state_events": list(st.n_events)}


def _time_updates(f, frame, batch: int):
    """Seconds of up to 20 online updates of ``batch`` rows each, after a state warmed on 37 days."""
    import pandas as pd

    start = frame["timestamp"].min() + pd.Timedelta(days=37)
    warm = frame[frame["timestamp"] < start]
    rest = frame[frame["timestamp"] >= start]
    st = f.new_state()
    f.update(st, warm)
    upd = []
    for i in range(0, min(len(rest), 20 * batch), batch):
        b = rest.iloc[i:i + batch]
        t0 = time.perf_counter()
        f.update(st, b)
        upd.append(time.perf_counter() - t0)
    return upd, st
