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

Prediction: after fit the trees (LightGBM's or sklearn's) are flattened into arrays (``_paths``) and
``decision_function`` runs a compiled predictor over them (numba): QuickScorer for rows without NaN, a
tree walk with LightGBM's decision rules (missing types, default side, categorical splits) for the others.
It reproduces the library's ``predict_proba`` to ~1e-16 (the same leaves summed in tree order) and is
~13x faster on the default 300-tree head, at 10,000 rows and at 100 (``fraud bench score`` measures both).
Without numba, or for an hgb head with categorical splits, the library predicts.
"""
from __future__ import annotations

import re

import numpy as np
from sklearn.base import BaseEstimator

from fraud._jit import compiled
from fraud.errors import ConfigError, ModelError, NotFittedError

SUPERVISED = ("lightgbm", "hgb")
SMALL_BATCH = 5000  # rows: below this, a batch is predicted single-threaded (the scorer's micro-batches)


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
        # the flattened trees and QuickScorer's tables, built once: the predictor and the path attributions use them
        self._paths = _lgbm_arrays(self.model_.booster_) if self.kind == "lightgbm" else _hgb_arrays(self.model_)
        self._paths["qs"] = _quickscorer(self._paths)
        self.decision_scores_ = self.decision_function(X)
        self.threshold_ = 0.5
        return self

    def _forest(self) -> dict:
        """The flattened trees (built at fit)."""
        return self._paths

    def __getstate__(self):
        """Pickles keep the flattened trees and the QuickScorer tables (~0.4 s to build); the packed walk and
        the per-leaf paths (~1.3 MB, ~20-30 ms to build) are rebuilt on first use."""
        d = dict(super().__getstate__())  # object.__getstate__ hands out the instance's own __dict__: copy it,
        a = d.get("_paths")                 # or pickling would strip the live head's walk too (rebuilt per pickle)
        if isinstance(a, dict):
            d["_paths"] = {k: v for k, v in a.items() if k not in ("packed", "leaves")}
        return d

    def decision_function(self, X) -> np.ndarray:
        """Fraud probability per row. With numba: the flattened trees through a compiled predictor (equal to
        the library's ``predict_proba`` to ~1e-15, ~10-50x faster on micro-batches: no per-call set-up);
        without numba (or an hgb head with categorical splits): the library's own predict."""
        if not hasattr(self, "model_"):
            raise NotFittedError("SupervisedHead is not fitted; call fit(X, y) first")
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != self.n_features_in_:
            raise ModelError(f"SupervisedHead: X has shape {X.shape}, the head was trained on "
                             f"{self.n_features_in_} features")
        if self._paths["exact"] and _have_numba():
            return predict_proba(self._paths, X)
        return self._library_proba(X)

    def _library_proba(self, X: np.ndarray) -> np.ndarray:
        """The library's predict_proba (reference for the compiled predictor)."""
        # the scorer runs single-threaded: thread start-up costs more than it saves on micro-batches,
        # and batch scoring parallelises across processes/partitions, not inside one predict call
        if self.kind == "lightgbm":
            return self.model_.predict_proba(X, num_threads=1)[:, 1]
        if len(X) < SMALL_BATCH:
            from threadpoolctl import threadpool_limits

            with threadpool_limits(1, user_api="openmp"):
                return self.model_.predict_proba(X)[:, 1]
        return self.model_.predict_proba(X)[:, 1]

    def path_contributions(self, X) -> np.ndarray:
        """Per-feature path attributions (log-odds credit of each split along each tree path; see
        ``path_contributions``): one tree descent per row, ~100x cheaper than TreeSHAP, works for
        both kinds."""
        if not hasattr(self, "model_"):
            raise NotFittedError("SupervisedHead is not fitted; call fit(X, y) first")
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

#: flags of a split node (``arrays["flags"]``): LightGBM's missing type in bits 0-1 (0 None: NaN -> 0.0;
#: 1 Zero: |x| <= 1e-35 or NaN takes the default side; 2 NaN: NaN takes the default side), bit 2 = the
#: default side is left, bit 3 = categorical split (left when int(x) is in the node's category list
#: ``cats[cat_lo:cat_hi]``; NaN and negative values go right), as LightGBM's Tree::Decision.
_MISSING_ZERO, _MISSING_NAN, _DEFAULT_LEFT, _CATEGORICAL = 1, 2, 4, 8


def _lgbm_arrays(booster) -> dict:
    """Flatten a LightGBM binary booster (``dump_model``: thresholds and leaf values round-trip exactly)."""
    feats, thrs, lefts, rights, vals, roots, flags, cat_lo, cat_hi, cats = [], [], [], [], [], [], [], [], [], []

    def walk(node):
        k = len(feats)
        feats.append(0), thrs.append(np.inf), lefts.append(k), rights.append(k)
        flags.append(0), cat_lo.append(0), cat_hi.append(0)
        if "leaf_value" in node or "split_feature" not in node:
            vals.append(float(node.get("leaf_value", 0.0)))
            return k
        vals.append(float(node["internal_value"]))
        feats[k] = int(node["split_feature"])
        dt = node.get("decision_type", "<=")
        f = {"None": 0, "Zero": _MISSING_ZERO, "NaN": _MISSING_NAN}[node.get("missing_type", "None")]
        f |= _DEFAULT_LEFT if node.get("default_left", False) else 0
        if dt == "==":
            c = sorted(int(x) for x in str(node["threshold"]).split("||"))
            f |= _CATEGORICAL
            cat_lo[k], cat_hi[k] = len(cats), len(cats) + len(c)
            cats.extend(c)
        elif dt == "<=":
            thrs[k] = float(node["threshold"])
        else:
            raise ModelError(f"LightGBM tree: unsupported split decision_type {dt!r}")
        flags[k] = f
        lefts[k] = walk(node["left_child"])
        rights[k] = walk(node["right_child"])
        return k

    model = booster.dump_model()
    if int(model.get("num_tree_per_iteration", 1)) != 1:
        raise ModelError(f"LightGBM tree: {model.get('num_tree_per_iteration')} trees per iteration; "
                         "only binary models are supported")
    obj = str(model.get("objective", "binary sigmoid:1"))
    m = re.search(r"sigmoid:([-+0-9.eE]+)", obj)
    for tree in model["tree_info"]:
        roots.append(walk(tree["tree_structure"]))
    return _arrays(feats, thrs, lefts, rights, vals, roots, flags, cat_lo, cat_hi, cats,
                   init=0.0, sigmoid=float(m.group(1)) if m else 1.0, exact=obj.startswith("binary"))


def _arrays(feats, thrs, lefts, rights, vals, roots, flags, cat_lo, cat_hi, cats, init, sigmoid, exact) -> dict:
    return {"feature": np.asarray(feats, dtype=np.int32), "threshold": np.asarray(thrs, dtype=np.float64),
            "left": np.asarray(lefts, dtype=np.int32), "right": np.asarray(rights, dtype=np.int32),
            "value": np.asarray(vals, dtype=np.float64), "roots": np.asarray(roots, dtype=np.int32),
            "flags": np.asarray(flags, dtype=np.int8), "cat_lo": np.asarray(cat_lo, dtype=np.int32),
            "cat_hi": np.asarray(cat_hi, dtype=np.int32), "cats": np.asarray(cats, dtype=np.int64),
            "init": float(init), "sigmoid": float(sigmoid), "exact": bool(exact)}


def _hgb_arrays(model) -> dict:
    """Flatten a binary HistGradientBoostingClassifier. NaN goes to the side sklearn learned
    (``missing_go_to_left``); categorical splits are not reproduced (``exact`` False: the predictor
    then leaves prediction to sklearn)."""
    feats, thrs, lefts, rights, vals, roots, flags = [], [], [], [], [], [], []
    off = 0
    exact = True
    for it in model._predictors:
        if len(it) != 1:
            raise ModelError(f"HistGradientBoosting: {len(it)} trees per iteration; only binary models are supported")
        nodes = it[0].nodes  # binary classification: one predictor per iteration
        leaf = nodes["is_leaf"].astype(bool)
        if "is_categorical" in nodes.dtype.names and nodes["is_categorical"][~leaf].any():
            exact = False
        ids = np.arange(len(nodes)) + off
        feats.append(np.where(leaf, 0, nodes["feature_idx"]))
        thrs.append(np.where(leaf, np.inf, nodes["num_threshold"]))
        lefts.append(np.where(leaf, ids, nodes["left"].astype(np.int64) + off))
        rights.append(np.where(leaf, ids, nodes["right"].astype(np.int64) + off))
        # sklearn stores leaf values shrunk by the learning rate but inner-node values unshrunk:
        # shrink those too so that each split's credit is on the scale of the prediction
        vals.append(np.where(leaf, nodes["value"], nodes["value"] * model.learning_rate).astype(np.float64))
        flags.append(np.where(leaf, 0, _MISSING_NAN | np.where(nodes["missing_go_to_left"] != 0, _DEFAULT_LEFT, 0)))
        roots.append(off)
        off += len(nodes)
    zeros = np.zeros(off, dtype=np.int32)
    return _arrays(np.concatenate(feats), np.concatenate(thrs), np.concatenate(lefts), np.concatenate(rights),
                   np.concatenate(vals), roots, np.concatenate(flags), zeros, zeros, [],
                   init=float(np.ravel(model._baseline_prediction)[0]), sigmoid=1.0, exact=exact)


# Numba kernels (compiled on first use, cached on disk). Both find each row's exit leaf in every tree (a global
# leaf number: trees in order, leaves left to right) and, per ``credit``, add its value to the row's raw score
# (tree order, as LightGBM and sklearn sum) or its path credits to the row's attributions. QuickScorer takes rows
# without NaN, the packed walk the other rows (and forests QuickScorer cannot take). Keeping the exit leaves in a
# (rows x trees) matrix between two kernels, or calling a helper at each exit, measured 20-60% slower.
#
# The walk runs over a packed layout of the trees: nodes in pre-order (the left child of node k is k + 1), one
# 16-byte record per node (threshold or leaf value, feature | flags << 24, right child or leaf number), so a step
# touches one cache line instead of four arrays. Its split is LightGBM's Tree::Decision, written out in the loop
# (a called helper, even inlined, measured 7-10x slower): the common case (a finite value, no Zero-missing, no
# categorical split) is one comparison ``x <= threshold``.

_PACKED = np.dtype([("thr", np.float64), ("word", np.int32), ("right", np.int32)])


def _preorder(arrays: dict, r: int) -> list:
    """Nodes of the tree rooted at ``r`` in pre-order, left before right (its leaves come out left to right)."""
    left, right = arrays["left"], arrays["right"]
    order, stack = [], [int(r)]
    while stack:
        k = stack.pop()
        order.append(k)
        if left[k] != k:
            stack.append(int(right[k]))
            stack.append(int(left[k]))
    return order


def _pack(arrays: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(records, roots, cat_lo, cat_hi) of the pre-order packed layout (leaves: word = -1, thr = value,
    right = the global leaf number)."""
    feat, thr, left, val, flags = (arrays[k] for k in ("feature", "threshold", "left", "value", "flags"))
    if len(left) and int(feat.max(initial=0)) >= 1 << 24:
        raise ModelError(f"tree predictor: feature index {int(feat.max())} too large for the packed layout")
    order = np.asarray([k for r in arrays["roots"] for k in _preorder(arrays, r)], dtype=np.int64)
    new_id = np.empty(len(left), np.int64)
    new_id[order] = np.arange(len(order))
    leaf = left[order] == order
    rec = np.empty(len(order), dtype=_PACKED)
    rec["thr"] = np.where(leaf, val[order], thr[order])
    rec["word"] = np.where(leaf, -1, feat[order].astype(np.int64) | (flags[order].astype(np.int64) << 24))
    rec["right"] = np.where(leaf, np.cumsum(leaf) - 1, new_id[arrays["right"][order]])
    return rec, new_id[arrays["roots"]].astype(np.int32), arrays["cat_lo"][order], arrays["cat_hi"][order]


def _walk(X, P, roots, cat_lo, cat_hi, cats, leaf_vals, leaf_ptr, path_feat, path_credit, init, credit,
          out):  # pragma: no cover - compiled
    for i in range(X.shape[0]):
        s = init
        for t in range(roots.shape[0]):
            k = roots[t]
            w = P[k].word
            while w >= 0:
                x = X[i, w & 0xFFFFFF]
                f = w >> 24
                if x == x and (f & 8) == 0 and (f & 3) != 1:
                    go_left = x <= P[k].thr
                elif f & 8:  # categorical: NaN and negative go right, else left when int(x) is listed
                    go_left = False
                    if x == x:
                        v = np.int64(x)
                        if v >= 0:
                            for j in range(cat_lo[k], cat_hi[k]):
                                if cats[j] == v:
                                    go_left = True
                else:
                    mt = f & 3
                    if x != x and mt != 2:
                        x = 0.0
                    if (mt == 1 and x >= -1e-35 and x <= 1e-35) or (mt == 2 and x != x):
                        go_left = (f & 4) != 0
                    else:
                        go_left = x <= P[k].thr
                k = k + 1 if go_left else P[k].right
                w = P[k].word
            if credit:  # the exit leaf's path credits, or its value
                for q in range(leaf_ptr[P[k].right], leaf_ptr[P[k].right + 1]):
                    out[i, path_feat[q]] += path_credit[q]
            else:
                s += P[k].thr
        if not credit:
            out[i, 0] = s


# QuickScorer (Lucchese et al., SIGIR 2015): the exit leaves without walking the trees. Leaves of each tree are
# numbered left to right; a split whose test fails (x > threshold: the row goes right) rules out every leaf
# of its left subtree, a bit mask. Per feature the splits are sorted by threshold, so a row ANDs the masks of
# exactly its failing splits with one forward scan per feature (contiguous memory, no data-dependent jumps
# between trees); its exit leaf in each tree is the lowest bit still set. ~3-4x faster than the packed walk on
# the 300-tree head. It needs trees of <= 64 leaves with numerical splits and no Zero-missing splits, and rows
# without NaN.

def _quickscorer(arrays: dict):
    """(feature offsets, thresholds, tree ids, masks, leaf offsets) or None when not applicable."""
    left, right, feat, thr, flags = (arrays[k] for k in ("left", "right", "feature", "threshold", "flags"))
    inner = left != np.arange(len(left))
    if ((flags[inner] & (_CATEGORICAL | 3)) == _MISSING_ZERO).any() or (flags[inner] & _CATEGORICAL).any():
        return None
    rf, rt, rtree, rmask, leaf_off = [], [], [], [], []
    full, n_leaves = (1 << 64) - 1, 0
    for t, r in enumerate(arrays["roots"].tolist()):
        leaf_off.append(n_leaves)
        order = _preorder(arrays, r)
        lid = {k: i for i, k in enumerate(k for k in order if left[k] == k)}
        if len(lid) > 64:
            return None
        n_leaves += len(lid)
        span = {}
        for k in reversed(order):  # children before parents: span[k] = (first, last) leaf under k
            span[k] = (lid[k], lid[k]) if left[k] == k else (span[int(left[k])][0], span[int(right[k])][1])
        for k in order:
            if left[k] != k:
                lo, hi = span[int(left[k])]
                rf.append(int(feat[k]))
                rt.append(float(thr[k]))
                rtree.append(t)
                rmask.append(full & ~(((1 << (hi - lo + 1)) - 1) << lo))
    nf = int(max(rf, default=-1)) + 1
    o = np.lexsort((np.asarray(rt, dtype=np.float64), np.asarray(rf, dtype=np.int64)))
    rf = np.asarray(rf, dtype=np.int64)[o]
    return (np.searchsorted(rf, np.arange(nf + 1)).astype(np.int64), np.asarray(rt, dtype=np.float64)[o],
            np.asarray(rtree, dtype=np.int32)[o], np.asarray(rmask, dtype=np.uint64)[o],
            np.asarray(leaf_off, dtype=np.int64))


#: de Bruijn table: index of the lowest set bit of a uint64
_DEBRUIJN = np.array([0, 1, 48, 2, 57, 49, 28, 3, 61, 58, 50, 42, 38, 29, 17, 4, 62, 55, 59, 36, 53, 51, 43, 22, 45,
                      39, 33, 30, 24, 18, 12, 5, 63, 47, 56, 27, 60, 41, 37, 16, 54, 35, 52, 21, 44, 32, 23, 11, 46,
                      26, 40, 15, 34, 20, 31, 10, 25, 14, 19, 9, 13, 8, 7, 6], dtype=np.int64)


def _qs(X, foff, qthr, qtree, qmask, leaf_off, debruijn, leaf_vals, leaf_ptr, path_feat, path_credit, init, credit,
        out, B):  # pragma: no cover - compiled
    """Blocks of ``B`` rows scan each feature's splits together (up to the block's largest value), the B-lane
    inner loop branch-free, so the compiler vectorises it (~3x faster than one row at a time for B = 64)."""
    T = leaf_off.shape[0]
    nf = foff.shape[0] - 1
    v = np.empty((T, B), np.uint64)
    xb = np.empty(B)
    ones = np.uint64(0xFFFFFFFFFFFFFFFF)
    n = X.shape[0]
    for i0 in range(0, n, B):
        m = min(B, n - i0)
        v[:, :] = ones
        for f in range(nf):
            xmax = -np.inf
            for r in range(B):
                xb[r] = X[i0 + r, f] if r < m else -np.inf
                if xb[r] > xmax:
                    xmax = xb[r]
            j = foff[f]
            e = foff[f + 1]
            while j < e and xmax > qthr[j]:
                t = qtree[j]
                mk = qmask[j]
                th = qthr[j]
                for r in range(B):  # the split fails for lane r when x > th: AND its mask, else all ones
                    v[t, r] &= mk | (np.uint64(0) - np.uint64(xb[r] <= th))
                j += 1
        for r in range(m):
            s = init
            for t in range(T):
                w = v[t, r]
                low = w & (~w + np.uint64(1))  # lowest set bit = the exit leaf
                leaf = leaf_off[t] + debruijn[(low * np.uint64(0x03F79D71B4CB0A89)) >> np.uint64(58)]
                if credit:
                    for q in range(leaf_ptr[leaf], leaf_ptr[leaf + 1]):
                        out[i0 + r, path_feat[q]] += path_credit[q]
                else:
                    s += leaf_vals[leaf]
            if not credit:
                out[i0 + r, 0] = s


def _leaf_paths(arrays: dict):
    """Per leaf (global leaf order): its value and the credits of its path, root to leaf, as CSR arrays
    (leaf values, leaf_ptr, feature, credit)."""
    left, feat, val = arrays["left"], arrays["feature"], arrays["value"]
    vals, ptr, pf, pd_ = [], [0], [], []
    for r in arrays["roots"].tolist():
        stack = [(r, ())]
        while stack:  # pre-order, left before right: leaves come out left to right
            k, path = stack.pop()
            if left[k] == k:
                vals.append(val[k])
                for f, d in path:
                    pf.append(f)
                    pd_.append(d)
                ptr.append(len(pf))
                continue
            fk, rk, lk = int(feat[k]), int(arrays["right"][k]), int(left[k])
            stack.append((rk, path + ((fk, float(val[rk] - val[k])),)))
            stack.append((lk, path + ((fk, float(val[lk] - val[k])),)))
    return (np.asarray(vals, dtype=np.float64), np.asarray(ptr, dtype=np.int64), np.asarray(pf, dtype=np.int64),
            np.asarray(pd_, dtype=np.float64))


_KERNELS: dict = {}


def _kernel(f):
    """The compiled ``f``; ModelError without numba (a test can set ``_KERNELS[name] = [None]``)."""
    k = compiled(_KERNELS.setdefault(f.__name__, []), f)
    if k is None:
        raise ModelError(f"tree predictor: kernel {f.__name__} needs numba (a dependency of fraud-graph): "
                         "pip install numba")
    return k


def _have_numba() -> bool:
    return compiled(_KERNELS.setdefault(_walk.__name__, []), _walk) is not None


def _tables(arrays: dict) -> dict:
    """The derived tables (built once, kept in ``arrays``): QuickScorer's (pickled with the head, ~0.4 s to
    build), the packed walk and the leaf paths (rebuilt on first use)."""
    if "qs" not in arrays:
        arrays["qs"] = _quickscorer(arrays)
    if "packed" not in arrays:
        arrays["packed"] = _pack(arrays)
    if "leaves" not in arrays:
        arrays["leaves"] = _leaf_paths(arrays)
    return arrays


def _run(arrays: dict, X: np.ndarray, credit: bool, out: np.ndarray) -> np.ndarray:
    """Every row's exit leaves, their values or path credits into ``out``: QuickScorer for rows without NaN, the packed walk
    for the others."""
    a = _tables(arrays)
    X = np.ascontiguousarray(X, dtype=np.float64)
    leaf_args = (*a["leaves"], a["init"], credit)
    qs = a["qs"] if a["qs"] is not None and X.shape[1] >= len(a["qs"][0]) - 1 else None
    walk = np.isnan(X).any(axis=1) if qs is not None else np.ones(len(X), dtype=bool)
    for rows, kind in ((~walk, "qs"), (walk, "walk")):
        if not rows.any():
            continue
        part = len(X) > rows.sum()
        Xp = np.ascontiguousarray(X[rows]) if part else X
        op = np.zeros((len(Xp), out.shape[1])) if part else out
        if kind == "qs":
            _kernel(_qs)(Xp, *qs, _DEBRUIJN, *leaf_args, op, min(64, len(Xp)))
        else:
            _kernel(_walk)(Xp, *a["packed"], a["cats"], *leaf_args, op)
        if part:
            out[rows] = op
    return out


def predict_raw(arrays: dict, X: np.ndarray) -> np.ndarray:
    """Raw score (log-odds) per row: ``init`` + the exit leaves' values, summed in tree order."""
    return _run(arrays, X, False, np.empty((len(X), 1)))[:, 0]


def predict_proba(arrays: dict, X: np.ndarray) -> np.ndarray:
    """Fraud probability per row: the sigmoid of :func:`predict_raw` (LightGBM's ``sigmoid`` scale)."""
    return 1.0 / (1.0 + np.exp(-arrays["sigmoid"] * predict_raw(arrays, X)))


def path_contributions(arrays: dict, X: np.ndarray) -> np.ndarray:
    """Per-row, per-feature path attributions (see above), shape (n, n_features): the exit leaves' path
    credits, added tree by tree."""
    X = np.asarray(X, dtype=np.float64)
    return _run(arrays, X, True, np.zeros(X.shape))
