"""Unsupervised detectors, all on the PyOD contract.

``fit(X, y=None) -> self``; ``decision_function(X)`` -> 1-D scores, higher = more suspicious;
``decision_scores_`` (training scores) and ``threshold_`` (the ``1 - contamination`` quantile of
them) after fit; ``__init__`` only stores parameters.

* ``IForest``: PyOD's own class (sklearn's forest; scoring is vectorised).
* ``FastHBOS``: PyOD's HBOS with its numba scoring kernel replaced by the same computation in numpy
  (identical scores; no numba compile of several seconds in every new process).
* ``FastECOD`` / ``FastCOPOD``: lookup versions of PyOD's ECOD / COPOD. PyOD recomputes the
  empirical CDFs over the whole training set on every ``decision_function`` call (it concatenates
  the training matrix with the query rows and re-sorts everything). Here the sorted training
  values of each feature are kept at fit, and a query is scored with ``np.searchsorted``.

  Semantics: each query row is scored *as if it alone were appended to the training set*, which is
  exactly what PyOD computes when called with one row at a time:
  ``F_left(x) = (#{train <= x} + 1) / (n + 1)`` and ``F_right(x) = (#{train >= x} + 1) / (n + 1)``
  (PyOD's ECDF gives tied values the largest rank, i.e. counts ``<=``). The score of a row
  therefore never depends on the other rows of its batch (PyOD's batch scores do, slightly), so
  batch and micro-batch scoring agree. The only other difference: the skewness sign per feature
  is taken from the training data (PyOD takes it from training + query rows; the sign flips only
  for a feature whose skewness is ~0). Training scores (``decision_scores_``) equal PyOD's.
* ``AutoEncoderDetector``: a small dense autoencoder (``models.autoencoder``), trained with torch,
  scored by a numpy forward pass; score = mean squared reconstruction error of standardised inputs.
"""
from __future__ import annotations

import numpy as np
from pyod.models.base import BaseDetector
from pyod.models.hbos import HBOS
from pyod.models.iforest import IForest
from scipy.stats import skew as _skew

from fraud.errors import ConfigError, NotFittedError


def _as_matrix(X) -> np.ndarray:
    a = np.asarray(X.to_numpy(dtype=np.float64) if hasattr(X, "to_numpy") else X, dtype=np.float64)
    if a.ndim == 1:
        a = a.reshape(-1, 1)
    return a


class _ECDFBase(BaseDetector):
    """Shared fit/lookup machinery for FastECOD and FastCOPOD."""

    def __init__(self, contamination: float = 0.1, max_rows: int | None = None, seed: int = 0):
        super().__init__(contamination=contamination)
        self.max_rows = max_rows
        self.seed = seed

    # -- tail probabilities -------------------------------------------------------------------
    def _counts(self, j: int, col: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(#{train <= x}, #{train >= x}) for each x of ``col``, training feature ``j``."""
        u, cum = self.values_[j], self.cumcounts_[j]
        if len(col) > 256:  # sorted queries search ~2x faster (cache locality); unsort after
            order = np.argsort(col, kind="stable")
            q = col[order]
            le, ge = np.empty(len(col), dtype=np.int64), np.empty(len(col), dtype=np.int64)
            le[order] = cum[np.searchsorted(u, q, side="right")]
            ge[order] = self.n_train_ - cum[np.searchsorted(u, q, side="left")]
            return le, ge
        le = cum[np.searchsorted(u, col, side="right")]
        ge = self.n_train_ - cum[np.searchsorted(u, col, side="left")]
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

    def _tails(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """-log ECDF of query rows, each as if appended alone to the training set."""
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
        return self._combine(U_l, U_r)

    def fit(self, X, y=None):
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
        self.decision_scores_ = self._combine(U_l, U_r).sum(axis=1)
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
        return self._combine(U_l, U_r).sum(axis=1)

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


class FastHBOS(HBOS):
    """PyOD's HBOS (fixed number of bins) scored with numpy instead of a numba kernel.

    Same histograms and the same scores as ``pyod.models.hbos.HBOS``; avoids the numba
    compilation (several seconds in every new process: the CLI, each scorer start)."""

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
        return -_hbos_feature_scores(X, self.bin_edges_, self.hist_, int(self.n_bins), self.alpha,
                                     self.tol).sum(axis=1)


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
        return IForest(contamination=contamination, random_state=seed, **kw)
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
