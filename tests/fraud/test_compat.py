"""A bundle registered by an earlier version keeps scoring, with the same scores, after a code upgrade (a scorer
restarts or hot-reloads the champion with new code). The fixture was pickled by commit 0d3a33d (before the
behaviour featurizer gained columns and FastECOD gained ``tail``/``aggregate``): tabular + behaviour features,
ECOD + HBOS, no head; with the rows it scored and their scores then."""
from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "bundle_0d3a33d.pkl"


def test_bundle_pickled_by_an_earlier_version_scores_the_same():
    d = pickle.loads(FIXTURE.read_bytes())
    bundle, rows = d["bundle"], d["rows"]
    out = bundle.score_frame(rows, batch_size=50, state=bundle.new_state())
    assert len(out) == len(rows) > 50
    np.testing.assert_allclose(out["score"].to_numpy(), d["scores"], rtol=0, atol=1e-9)
    assert (out["is_alert"].to_numpy() == d["alerts"]).all()
    # the behaviour featurizer outputs the 15 columns it was trained on, not this version's 19
    beh = [f for f in bundle.featurizers if type(f).__name__ == "BehaviourFeatures"][0]
    assert len(beh.feature_names_) == 15
    assert beh.transform(rows).shape == (len(rows), 15)
