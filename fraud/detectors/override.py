"""A label-free alarm laid over a fitted detector: rows whose alarm column exceeds what training saw outrank all.

The supervised head only ranks what its labels looked like; a pattern that is new (a ring, an adaptive tactic)
needs a way to the top without labels. Subclasses say how far a row's columns exceed their training reference
(:meth:`Override.excess`, > 0 = alarm); here the other scores are scaled into [0, floor] and alarms into
(floor, 1], growing with the excess, so alarmed rows come first and keep the base ranking among the rest.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator


class Override(BaseEstimator):
    """max(floor * base score, floor + (1 - floor) * (1 - 1 / (1 + e))) where e = :meth:`excess` > 0."""

    @property
    def feature_names_(self):
        return self.base.feature_names_

    #: a subclass whose ``explain`` reads its own columns of ``taken(X, kw.get("rows"))`` sets this
    rows_aware = False

    @property
    def explains_rows(self) -> bool:
        """``explain(X, rows=...)`` is understood: this class reads ``rows`` and so does the base detector."""
        return type(self).rows_aware and bool(getattr(self.base, "explains_rows", False))

    def excess(self, X) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def alarm(self, X) -> np.ndarray:
        e = self.excess(X)
        return np.where(e > 0, self.floor + (1 - self.floor) * (1 - 1 / (1 + np.maximum(e, 0))), 0.0)

    def decision_function(self, X) -> np.ndarray:
        s = np.asarray(self.base.decision_function(X), dtype=np.float64)
        return np.maximum(self.floor * s, self.alarm(X)) if len(s) else s


def taken(X, rows):
    """The rows ``rows`` of ``X`` (a frame or a matrix); all of ``X`` when ``rows`` is None."""
    if rows is None:
        return X
    return X.iloc[rows] if isinstance(X, pd.DataFrame) else np.asarray(X)[rows]
