"""Reason codes: short strings naming the top contributing features and detectors of a score.

Formats (stable; the review UI and the alert store show them as they are):

* ``feature:NAME high (VALUE vs p99 Q99)`` / ``feature:NAME low (VALUE vs p1 Q1)`` when the value is
  beyond the training 99th / 1st percentile, else ``feature:NAME high|low (VALUE vs p50 MEDIAN)``
* ``detector:NAME SCORE`` (SCORE = the detector's normalised score in [0, 1], 2 decimals)
"""
from __future__ import annotations

import math

import numpy as np


def _fmt(v: float) -> str:
    v = float(v)
    if not math.isfinite(v):
        return str(v)
    a = abs(v)
    if a != 0 and (a >= 1e5 or a < 1e-3):
        return f"{v:.3g}"
    if a >= 100:
        return f"{v:.0f}"
    if a >= 10:
        return f"{v:.1f}"
    return f"{v:.2f}"


class FeatureProfile:
    """Training quantiles per feature (p1, p50, p99), used to word feature reasons."""

    def fit(self, X: np.ndarray, names) -> "FeatureProfile":
        self.names_ = list(names)
        q = np.quantile(X, [0.01, 0.5, 0.99], axis=0)
        self.p1_, self.p50_, self.p99_ = q[0], q[1], q[2]
        return self

    def feature_reason(self, j: int, value: float) -> str:
        return self._reason(int(j), float(value), *self._lists())

    def _lists(self):
        """The names and quantiles as Python lists (cached): formatting then never touches numpy scalars."""
        c = self.__dict__.get("_cache")
        if c is None or len(c[0]) != len(self.names_):
            c = self._cache = (list(self.names_), np.asarray(self.p1_, dtype=np.float64).tolist(),
                               np.asarray(self.p50_, dtype=np.float64).tolist(),
                               np.asarray(self.p99_, dtype=np.float64).tolist())
        return c

    @staticmethod
    def _reason(j: int, value: float, names, p1, p50, p99) -> str:
        name = names[j]
        if value > p99[j]:
            return f"feature:{name} high ({_fmt(value)} vs p99 {_fmt(p99[j])})"
        if value < p1[j]:
            return f"feature:{name} low ({_fmt(value)} vs p1 {_fmt(p1[j])})"
        word = "high" if value >= p50[j] else "low"
        return f"feature:{name} {word} ({_fmt(value)} vs p50 {_fmt(p50[j])})"

    def __getstate__(self):
        d = dict(self.__dict__)
        d.pop("_cache", None)
        return d


def top_k(M: np.ndarray, k: int) -> np.ndarray:
    """Column indices of the k largest entries per row, largest first (vectorised)."""
    k = max(0, min(int(k), M.shape[1]))
    if k == 0:
        return np.empty((M.shape[0], 0), dtype=np.int64)
    part = np.argpartition(-M, k - 1, axis=1)[:, :k]
    vals = np.take_along_axis(M, part, axis=1)
    order = np.argsort(-vals, axis=1, kind="stable")
    return np.take_along_axis(part, order, axis=1)


def build_reasons(profile: FeatureProfile, X: np.ndarray, feat_contrib: np.ndarray, det_names: list[str],
                  det_scores: np.ndarray, top: int = 3, top_detectors: int = 2) -> list[list[str]]:
    """One list of reason strings per row: ``top`` features by ``feat_contrib`` (only positive
    contributions), then the ``top_detectors`` detectors with the highest normalised scores."""
    fi = top_k(feat_contrib, top)
    fpos = (np.take_along_axis(feat_contrib, fi, axis=1) > 0).tolist()
    fval = np.take_along_axis(np.asarray(X, dtype=np.float64), fi, axis=1).tolist()
    di = top_k(det_scores, top_detectors) if len(det_names) else np.empty((len(X), 0), dtype=np.int64)
    dval = np.take_along_axis(np.asarray(det_scores, dtype=np.float64), di, axis=1).tolist()
    fi_l, di_l = fi.tolist(), di.tolist()
    lists = profile._lists()
    reason = profile._reason
    out: list[list[str]] = []
    for r in range(len(X)):
        js, vs, ok = fi_l[r], fval[r], fpos[r]
        reasons = [reason(j, v, *lists) for j, v, o in zip(js, vs, ok) if o]
        if not reasons and js:  # nothing stands out: still name the most unusual feature
            reasons.append(reason(js[0], vs[0], *lists))
        reasons.extend(f"detector:{det_names[d]} {v:.2f}" for d, v in zip(di_l[r], dval[r]))
        out.append(reasons)
    return out
