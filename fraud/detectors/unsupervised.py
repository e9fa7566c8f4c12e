"""Unsupervised detectors, all on the PyOD contract.

``fit(X, y=None) -> self``; ``decision_function(X)`` -> 1-D scores, higher = more suspicious;
``decision_scores_`` and ``threshold_`` (the ``1 - contamination`` quantile) after fit.

Why not PyOD's own: scoring a micro-batch must be fast and must not depend on the other rows of the
batch. ``FastIForest`` and ``FastHBOS`` score as PyOD does, bit for bit, with numba kernels;
``FastECOD`` / ``FastCOPOD`` keep the sorted training values and score each row by binary search as if
it alone were appended to the training set (PyOD re-sorts everything on every call), with one-tail and
max-fusion options; ``AutoEncoderDetector`` is a small torch autoencoder scored in numpy.
Semantics, differences from PyOD and figures: docs/detection.md.
"""
from __future__ import annotations

import numpy as np
from pyod.models.base import BaseDetector
from pyod.models.hbos import HBOS
from pyod.models.iforest import IForest
from scipy.stats import skew as _skew

from fraud._jit import compiled
from fraud.errors import ConfigError, ModelError, NotFittedError


def _as_matrix(X) -> np.ndarray:
    a = np.asarray(X.to_numpy(dtype=np.float64) if hasattr(X, "to_numpy") else X, dtype=np.float64)
    if a.ndim == 1:
        a = a.reshape(-1, 1)
    return a


#: ``tail`` values of FastECOD / FastCOPOD and ``aggregate`` values
TAILS = ("auto", "right", "left")
AGGREGATES = ("sum", "max")
#: weight of the sum in the ``max`` aggregate (breaks ties among rows at the same maximum)
MAX_TIE_WEIGHT = 1e-3


