"""Compiled tree inference against the supervised head's own predictor: rows/s of one LightGBM head (the default
300-tree ``SupervisedHead``) on 100-row and 10,000-row batches, one thread, and the largest difference from
LightGBM's ``predict_proba``. Run: ``python -m benchmarks.tree_predictors`` (lleaves / treelite optional)."""
from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

import numpy as np

from fraud.detectors.supervised import SupervisedHead


def _data(n_train: int = 40_000, n_query: int = 10_000, d: int = 60, seed: int = 0):
    """Synthetic features (5% NaN) with a non-linear label: trees use their full 31 leaves."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n_train + n_query, d))
    y = ((X[:, 0] * X[:, 1] + np.sin(3 * X[:, 2]) + X[:, 3] ** 2 + rng.normal(size=len(X))) > 1.5).astype(float)
    X[rng.random(X.shape) < 0.05] = np.nan
    return X[:n_train], y[:n_train], X[n_train:]


def _rate(fn, X, min_s: float = 1.0) -> float:
    fn(X)
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < min_s:
        fn(X)
        n += 1
    return n * len(X) / (time.perf_counter() - t0)


def _lleaves(head, tmp: Path):
    import lleaves

    model_file = tmp / "head.txt"
    head.model_.booster_.save_model(str(model_file))
    m = lleaves.Model(model_file=str(model_file))
    m.compile(cache=str(tmp / "lleaves.o"))
    return lambda X: m.predict(X, n_jobs=1)


def _treelite(head, tmp: Path):
    import tl2cgen
    import treelite

    tl = treelite.frontend.from_lightgbm(head.model_.booster_)
    tl2cgen.export_lib(tl, toolchain="gcc", libpath=str(tmp / "tl.so"), params={"parallel_comp": 8})
    lib = tl2cgen.Predictor(str(tmp / "tl.so"), nthread=1)
    return lambda X: lib.predict(tl2cgen.DMatrix(X, dtype="float64")).ravel()


def _predictors(head, tmp: Path) -> tuple[dict, dict]:
    """({name: callable(X) -> fraud probability}, {name: why it could not be built})."""
    out = {"lightgbm predict_proba": head._library_proba, "hand-written (QuickScorer + walk)": head.decision_function}
    failed = {}
    for name, build in (("lleaves", _lleaves), ("treelite (tl2cgen, gcc)", _treelite)):
        try:
            out[name] = build(head, tmp)
        except Exception as e:  # not installed, or does not work with the installed llvmlite / compiler
            failed[name] = f"{type(e).__name__}: {e}"[:200]
    return out, failed


def main() -> dict:
    X, y, Q = _data()
    head = SupervisedHead().fit(X, y)
    queries = {"finite rows": np.nan_to_num(Q, nan=0.5), "5% of values NaN": Q}
    res = {"trees": int(head.model_.booster_.num_trees()), "features": int(X.shape[1]), "predictors": {}}
    with tempfile.TemporaryDirectory() as tmp:
        preds, res["not_measured"] = _predictors(head, Path(tmp))
        for case, q in queries.items():
            ref = head._library_proba(q)
            res["predictors"][case] = {name: {
                "max_abs_diff": float(np.abs(np.asarray(fn(q), dtype=np.float64) - ref).max()),
                "rows_per_s_100": round(_rate(fn, q[:100])), "rows_per_s_10000": round(_rate(fn, q))}
                for name, fn in preds.items()}
    return res


if __name__ == "__main__":
    print(json.dumps(main(), indent=2))
