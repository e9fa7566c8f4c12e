"""The supervised head: gradient boosting on labelled rows.

The caller passes only labels that respect the feedback delay: a label of a transaction may be used
for a model that scores at time t only if that transaction is older than t - delay (7 days by
default). This module cannot check that (it sees no clock); ``fraud.training`` selects the rows.

``SupervisedHead(kind="lightgbm" | "hgb")`` follows the detector contract: ``fit(X, y) -> self``,
``decision_function(X)`` = fraud probability in [0, 1], ``decision_scores_`` (training
probabilities) and ``threshold_`` (0.5) after fit. Rows whose label is unknown (NaN or -1) are
dropped at fit.

Threads: ``n_jobs`` (fit) defaults to 1. On this 2-core machine shared by several processes,
LightGBM's OpenMP threads spin-wait on each other: a 2-thread fit measured from 2x to 60x slower
in wall time than a 1-thread fit of the same model (and always ~2x the CPU). Prediction always
runs on one thread (``num_threads=1``), as the scorer does.
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
                 num_leaves: int = 31, min_child_samples: int = 50, n_jobs: int = 1, seed: int = 0,
                 max_bin: int = 1023):
        self.kind = kind
        self.max_bin = max_bin
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
                                      max_bin=self.max_bin,
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
        # the scorer runs single-threaded: thread start-up costs more than it saves on micro-batches,
        # and batch scoring parallelises across processes/partitions, not inside one predict call
        if self.kind == "lightgbm":
            return self.model_.predict_proba(X, num_threads=1)[:, 1]
        if len(X) < _SMALL:
            from threadpoolctl import threadpool_limits

            with threadpool_limits(1, user_api="openmp"):
                return self.model_.predict_proba(X)[:, 1]
        return self.model_.predict_proba(X)[:, 1]

    def path_contributions(self, X) -> np.ndarray:
        """Per-feature path attributions (log-odds credit of each split along each tree path; see
        ``path_contributions``): one tree descent per row, ~100x cheaper than TreeSHAP, works for
        both kinds. The flattened trees are built on first use and kept."""
        if not hasattr(self, "model_"):
            raise NotFittedError("SupervisedHead is not fitted; call fit(X, y) first")
        if getattr(self, "_paths", None) is None:
            self._paths = (_lgbm_arrays(self.model_.booster_) if self.kind == "lightgbm"
                           else _hgb_arrays(self.model_))
        return path_contributions(self._paths, np.asarray(X, dtype=np.float64))

    def contributions(self, X) -> np.ndarray | None:
        """Per-feature contributions (SHAP values, log-odds) for LightGBM; None for hgb."""
        if self.kind != "lightgbm":
            return None
        return self.model_.predict(np.asarray(X, dtype=np.float64), pred_contrib=True)[:, :-1]


# ---------------------------------------------------------------------------------------------
# Path attributions ("Saabas"): a cheap, vectorised stand-in for TreeSHAP in reason codes.
#
# Each tree is flattened into arrays (feature, threshold, left, right, node value, leaves point to
# themselves). A row descends every tree; at each split the change of the node value (child minus
# parent, log-odds) is credited to the split feature. The credits of a row sum to its raw score minus
# the forest's root values, like SHAP values, but cost one descent per tree (~ a prediction) instead of
# TreeSHAP's O(leaves x depth^2) per tree. ``fraud bench heads`` measures how often its top features
# agree with TreeSHAP's.

def _lgbm_arrays(booster) -> dict:
    feats, thrs, lefts, rights, vals, roots = [], [], [], [], [], []

    def walk(node):
        k = len(feats)
        feats.append(0), thrs.append(np.inf), lefts.append(k), rights.append(k)
        if "leaf_value" in node or "split_feature" not in node:
            vals.append(float(node.get("leaf_value", 0.0)))
            return k
        if node.get("decision_type", "<=") != "<=":
            raise ModelError(f"path attributions: unsupported LightGBM split {node.get('decision_type')!r}")
        vals.append(float(node["internal_value"]))
        feats[k], thrs[k] = int(node["split_feature"]), float(node["threshold"])
        lefts[k] = walk(node["left_child"])
        rights[k] = walk(node["right_child"])
        return k

    for tree in booster.dump_model()["tree_info"]:
        roots.append(walk(tree["tree_structure"]))
    return {"feature": np.asarray(feats, dtype=np.int32), "threshold": np.asarray(thrs, dtype=np.float64),
            "left": np.asarray(lefts, dtype=np.int32), "right": np.asarray(rights, dtype=np.int32),
            "value": np.asarray(vals, dtype=np.float64), "roots": np.asarray(roots, dtype=np.int32)}


def _hgb_arrays(model) -> dict:
    feats, thrs, lefts, rights, vals, roots = [], [], [], [], [], []
    off = 0
    for it in model._predictors:
        nodes = it[0].nodes  # binary classification: one predictor per iteration
        leaf = nodes["is_leaf"].astype(bool)
        ids = np.arange(len(nodes)) + off
        feats.append(np.where(leaf, 0, nodes["feature_idx"]))
        thrs.append(np.where(leaf, np.inf, nodes["num_threshold"]))
        lefts.append(np.where(leaf, ids, nodes["left"].astype(np.int64) + off))
        rights.append(np.where(leaf, ids, nodes["right"].astype(np.int64) + off))
        # sklearn stores leaf values shrunk by the learning rate but inner-node values unshrunk:
        # shrink those too so that each split's credit is on the scale of the prediction
        vals.append(np.where(leaf, nodes["value"], nodes["value"] * model.learning_rate).astype(np.float64))
        roots.append(off)
        off += len(nodes)
    return {"feature": np.concatenate(feats).astype(np.int32), "threshold": np.concatenate(thrs).astype(np.float64),
            "left": np.concatenate(lefts).astype(np.int32), "right": np.concatenate(rights).astype(np.int32),
            "value": np.concatenate(vals), "roots": np.asarray(roots, dtype=np.int32)}



def _jit(numba, f):
    """numba.njit with an on-disk cache where the package folder allows one, else without."""
    try:
        return numba.njit(cache=True, nogil=True)(f)
    except Exception:  # no cache locator (read-only install): compile per process
        return numba.njit(nogil=True)(f)


_PATH_KERNEL = []


def _path_kernel():
    if not _PATH_KERNEL:
        try:
            import numba
        except ImportError:  # pragma: no cover
            _PATH_KERNEL.append(None)
            return None

        def attribute(X, feat, thr, left, right, value, roots, out):  # pragma: no cover - compiled
            for t in range(roots.shape[0]):
                r = roots[t]
                for i in range(X.shape[0]):
                    k = r
                    while left[k] != k:
                        c = left[k] if X[i, feat[k]] <= thr[k] else right[k]
                        out[i, feat[k]] += value[c] - value[k]
                        k = c
        _PATH_KERNEL.append(_jit(numba, attribute))
    return _PATH_KERNEL[0]


def path_contributions(arrays: dict, X: np.ndarray) -> np.ndarray:
    """Per-row, per-feature path attributions (see above), shape (n, n_features)."""
    X = np.ascontiguousarray(X, dtype=np.float64)
    out = np.zeros(X.shape, dtype=np.float64)
    kernel = _path_kernel()
    if kernel is not None:
        kernel(X, arrays["feature"], arrays["threshold"], arrays["left"], arrays["right"], arrays["value"],
               arrays["roots"], out)
        return out
    feat, thr, left, right, val = (arrays[k] for k in ("feature", "threshold", "left", "right", "value"))
    rows = np.arange(len(X))
    for r in arrays["roots"]:  # numpy fallback: all rows descend one tree level by level
        k = np.full(len(X), r, dtype=np.int64)
        while True:
            inner = left[k] != k
            if not inner.any():
                break
            c = np.where(X[rows, feat[k]] <= thr[k], left[k], right[k])
            np.add.at(out, (rows[inner], feat[k][inner]), (val[c] - val[k])[inner])
            k = c
    return out
