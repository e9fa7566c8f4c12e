"""fraud bench detectors (ECOD/COPOD/IForest vs PyOD, the ensemble's scoring rate); fraud bench heads
(LightGBM vs HistGradientBoosting, reason attributions vs TreeSHAP)."""
from __future__ import annotations

import click

from fraud.commands.common import data_options


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
        from pyod.models.iforest import IForest

        from fraud.detectors import FastIForest

        with con.status("timing IForest: PyOD (sklearn) vs FastIForest ..."):
            t = time.perf_counter()
            slow = IForest(contamination=0.1, random_state=seed, max_samples=256).fit(X)
            fs = time.perf_counter() - t
            t = time.perf_counter()
            fast = FastIForest(contamination=0.1, random_state=seed, max_samples=256).fit(X)
            ff = time.perf_counter() - t
            q100 = X[:100] * 1.1
            fast.decision_function(q100)  # numba kernel: load from cache / compile once
            s100, f100 = best(lambda: slow.decision_function(q100), 10), best(lambda: fast.decision_function(q100), 10)
            s10, f10 = best(lambda: slow.decision_function(q10k), 3), best(lambda: fast.decision_function(q10k), 3)
            diff = float(np.abs(slow.decision_function(q10k) - fast.decision_function(q10k)).max())
        con.print(f"IForest fit {fs:.2f}s (PyOD) vs {ff:.2f}s (Fast); 100 rows {s100*1e3:.2f} ms vs {f100*1e3:.2f} ms "
                  f"({s100/f100:.1f}x); 10k rows {s10*1e3:.1f} ms vs {f10*1e3:.1f} ms ({s10/f10:.1f}x); "
                  f"max |score difference| {diff:.1e}")
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

    @bench.command("heads")
    @data_options(required=False, rejects=False)
    @click.option("--customers", default=1000, show_default=True, help="Simulated world size when --data is absent.")
    @click.option("--days", default=60, show_default=True)
    @click.option("--trees", default=300, show_default=True, help="Boosting iterations of both heads.")
    @click.option("--delay-days", default=7, show_default=True, help="Feedback delay: training labels end this long before the test window.")
    @click.option("--explain-rows", default=2000, show_default=True, help="Top-scored test rows used to compare reason attributions.")
    @click.option("--seed", default=0, show_default=True)
    @click.option("--json", "as_json", is_flag=True)
    def bench_heads(data, columns, preset, customers, days, trees, delay_days, explain_rows, seed, as_json):
        """Supervised head choice and reason-code attributions, on tabular features (BaselineFeatures).

        Time split: the last third of the period is the test window; the heads train on labelled
        rows older than its start minus the feedback delay. Reports, for LightGBM and sklearn's
        HistGradientBoosting with the same settings: fit seconds, single-threaded scoring rows/s,
        AP and ROC AUC on the test window. Then, on the top-scored test rows of the LightGBM head, how
        well the cheap attributions agree with TreeSHAP (LightGBM pred_contrib): path attributions
        (used for reason codes) and ECDF tail outlyingness weighted by gain importance; agreement =
        top-1 equal, top-1 within TreeSHAP's top 3, mean overlap of the top-3 sets; and their speed."""
        import json
        import time
        import warnings

        import numpy as np
        from rich.console import Console
        from sklearn.metrics import average_precision_score, roc_auc_score

        from fraud.detectors import FastECOD, SupervisedHead
        from fraud.detectors.reasons import top_k
        from fraud.features.tabular import BaselineFeatures

        warnings.filterwarnings("ignore")
        con = Console(stderr=True)
        with con.status("data and features ..."):
            if data:
                from fraud.commands.common import load_or_fail

                df = load_or_fail(data, columns, preset)
                src = str(data)
            else:
                from fraud.simulate import simulate

                df = simulate(customers=customers, terminals=2 * customers, days=days, seed=seed)
                src = f"simulate(customers={customers}, days={days}, seed={seed})"
            feats = BaselineFeatures(delay_days=delay_days).fit(df)
            X = feats.transform(df)
            X = X.apply(lambda c: c.astype(np.float64))
            A = X.to_numpy(dtype=np.float64, na_value=np.nan)
            A = np.where(np.isfinite(A), A, 0.0)
            ts = df["timestamp"]
            y = df["label"].to_numpy().astype(int)
            t_cut = ts.min() + (ts.max() - ts.min()) * 2 / 3
            tr = (ts < t_cut - np.timedelta64(delay_days, "D")).to_numpy()
            te = (ts >= t_cut).to_numpy()
        out = {"data": src, "features": list(X.columns), "train_rows": int(tr.sum()), "train_fraud": int(y[tr].sum()),
               "test_rows": int(te.sum()), "test_fraud": int(y[te].sum()), "heads": {}}

        def best(f, reps=3):
            b = float("inf")
            for _ in range(reps):
                t = time.perf_counter()
                f()
                b = min(b, time.perf_counter() - t)
            return b

        heads = {}
        for kind in ("lightgbm", "hgb"):
            with con.status(f"fitting {kind} ..."):
                t = time.perf_counter()
                h = SupervisedHead(kind=kind, n_estimators=trees, seed=seed).fit(A[tr], y[tr])
                fit_s = time.perf_counter() - t
                Ate = A[te]
                p = h.decision_function(Ate)
                sc = best(lambda: h.decision_function(Ate))
                heads[kind] = h
                out["heads"][kind] = {"fit_s": round(fit_s, 2), "score_rows_per_s": round(len(Ate) / sc),
                                      "ap": round(float(average_precision_score(y[te], p)), 4),
                                      "auc": round(float(roc_auc_score(y[te], p)), 4)}
        h = heads["lightgbm"]
        Ate = A[te]
        top = np.argsort(-h.decision_function(Ate), kind="stable")[:explain_rows]
        Q = Ate[top]
        with con.status("attributions ..."):
            t = time.perf_counter()
            shap = h.contributions(Q)
            t_shap = time.perf_counter() - t
            h.path_contributions(Q[:10])  # build the flattened trees once (cached on the head)
            t = time.perf_counter()
            path = h.path_contributions(Q)
            t_path = time.perf_counter() - t
            ecdf = FastECOD(max_rows=50_000, seed=seed).fit(A[tr])
            gain = h.model_.booster_.feature_importance("gain")
            t = time.perf_counter()
            ecdf_c = ecdf.feature_outlyingness(Q) * (gain / max(gain.sum(), 1e-12))
            t_ecdf = time.perf_counter() - t
        ref = top_k(shap, 3)

        def agree(M):
            a = top_k(M, 3)
            return {"top1_equal": round(float((a[:, 0] == ref[:, 0]).mean()), 3),
                    "top1_in_shap_top3": round(float((a[:, :1] == ref).any(axis=1).mean()), 3),
                    "top3_overlap": round(float(np.mean([len(set(a[i]) & set(ref[i])) / 3 for i in range(len(a))])), 3)}

        n = max(len(Q), 1)
        out["reasons"] = {"rows": int(len(Q)),
                          "treeshap": {"us_per_row": round(t_shap / n * 1e6, 1)},
                          "path": {"us_per_row": round(t_path / n * 1e6, 1), **agree(path)},
                          "ecdf_x_gain": {"us_per_row": round(t_ecdf / n * 1e6, 1), **agree(ecdf_c)}}
        if as_json:
            click.echo(json.dumps(out))
        else:
            for k, v in out.items():
                if k != "features":
                    click.echo(f"{k}: {v}")
