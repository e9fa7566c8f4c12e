"""The default review embedder runs on a production install (no dev extras: no gensim)."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def test_default_embedder_runs_without_gensim():
    code = textwrap.dedent("""
        import sys
        sys.modules["gensim"] = None  # import gensim -> ImportError, as without the dev extra
        sys.modules["gensim.models"] = None
        from tests.fraud.review.helpers import hand_built_alerts
        from fraud.review.clusters import cluster_alerts, deepwalk_embedding, flagged_graph
        emb = deepwalk_embedding(flagged_graph(hand_built_alerts()), dim=8, seed=0)
        assert emb and all(v.shape == (8,) for v in emb.values())
        r = cluster_alerts(hand_built_alerts(), seed=0)
        assert r.clusters
        print("ok")
    """)
    p = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300,
                       env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert p.returncode == 0, p.stderr[-3000:]
    assert "ok" in p.stdout
