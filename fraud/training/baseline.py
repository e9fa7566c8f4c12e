"""The baseline guard stage: never below the book-feature random forest on the held-back week.

``guard`` fits the book's random forest (its 15 features, the ``tabular`` featurizer's columns) on the
labels the supervised head saw, scores both on the held-back labelled week, and returns the better of
the two or a blend ``w * pipeline + (1 - w) * forest`` (``w`` from :data:`WEIGHTS`, chosen on that
week), with the forest refitted on every known label. Why and how much: docs/detection.md.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator

from fraud.detectors.supervised import SMALL_BATCH
from fraud.errors import ConfigError, NotFittedError
from fraud.training.config import BOOK_TREES
from fraud.training.data import known_labels
from fraud.training.detector import subsample_genuine

#: blend weights of the pipeline tried on the evaluation week (1 = pipeline alone, 0 = forest alone)
WEIGHTS = (1.0, 0.75, 0.5, 0.25, 0.0)


def book_columns() -> list[str]:
    from fraud.features.tabular import feature_names

    return list(feature_names())


def _positions(names, wanted, where: str) -> np.ndarray:
    idx = {n: i for i, n in enumerate(names)}
    missing = [c for c in wanted if c not in idx]
    if missing:
        raise ConfigError(f"{where}: feature column(s) {missing[:5]} are missing; the book forest needs the "
                          "'tabular' featurizer")
    return np.array([idx[c] for c in wanted], dtype=np.int64)


class BookForest(BaseEstimator):
    """The book's random forest (chapter 3: standardised features, 100 trees) over ``columns`` of X."""

    def __init__(self, columns=None, n_estimators: int = BOOK_TREES, seed: int = 0, n_jobs: int = -1):
        self.columns = columns
        self.n_estimators = n_estimators
        self.seed = seed
        self.n_jobs = n_jobs

    def fit(self, X: pd.DataFrame, y) -> "BookForest":
        from sklearn.ensemble import RandomForestClassifier
        from sklearn.preprocessing import StandardScaler

        self.feature_names_ = [str(c) for c in X.columns]
        self.columns_ = list(self.columns or book_columns())
        self.idx_ = _positions(self.feature_names_, self.columns_, "BookForest.fit")
        A = np.nan_to_num(X.to_numpy(dtype=np.float64)[:, self.idx_])
        y = np.asarray(y, dtype=np.int64)
        if len(np.unique(y)) < 2:
            raise ConfigError(f"BookForest.fit: labels hold {int(y.sum())} fraud(s) in {len(y)} rows; need both classes")
        self.scaler_ = StandardScaler().fit(A)
        self.forest_ = RandomForestClassifier(n_estimators=self.n_estimators, random_state=self.seed,
                                              n_jobs=self.n_jobs).fit(self.scaler_.transform(A), y)
        return self

    def _matrix(self, X) -> np.ndarray:
        if not hasattr(self, "forest_"):
            raise NotFittedError("BookForest is not fitted; call fit(X, y) first")
        if isinstance(X, pd.DataFrame):
            return np.nan_to_num(X[self.columns_].to_numpy(dtype=np.float64))
        return np.nan_to_num(np.asarray(X, dtype=np.float64)[:, self.idx_])

    def decision_function(self, X) -> np.ndarray:
        A = self._matrix(X)
        if len(A) == 0:
            return np.empty(0)
        if len(A) >= SMALL_BATCH:
            return self.forest_.predict_proba(self.scaler_.transform(A))[:, 1]
        # a micro-batch in one thread, as the supervised head predicts (the scorer runs single-threaded): the
        # forest's n_jobs=-1 threads cost more than they save there (300 rows: 21 ms of CPU vs 8 ms; same scores)
        from joblib import parallel_backend

        with parallel_backend("sequential"):
            return self.forest_.predict_proba(self.scaler_.transform(A))[:, 1]


class Blend(BaseEstimator):
    """``weight * pipeline + (1 - weight) * forest`` (both in [0, 1]); reasons from the pipeline."""

    explains_rows = False  # the bundle hands ``explain`` the rows to explain, not the whole decision's X

    def __init__(self, pipeline=None, forest=None, weight: float = 0.5):
        self.pipeline = pipeline
        self.forest = forest
        self.weight = weight

    @property
    def feature_names_(self):
        return self.pipeline.feature_names_

    def decision_function(self, X) -> np.ndarray:
        w = float(self.weight)
        p = np.asarray(self.pipeline.decision_function(X), dtype=np.float64) if w > 0 else 0.0
        f = np.asarray(self.forest.decision_function(X), dtype=np.float64) if w < 1 else 0.0
        return np.clip(w * p + (1 - w) * f, 0.0, 1.0) * np.ones(len(X))

    def explain(self, X, top: int = 3, **kw):
        return self.pipeline.explain(X, top=top, **kw)


