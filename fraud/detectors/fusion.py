"""Score fusion: rank normalisation against a training distribution, and combiners.

``RankNormalizer`` maps a raw detector score s to F(s) = fraction of training scores <= s, so that
every detector lands in [0, 1] on a common, monotone scale. To keep the fitted object small it keeps
at most ``max_points`` knots of the empirical CDF, chosen densely in the upper tail (where alerts
live: levels 1 - 10^-1 ... 1 - 1/n are all kept) and interpolates linearly between knots.

Combiners (all map [0, 1]^k -> [0, 1], monotone non-decreasing in each input):

* ``MeanCombiner``: the (optionally weighted) mean of the normalised scores.
* ``MaxCombiner``: the maximum.
* ``LogisticCombiner``: logistic regression on logit-transformed normalised scores, trained on
  labelled rows; the coefficients are constrained to be >= 0 (a non-negative combination) by
  dropping inputs that come out negative and refitting, so it stays monotone.
"""
from __future__ import annotations

import numpy as np

from fraud.errors import ModelError, NotFittedError


class RankNormalizer:
    """Empirical-CDF normalisation of one score against its training distribution."""

    def __init__(self, max_points: int = 4000):
        self.max_points = max_points

    def fit(self, scores) -> "RankNormalizer":
        s = np.asarray(scores, dtype=np.float64).ravel()
        s = s[np.isfinite(s)]
        if len(s) == 0:
            raise ModelError("RankNormalizer.fit: no finite training scores")
        u, c = np.unique(s, return_counts=True)
        F = np.cumsum(c) / len(s)  # fraction of training scores <= u
        if len(u) > self.max_points:
            n = len(s)
            half = self.max_points // 2
            levels = np.concatenate([
                np.linspace(0.0, 1.0, half),
                1.0 - np.geomspace(0.1, max(1.0 / n, 1e-9), self.max_points - half),
            ])
            idx = np.unique(np.clip(np.searchsorted(F, levels, side="left"), 0, len(u) - 1))
            idx = np.unique(np.concatenate([[0], idx, [len(u) - 1]]))
            u, F = u[idx], F[idx]
        self.values_ = u
        self.levels_ = F
        self.n_train_ = int(len(s))
        return self

    def transform(self, scores) -> np.ndarray:
        if not hasattr(self, "values_"):
            raise NotFittedError("RankNormalizer is not fitted")
        s = np.asarray(scores, dtype=np.float64).ravel()
        out = np.interp(s, self.values_, self.levels_, left=0.0, right=1.0)
        if len(self.values_) == 1:  # constant training score: <= it -> its level, above -> 1
            out = np.where(s < self.values_[0], 0.0, np.where(s > self.values_[0], 1.0, self.levels_[0]))
        out = np.where(np.isnan(s), 0.5, out)
        return np.clip(out, 0.0, 1.0)

    def fit_transform(self, scores) -> np.ndarray:
        return self.fit(scores).transform(scores)


class MeanCombiner:
    name = "mean"

    def __init__(self, weights=None):
        self.weights = weights

    def fit(self, R: np.ndarray, y=None) -> "MeanCombiner":
        k = R.shape[1]
        w = np.ones(k) if self.weights is None else np.asarray(self.weights, dtype=np.float64)
        if len(w) != k or (w < 0).any() or w.sum() <= 0:
            raise ModelError(f"MeanCombiner: weights {self.weights!r} must be {k} non-negative numbers, not all 0")
        self.weights_ = w / w.sum()
        return self

    def combine(self, R: np.ndarray) -> np.ndarray:
        return np.clip(R @ self.weights_, 0.0, 1.0)

    def contributions(self, R: np.ndarray) -> np.ndarray:
        return R * self.weights_


class MaxCombiner:
    name = "max"

    def fit(self, R, y=None) -> "MaxCombiner":
        self.k_ = R.shape[1]
        return self

    def combine(self, R: np.ndarray) -> np.ndarray:
        return R.max(axis=1)

    def contributions(self, R: np.ndarray) -> np.ndarray:
        return R


def _logit(R: np.ndarray, eps: float = 1e-4) -> np.ndarray:
    p = np.clip(R, eps, 1.0 - eps)
    return np.log(p / (1.0 - p))


class LogisticCombiner:
    """Non-negative logistic regression over logit(normalised scores); needs labels of both classes."""

    name = "logistic"

    def __init__(self, C: float = 1.0, seed: int = 0):
        self.C = C
        self.seed = seed

    def fit(self, R: np.ndarray, y) -> "LogisticCombiner":
        from sklearn.linear_model import LogisticRegression

        y = np.asarray(y).astype(int)
        if len(np.unique(y)) < 2:
            raise ModelError("LogisticCombiner needs labelled rows of both classes (0 and 1)")
        Z = _logit(R)
        active = np.ones(Z.shape[1], dtype=bool)
        for _ in range(Z.shape[1]):
            lr = LogisticRegression(C=self.C, max_iter=1000, class_weight="balanced", random_state=self.seed)
            lr.fit(Z[:, active], y)
            coef = lr.coef_.ravel()
            if (coef >= 0).all() or active.sum() == 1:
                break
            idx = np.flatnonzero(active)
            active[idx[coef < 0]] = False
        self.active_ = active
        self.coef_ = np.zeros(Z.shape[1])
        self.coef_[active] = np.maximum(lr.coef_.ravel(), 0.0)
        self.intercept_ = float(lr.intercept_[0])
        return self

    def combine(self, R: np.ndarray) -> np.ndarray:
        z = _logit(R) @ self.coef_ + self.intercept_
        return 1.0 / (1.0 + np.exp(-z))

    def contributions(self, R: np.ndarray) -> np.ndarray:
        return _logit(R) * self.coef_


def make_combiner(name: str, seed: int = 0, weights=None):
    key = name.lower()
    if key == "mean":
        return MeanCombiner(weights=weights)
    if key == "max":
        return MaxCombiner()
    if key == "logistic":
        return LogisticCombiner(seed=seed)
    raise ModelError(f"unknown combiner {name!r}; choose from mean, max, logistic")
