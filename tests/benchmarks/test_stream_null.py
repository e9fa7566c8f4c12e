"""``fraud bench stream --ceiling``: the scorer's own path with a model that does no work (benchmarks.stream.null_model)."""
import numpy as np

from benchmarks.stream import null_model


def test_null_model_scores_nothing_and_counts_the_events(drift_bundle, drift_world):
    rows = drift_world.iloc[:50].reset_index(drop=True)
    states = [drift_bundle.new_state(), drift_bundle.new_state()]
    nb = null_model(drift_bundle)
    out = nb.score_poll(rows, [(0, 20), (20, 50)], states)
    assert list(out) == ["tx_id", "score", "is_alert", "reasons"]
    assert out["tx_id"].tolist() == rows["tx_id"].tolist()
    assert not out["score"].any() and not out["is_alert"].any() and all(r == [] for r in out["reasons"])
    assert [s.n_scored for s in states] == [20, 30]
    assert states[1].last_timestamp == rows["timestamp"].iloc[49]
    # the model itself is untouched: its own call still scores (and its states are not the null ones)
    real = drift_bundle.score_poll(rows, [(0, 50)], [drift_bundle.new_state()])
    assert np.asarray(real["score"]).max() > 0
    assert type(drift_bundle).score_poll is not nb.score_poll
