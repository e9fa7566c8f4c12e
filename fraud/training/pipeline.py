"""``train``: canonical transactions -> a fitted :class:`fraud.bundle.ScoringBundle` and its evaluation.

The stages run in order: data (windows, known labels), featurizers, detector, baseline guard (and the
collusion alarm), threshold, evaluation, warm state. Each stage is a module of this package.
"""
from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from fraud import schema
from fraud.training import data, detector, evaluation, featurizers, threshold
from fraud.training.config import FraudTrainingWarning, TrainConfig


DRIFT_PROFILE_ROWS = 50_000  # training rows the drift reference is computed from (quantile edges, shares)
DRIFT_PROFILE_HISTORY_DAYS = 30  # ... those with this much history (the longest feature window) when there are any


@dataclass
class TrainResult:
    bundle: object
    metrics: dict
    params: dict
    eval_frame: pd.DataFrame  # tx_id, timestamp, customer_id, label, score (+ scenario) of the eval window
    warnings: list
    timings: dict
    windows: dict
    tags: dict = field(default_factory=dict)  # MLflow tags (the baseline comparison)


def train(df: pd.DataFrame, cfg: TrainConfig | None = None, train_from=None, train_until=None,
          labels: pd.DataFrame | None = None, unsupervised: bool = False, progress=None) -> TrainResult:
    """Fit featurizers and detectors on ``df`` (canonical) and return the bundle and its evaluation.
    ``unsupervised`` drops every label; ``labels`` (tx_id, label) override the file's; ``progress``:
    optional callable(message) for stage reporting."""
    cfg = cfg or TrainConfig()
    say = progress or (lambda msg: None)
    t_all = time.perf_counter()
    timings: dict[str, float] = {}
    warns: list[str] = []

    def warn(msg):
        warns.append(msg)
        warnings.warn(msg, FraudTrainingWarning, stacklevel=3)

    df, w = data.prepare(df, cfg, train_from, train_until, labels, unsupervised)
    fitted, X = featurizers.fit_featurizers(df, cfg, w, say, timings)
    feature_names = list(X.columns)
    X = featurizers.finite(X, warn)
    in_train = detector.training_rows(df, w)
    y = detector.head_labels(df, cfg, w, in_train, unsupervised, warn)
    det = detector.fit_detector(X.loc[in_train].reset_index(drop=True), y, cfg, say, timings)
    t0 = time.perf_counter()
    det, tags, scored = _register_detector(cfg, det, X, df, w, in_train, y is not None, say)
    recent = threshold.recent_rows(df, w, in_train)
    thr, alerts_per_day = threshold.budget_threshold(scored.scores(recent), df, recent, cfg.alert_budget_per_day)
    ev_frame = scored.evaluation(df)
    timings["evaluate"] = time.perf_counter() - t0
    metrics = evaluation.evaluation_metrics(ev_frame, w, warn)
    metrics["alerts_per_day_recent"] = alerts_per_day
    bundle = _bundle(cfg, fitted, det, thr, feature_names, w, y is not None, unsupervised, in_train, df)
    bundle.drift_profile = _profile(X, scored, _with_history(df, in_train), w, cfg.seed, timings)
    _warm(bundle, df, cfg, say, timings)
    timings["total"] = time.perf_counter() - t_all
    params = {**cfg.params(), **{f"window.{k}": str(v) for k, v in w.items()}, "supervised_used": y is not None,
              "n_train": int(in_train.sum()), "n_history": int(len(df)), "n_features": len(feature_names),
              "unsupervised_flag": bool(unsupervised)}
    metrics = {**metrics, "threshold": thr, **{f"seconds.{k}": v for k, v in timings.items()}}
    return TrainResult(bundle, metrics, params, ev_frame, warns, timings, w, tags)


class _Scores:
    """Scores of the detector to register: training rows reuse the ensemble's own, the evaluation week
    those the baseline guard computed (when it did)."""

    def __init__(self, det, X, in_train, ev, ev_scores=None):
        self.scores = detector.row_scores(det, X, in_train)
        self.ev, self.ev_scores = ev, ev_scores

    def evaluation(self, df: pd.DataFrame) -> pd.DataFrame:
        s = self.ev_scores if self.ev_scores is not None else (self.scores(self.ev) if self.ev.any() else [])
        return evaluation.eval_frame(df, self.ev, s)


