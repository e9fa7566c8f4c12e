"""The default review embedder runs on a production install (no dev extras: no gensim)."""
from __future__ import annotations

import sys

from tests.fraud.review.helpers import hand_built_alerts


def test_default_embedder_runs_without_gensim(monkeypatch):
    # import gensim -> ImportError, as without the dev extra (gensim is only ever imported inside functions)
    monkeypatch.setitem(sys.modules, "gensim", None)
    monkeypatch.setitem(sys.modules, "gensim.models", None)
    from fraud.review.clusters import cluster_alerts, deepwalk_embedding, flagged_graph

    emb = deepwalk_embedding(flagged_graph(hand_built_alerts()), dim=8, seed=0)
    assert emb and all(v.shape == (8,) for v in emb.values())
    assert cluster_alerts(hand_built_alerts(), seed=0).clusters
