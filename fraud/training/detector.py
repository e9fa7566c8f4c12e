"""The detector stage: which labels the supervised head may learn, then the ensemble fitted on the training rows.

The head learns only labels of ``[train_from, label_cutoff)``, at most ``max_supervised_rows`` of them
(every fraud plus a seeded sample of genuine rows, to bound the fit time). No labelled fraud there ->
a warning and unsupervised detectors only. With the collusion featurizer, the ensemble goes under the
label-free collusion alarm.
"""
from __future__ import annotations

import inspect
import time
import warnings

import numpy as np
import pandas as pd

from fraud import schema
from fraud.errors import ConfigError, ModelError
from fraud.training.config import TrainConfig
from fraud.training.data import known_labels


def make_detector(cfg: TrainConfig, supervised: bool):
    try:
        from fraud.detectors import Ensemble
    except ImportError as e:
        raise ModelError(f"the detector ensemble (fraud.detectors.Ensemble) is not available: {e}") from e
    kw = dict(unsupervised=tuple(cfg.unsupervised), supervised=cfg.supervised if supervised else None, seed=cfg.seed)
    kw.update(cfg.ensemble_params)
    return Ensemble(**kw)


def subsample_genuine(y: np.ndarray, max_rows: int | None, seed: int) -> np.ndarray:
    """Keep every labelled fraud and a seeded sample of labelled genuine rows so that at most
    ``max_rows`` rows are labelled (the others become unknown, NaN): bounds the head's fit time."""
    known = np.flatnonzero(np.isfinite(y))
    if max_rows is None or len(known) <= max_rows:
        return y
    fraud = known[y[known] == 1]
    genuine = known[y[known] == 0]
    keep = max(max_rows - len(fraud), 0)
    rng = np.random.default_rng(seed)
    drop = rng.choice(genuine, size=len(genuine) - min(keep, len(genuine)), replace=False)
    out = y.copy()
    out[drop] = np.nan
    return out


def training_rows(df: pd.DataFrame, windows: dict) -> np.ndarray:
    """Mask of the training examples ``[train_from, train_until)``."""
    ts = df[schema.TIMESTAMP]
    in_train = ((ts >= windows["train_from"]) & (ts < windows["train_until"])).to_numpy()
    if not in_train.any():
        raise ConfigError(f"no transactions in the training window [{windows['train_from']}, {windows['train_until']})")
    return in_train


def head_labels(df: pd.DataFrame, cfg: TrainConfig, windows: dict, in_train: np.ndarray, unsupervised: bool,
                warn) -> np.ndarray | None:
    """Labels of the training rows the supervised head may learn (NaN = not used), or None: no head."""
    if unsupervised:
        return None
    if "label" not in df.columns:
        warn("the data has no 'label' column and no --labels were given: training unsupervised only")
        return None
    if not cfg.supervised:
        return None
    lab_ok = in_train & (df[schema.TIMESTAMP] < windows["label_cutoff"]).to_numpy()
    y = np.where(lab_ok, known_labels(df["label"]), np.nan)[in_train]
    if np.nansum(y) > 0:
        return subsample_genuine(y, cfg.max_supervised_rows, cfg.seed)
    warn(f"no labelled fraud among training transactions before {windows['label_cutoff']} "
         "(label cutoff = train-until - delay - eval window): training unsupervised only")
    return None


def fit_detector(Xtr: pd.DataFrame, y: np.ndarray | None, cfg: TrainConfig, say, timings: dict):
    """The ensemble fitted on the training rows ``Xtr`` (a supervised head iff ``y`` is given)."""
    t0 = time.perf_counter()
    head = f" (supervised head on {int(np.isfinite(y).sum())} labelled)" if y is not None else ""
    say(f"fitting detectors on {len(Xtr):,} transactions x {Xtr.shape[1]} features{head}")
    det = make_detector(cfg, y is not None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        if "progress" in inspect.signature(det.fit).parameters:
            det.fit(Xtr, y, progress=lambda m: say(f"  detectors: {m}"))
        else:
            det.fit(Xtr, y)
    timings["detectors.fit"] = time.perf_counter() - t0
    return det


def under_collusion_alarm(det, Xtr: pd.DataFrame):
    """``det`` under the label-free collusion alarm (``fraud.detectors.collusion``), fitted on the training rows."""
    from fraud.detectors.collusion import CollusionAlarm

    return CollusionAlarm(det).fit(Xtr)


def under_activity_alarm(det, Xtr: pd.DataFrame):
    """``det`` under the label-free activity alarm (``fraud.detectors.activity``), fitted on the training rows."""
    from fraud.detectors.activity import ActivityAlarm

    return ActivityAlarm(det).fit(Xtr)


def under_terminal_alarm(det, Xtr: pd.DataFrame):
    """``det`` under the label-free terminal alarm (``fraud.detectors.activity.terminal_alarm``), fitted on the
    training rows; ``det`` itself when the training rows lack its column (no behaviour activity group)."""
    from fraud.detectors.activity import TERMINAL_COLUMNS, terminal_alarm

    return terminal_alarm(det).fit(Xtr) if set(TERMINAL_COLUMNS) <= set(map(str, Xtr.columns)) else det


def row_scores(det, X: pd.DataFrame, in_train: np.ndarray):
    """``scores(mask)``: the detector's scores (clipped to [0, 1]) of the rows ``mask`` of ``X``. The
    ensemble's training scores (``decision_scores_``, PyOD contract) are reused for training rows."""
    known = np.full(len(X), np.nan)
    ds = getattr(det, "decision_scores_", None)
    if ds is not None and len(ds) == int(in_train.sum()):
        known[in_train] = np.asarray(ds, dtype=float)

    def scores(mask: np.ndarray) -> np.ndarray:
        out = known[mask]
        if not np.isfinite(out).all():
            out = np.asarray(det.decision_function(X.loc[mask]), dtype=float)
        return np.clip(out, 0, 1)

    return scores
