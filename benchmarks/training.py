"""``fraud bench train``, ``bench score`` and ``bench load``: the training time, the scoring rate of the one scoring
path (with a per-stage breakdown and the latency of a stream-sized batch) and a bundle's load time."""
from __future__ import annotations

import time
import warnings


def simulated(customers: int, days: int):
    """(transactions, their description) of a simulated world of ``customers`` over ``days``."""
    from fraud.simulate import simulate

    df = simulate(customers=customers, terminals=2 * customers, days=days, seed=0)
    return df, f"simulate(customers={customers}, days={days})"




def register_seconds(settings, res) -> float:
    """Seconds to log and register ``res`` into a temporary MLflow store."""
    import tempfile

    from fraud import registry
    from fraud.training.register import log_training

    registry.quiet_mlflow()
    with tempfile.TemporaryDirectory() as tmp:
        s2 = settings.with_(tracking_uri=f"sqlite:///{tmp}/mlflow.db", artifact_root=f"{tmp}/artifacts")
        t1 = time.perf_counter()
        log_training(s2, res, "bench")
        return round(time.perf_counter() - t1, 2)




def trained_bundle(df, cfg, say):
    """A bundle trained in memory on the first 2/3 of ``df``."""
    from fraud.training import train as do_train

    cut = df["timestamp"].iloc[int(len(df) * 2 / 3)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return do_train(df[df["timestamp"] < cut].reset_index(drop=True), cfg, train_until=cut, progress=say).bundle




def score_rate(bundle, test, batch_size: int) -> dict:
    """Rate (wall and CPU) and per-stage seconds of a ``score_frame`` replay of ``test``, after a warm-up."""
    # warm-up on a throwaway state (compiled kernels load from numba's disk cache, or compile on a first run)
    bundle.score_frame(test.iloc[:2000], batch_size=min(batch_size, 1000), state=bundle.new_state())
    bundle.timings.clear()
    t0, c0 = time.perf_counter(), time.process_time()
    res = bundle.score_frame(test, batch_size=batch_size)
    dt = time.perf_counter() - t0
    cpu = time.process_time() - c0
    stages = {k: round(v, 3) for k, v in bundle.timings.items()}
    stages["other"] = round(dt - sum(bundle.timings.values()), 3)
    return {"transactions": len(test), "batch_size": batch_size, "seconds": round(dt, 3),
            "tx_per_s": round(len(test) / dt, 1), "cpu_s": round(cpu, 3),
            "tx_per_cpu_s": round(len(test) / max(cpu, 1e-9), 1), "alerts": int(res["is_alert"].sum()),
            "stages_s": stages, "featurizers": [type(f).__name__ for f in bundle.featurizers],
            "explain": bundle.explain}




def batch100_latency(bundle, test, batch_size: int) -> dict:
    """Latency of one stream-sized micro-batch (100 rows) on a warm state: p50/p99, wall and CPU ms (on a
    shared machine the wall figures include waiting for a core)."""
    import pandas as pd

    st = bundle.new_state()
    warm = test.iloc[: min(len(test) - 100, 50_000)]
    bundle.score_frame(warm, batch_size=batch_size, state=st)
    lat, lat_cpu = [], []
    for i in range(len(warm), min(len(test), len(warm) + 2000), 100):
        t1, c1 = time.perf_counter(), time.process_time()
        bundle.score(test.iloc[i:i + 100], st)
        lat.append((time.perf_counter() - t1) * 1000)
        lat_cpu.append((time.process_time() - c1) * 1000)
    out = {}
    for key, values in (("batch100_ms", lat), ("batch100_cpu_ms", lat_cpu)):
        if values:
            s = pd.Series(values)
            out[f"{key}_p50"] = round(float(s.median()), 2)
            out[f"{key}_p99"] = round(float(s.quantile(0.99)), 2)
    return out




def head_speed(bundle, test):
    """The supervised head alone on the last 10,000 rows' detector input: the library's predict_proba vs
    the compiled predictor (ms per call, best of 3, CPU time), and their largest difference."""
    import numpy as np

    ens = bundle.detector
    head = getattr(ens, "supervised_", None)
    if head is None or not hasattr(head, "_library_proba"):
        return None
    rows = test.iloc[-10_000:]
    A = ens._matrix(bundle.features_batch(rows))
    Z = ens._stack(A, ens._unsup_ranks(A)) if getattr(ens, "stacked_", False) else A
    res = {"kind": head.kind, "trees": int(len(head._forest()["roots"]))}
    for n in (len(Z), 100):
        q = Z[:n]
        best = {}
        for name, f in (("library", head._library_proba), ("compiled", head.decision_function)):
            f(q)
            ts = []
            for _ in range(3):
                c0 = time.process_time()
                f(q)
                ts.append(time.process_time() - c0)
            best[name] = min(ts)
        res[f"rows{n}_library_ms"] = round(best["library"] * 1000, 3)
        res[f"rows{n}_compiled_ms"] = round(best["compiled"] * 1000, 3)
        res[f"rows{n}_speedup"] = round(best["library"] / max(best["compiled"], 1e-9), 1)
    res["max_abs_diff"] = float(np.abs(head._library_proba(Z) - head.decision_function(Z)).max())
    return res


def timed_load(model_uri: str, via: str) -> float:
    """Seconds to load ``model_uri`` via ``artifact`` or ``pyfunc``."""
    from fraud.registry import load_bundle

    t0 = time.perf_counter()
    load_bundle(model_uri, via=via)
    return time.perf_counter() - t0
