"""The threshold stage: the alert threshold that spends the daily alert budget on recent traffic.

Taken over the scores of ``[label_cutoff, train_until)``, never the supervised head's own training rows
(whose scores are optimistic).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from fraud import schema
from fraud.training.data import DAY


def threshold_for_budget(scores, timestamps, alerts_per_day: int) -> float:
    from fraud.detectors.threshold import threshold_for_budget as tfb

    return float(tfb(np.asarray(scores, dtype=float), pd.Series(timestamps).reset_index(drop=True), alerts_per_day))


def recent_rows(df: pd.DataFrame, windows: dict, in_train: np.ndarray) -> np.ndarray:
    """Training rows at or after the label cutoff (all training rows when there are none)."""
    recent = (df[schema.TIMESTAMP] >= windows["label_cutoff"]).to_numpy() & in_train
    return recent if recent.any() else in_train


def budget_threshold(scores, df: pd.DataFrame, recent: np.ndarray, alerts_per_day: int) -> tuple[float, float]:
    """(threshold, alerts per day it gives on the recent rows) from the recent rows' ``scores``."""
    ts = df[schema.TIMESTAMP][recent]
    thr = threshold_for_budget(scores, ts, alerts_per_day)
    if not recent.any():
        return thr, 0.0
    days = max(1.0, (ts.iloc[-1] - ts.iloc[0]) / DAY)
    return thr, float((np.asarray(scores) >= thr).sum() / days)
