"""Pictures for MLflow artifacts and the review page."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from fraud.errors import ConfigError


def embedding_map(embeddings, colour_values, path, title: str = "node embeddings", max_points: int = 20000,
                  seed: int = 0) -> Path:
    """A 2-D map (PCA of ``embeddings`` [n, d]) coloured by ``colour_values`` [n] (e.g. fraud
    involvement: share or count of a node's frauds); nodes with a positive value are drawn on top.
    At most ``max_points`` nodes are drawn (all positive ones kept, others sampled). Returns the PNG path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    emb = np.asarray(embeddings, dtype=np.float64)
    col = np.asarray(colour_values, dtype=np.float64).reshape(-1)
    if emb.ndim != 2 or len(emb) != len(col):
        raise ConfigError(f"embedding_map: embeddings shape {emb.shape} and colour_values length {len(col)} differ")
    if len(emb) == 0:
        raise ConfigError("embedding_map: no embeddings to draw")
    centred = emb - emb.mean(0)
    if emb.shape[1] >= 2:
        _, _, vt = np.linalg.svd(centred, full_matrices=False)
        xy = centred @ vt[:2].T
    else:
        xy = np.column_stack([centred[:, 0], np.zeros(len(emb))])
    idx = np.arange(len(emb))
    pos = idx[col > 0]
    rest = idx[~(col > 0)]
    if len(pos) + len(rest) > max_points:
        rng = np.random.default_rng(seed)
        rest = rng.choice(rest, size=max(0, max_points - len(pos)), replace=False)
    fig, ax = plt.subplots(figsize=(7, 6), dpi=110)
    ax.scatter(xy[rest, 0], xy[rest, 1], s=3, c="#bbbbbb", alpha=0.5, linewidths=0, label="no fraud")
    if len(pos):
        sc = ax.scatter(xy[pos, 0], xy[pos, 1], s=9, c=col[pos], cmap="inferno_r", linewidths=0, label="fraud involved")
        fig.colorbar(sc, ax=ax, label="fraud involvement")
    ax.set_title(title)
    ax.set_xlabel("PC 1")
    ax.set_ylabel("PC 2")
    ax.legend(loc="best", markerscale=3, fontsize=8)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
