"""The featurizers stage: build the configured featurizers, fit them on history, compute the feature matrix.

Featurizers are imported lazily by name (``FEATURIZERS``) so that a missing optional dependency only
drops that featurizer. Their own fit never sees labels of the evaluation window or newer.
"""
from __future__ import annotations

import importlib
import inspect
import time

import numpy as np
import pandas as pd

from fraud.errors import ConfigError, ModelError
from fraud.training.config import DEFAULT_FEATURIZERS, TrainConfig
from fraud.training.data import hide_recent_labels

#: name -> "module:Class" of the featurizers a bundle may use (imported lazily)
FEATURIZERS = {
    "tabular": "fraud.features.tabular:BaselineFeatures",
    "graph": "fraud.features.graph:GraphFeatures",
    "sequence": "fraud.features.sequence:SequenceFeatures",
    "behaviour": "fraud.features.behaviour:BehaviourFeatures",
    "collusion": "fraud.features.collusion:CollusionFeatures",
}


def featurizer_class(name: str):
    if name not in FEATURIZERS:
        raise ConfigError(f"featurizer {name!r} is unknown; known: {', '.join(FEATURIZERS)}")
    mod, cls = FEATURIZERS[name].split(":")
    try:
        return getattr(importlib.import_module(mod), cls)
    except (ImportError, AttributeError) as e:
        raise ModelError(f"featurizer {name!r} ({FEATURIZERS[name]}) is not available: {e}") from e


def available_featurizers(names=DEFAULT_FEATURIZERS) -> tuple[list[str], dict]:
    """(names that import, {name: why not} for the others)."""
    ok, missing = [], {}
    for n in names:
        try:
            featurizer_class(n)
            ok.append(n)
        except ModelError as e:
            missing[n] = str(e)
    return ok, missing


def make_featurizer(name: str, cfg: TrainConfig):
    """The featurizer ``name`` with ``cfg.featurizer_params[name]`` and the run's delay and seed where it takes them."""
    cls = featurizer_class(name)
    kw = dict(cfg.featurizer_params.get(name, {}))
    sig = inspect.signature(cls.__init__).parameters
    for key, val in (("delay_days", cfg.feedback_delay_days), ("feedback_delay_days", cfg.feedback_delay_days),
                     ("seed", cfg.seed), ("random_state", cfg.seed)):
        if key in sig and key not in kw:
            kw[key] = val
    if cfg.terminal_alarm and "cards_surprise" in sig and "cards_surprise" not in kw:
        kw["cards_surprise"] = True  # the terminal alarm's column
    return cls(**kw)


def fit_featurizers(df: pd.DataFrame, cfg: TrainConfig, windows: dict, say, timings: dict) -> tuple[list, pd.DataFrame]:
    """(fitted featurizers, feature matrix of every row of ``df``: float64, one column per feature)."""
    names = list(cfg.featurizers)
    if not names:
        raise ConfigError("no featurizer selected (TrainConfig.featurizers / --features is empty)")
    fit_df = hide_recent_labels(df, windows["label_cutoff"])
    featurizers, parts = [], []
    for n in names:
        t0 = time.perf_counter()
        say(f"fitting featurizer {n} on {len(df):,} transactions")
        f = make_featurizer(n, cfg)
        f.fit(fit_df)
        say(f"computing {n} features")
        parts.append(f.transform(df))
        featurizers.append(f)
        timings[f"features.{n}"] = time.perf_counter() - t0
    X = pd.concat(parts, axis=1) if len(parts) > 1 else parts[0]
    dup = X.columns[X.columns.duplicated()].tolist()
    if dup:
        raise ModelError(f"featurizers {names} produce duplicate feature names {dup[:10]}")
    return featurizers, X.reset_index(drop=True).astype(np.float64)


def finite(X: pd.DataFrame, warn) -> pd.DataFrame:
    """``X`` with non-finite values replaced by 0 (and a warning naming the columns)."""
    if np.isfinite(X.to_numpy()).all():
        return X
    bad = [c for c in X.columns if not np.isfinite(X[c].to_numpy()).all()]
    warn(f"non-finite feature values in {bad[:10]}: replaced by 0")
    return X.replace([np.inf, -np.inf], np.nan).fillna(0.0)
