"""Supervised head choice and reason-code attributions (``fraud bench heads``): LightGBM against sklearn's
HistGradientBoosting on the baseline features of a time split, and how well the cheap attributions used for
reason codes agree with TreeSHAP, and their speed."""
from __future__ import annotations

import time

from benchmarks.detectors import best


def run_heads(load=None, dataset=None, *, customers: int = 1000, days: int = 60, trees: int = 300,
              delay_days: int = 7, explain_rows: int = 2000, seed: int = 0) -> dict:
    """``load()``: the canonical frame, described as ``dataset``; None: a simulated world of ``customers``
    and ``days``. The last third of the period is the test window; the heads train on labelled rows older
    than its start minus the delay. Returns the JSON-ready result."""
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
        if load is not None:
            df, src = load(), str(dataset)
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

    heads = {}
    for kind in ("lightgbm", "hgb"):
        with con.status(f"fitting {kind} ..."):
            t = time.perf_counter()
            h = SupervisedHead(kind=kind, n_estimators=trees, seed=seed).fit(A[tr], y[tr])
            fit_s = time.perf_counter() - t
            Ate = A[te]
            p = h.decision_function(Ate)
            sc = best(lambda: h.decision_function(Ate), 3)
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
    return out
