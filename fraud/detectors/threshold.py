"""Alert thresholds: from an alert budget (alerts per day) or a target precision.

A row is an alert when ``score >= threshold``.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from fraud.errors import ConfigError, ModelError


def _scores(scores) -> np.ndarray:
    s = np.asarray(scores, dtype=np.float64).ravel()
    if len(s) == 0:
        raise ConfigError("threshold: no scores given")
    return s


def threshold_for_budget(scores, timestamps, alerts_per_day: float) -> float:
    """The threshold that raises about ``alerts_per_day`` alerts per day on (scores, timestamps).

    Days = number of distinct UTC calendar days present in ``timestamps``; the number of alerts
    k = round(alerts_per_day * days) (at most the number of rows); the threshold is the k-th highest
    score, so ``score >= threshold`` selects k rows (more when scores tie at the threshold).
    k = 0 gives a threshold just above the highest score (no alert). NaN scores never alert.
    """
    s = _scores(scores)
    if not np.isfinite(alerts_per_day) or alerts_per_day < 0:
        raise ConfigError(f"alerts_per_day must be a finite number >= 0, got {alerts_per_day!r}")
    ts = pd.to_datetime(pd.Series(np.asarray(timestamps)), utc=True)
    if len(ts) != len(s):
        raise ConfigError(f"threshold_for_budget: {len(s)} scores but {len(ts)} timestamps")
    days = int(ts.dt.floor("D").nunique())
    finite = np.sort(s[np.isfinite(s)])[::-1]
    if len(finite) == 0:
        raise ConfigError("threshold_for_budget: every score is NaN")
    k = min(int(round(alerts_per_day * days)), len(finite))
    if k == 0:
        return float(np.nextafter(finite[0], np.inf))
    return float(finite[k - 1])


def threshold_for_precision(scores, y, target: float) -> float:
    """The lowest threshold whose alerts (``score >= threshold``) have precision >= ``target``.

    Lowest = most alerts (highest recall) among thresholds meeting the target. Rows whose label is
    unknown (NaN or -1) are ignored. Raises ModelError when no threshold reaches the target,
    naming the best precision reachable.
    """
    s = _scores(scores)
    if not (0.0 < target <= 1.0):
        raise ConfigError(f"target precision must be in (0, 1], got {target!r}")
    yy = np.asarray(y, dtype=np.float64).ravel()
    if len(yy) != len(s):
        raise ConfigError(f"threshold_for_precision: {len(s)} scores but {len(yy)} labels")
    known = np.isfinite(yy) & np.isin(yy, (0.0, 1.0)) & np.isfinite(s)
    s, yy = s[known], yy[known]
    if len(s) == 0 or yy.sum() == 0:
        raise ModelError("threshold_for_precision: no labelled fraud among the given rows")
    order = np.argsort(-s, kind="stable")
    s_sorted, y_sorted = s[order], yy[order]
    tp = np.cumsum(y_sorted)
    n = np.arange(1, len(s) + 1)
    # only cut after the last row of each group of tied scores
    last_of_group = np.r_[s_sorted[1:] != s_sorted[:-1], True]
    prec = tp / n
    ok = last_of_group & (prec >= target - 1e-12)
    if not ok.any():
        best = float(prec[last_of_group].max())
        raise ModelError(f"threshold_for_precision: no threshold reaches precision {target}; the best is {best:.4f}")
    i = np.flatnonzero(ok)[-1]
    return float(s_sorted[i])
