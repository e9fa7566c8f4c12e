"""The supervised head: gradient boosting on labelled rows.

The caller passes only labels that respect the feedback delay: a label of a transaction may be used
for a model that scores at time t only if that transaction is older than t - delay (7 days by
default). This module cannot check that (it sees no clock); ``fraud.training`` selects the rows.

``SupervisedHead(kind="lightgbm" | "hgb")`` follows the detector contract: ``fit(X, y) -> self``,
``decision_function(X)`` = fraud probability in [0, 1], ``decision_scores_`` (training
probabilities) and ``threshold_`` (0.5) after fit. Rows whose label is unknown (NaN or -1) are
dropped at fit.
"""
from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator

from fraud.errors import ConfigError, ModelError, NotFittedError

SUPERVISED = ("lightgbm", "hgb")
_SMALL = 5000  # rows: below this, predict single-threaded


def labelled_mask(y) -> np.ndarray:
    """True where ``y`` is a known label (0 or 1); NaN and -1 mean unknown."""
    yy = np.asarray(y, dtype=np.float64).ravel()
    return np.isfinite(yy) & np.isin(yy, (0.0, 1.0))


class SupervisedHead(BaseEstimator):
    def __init__(self, kind: str = "lightgbm", n_estimators: int = 300, learning_rate: float = 0.05,
                 num_leaves: int = 31, min_child_samples: int = 50, n_jobs: int = 2, seed: int = 0):
        self.kind = kind
        self.n_estimators = n_estimators
        self.learning_rate = learning_rate
        self.num_leaves = num_leaves
        self.min_child_samples = min_child_samples
        self.n_jobs = n_jobs
        self.seed = seed

    def _make(self):
        if self.kind == "lightgbm":
            import lightgbm as lgb

            return lgb.LGBMClassifier(n_estimators=self.n_estimators, learning_rate=self.learning_rate,
                                      num_leaves=self.num_leaves, min_child_samples=self.min_child_samples,
                                      subsample=0.8, subsample_freq=1, colsample_bytree=0.8,
                                      n_jobs=self.n_jobs, random_state=self.seed, deterministic=True,
                                      force_row_wise=True, verbose=-1)
        if self.kind == "hgb":
            from sklearn.ensemble import HistGradientBoostingClassifier

            return HistGradientBoostingClassifier(max_iter=self.n_estimators, learning_rate=self.learning_rate,
                                                  max_leaf_nodes=self.num_leaves,
                                                  min_samples_leaf=self.min_child_samples,
                                                  early_stopping=False, random_state=self.seed)
        raise ConfigError(f"unknown supervised head {self.kind!r}; choose from {', '.join(SUPERVISED)}")

    def fit(self, X, y) -> "SupervisedHead":
        X = np.asarray(X, dtype=np.float64)
        m = labelled_mask(y)
        yy = np.asarray(y, dtype=np.float64).ravel()[m].astype(int)
        if len(np.unique(yy)) < 2:
            raise ModelError(f"SupervisedHead needs labelled rows of both classes; got {int(yy.sum())} fraud "
                             f"among {len(yy)} labelled rows")
        self.model_ = self._make().fit(X[m], yy)
        self.n_features_in_ = X.shape[1]
        self.decision_scores_ = self.decision_function(X)
        self.threshold_ = 0.5
        return self

    def decision_function(self, X) -> np.ndarray:
        if not hasattr(self, "model_"):
            raise NotFittedError("SupervisedHead is not fitted; call fit(X, y) first")
        X = np.asarray(X, dtype=np.float64)
        if len(X) < _SMALL:  # thread start-up costs more than it saves on micro-batches
            if self.kind == "lightgbm":
                return self.model_.predict_proba(X, num_threads=1)[:, 1]
            from threadpoolctl import threadpool_limits

            with threadpool_limits(1, user_api="openmp"):
                return self.model_.predict_proba(X)[:, 1]
        return self.model_.predict_proba(X)[:, 1]

    def contributions(self, X) -> np.ndarray | None:
        """Per-feature contributions (SHAP values, log-odds) for LightGBM; None for hgb."""
        if self.kind != "lightgbm":
            return None
        return self.model_.predict(np.asarray(X, dtype=np.float64), pred_contrib=True)[:, :-1]