class _ECDFBase(BaseDetector):
    """Shared fit/lookup machinery for FastECOD and FastCOPOD.

    ``tail``: which per-feature tail counts: "auto" (the method's own rule: ECOD/COPOD use both tails
    and the skewness), "right" (large values only: -log P(X >= x)), "left" (small values only).
    ``aggregate``: how per-feature outlyingness becomes a row score: "sum" (ECOD/COPOD: the product of
    tail probabilities) or "max" (the most extreme single feature ranks first; ties, e.g. several
    rows beyond every training value, are broken by ``MAX_TIE_WEIGHT`` x the sum).
    """

    def __init__(self, contamination: float = 0.1, max_rows: int | None = None, seed: int = 0, tail: str = "auto",
                 aggregate: str = "sum"):
        super().__init__(contamination=contamination)
        self.max_rows = max_rows
        self.seed = seed
        self.tail = tail
        self.aggregate = aggregate

    def _outlyingness(self, U_l: np.ndarray, U_r: np.ndarray) -> np.ndarray:
        if self.tail == "right":
            return U_r
        if self.tail == "left":
            return U_l
        return self._combine(U_l, U_r)

    def _aggregate(self, O: np.ndarray) -> np.ndarray:
        if self.aggregate == "max":
            return O.max(axis=1) + MAX_TIE_WEIGHT * O.sum(axis=1)
        return O.sum(axis=1)

    # -- tail probabilities -------------------------------------------------------------------
    def _counts(self, j: int, col: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(#{train <= x}, #{train >= x}) for each x of ``col``, training feature ``j``."""
        u, cum = self.values_[j], self.cumcounts_[j]
        order = None
        if len(col) > 256:  # sorted queries search ~3x faster (cache locality); unsort after
            order = np.argsort(col, kind="stable")
            col = col[order]
        # one search: the "right" position is the "left" one plus 1 where x is a training value
        # (the values are distinct), so a second searchsorted is not needed
        left = np.searchsorted(u, col, side="left")
        right = left + (u[np.minimum(left, len(u) - 1)] == col)
        le, ge = cum[right], self.n_train_ - cum[left]
        if order is not None:
            le[order], ge[order] = le.copy(), ge.copy()
        return le, ge

    def _tails_train(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """-log ECDF of the training rows themselves (PyOD's ``fit`` semantics)."""
        n = float(self.n_train_)
        U_l = np.empty_like(X)
        U_r = np.empty_like(X)
        for j in range(X.shape[1]):
            le, ge = self._counts(j, X[:, j])
            U_l[:, j] = le / n
            U_r[:, j] = ge / n
        return -np.log(U_l), -np.log(U_r)

    def _lookup(self) -> tuple:
        """Flat arrays for the numba tails kernel, derived from the fitted ``values_`` / ``cumcounts_``
        (built on first use and not pickled, which keeps the bundle small):
        the concatenated sorted values, their per-feature offsets and, per feature, the -log tail
        tables indexed by the searched position (-log((cum[k] + 1) / (n + 1)) and
        -log((n - cum[k] + 1) / (n + 1)), computed with the numpy path's arithmetic, so bit-identical)."""
        cache = self.__dict__.get("_lookup_cache")
        if cache is not None and cache[0] is self.values_ and cache[1] is self.cumcounts_:
            return cache[2]
        n = float(self.n_train_)
        sizes = np.array([len(u) for u in self.values_], dtype=np.int64)
        off = np.concatenate(([0], np.cumsum(sizes))).astype(np.int64)
        vals = np.ascontiguousarray(np.concatenate(self.values_), dtype=np.float64)
        cums = np.concatenate(self.cumcounts_)  # feature j: len(values_[j]) + 1 entries at off[j] + j
        tl = -np.log((cums + 1.0) / (n + 1.0))
        tr = -np.log(((self.n_train_ - cums) + 1.0) / (n + 1.0))
        arrays = (vals, off, np.ascontiguousarray(tl), np.ascontiguousarray(tr))
        self.__dict__["_lookup_cache"] = (self.values_, self.cumcounts_, arrays)
        return arrays

    def __getstate__(self):
        state = super().__getstate__()
        if "_lookup_cache" in state:
            state = dict(state)
            del state["_lookup_cache"]
        return state

    def _tails(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """-log ECDF of query rows, each as if appended alone to the training set."""
        kernel = _ecdf_kernel()
        if kernel is not None and X.shape[1] == len(self.values_) and X.shape[1]:
            vals, off, tl, tr = self._lookup()
            X = np.ascontiguousarray(X, dtype=np.float64)
            U_l = np.empty_like(X)
            U_r = np.empty_like(X)
            kernel(X, vals, off, tl, tr, U_l, U_r)
            return U_l, U_r
        return self._tails_numpy(X)

    def _tails_numpy(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``_tails`` without numba: per-feature ``np.searchsorted`` (the reference the kernel equals)."""
        n = float(self.n_train_)
        U_l = np.empty_like(X)
        U_r = np.empty_like(X)
        for j in range(X.shape[1]):
            le, ge = self._counts(j, X[:, j])
            U_l[:, j] = le + 1.0
            U_r[:, j] = ge + 1.0
        U_l /= n + 1.0
        U_r /= n + 1.0
        return -np.log(U_l), -np.log(U_r)

    def _combine(self, U_l: np.ndarray, U_r: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def feature_outlyingness(self, X) -> np.ndarray:
        """Per-row, per-feature outlyingness (the summands of the score), for explanations."""
        self._check()
        U_l, U_r = self._tails(_as_matrix(X))
        return self._outlyingness(U_l, U_r)

    def fit(self, X, y=None):
        if self.tail not in TAILS:
            raise ConfigError(f"{type(self).__name__}: tail={self.tail!r} must be one of {', '.join(TAILS)}")
        if self.aggregate not in AGGREGATES:
            raise ConfigError(f"{type(self).__name__}: aggregate={self.aggregate!r} must be one of "
                              f"{', '.join(AGGREGATES)}")
        X = _as_matrix(X)
        if self.max_rows is not None and len(X) > self.max_rows:
            rng = np.random.default_rng(self.seed)
            X = X[np.sort(rng.choice(len(X), size=self.max_rows, replace=False))]
        if not np.isfinite(X).all():
            raise ConfigError(f"{type(self).__name__}.fit: X has NaN or infinite values; impute them first")
        self._set_n_classes(y)
        self.n_train_ = len(X)
        self.n_features_in_ = X.shape[1]
        # per feature: sorted distinct training values and cumulative counts (cum[k] = rows among
        # the k smallest distinct values), so #{train <= x} = cum[searchsorted(values, x, "right")]
        self.values_, self.cumcounts_ = [], []
        for j in range(X.shape[1]):
            u, c = np.unique(X[:, j], return_counts=True)
            self.values_.append(u)
            self.cumcounts_.append(np.concatenate(([0], np.cumsum(c))).astype(np.int64))
        self.skew_sign_ = np.sign(np.nan_to_num(_skew(X, axis=0)))
        U_l, U_r = self._tails_train(X)
        self.decision_scores_ = self._aggregate(self._outlyingness(U_l, U_r))
        self._process_decision_scores()
        return self

    def _check(self):
        if not hasattr(self, "values_"):
            raise NotFittedError(f"{type(self).__name__} is not fitted; call fit(X) first")

    def tails(self, X) -> tuple[np.ndarray, np.ndarray]:
        """(-log left tail, -log right tail) per row and feature; FastECOD and FastCOPOD fitted on
        the same rows share them (``score_from_tails``), so an ensemble searches once for both."""
        self._check()
        X = _as_matrix(X)
        if X.shape[1] != self.n_features_in_:
            raise ConfigError(f"{type(self).__name__}: X has {X.shape[1]} features, fitted on {self.n_features_in_}")
        return self._tails(X)

    def score_from_tails(self, U_l: np.ndarray, U_r: np.ndarray) -> np.ndarray:
        return self._aggregate(self._outlyingness(U_l, U_r))

    def decision_function(self, X):
        return self.score_from_tails(*self.tails(X))


class FastECOD(_ECDFBase):
    """ECOD scored by lookup in precomputed per-feature ECDFs (see module docstring)."""

    def _combine(self, U_l, U_r):
        sk = self.skew_sign_
        U_skew = U_l * -1 * np.sign(sk - 1) + U_r * np.sign(sk + 1)
        return np.maximum(np.maximum(U_l, U_r), U_skew)


class FastCOPOD(_ECDFBase):
    """COPOD scored by lookup in precomputed per-feature ECDFs (see module docstring)."""

    def _combine(self, U_l, U_r):
        sk = self.skew_sign_
        U_skew = U_l * -1 * np.sign(sk - 1) + U_r * np.sign(sk + 1)
        return np.maximum(U_skew, (U_l + U_r) / 2)


_ECDF_KERNEL = []


def _ecdf_tails(X, vals, off, tl, tr, U_l, U_r):  # pragma: no cover - compiled
    # per (row, feature): np.searchsorted(u, x, "left") (NaN sorts last, as in numpy), then
    # "right" = left + 1 where x is a training value (the values are distinct), then the
    # precomputed -log tables: left tail at the "right" position, right tail at "left".
    # Feature outer (its values stay in cache); the search is branchless with a step count
    # that depends only on the number of values, so L rows bisect in lockstep and their
    # cache misses overlap (~2x faster than one row at a time on 10,000 rows, ~4x on 100)
    n, d = X.shape
    L = 32
    base = np.empty(L, dtype=np.int64)
    xs = np.empty(L, dtype=np.float64)
    for j in range(d):
        a = off[j]
        m = off[j + 1] - a
        t = a + j
        for s in range(0, n, L):
            w = min(s + L, n) - s
            for q in range(w):
                x = X[s + q, j]
                xs[q] = np.inf if x != x else x
                base[q] = a
            k = m
            while k > 1:
                half = k >> 1
                for q in range(w):
                    b = base[q]
                    base[q] = b + half if vals[b + half] < xs[q] else b
                k -= half
            for q in range(w):
                x = X[s + q, j]
                lo = 0
                if m > 0:
                    b = base[q]
                    lo = b - a + (1 if vals[b] < xs[q] else 0)
                if x != x:
                    lo = m
                right = lo
                if lo < m and vals[a + lo] == x:
                    right = lo + 1
                U_l[s + q, j] = tl[t + right]
                U_r[s + q, j] = tr[t + lo]


def _ecdf_kernel():
    """The numba ECOD/COPOD tails kernel (compiled once, cached on disk), or None without numba."""
    return compiled(_ECDF_KERNEL, _ecdf_tails)


def _hbos_feature_scores(X: np.ndarray, edges: np.ndarray, hist: np.ndarray, n_bins: int, alpha: float,
                         tol: float) -> np.ndarray:
    """Vectorised equivalent of PyOD's numba ``_calculate_outlier_scores`` (same values)."""
    out = np.empty_like(X, dtype=np.float64)
    for i in range(X.shape[1]):
        e, x = edges[:, i], X[:, i]
        idx = np.digitize(x, e, right=True)
        s = np.log2(hist[:, i] + alpha)
        smin = s.min()
        with np.errstate(invalid="ignore"):
            low = np.where(e[0] - x <= (e[1] - e[0]) * tol, s[0], smin)
            high = np.where(x - e[-1] <= (e[-1] - e[-2]) * tol, s[n_bins - 1], smin)
        mid = s[np.clip(idx - 1, 0, n_bins - 1)]
        out[:, i] = np.where(idx == 0, low, np.where(idx == n_bins + 1, high, mid))
    return out


_HBOS_KERNEL = []


def _hbos_scores(X, edges, S, smin, n_bins, tol, out):  # pragma: no cover - compiled
    # the numpy path's arithmetic per (row, feature): digitize(right=True) = searchsorted
    # "left" over the bin edges (NaN last), the same tolerance tests outside the edges
    n, d = X.shape
    for i in range(n):
        for j in range(d):
            x = X[i, j]
            if x != x:
                idx = n_bins + 1
            else:
                lo = 0
                hi = n_bins + 1
                while lo < hi:
                    mid = (lo + hi) >> 1
                    if edges[mid, j] < x:
                        lo = mid + 1
                    else:
                        hi = mid
                idx = lo
            if idx == 0:
                v = S[0, j] if edges[0, j] - x <= (edges[1, j] - edges[0, j]) * tol else smin[j]
            elif idx == n_bins + 1:
                v = S[n_bins - 1, j] if x - edges[n_bins, j] <= (edges[n_bins, j] - edges[n_bins - 1, j]) * tol \
                    else smin[j]
            else:
                v = S[idx - 1, j]
            out[i, j] = v


def _hbos_kernel():
    """numba version of ``_hbos_feature_scores`` (compiled once, cached on disk), or None without numba."""
    return compiled(_HBOS_KERNEL, _hbos_scores)


class FastHBOS(HBOS):
    """PyOD's HBOS (fixed number of bins) scored by this module's kernel instead of PyOD's.

    Same histograms and the same scores as ``pyod.models.hbos.HBOS``; the kernel is cached on disk, so no
    numba compilation in every new process (the CLI, each scorer start); numpy without numba."""

    def fit(self, X, y=None):
        if isinstance(self.n_bins, str):
            return super().fit(X, y)
        X = _as_matrix(X)
        self._set_n_classes(y)
        n_bins = int(self.n_bins)
        self.hist_ = np.zeros([n_bins, X.shape[1]])
        self.bin_edges_ = np.zeros([n_bins + 1, X.shape[1]])
        for i in range(X.shape[1]):
            self.hist_[:, i], self.bin_edges_[:, i] = np.histogram(X[:, i], bins=n_bins, density=True)
        self.n_features_in_ = X.shape[1]
        self.decision_scores_ = -_hbos_feature_scores(X, self.bin_edges_, self.hist_, n_bins, self.alpha,
                                                      self.tol).sum(axis=1)
        self._process_decision_scores()
        return self

    def decision_function(self, X):
        if isinstance(self.n_bins, str):
            return super().decision_function(X)
        if not hasattr(self, "hist_"):
            raise NotFittedError("FastHBOS is not fitted; call fit(X) first")
        X = _as_matrix(X)
        kernel = _hbos_kernel()
        n_bins = int(self.n_bins)
        if kernel is None or X.shape[1] != self.hist_.shape[1] or n_bins < 1:
            return -_hbos_feature_scores(X, self.bin_edges_, self.hist_, n_bins, self.alpha, self.tol).sum(axis=1)
        S, smin = self._log_hist()
        out = np.empty((X.shape[0], X.shape[1]), dtype=np.float64)
        kernel(np.ascontiguousarray(X), np.ascontiguousarray(self.bin_edges_, dtype=np.float64), S, smin, n_bins,
               float(self.tol), out)
        return -out.sum(axis=1)

    def _log_hist(self) -> tuple[np.ndarray, np.ndarray]:
        """log2(hist + alpha) per bin and feature and its per-feature minimum, as the numpy path computes
        them (column by column); derived from the fitted histograms on first use, never pickled."""
        cache = self.__dict__.get("_log_hist_cache")
        if cache is not None and cache[0] is self.hist_:
            return cache[1]
        S = np.empty(self.hist_.shape, dtype=np.float64)
        for i in range(self.hist_.shape[1]):
            S[:, i] = np.log2(self.hist_[:, i] + self.alpha)
        arrays = (S, S.min(axis=0) if S.size else np.zeros(S.shape[1]))
        self.__dict__["_log_hist_cache"] = (self.hist_, arrays)
        return arrays

    def __getstate__(self):
        state = super().__getstate__()
        if "_log_hist_cache" in state:
            state = dict(state)
            del state["_log_hist_cache"]
        return state


# sklearn internals FastIForest reads: tested with the scikit-learn versions pyproject.toml allows
_SKLEARN_PRIVATE = ("_max_features", "_max_samples", "_decision_path_lengths", "_average_path_length_per_tree")


def _sklearn_average_path_length(forest):
    """sklearn's private ``_average_path_length``, after checking the fitted forest has the private attributes
    ``_iforest_arrays`` reads; ModelError naming what is missing and the installed version otherwise."""
    import sklearn

    missing = [a for a in _SKLEARN_PRIVATE if not hasattr(forest, a)]
    try:
        from sklearn.ensemble._iforest import _average_path_length
    except ImportError:
        missing.append("sklearn.ensemble._iforest._average_path_length")
    if missing:
        raise ModelError(f"FastIForest: scikit-learn {sklearn.__version__} has no {', '.join(missing)} (private "
                         "IsolationForest internals it reads); install a scikit-learn within the range "
                         "fraud-graph's pyproject.toml pins")
    return _average_path_length


def _iforest_arrays(forest) -> dict:
    """Flatten a fitted sklearn ``IsolationForest`` into numpy arrays for vectorised scoring.

    All trees' nodes are concatenated (global node ids). A leaf has ``left == right == itself``,
    feature 0 and threshold +inf, so that descending from a leaf stays there. ``leaf_value`` is
    sklearn's per-node path length ``depth + c(n_node_samples) - 1`` (same arithmetic)."""
    _average_path_length = _sklearn_average_path_length(forest)
    feats, thrs, lefts, rights, vals, roots = [], [], [], [], [], []
    offset, depth = 0, 0
    sub = forest._max_features != forest.n_features_in_
    for t, (est, cols) in enumerate(zip(forest.estimators_, forest.estimators_features_)):
        tr = est.tree_
        leaf = tr.children_left < 0
        f = tr.feature.astype(np.int64).copy()
        if sub:  # tree feature k reads column cols[k] of X
            f[~leaf] = np.asarray(cols)[f[~leaf]]
        f[leaf] = 0
        th = tr.threshold.astype(np.float64).copy()
        th[leaf] = np.inf
        ids = np.arange(tr.node_count, dtype=np.int64) + offset
        le = np.where(leaf, ids, tr.children_left + offset)
        ri = np.where(leaf, ids, tr.children_right + offset)
        v = forest._decision_path_lengths[t] + forest._average_path_length_per_tree[t] - 1.0
        feats.append(f), thrs.append(th), lefts.append(le), rights.append(ri), vals.append(v)
        roots.append(offset)
        offset += tr.node_count
        depth = max(depth, int(tr.max_depth))
    return {"feature": np.concatenate(feats), "threshold": np.concatenate(thrs),
            "left": np.concatenate(lefts), "right": np.concatenate(rights),
            "leaf_value": np.concatenate(vals).astype(np.float64), "roots": np.asarray(roots, dtype=np.int64),
            "max_depth": depth,
            "denominator": float(len(forest.estimators_) * _average_path_length([forest._max_samples])[0])}


_KERNEL = []


def _iforest_descend(X, feat, thr, left, right, val, roots, depths):  # pragma: no cover - compiled
    # tree outer, rows inner: one tree stays in L1 while all rows descend it; each row's
    # sum still runs over the trees in order (sklearn's rounding)
    for t in range(roots.shape[0]):
        r = roots[t]
        for i in range(X.shape[0]):
            k = r
            while left[k] != k:
                k = left[k] if X[i, feat[k]] <= thr[k] else right[k]
            depths[i] += val[k]


def _iforest_kernel():
    """The numba tree-descent kernel (compiled once, cached on disk), or None without numba."""
    return compiled(_KERNEL, _iforest_descend)


def _iforest_score_samples(arrays: dict, X: np.ndarray, chunk: int = 8192) -> np.ndarray:
    """sklearn's ``IsolationForest.score_samples`` (bit for bit) from the flat arrays, all trees at once.

    X is compared in float32 like sklearn's trees; per-tree path lengths are accumulated tree by tree
    in sklearn's order (a sequential cumsum), so the sums round identically."""
    X = np.ascontiguousarray(X, dtype=np.float32)
    n, d = X.shape
    feat, thr, left, right = arrays["feature"], arrays["threshold"], arrays["left"], arrays["right"]
    roots, val = arrays["roots"], arrays["leaf_value"]
    kernel = _iforest_kernel()
    if kernel is not None and len(roots):
        depths = np.zeros(n, dtype=np.float64)
        # float32 values widened to float64 compare exactly as sklearn's float32-vs-double test
        kernel(X.astype(np.float64), feat.astype(np.int32), thr, left.astype(np.int32), right.astype(np.int32), val,
               roots, depths)
        den = arrays["denominator"]
        return 2 ** (-np.divide(depths, den, out=np.ones_like(depths), where=den != 0))
    out = np.empty(n, dtype=np.float64)
    for s in range(0, n, chunk):
        xb = X[s:s + chunk]
        m = len(xb)
        flat = xb.ravel()
        base = (np.arange(m, dtype=np.int64) * d)[:, None]
        node = np.broadcast_to(roots, (m, len(roots))).copy()
        for _ in range(arrays["max_depth"]):
            go_left = flat[base + feat[node]] <= thr[node]
            node = np.where(go_left, left[node], right[node])
        depths = np.cumsum(val[node], axis=1)[:, -1] if len(roots) else np.zeros(m)
        den = arrays["denominator"]
        out[s:s + chunk] = 2 ** (-np.divide(depths, den, out=np.ones_like(depths), where=den != 0))
    return out


class FastIForest(IForest):
    """PyOD's IForest (sklearn's forest, fitted as usual) scored from flattened tree arrays.

    At fit the fitted trees are flattened into arrays (``_iforest_arrays``); ``decision_function``
    descends every tree for every row in one compiled loop (numba; a numpy fallback descends all
    rows x trees level by level) instead of sklearn's tree-by-tree joblib loop. Scores equal PyOD's ``IForest`` (same fitted
    forest, same float32 comparisons, same summation order). The training scores and sklearn's
    ``offset_`` are computed with the same fast path."""

    def fit(self, X, y=None):
        from sklearn.ensemble import IsolationForest
        from sklearn.utils import check_array

        X = check_array(X)
        self._set_n_classes(y)
        self.detector_ = IsolationForest(n_estimators=self.n_estimators, max_samples=self.max_samples,
                                         contamination="auto", max_features=self.max_features,
                                         bootstrap=self.bootstrap, n_jobs=self.n_jobs,
                                         random_state=self.random_state, verbose=self.verbose)
        self.detector_.fit(X=X, y=None, sample_weight=None)
        self.arrays_ = _iforest_arrays(self.detector_)
        train = _iforest_score_samples(self.arrays_, X)
        # what sklearn does with a numeric contamination (offset_ from the training scores)
        self.detector_.contamination = self.contamination
        self.detector_.offset_ = np.percentile(-train, 100.0 * self.contamination)
        self.decision_scores_ = -(-train - self.detector_.offset_)
        self._process_decision_scores()
        return self

    def decision_function(self, X):
        if not hasattr(self, "arrays_"):
            raise NotFittedError("FastIForest is not fitted; call fit(X) first")
        X = _as_matrix(X)
        if X.shape[1] != self.detector_.n_features_in_:
            raise ConfigError(f"FastIForest: X has {X.shape[1]} features, fitted on {self.detector_.n_features_in_}")
        return -(-_iforest_score_samples(self.arrays_, X) - self.detector_.offset_)


class AutoEncoderDetector(BaseDetector):
    """Dense autoencoder; score = mean squared reconstruction error of standardised inputs.

    Inputs are standardised with training mean/std and clipped to +-``clip`` standard deviations
    (so that one extreme value cannot dominate training). Training runs in torch
    (``models.autoencoder.train_autoencoder``); scoring is a numpy forward pass.
    """

    def __init__(self, contamination: float = 0.1, hidden=(32, 8), epochs: int = 5, batch_size: int = 256,
                 lr: float = 1e-3, max_rows: int | None = 200_000, clip: float = 10.0, seed: int = 0):
        super().__init__(contamination=contamination)
        self.hidden = hidden
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.max_rows = max_rows
        self.clip = clip
        self.seed = seed

    def _standardise(self, X: np.ndarray) -> np.ndarray:
        Z = (X - self.mean_) / self.scale_
        return np.clip(Z, -self.clip, self.clip, out=Z).astype(np.float32)

    def fit(self, X, y=None):
        from models.autoencoder import reconstruction_error, train_autoencoder

        X = _as_matrix(X)
        if not np.isfinite(X).all():
            raise ConfigError("AutoEncoderDetector.fit: X has NaN or infinite values; impute them first")
        self._set_n_classes(y)
        self.n_features_in_ = X.shape[1]
        self.mean_ = X.mean(axis=0)
        sd = X.std(axis=0)
        self.scale_ = np.where(sd > 0, sd, 1.0)
        Z = self._standardise(X)
        self.weights_ = train_autoencoder(Z, hidden=tuple(self.hidden), epochs=self.epochs, batch_size=self.batch_size,
                                          lr=self.lr, seed=self.seed, max_rows=self.max_rows)
        self.decision_scores_ = reconstruction_error(self.weights_, Z)
        self._process_decision_scores()
        return self

    def decision_function(self, X):
        from models.autoencoder import reconstruction_error

        if not hasattr(self, "weights_"):
            raise NotFittedError("AutoEncoderDetector is not fitted; call fit(X) first")
        X = _as_matrix(X)
        if X.shape[1] != self.n_features_in_:
            raise ConfigError(f"AutoEncoderDetector: X has {X.shape[1]} features, fitted on {self.n_features_in_}")
        return reconstruction_error(self.weights_, self._standardise(X))

    def feature_outlyingness(self, X) -> np.ndarray:
        """Squared reconstruction error per feature (standardised units)."""
        from models.autoencoder import per_feature_error

        return per_feature_error(self.weights_, self._standardise(_as_matrix(X)))


#: the unsupervised detector names the Ensemble accepts
UNSUPERVISED = ("iforest", "ecod", "copod", "hbos", "autoencoder")


def make_detector(name: str, seed: int = 0, contamination: float = 0.1, **params) -> BaseDetector:
    """A fresh (unfitted) detector by name: iforest, ecod, copod, hbos, autoencoder.

    ``ecod`` / ``copod`` give the lookup versions (FastECOD / FastCOPOD); PyOD's originals are never
    used in a scoring path.
    """
    key = name.lower()
    if key == "iforest":
        kw = {"n_estimators": 100, "max_samples": 256}
        kw.update(params)
        return FastIForest(contamination=contamination, random_state=seed, **kw)
    if key == "hbos":
        kw = {"n_bins": 20}
        kw.update(params)
        return FastHBOS(contamination=contamination, **kw)
    if key == "ecod":
        return FastECOD(contamination=contamination, seed=seed, **params)
    if key == "copod":
        return FastCOPOD(contamination=contamination, seed=seed, **params)
    if key in ("autoencoder", "ae"):
        return AutoEncoderDetector(contamination=contamination, seed=seed, **params)
    raise ConfigError(f"unknown unsupervised detector {name!r}; choose from {', '.join(UNSUPERVISED)}")
