"""The Fraud Detection Handbook benchmark: the book's protocol, features and baselines.

``run(frame, protocol)`` computes the book's 15 features (``BaselineFeatures``) over the days the
splits need (plus the warm-up of the longest window and the delay, which gives exactly the
features of a full-history computation), builds each split with the book's known-compromised-card
removal (``fraud.evaluate.train_test``), fits every model of ``MODELS`` on the training week and
reports AUC ROC, AP and CP@100 on the test week (prequential: mean and std over the 4 folds).

Models are a registry: ``MODELS[name] = fn(train_df, test_df) -> scores for test_df``, where both
frames carry the canonical columns plus the feature columns ``FEATURES``. Later work adds its
models with ``@register_model("name")``.

The book's baselines (chapter 3, ``fit_model_and_get_predictions`` with ``scale=True``): features
standardised with the training week's mean and std, then scikit-learn's
``LogisticRegression(random_state=0)`` and ``RandomForestClassifier(random_state=0, n_jobs=-1)``
(100 trees). The book's prequential random-forest figure comes from its chapter 5 model selection,
so the prequential comparison is indicative; the single split is the exact reproduction.
"""
from __future__ import annotations

import inspect

import time
from typing import Callable

import numpy as np
import pandas as pd

from fraud.errors import ConfigError
from fraud.evaluate import DAY, book_metrics, covers_handbook_dates, splits_for, train_test
from fraud.features.tabular import BaselineFeatures, feature_names

FEATURES: list[str] = feature_names()

#: published test figures (handbook README): (AUC ROC, AP, CP@100)
BOOK_RESULTS: dict[str, dict[str, tuple[float, float, float]]] = {
    "single": {
        "logistic_regression": (0.871, 0.606, 0.291),
        "random_forest": (0.867, 0.658, 0.287),
        "xgboost": (0.862, 0.639, 0.273),
    },
    "prequential": {
        "random_forest": (0.870, 0.678, 0.299),
        "xgboost": (0.869, 0.687, 0.303),
        "balanced_bagging": (0.879, 0.680, 0.305),
        "lstm_last5": (0.876, 0.665, 0.297),
    },
}

ModelFn = Callable[[pd.DataFrame, pd.DataFrame], np.ndarray]
MODELS: dict[str, ModelFn] = {}
#: models run when none are named
DEFAULT_MODELS = ("logistic_regression", "random_forest", "ours", "ours-unsupervised")


def register_model(name: str):
    """Decorator: add ``fn(train_df, test_df) -> scores`` to the benchmark under ``name``."""

    def deco(fn: ModelFn) -> ModelFn:
        MODELS[name] = fn
        return fn

    return deco


def scaled(train: pd.DataFrame, test: pd.DataFrame, columns=None) -> tuple[np.ndarray, np.ndarray]:
    """The book's scaling: StandardScaler fitted on the training week."""
    from sklearn.preprocessing import StandardScaler

    cols = FEATURES if columns is None else list(columns)
    sc = StandardScaler().fit(train[cols].to_numpy(dtype=float))
    return sc.transform(train[cols].to_numpy(dtype=float)), sc.transform(test[cols].to_numpy(dtype=float))


@register_model("logistic_regression")
def logistic_regression(train: pd.DataFrame, test: pd.DataFrame) -> np.ndarray:
    from sklearn.linear_model import LogisticRegression

    Xtr, Xte = scaled(train, test)
    clf = LogisticRegression(random_state=0).fit(Xtr, train["label"].to_numpy())
    return clf.predict_proba(Xte)[:, 1]


@register_model("random_forest")
def random_forest(train: pd.DataFrame, test: pd.DataFrame) -> np.ndarray:
    from sklearn.ensemble import RandomForestClassifier

    Xtr, Xte = scaled(train, test)
    clf = RandomForestClassifier(random_state=0, n_jobs=-1).fit(Xtr, train["label"].to_numpy())
    return clf.predict_proba(Xte)[:, 1]


def with_features(frame: pd.DataFrame, splits, delay_days: int = 7, windows=(1, 7, 30)) -> pd.DataFrame:
    """``frame`` restricted to the rows the splits need, with the book's features added.

    Rows from ``max(windows) + delay_days`` days before the first training day are included as
    warm-up, so every kept feature equals the one computed on the full history.
    """
    lo = min(s.train_start for s in splits) - (max(windows) + delay_days + 1) * DAY
    hi = max(s.test_end for s in splits)
    ts = frame["timestamp"]
    sub = frame[(ts >= lo) & (ts < hi)]
    feats = BaselineFeatures(delay_days=delay_days, windows=windows).fit(sub).transform(sub)
    keep = [c for c in sub.columns if c not in feats.columns]
    return pd.concat([sub[keep], feats], axis=1)


