"""Activity alarm: a label-free override for adaptive fraud the supervised head never saw (off by default).

Beside the collusion alarm (``fraud.detectors.collusion``), on the "activity" columns of
``fraud.features.behaviour``: a card's day volume against its own rate (``BH_C_TX_EXCESS_1D``), its run of
unusually small amounts (``BH_C_NB_SMALL_7D``) and a terminal's day volume against its own rate
(``BH_T_TX_EXCESS_1D``). A row whose column lies above that column's ``quantile`` over the training rows
outranks every row without an alarm: other scores are scaled into [0, floor], alarms lie in (floor, 1] and
grow with the excess. ``TrainConfig(activity_alarm=True)`` puts it under the collusion alarm (collusion
alarms still come first). It is off by default: no gain at the evasion bench's budget on the development
worlds, and genuine bursts above the quantile cost AP on every world (figures: docs/benchmarks.md,
"Evasion", "Activity alarm").

:func:`terminal_alarm` (``TrainConfig(terminal_alarm=True)``, off by default) is the same override on the terminal's
distinct cards of the last day (``BH_T_CARDS_SURPRISE_1D``, for rotated compromised terminals), placed with
``below``: its rows are lifted to the model's training score quantile, under its confident rows, not above them
(docs/benchmarks.md, "Rotated terminals").
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from fraud.detectors.override import Override, taken
from fraud.errors import ConfigError, NotFittedError

COLUMNS = ("BH_C_TX_EXCESS_1D", "BH_C_NB_SMALL_7D", "BH_T_TX_EXCESS_1D")
_TINY = 1e-6  # with ``below``: alarms order among themselves by excess, above the level by less than this share


class ActivityAlarm(Override):
    """max(floor * base score, floor + (1 - floor) * (1 - 1 / (1 + e))), e = the largest excess of a column over
    its training ``quantile`` (no alarm when no column exceeds it). With ``below`` (a quantile in (0, 1)): alarms
    are not put first but lifted to the base's training score at that quantile (``level_``), just under the
    model's confident rows: max(base score, level_ + tiny * (1 - 1 / (1 + e))); other rows keep their score."""

    rows_aware = True

    def __init__(self, base=None, columns: tuple = COLUMNS, quantile: float = 0.999, floor: float = 0.999,
                 below: float | None = None):
        self.base = base
        self.columns = columns
        self.quantile = quantile
        self.floor = floor
        self.below = below

    def fit(self, X: pd.DataFrame, y=None) -> "ActivityAlarm":
        names = [str(c) for c in X.columns]
        missing = [c for c in self.columns if c not in names]
        if missing:
            raise ConfigError(f"ActivityAlarm.fit: feature column(s) {missing} are missing (the behaviour "
                              f"featurizer's activity group)")
        if not 0 < self.quantile <= 1 or not 0 < self.floor < 1:
            raise ConfigError(f"ActivityAlarm: quantile={self.quantile!r} must be in (0, 1] and floor="
                              f"{self.floor!r} in (0, 1)")
        if self.below is not None and not 0 < self.below < 1:
            raise ConfigError(f"ActivityAlarm: below={self.below!r} must be None or a quantile in (0, 1)")
        self.idx_ = np.array([names.index(c) for c in self.columns])
        z = self._matrix(X)
        self.thresholds_ = np.quantile(z, self.quantile, axis=0) if len(z) else np.zeros(len(self.columns))
        if self.below is not None:
            s = np.asarray(self.base.decision_function(X), dtype=np.float64)
            self.level_ = float(np.quantile(s, self.below)) if len(s) else 0.0
        return self

    def decision_function(self, X) -> np.ndarray:
        if self.below is None:
            return super().decision_function(X)
        s = np.asarray(self.base.decision_function(X), dtype=np.float64)
        e = self.excess(X)
        lift = self.level_ + _TINY * (1 - self.level_) * (1 - 1 / (1 + np.maximum(e, 0)))
        return np.where(e > 0, np.maximum(s, lift), s) if len(s) else s

    def _matrix(self, X) -> np.ndarray:
        if isinstance(X, pd.DataFrame):
            return np.nan_to_num(X[list(self.columns)].to_numpy(dtype=np.float64))
        return np.nan_to_num(np.asarray(X, dtype=np.float64)[:, self.idx_])

    def excess(self, X) -> np.ndarray:
        """Per row: the largest excess of a column over its threshold (<= 0: no alarm)."""
        if not hasattr(self, "thresholds_"):
            raise NotFittedError("ActivityAlarm is not fitted; call fit(X) first")
        z = self._matrix(X)
        return (z - self.thresholds_).max(axis=1) if len(z) else np.zeros(0)

    def explain(self, X, top: int = 3, **kw):
        out = self.base.explain(X, top=top, **kw)
        X = taken(X, kw.get("rows"))  # rows: explain these rows of X only (a base with explains_rows)
        z, e = self._matrix(X), self.excess(X)
        words = []
        for zi, ei, r in zip(z, e, out):
            if ei <= 0:
                words.append(r)
                continue
            j = int(np.argmax(zi - self.thresholds_))
            words.append([f"activity: {self.columns[j]} = {zi[j]:g} above its training {self.quantile:g} "
                          f"quantile {self.thresholds_[j]:g}"] + list(r))
        return words


#: the terminal alarm's column: a terminal's distinct cards of the last day against its own rate
TERMINAL_COLUMNS = ("BH_T_CARDS_SURPRISE_1D",)


def terminal_alarm(base=None) -> ActivityAlarm:
    """The alarm ``TrainConfig(terminal_alarm=True)`` lays over the model: ``BH_T_CARDS_SURPRISE_1D`` above its
    training 0.999 quantile lifts a row to the model's training 0.97 score quantile (parameters fixed on the
    development worlds 4000-4002: docs/benchmarks.md, "Rotated terminals")."""
    return ActivityAlarm(base, columns=TERMINAL_COLUMNS, quantile=0.999, below=0.97)
