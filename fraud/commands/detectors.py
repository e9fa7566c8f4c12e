"""fraud bench detectors: lookup ECOD/COPOD vs PyOD's, and the ensemble's scoring rate."""
from __future__ import annotations

import click


def register(main: click.Group, bench: click.Group) -> None:
    @bench.command("detectors")
    @click.option("--rows", default=200_000, show_default=True, help="Training rows (synthetic, lognormal features).")
    @click.option("--features", default=15, show_default=True, help="Number of features.")
    @click.option("--seed", default=0, show_default=True)
    @click.option("--skip-pyod", is_flag=True, help="Skip PyOD's ECOD/COPOD (slow) and report only ours.")
    def bench_detectors(rows, features, seed, skip_pyod):
        """Speed of FastECOD/FastCOPOD vs PyOD (1 row, 10,000 rows) and of the unsupervised ensemble
        (rows/s on a large batch, ms per 100-row micro-batch). Ratios are measured in the same process."""
        import time
        import warnings

        import numpy as np
        import pandas as pd
        from rich.console import Console
        from rich.table import Table

        from fraud.detectors import Ensemble, FastCOPOD, FastECOD

        warnings.filterwarnings("ignore")
        con = Console()

        def best(f, reps):
            b = float("inf")
            for _ in range(reps):
                t = time.perf_counter()
                f()
                b = min(b, time.perf_counter() - t)
            return b

        rng = np.random.default_rng(seed)
        X = np.column_stack([rng.lognormal(size=rows) for _ in range(features)])
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
