"""Plots of a training run, logged with the model: PR and ROC curves of the evaluation window, embedding maps.

Plots never fail a run: no labels (label-free training) means no curves, a failing map is a warning.
"""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from fraud import schema
from fraud.training.config import FraudTrainingWarning


def curve_figures(frame: pd.DataFrame, title: str = "") -> dict:
    """PR and ROC curves (matplotlib figures) of the evaluation window; none without labels (label-free
    training) or without both classes."""
    if "label" in frame:
        frame = frame[frame["label"].isin((0, 1)).to_numpy()]  # unknown labels (-1) have no place on a curve
    if "label" not in frame or len(frame) == 0 or frame["label"].min() == frame["label"].max():
        return {}
    from sklearn.metrics import precision_recall_curve, roc_curve

    y = frame["label"].to_numpy()
    s = frame["score"].to_numpy(dtype=float)
    p, r, _ = precision_recall_curve(y, s)
    fpr, tpr, _ = roc_curve(y, s)
    return {"pr_curve.png": _curve(r, p, "recall", "precision", f"PR curve {title}"),
            "roc_curve.png": _curve(fpr, tpr, "false positive rate", "true positive rate", f"ROC curve {title}",
                                    diagonal=True)}


def _curve(x, y, xlabel: str, ylabel: str, title: str, diagonal: bool = False):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 4))
    ax.plot(x, y)
    if diagonal:
        ax.plot([0, 1], [0, 1], "--", color="grey")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title.strip())
    ax.grid(alpha=0.3)
    return fig


def embedding_map_files(bundle, df: pd.DataFrame, out_dir, known_before=None) -> list:
    """PNG embedding maps (``fraud.viz.embedding_map``) of featurizers that learned node embeddings
    (``emb_c_``/``c_index_`` customers, ``emb_t_``/``t_index_`` terminals: the graph featurizer), coloured
    by each node's number of frauds known before ``known_before`` (the information rule)."""
    frauds = _known_frauds(df, known_before)
    files = []
    for f in bundle.featurizers:
        for kind, emb_attr, idx_attr, col in (("customers", "emb_c_", "c_index_", schema.CUSTOMER_ID),
                                              ("terminals", "emb_t_", "t_index_", schema.TERMINAL_ID)):
            emb, index = getattr(f, emb_attr, None), getattr(f, idx_attr, None)
            if emb is None or index is None:
                continue
            try:
                files.append(_embedding_map(f, kind, emb, index, frauds, col, out_dir))
            except Exception as e:  # a plot must never fail a training run
                warnings.warn(f"embedding map of {type(f).__name__} {kind} failed: {e}", FraudTrainingWarning)
    return [p for p in files if Path(p).exists()]


def _known_frauds(df: pd.DataFrame, known_before) -> pd.DataFrame | None:
    if "label" not in df:
        return None
    m = df["label"].to_numpy() == 1
    if known_before is not None:
        m &= (df[schema.TIMESTAMP] < known_before).to_numpy()
    return df.loc[m]


def _embedding_map(featurizer, kind: str, emb, index, frauds, col: str, out_dir) -> Path:
    from fraud.viz import embedding_map

    colour = np.zeros(len(emb))
    if frauds is not None and len(frauds):
        counts = frauds[col].astype(str).value_counts()
        ids = pd.Series(index.keys() if isinstance(index, dict) else list(index)).astype(str)
        pos = pd.Series(list(index.values()) if isinstance(index, dict) else np.arange(len(ids))).to_numpy()
        c = ids.map(counts).fillna(0).to_numpy()
        ok = pos < len(colour)
        colour[pos[ok]] = c[ok]
    path = Path(out_dir) / f"embedding_map_{kind}.png"
    got = embedding_map(emb, colour, str(path), title=f"{type(featurizer).__name__} {kind} (colour: known frauds)")
    return Path(got) if got else path
