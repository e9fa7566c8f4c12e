"""Our models in the handbook benchmark, through the product's own training pipeline.

Importing this module registers two models in :data:`benchmarks.handbook.MODELS`: ``ours``
(:func:`fraud.training.train` with featurizers ``tabular`` + ``behaviour`` and the detector ensemble, then
the resulting bundle scores the test week) and ``ours-unsupervised`` (the same pipeline with
``unsupervised=True`` on three label-free amount columns, scored by a right-tail, max-fused ECOD). Per fold
the pipeline trains as the product would on the day the test week starts (labels known before the delay
week only); the model functions take ``history=`` (the canonical frame, passed by
``benchmarks.handbook.run``) since the bench's train and test frames lack the earlier history.
Protocol details and figures: docs/benchmarks.md ("Handbook benchmark").
"""
from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from benchmarks.handbook import register_model
from fraud.errors import ConfigError

DAY = pd.Timedelta(days=1)
BEHAVIOUR = "fraud.features.behaviour:BehaviourFeatures"

#: days of history before the training week given to the pipeline (>= the longest feature window)
HISTORY_DAYS = 60
#: the supervised head's LightGBM parameters (fraud.detectors.supervised.SupervisedHead): a slower learning rate
#: with twice the default trees (600 x 0.025 instead of 300 x 0.05) ranks the detectable frauds more consistently
#: on a 7-day training week (~400 frauds); measured in the module docstring
HEAD_PARAMS = {"n_estimators": 600, "learning_rate": 0.025}
#: the supervised model's configuration (fraud.training.TrainConfig fields)
SUPERVISED_CONFIG = dict(featurizers=("tabular", "behaviour"), unsupervised=("hbos", "ecod"), supervised="lightgbm",
                         ensemble_params={"supervised_params": HEAD_PARAMS}, warm_state_days=0)
#: the unsupervised model's configuration
UNSUPERVISED_CONFIG = dict(
    featurizers=("behaviour",),
    featurizer_params={"behaviour": {"groups": ("amount",),
                                     "columns": ("BH_AMOUNT", "BH_C_AMT_RATIO_60D", "BH_C_AMT_RATIO_LAG14D")}},
    unsupervised=("ecod",), ensemble_params={"detector_params": {"ecod": {"tail": "right", "aggregate": "max"}}},
    supervised=None, warm_state_days=0)


def register_featurizer() -> None:
    """Make ``behaviour`` known to the training pipeline (``fraud.training.featurizers.FEATURIZERS``)."""
    from fraud.training import featurizers

    featurizers.FEATURIZERS.setdefault("behaviour", BEHAVIOUR)


register_featurizer()

def _history(test: pd.DataFrame, history: pd.DataFrame | None) -> pd.DataFrame:
    if history is None:
        raise ConfigError("bench model 'ours' needs the transaction history: run it through "
                          "benchmarks.handbook.run (which passes history=) or pass history=the canonical frame")
    ids = pd.Index(history["tx_id"].astype(str))
    if not pd.Index(test["tx_id"].astype(str)).isin(ids).all():
        raise ConfigError("bench model 'ours': the test rows are not part of the history frame "
                          f"({len(history):,} rows)")
    return history


def _canonical(df: pd.DataFrame) -> pd.DataFrame:
    cols = [c for c in ("tx_id", "timestamp", "customer_id", "terminal_id", "amount", "label") if c in df.columns]
    return df[cols]


def pipeline_scores(train: pd.DataFrame, test: pd.DataFrame, history: pd.DataFrame | None = None,
                    unsupervised: bool = False, config: dict | None = None, delay_days: int | None = None,
                    history_days: int = HISTORY_DAYS) -> np.ndarray:
    """Scores of ``test`` from a bundle trained by :func:`fraud.training.train` as of the test week's start.

    ``train``: the bench's training week (its first day sets T0); ``test``: the rows to score;
    ``history``: the canonical frame the rows come from (default: the frame the bench remembered);
    ``delay_days``: the feedback delay (default: the gap between the training and the test days, as
    the bench's split made it).
    """
    from fraud.training import TrainConfig, train as train_pipeline

    hist = _history(test, history)
    if len(train) == 0 or len(test) == 0:
        raise ConfigError(f"bench model 'ours': empty training ({len(train)}) or test ({len(test)}) rows")
    t0 = train["timestamp"].min().floor("D")
    train_end = train["timestamp"].max().floor("D") + DAY
    if delay_days is None:
        delay_days = int(round((test["timestamp"].min().floor("D") - train_end) / DAY))
    if delay_days <= 0:
        raise ConfigError(f"bench model 'ours': feedback delay {delay_days!r} days must be > 0")
    train_until = train_end + delay_days * DAY  # the test week's start
    test_end = test["timestamp"].max()
    ts = hist["timestamp"]
    past = _canonical(hist[(ts >= t0 - history_days * DAY) & (ts < train_until)])
    cfg_kw = dict(SUPERVISED_CONFIG if not unsupervised else UNSUPERVISED_CONFIG)
    cfg_kw.update(config or {})
    cfg = TrainConfig(feedback_delay_days=delay_days, eval_days=0, warmup_days=0, **cfg_kw)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = train_pipeline(past.reset_index(drop=True), cfg, train_from=t0, train_until=train_until,
                             unsupervised=unsupervised)
    upto = _canonical(hist[(ts >= t0 - history_days * DAY) & (ts <= test_end)])
    if unsupervised:
        upto = upto.drop(columns=["label"], errors="ignore")
    scored = res.bundle.score_batch(upto.reset_index(drop=True), explain="none")
    by_id = pd.Series(scored["score"].to_numpy(dtype=float), index=upto["tx_id"].astype(str).to_numpy())
    return by_id.reindex(test["tx_id"].astype(str).to_numpy()).to_numpy(dtype=float)


@register_model("ours")
def ours(train: pd.DataFrame, test: pd.DataFrame, history: pd.DataFrame | None = None) -> np.ndarray:
    """Supervised: tabular + behaviour features, ensemble with a LightGBM head on the training week's labels."""
    return pipeline_scores(train, test, history)


@register_model("ours-unsupervised")
def ours_unsupervised(train: pd.DataFrame, test: pd.DataFrame, history: pd.DataFrame | None = None) -> np.ndarray:
    """No labels at all: the label-free behaviour features, unsupervised detectors fused by rank."""
    return pipeline_scores(train, test, history, unsupervised=True)
