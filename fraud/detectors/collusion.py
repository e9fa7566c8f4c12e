"""Collusion alarm: a label-free override on top of any detector (the supervised head never saw a ring).

When more established cards made a first visit to a merchant in the last week (``CL_T_NEW_AGED`` of
``fraud.features.collusion``) than ever in the training window, the row outranks every other: other
scores are scaled into [0, floor], alarms lie in (floor, 1].
Why an override and not one more column: docs/detection.md.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from fraud.detectors.override import Override, taken
from fraud.errors import ConfigError, NotFittedError

COLUMN = "CL_T_NEW_AGED"


class CollusionAlarm(Override):
    """floor + (1 - floor) * (1 - 1 / (1 + z - z_max)) when z > z_max (the training max), else floor * base score."""

    rows_aware = True

    def __init__(self, base=None, column: str = COLUMN, floor: float = 0.999):
        self.base = base
        self.column = column
        self.floor = floor

    def fit(self, X: pd.DataFrame, y=None) -> "CollusionAlarm":
        names = [str(c) for c in X.columns]
        if self.column not in names:
            raise ConfigError(f"CollusionAlarm.fit: feature column {self.column!r} is missing (collusion featurizer)")
        self.idx_ = names.index(self.column)
        z = np.nan_to_num(X[self.column].to_numpy(dtype=np.float64))
        self.z_max_ = float(z.max()) if len(z) else 0.0
        return self

    def _z(self, X) -> np.ndarray:
        if not hasattr(self, "z_max_"):
            raise NotFittedError("CollusionAlarm is not fitted; call fit(X) first")
        if isinstance(X, pd.DataFrame):
            return np.nan_to_num(X[self.column].to_numpy(dtype=np.float64))
        return np.nan_to_num(np.asarray(X, dtype=np.float64)[:, self.idx_])

    def excess(self, X) -> np.ndarray:
        return self._z(X) - self.z_max_

    def explain(self, X, top: int = 3, **kw):
        out = self.base.explain(X, top=top, **kw)
        z = self._z(taken(X, kw.get("rows")))  # rows: explain these rows of X only (a base with explains_rows)
        return [([f"collusion: {int(zi)} established cards new to this merchant in a week (training max "
                  f"{self.z_max_:g})"] + list(r)) if zi > self.z_max_ else r for zi, r in zip(z, out)]