def _two_classes(y) -> bool:
    """Whether the known labels of ``y`` (NaN = unknown) hold a fraud and a genuine row."""
    k = y[np.isfinite(y)]
    return bool(0 < k.sum() < len(k))


def _ap(y, s) -> float:
    """AP over the rows whose label is known (NaN = unknown); NaN without both classes."""
    from sklearn.metrics import average_precision_score

    k = np.isfinite(y)
    return float(average_precision_score(y[k], np.asarray(s)[k])) if _two_classes(y) else float("nan")


def guard(det, X: pd.DataFrame, y_fit: np.ndarray, y_eval: np.ndarray, ev: np.ndarray, y_all: np.ndarray,
          seed: int = 0, trees: int = BOOK_TREES) -> tuple[object, dict]:
    """(detector to register, info). ``y_fit`` / ``y_all``: labels per row of X (NaN = not usable) for the
    comparison fit and the final refit; ``ev``: the evaluation rows, ``y_eval`` their labels; ``trees``: the
    forest's size."""
    fit_rows = np.isfinite(y_fit)
    forest = BookForest(n_estimators=trees, seed=seed).fit(X.loc[fit_rows], y_fit[fit_rows])
    Xe = X.loc[ev]
    p = np.clip(np.asarray(det.decision_function(Xe), dtype=np.float64), 0, 1)
    f = forest.decision_function(Xe)
    aps = {w: _ap(y_eval, w * p + (1 - w) * f) for w in WEIGHTS}
    best = max(WEIGHTS, key=lambda w: (aps[w], w))  # ties: the larger pipeline weight
    info = {"baseline.model": "random_forest (book features)", "baseline.ap": aps[0.0], "pipeline.ap": aps[1.0],
            "baseline.weight": best, "baseline.chosen_ap": aps[best],
            "baseline.choice": {1.0: "pipeline", 0.0: "baseline"}.get(best, f"blend w={best}"),
            "eval_scores": best * p + (1 - best) * f}
    if best == 1.0:
        return det, info
    all_rows = np.isfinite(y_all)
    forest = BookForest(n_estimators=trees, seed=seed).fit(X.loc[all_rows], y_all[all_rows])
    return Blend(det, forest, best), info


def training_guard(det, X: pd.DataFrame, df: pd.DataFrame, windows: dict, in_train: np.ndarray, ev: np.ndarray,
                   seed: int = 0, max_rows: int | None = None, trees: int = BOOK_TREES) -> tuple[object, dict]:
    """:func:`guard` with the training windows of ``fraud.training.train``: the comparison forest learns the
    head's labels ``[train_from, label_cutoff)``, the final one every label known at train-until."""
    ts = df["timestamp"]
    lab = known_labels(df["label"])  # NaN: unknown (not learnt, not scored)
    fit = in_train & (ts < windows["label_cutoff"]).to_numpy()
    known = in_train & (ts < windows["labels_known_before"]).to_numpy()
    y_eval = lab[ev]
    if not (_two_classes(y_eval) and _two_classes(lab[fit])):
        return det, {"baseline.choice": "pipeline (no labelled fraud to compare on)"}
    y_fit = subsample_genuine(np.where(fit, lab, np.nan), max_rows, seed)
    y_all = subsample_genuine(np.where(known, lab, np.nan), max_rows, seed)
    return guard(det, X, y_fit, y_eval, ev, y_all, seed=seed, trees=trees)


def guard_step(cfg, det, X: pd.DataFrame, df: pd.DataFrame, windows: dict, in_train: np.ndarray, ev: np.ndarray,
               applicable: bool, say) -> tuple[object, dict, np.ndarray | None]:
    """(detector to register, MLflow tags, its evaluation-week scores or None) of a training run:
    :func:`training_guard` when ``cfg.baseline_guard`` is on and it ``applicable`` (a supervised head over
    the tabular features)."""
    if not cfg.baseline_guard:
        return det, {"baseline.choice": "pipeline (guard off)"}, None
    if not applicable:
        return det, {"baseline.choice": "pipeline (no supervised head or no tabular features)"}, None
    say("comparing with the book-feature random forest on the evaluation week")
    det, info = training_guard(det, X, df, windows, in_train, ev, seed=cfg.seed, max_rows=cfg.max_supervised_rows,
                               trees=cfg.baseline_trees)
    return det, info, info.pop("eval_scores", None)
