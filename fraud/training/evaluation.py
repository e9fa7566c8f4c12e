"""The evaluation stage: AP, ROC AUC and CP@100 of a model on a labelled window.

At training, the window is the most recent labelled one ``[label_cutoff, train_until - delay)``, whose
labels the supervised head never learnt; features come from a replay over all history.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from fraud import schema
from fraud.training.data import known_labels

#: columns of an evaluation frame besides ``score`` (those present)
FRAME_COLUMNS = (schema.TX_ID, schema.TIMESTAMP, schema.CUSTOMER_ID, "label", "scenario")


def undefined_metrics(n: int = 0, k: int = 100) -> dict:
    return {"n": int(n), "n_fraud": 0, "ap": float("nan"), "auc": float("nan"), f"cp@{k}": float("nan")}


def window_metrics(frame: pd.DataFrame, k: int = 100) -> dict:
    """AP, AUC, CP@k of ``frame`` (timestamp, customer_id, label, score) over its rows with a known label
    (0 or 1); NaN where undefined (no label column, or one class only)."""
    from sklearn.metrics import average_precision_score, roc_auc_score

    if "label" not in frame or len(frame) == 0:
        return undefined_metrics(len(frame), k)
    frame = frame[np.isfinite(known_labels(frame["label"]))]  # unknown labels (-1, NaN) are not scored
    y = frame["label"].to_numpy().astype(np.int8)
    out = {**undefined_metrics(len(frame), k), "n_fraud": int(y.sum())}
    if len(frame) == 0 or y.min() == y.max():
        return out
    s = frame["score"].to_numpy(dtype=float)
    out["ap"] = float(average_precision_score(y, s))
    out["auc"] = float(roc_auc_score(y, s))
    from fraud.evaluate import card_precision_at_k

    out[f"cp@{k}"] = float(card_precision_at_k(frame, k=k))
    return out


def eval_frame(df: pd.DataFrame, rows: np.ndarray, scores) -> pd.DataFrame:
    """The identifying columns (and labels) of ``df[rows]`` with their ``scores``."""
    out = df.loc[rows, [c for c in FRAME_COLUMNS if c in df]].reset_index(drop=True)
    out["score"] = np.clip(np.asarray(scores, dtype=float), 0, 1) if rows.any() else np.array([], dtype=float)
    return out


def evaluation_metrics(frame: pd.DataFrame, windows: dict, warn) -> dict:
    """:func:`window_metrics` of the evaluation window, with a warning when they are undefined."""
    if "label" not in frame or len(frame) == 0:
        warn("no labelled evaluation window (no labels, or the data is shorter than delay + eval window)")
        return undefined_metrics(len(frame))
    m = window_metrics(frame)
    if not np.isfinite(m["ap"]):
        warn(f"evaluation window [{windows['eval_from']}, {windows['eval_until']}) has no labelled fraud: "
             "metrics undefined")
    return m


def score_window(bundle, df: pd.DataFrame, start, end) -> pd.DataFrame:
    """Scores of ``bundle`` for the transactions of ``df`` in ``[start, end)``, features from a replay of
    all of ``df`` before ``end`` (vectorized path, equal to the replay)."""
    hist = df[df[schema.TIMESTAMP] < end].reset_index(drop=True)
    res = bundle.score_batch(hist, explain="none")
    m = (hist[schema.TIMESTAMP] >= start).to_numpy()
    out = hist.loc[m, [c for c in FRAME_COLUMNS if c in hist]].reset_index(drop=True)
    out["score"] = res["score"].to_numpy()[m]
    return out


def labelled_window(df: pd.DataFrame, delay_days: int, date_from=None, date_until=None) -> tuple:
    """(start, end) of ``fraud evaluate``'s window: ``date_until`` or the end of the labels known now (midnight
    after the last transaction - delay); ``date_from`` or 7 days before the end."""
    from fraud.training.data import DAY, to_utc

    until = to_utc(date_until, "--until") or (df[schema.TIMESTAMP].iloc[-1].floor("D") + DAY - delay_days * DAY)
    start = to_utc(date_from, "--from") or until - 7 * DAY
    return start, until