def run(frame: pd.DataFrame, protocol: str = "single", models=None, dates: str = "auto", delay_days: int = 7,
        k: int = 100, progress: Callable[[str], None] | None = None) -> dict:
    """Run the benchmark. Returns ``{"protocol", "dates", "splits", "models": {name: metrics}, "folds",
    "book", "seconds"}``; prequential metrics are means with ``<metric>_std`` (population std)."""
    say = progress or (lambda msg: None)
    if protocol not in ("single", "prequential"):
        raise ConfigError(f"--protocol: {protocol!r} is not one of single, prequential")
    if "label" not in frame.columns:
        raise ConfigError("bench handbook: the data has no label column (map one with --columns label=SOURCE)")
    names = list([m for m in DEFAULT_MODELS if m in MODELS] if not models else models)
    unknown = [m for m in names if m not in MODELS]
    if unknown:
        raise ConfigError(f"--models: unknown model(s) {unknown}; known: {', '.join(MODELS)}")
    splits = splits_for(frame, protocol, dates=dates, delay_days=delay_days)
    used_dates = "handbook" if dates == "handbook" or (dates == "auto" and covers_handbook_dates(frame, protocol)) \
        else "end"
    t0 = time.perf_counter()
    say(f"features: {len(frame):,} rows, splits {'; '.join(s.describe() for s in splits)}")
    data = with_features(frame, splits, delay_days=delay_days)
    t_feat = time.perf_counter() - t0
    metric_names = ("auc", "ap", f"cp@{k}")
    folds: dict[str, list[dict]] = {m: [] for m in names}
    seconds: dict[str, float] = {"features": round(t_feat, 2)}
    for i, split in enumerate(splits):
        train, test = train_test(data, split)
        if train["label"].nunique() < 2:
            raise ConfigError(f"bench handbook: the training week {split.describe()} has "
                              f"{int(train['label'].sum())} fraud(s) in {len(train)} rows; need both classes")
        for m in names:
            say(f"fold {i + 1}/{len(splits)}: {m} on {len(train):,} train / {len(test):,} test rows")
            t1 = time.perf_counter()
            # models that declare ``history`` get the whole canonical frame (the information rule is theirs
            # to keep: features from earlier rows, labels older than the delay only)
            kw = {"history": frame} if "history" in inspect.signature(MODELS[m]).parameters else {}
            scores = np.asarray(MODELS[m](train, test, **kw), dtype=float)
            if scores.shape != (len(test),):
                raise ConfigError(f"bench handbook: model {m!r} returned {scores.shape} scores for {len(test)} rows")
            seconds[m] = round(seconds.get(m, 0.0) + time.perf_counter() - t1, 2)
            res = book_metrics(test, scores, k=k)
            res.update({"n_train": int(len(train)), "n_test": int(len(test)), "n_test_fraud": int(test["label"].sum())})
            folds[m].append(res)
    out_models = {}
    for m in names:
        vals = {name: np.array([f[name] for f in folds[m]], dtype=float) for name in metric_names}
        entry = {name: float(v.mean()) for name, v in vals.items()}
        if protocol == "prequential":
            entry.update({f"{name}_std": float(v.std()) for name, v in vals.items()})
        out_models[m] = entry
    book = {m: dict(zip(metric_names, v)) for m, v in BOOK_RESULTS[protocol].items()} if used_dates == "handbook" else {}
    return {"protocol": protocol, "dates": used_dates, "splits": [s.describe() for s in splits],
            "models": out_models, "folds": folds, "book": book, "seconds": seconds}


def table_rows(result: dict, k: int = 100) -> list[list[str]]:
    """Rows of the comparison table: setting, model, ours AUC/AP/CP@k, book AUC/AP/CP@k."""
    cp = f"cp@{k}"

    def fmt(entry, name):
        if entry is None or name not in entry:
            return "-"
        v = entry[name]
        s = f"{v:.3f}" if np.isfinite(v) else "nan"
        if f"{name}_std" in entry:
            s += f" ±{entry[f'{name}_std']:.3f}"
        return s

    rows = []
    book = result.get("book", {})
    for m, entry in result["models"].items():
        b = book.get(m)
        rows.append([result["protocol"], m] + [fmt(entry, n) for n in ("auc", "ap", cp)]
                    + [fmt(b, n) for n in ("auc", "ap", cp)])
    for m, b in book.items():
        if m not in result["models"]:
            rows.append([result["protocol"], m, "-", "-", "-"] + [fmt(b, n) for n in ("auc", "ap", cp)])
    return rows
