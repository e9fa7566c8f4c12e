"""Speed of the unsupervised detectors (``fraud bench detectors``): FastECOD / FastCOPOD / FastIForest
against PyOD's (1 row, 100 and 10,000 rows, fitted on synthetic lognormal features) and the unsupervised
ensemble's scoring rate. Ratios are measured in the same process."""
from __future__ import annotations

import time


def best(f, reps: int) -> float:
    """The fastest of ``reps`` calls of ``f``, in seconds."""
    b = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        f()
        b = min(b, time.perf_counter() - t)
    return b


def run_detectors(rows: int = 200_000, features: int = 15, seed: int = 0, skip_pyod: bool = False, con=None) -> None:
    """Time everything and print the tables and lines to ``con`` (a rich console; default stdout)."""
    import warnings

    import numpy as np
    from rich.console import Console

    warnings.filterwarnings("ignore")
    con = con or Console()
    rng = np.random.default_rng(seed)
    X = np.column_stack([rng.lognormal(size=rows) for _ in range(features)])
    _ecod_copod(X, skip_pyod, con)
    _iforest(X, seed, con)
    _ensemble(X, seed, con)


def _ecod_copod(X, skip_pyod: bool, con) -> None:
    """FastECOD / FastCOPOD against PyOD's: fit, 1 row and 10,000 rows."""
    from rich.table import Table

    from fraud.detectors import FastCOPOD, FastECOD

    rows, features = X.shape
    q1, q10k = X[:1] * 1.1, X[:10_000] * 1.1
    tab = Table(title=f"ECOD / COPOD after fitting {rows:,} x {features}")
    for c in ("detector", "fit s", "1 row ms", "10k rows ms", "speed-up 1 row", "speed-up 10k"):
        tab.add_column(c)
    pairs = [("ecod", FastECOD), ("copod", FastCOPOD)]
    with con.status("timing ECOD / COPOD ..."):
        for name, fast_cls in pairs:
            t = time.perf_counter()
            fast = fast_cls().fit(X)
            ff = time.perf_counter() - t
            f1, f10 = best(lambda: fast.decision_function(q1), 20), best(lambda: fast.decision_function(q10k), 5)
            if skip_pyod:
                tab.add_row(f"Fast{name.upper()}", f"{ff:.2f}", f"{f1*1e3:.3f}", f"{f10*1e3:.1f}", "-", "-")
                continue
            from pyod.models.copod import COPOD
            from pyod.models.ecod import ECOD

            t = time.perf_counter()
            slow = (ECOD if name == "ecod" else COPOD)().fit(X)
            fs = time.perf_counter() - t
            s1, s10 = best(lambda: slow.decision_function(q1), 2), best(lambda: slow.decision_function(q10k), 2)
            tab.add_row(f"PyOD {name.upper()}", f"{fs:.2f}", f"{s1*1e3:.1f}", f"{s10*1e3:.1f}", "", "")
            tab.add_row(f"Fast{name.upper()}", f"{ff:.2f}", f"{f1*1e3:.3f}", f"{f10*1e3:.1f}",
                        f"{s1/f1:,.0f}x", f"{s10/f10:,.0f}x")
    con.print(tab)


def _iforest(X, seed: int, con) -> None:
    """FastIForest against PyOD's IForest: fit, 100 and 10,000 rows, and the largest score difference."""
    import numpy as np
    from pyod.models.iforest import IForest

    from fraud.detectors import FastIForest

    with con.status("timing IForest: PyOD (sklearn) vs FastIForest ..."):
        t = time.perf_counter()
        slow = IForest(contamination=0.1, random_state=seed, max_samples=256).fit(X)
        fs = time.perf_counter() - t
        t = time.perf_counter()
        fast = FastIForest(contamination=0.1, random_state=seed, max_samples=256).fit(X)
        ff = time.perf_counter() - t
        q100, q10k = X[:100] * 1.1, X[:10_000] * 1.1
        fast.decision_function(q100)  # numba kernel: load from cache / compile once
        s100, f100 = best(lambda: slow.decision_function(q100), 10), best(lambda: fast.decision_function(q100), 10)
        s10, f10 = best(lambda: slow.decision_function(q10k), 3), best(lambda: fast.decision_function(q10k), 3)
        diff = float(np.abs(slow.decision_function(q10k) - fast.decision_function(q10k)).max())
    con.print(f"IForest fit {fs:.2f}s (PyOD) vs {ff:.2f}s (Fast); 100 rows {s100*1e3:.2f} ms vs {f100*1e3:.2f} ms "
              f"({s100/f100:.1f}x); 10k rows {s10*1e3:.1f} ms vs {f10*1e3:.1f} ms ({s10/f10:.1f}x); "
              f"max |score difference| {diff:.1e}")


def _ensemble(X, seed: int, con) -> None:
    """The unsupervised ensemble: fit, scoring rate, 100-row micro-batch, explain rate, per-detector rate."""
    import pandas as pd

    from fraud.detectors import Ensemble

    features = X.shape[1]
    Xd = pd.DataFrame(X, columns=[f"f{j}" for j in range(features)])
    with con.status("fitting the unsupervised ensemble ..."):
        t = time.perf_counter()
        ens = Ensemble(supervised=None, seed=seed).fit(Xd)
        fe = time.perf_counter() - t
    with con.status("timing the ensemble ..."):
        tb = best(lambda: ens.decision_function(Xd), 2)
        t100 = best(lambda: ens.decision_function(Xd.iloc[:100]), 10)
        tx = best(lambda: ens.explain(Xd.iloc[:10_000]), 1)
    con.print(f"ensemble {', '.join(ens.detectors_)}: fit {fe:.1f}s; scores {len(Xd)/tb:,.0f} rows/s "
              f"on {len(Xd):,} rows; {t100*1e3:.1f} ms per 100-row micro-batch; explain {1e4/tx:,.0f} rows/s")
    A = Xd.to_numpy()
    for name, det in ens.detectors_.items():
        td = best(lambda: det.decision_function(A), 1)
        con.print(f"  {name}: {len(A)/td:,.0f} rows/s")