def _register_detector(cfg, det, X, df, w, in_train, supervised, say) -> tuple[object, dict, _Scores]:
    """(the detector the bundle gets: the ensemble, after the baseline guard, the terminal and activity alarms when
    asked and the collusion alarm; the guard's MLflow tags; its scores)."""
    from fraud.training.baseline import guard_step

    ts = df[schema.TIMESTAMP]
    ev = ((ts >= w["eval_from"]) & (ts < w["eval_until"])).to_numpy()
    fitted = det
    det, tags, ev_scores = guard_step(cfg, det, X, df, w, in_train, ev, supervised and "tabular" in cfg.featurizers,
                                      say)
    alarms = [a for on, a in ((cfg.terminal_alarm, detector.under_terminal_alarm),
                              (cfg.activity_alarm, detector.under_activity_alarm),
                              ("collusion" in cfg.featurizers, detector.under_collusion_alarm)) if on]
    xtr = X.loc[in_train].reset_index(drop=True) if alarms else None  # the training rows, copied once
    for under in alarms:  # innermost first: the collusion alarm's rows still come first
        det, ev_scores = under(det, xtr), None
    # the ensemble's training scores are only valid for the ensemble itself
    return det, tags, _Scores(det, X, in_train if det is fitted else np.zeros(len(X), bool), ev, ev_scores)


def _bundle(cfg, fitted, det, thr, feature_names, w, supervised, unsupervised, in_train, df):
    from fraud.bundle import ScoringBundle

    config = {
        "name": cfg.name, "featurizers": list(cfg.featurizers), "supervised": supervised,
        "feedback_delay_days": cfg.feedback_delay_days, "alert_budget_per_day": cfg.alert_budget_per_day,
        "eval_days": cfg.eval_days, "seed": cfg.seed, "unsupervised_flag": bool(unsupervised),
        **{k: str(v) for k, v in w.items()},
        "n_train": int(in_train.sum()), "n_history": int(len(df)),
    }
    return ScoringBundle(fitted, det, thr, feature_names, config=config, explain=cfg.explain,
                         top_reasons=cfg.top_reasons)


def _with_history(df: pd.DataFrame, in_train: np.ndarray, days: int = DRIFT_PROFILE_HISTORY_DAYS) -> np.ndarray:
    """Training rows with ``days`` of history before them (their window features are complete, as in the stream),
    or all training rows when none has."""
    ts = df[schema.TIMESTAMP]
    ok = in_train & (ts >= ts.iloc[0] + pd.Timedelta(days=days)).to_numpy()
    return ok if ok.any() else in_train


def _profile(X: pd.DataFrame, scored: _Scores, in_train: np.ndarray, w: dict, seed: int, timings: dict,
             max_rows: int = DRIFT_PROFILE_ROWS) -> dict:
    """The drift reference of the training window (``fraud.drift``): features and scores of the ``in_train`` rows
    (a seeded sample of at most ``max_rows``)."""
    from fraud import drift

    t0 = time.perf_counter()
    rows = np.flatnonzero(in_train)
    if len(rows) > max_rows:
        rows = np.sort(np.random.default_rng(seed).choice(rows, size=max_rows, replace=False))
    mask = np.zeros(len(X), dtype=bool)
    mask[rows] = True
    prof = drift.reference(X.to_numpy(dtype=np.float64)[mask], list(X.columns), scored.scores(mask),
                           window=(w["train_from"], w["train_until"]))
    timings["drift_profile"] = time.perf_counter() - t0
    return prof


def _warm(bundle, df: pd.DataFrame, cfg: TrainConfig, say, timings: dict) -> None:
    if cfg.warm_state_days <= 0 or not len(df):
        return
    from fraud.training.warm import warm_state

    t0 = time.perf_counter()
    say(f"warm state: replaying the last {cfg.warm_state_days} days of history through the online path")
    bundle.initial_state_ = warm_state(bundle, df, cfg.warm_state_days)
    timings["warm_state"] = time.perf_counter() - t0
