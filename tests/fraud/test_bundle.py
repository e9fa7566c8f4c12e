"""The scoring bundle: one scoring path, state, micro-batch replay == batch, errors."""
from __future__ import annotations

import copy
import pickle

import numpy as np
import pandas as pd
import pytest

from fraud.bundle import RESULT_COLUMNS, ScoringBundle
from fraud import safestate
from fraud.errors import ModelError, SchemaError, ValidationError


@pytest.fixture(scope="module")
def world(drift_world) -> pd.DataFrame:
    return drift_world


@pytest.fixture(scope="module")
def bundle(drift_bundle) -> ScoringBundle:
    """The session's light bundle (tests/conftest.py), copied: tests here set attributes (``explain``)."""
    return copy.copy(drift_bundle)


def test_score_shape_types_and_state(bundle, world):
    rows = world.iloc[:500]
    state = bundle.new_state()
    out = bundle.score(rows, state)
    assert list(out.columns) == RESULT_COLUMNS
    assert out["tx_id"].tolist() == rows["tx_id"].tolist()  # row order
    assert out["score"].between(0, 1).all()
    assert out["is_alert"].dtype == bool
    assert (out["is_alert"] == (out["score"] >= bundle.threshold)).all()
    assert all(isinstance(r, list) for r in out["reasons"])
    assert state.n_scored == 500 and state.last_timestamp == rows["timestamp"].iloc[-1]
    assert bundle.required_columns == ["tx_id", "timestamp", "customer_id", "terminal_id", "amount"]


def test_alerts_carry_reasons_naming_features_or_detectors(bundle, world):
    out = bundle.score_frame(world.iloc[-3000:], batch_size=1000)
    al = out[out["is_alert"]]
    assert len(al) > 0
    assert all(len(r) > 0 for r in al["reasons"])
    assert all(len(r) == 0 for r in out.loc[~out["is_alert"], "reasons"])  # explain="alerts"
    names = set(bundle.feature_names)
    first = al["reasons"].iloc[0]
    assert any(x.startswith("detector:") or any(n in x for n in names) for x in first), first


def test_micro_batch_replay_is_independent_of_batch_size(bundle, world):
    """The one scoring path: same state, any micro-batch size -> identical scores."""
    df = world.iloc[:6000]
    warm, tail = df.iloc[:5700], df.iloc[5700:]
    st = bundle.new_state()
    bundle.score_frame(warm, batch_size=2000, state=st)
    st2 = pickle.loads(pickle.dumps(st))  # states are picklable (checkpoints)
    a = bundle.score_frame(tail, batch_size=300, state=st)
    b = bundle.score_frame(tail, batch_size=23, state=st2)
    np.testing.assert_array_equal(a["score"].to_numpy(), b["score"].to_numpy())
    assert a["tx_id"].tolist() == b["tx_id"].tolist()
    # and equals a single replay of the whole frame from a fresh state
    whole = bundle.score_frame(df, batch_size=1000)
    np.testing.assert_array_equal(whole["score"].to_numpy()[5700:], a["score"].to_numpy())


def test_score_batch_equals_replay(bundle, world):
    """The vectorized path (featurizer transform) equals the replay; feature sums may differ by ~1e-10
    (cumulative sums vs running sums), which can flip a tree split for a rare row."""
    df = world.iloc[:8000]
    a = bundle.score_frame(df, batch_size=1000)
    b = bundle.score_batch(df)
    d = np.abs(a["score"].to_numpy() - b["score"].to_numpy())
    assert (d > 1e-9).mean() < 0.002 and d.max() < 0.05
    assert (a["is_alert"] == b["is_alert"]).mean() > 0.998


def test_missing_field_is_named(bundle, world):
    with pytest.raises(SchemaError, match="terminal_id"):
        bundle.score(world.iloc[:10].drop(columns=["terminal_id"]), bundle.new_state())


def test_bad_explain_mode_and_batch_size(bundle, world):
    with pytest.raises(ModelError, match="explain"):
        ScoringBundle(bundle.featurizers, bundle.detector, 0.5, bundle.feature_names, explain="some")
    with pytest.raises(ModelError, match="batch_size"):
        bundle.score_frame(world.iloc[:10], batch_size=0)


def test_empty_rows_and_pickle_roundtrip(bundle, world):
    out = bundle.score(world.iloc[:0], bundle.new_state())
    assert list(out.columns) == RESULT_COLUMNS and len(out) == 0
    b2 = pickle.loads(pickle.dumps(bundle))
    assert b2.version is None
    df = world.iloc[:1500]
    np.testing.assert_array_equal(b2.score_frame(df)["score"].to_numpy(), bundle.score_frame(df)["score"].to_numpy())
    s = copy.deepcopy(bundle.new_state())
    assert len(s.featurizer_states) == len(bundle.featurizers)


def test_score_many_equals_per_group_score(bundle, world):
    """score_many([(rows, state), ...]) = one score() per group (results and states), with an empty group."""
    df = world.iloc[:900]
    cust = df["customer_id"].astype(str)
    groups = [df[cust.str[-1].isin(list("01234"))], df.iloc[:0], df[~cust.str[-1].isin(list("01234"))]]
    groups = [g.reset_index(drop=True) for g in groups]
    s1 = [bundle.new_state() for _ in groups]
    s2 = [bundle.new_state() for _ in groups]
    many = bundle.score_many(list(zip(groups, s1)))
    one = [bundle.score(g, st) for g, st in zip(groups, s2)]
    assert len(many) == 3 and len(many[1]) == 0
    for a, b in zip(many, one):
        assert list(a.columns) == RESULT_COLUMNS
        assert a["tx_id"].tolist() == b["tx_id"].tolist()
        np.testing.assert_allclose(a["score"].to_numpy(), b["score"].to_numpy(), rtol=0, atol=1e-12)
        assert a["is_alert"].tolist() == b["is_alert"].tolist()
    for x, y in zip(s1, s2):
        assert x.n_scored == y.n_scored and x.last_timestamp == y.last_timestamp
    # the states absorbed the same events: the next batch scores the same
    nxt = world.iloc[900:1000].reset_index(drop=True)
    np.testing.assert_allclose(bundle.score(nxt, s1[0])["score"].to_numpy(),
                               bundle.score(nxt, s2[0])["score"].to_numpy(), rtol=0, atol=1e-12)


def test_matrix_scoring_path_equals_the_frame_path(bundle, world):
    """score() hands the detector a float matrix; the public frame path (features_online -> _decide with a
    DataFrame, as the stream's fallback does) gives the same results, reasons included, and the same state."""
    df = world.iloc[:3000].reset_index(drop=True)
    bundle.explain = "all"
    try:
        s1, s2 = bundle.new_state(), bundle.new_state()
        a = bundle.score(df, s1)
        X = bundle.features_online(df, s2)
        assert list(X.columns) == bundle.feature_names and X.index.equals(df.index)
        b = bundle._decide(df, X)
        assert list(a.columns) == list(b.columns) == RESULT_COLUMNS
        assert a["tx_id"].tolist() == b["tx_id"].tolist() == df["tx_id"].astype(str).tolist()
        np.testing.assert_array_equal(a["score"].to_numpy(), b["score"].to_numpy())
        assert a["reasons"].tolist() == b["reasons"].tolist() and all(len(r) for r in a["reasons"])
        np.testing.assert_array_equal(bundle.scores(X), a["score"].to_numpy())
        nxt = world.iloc[3000:3200].reset_index(drop=True)
        np.testing.assert_array_equal(bundle.score(nxt, s1)["score"].to_numpy(),
                                      bundle.score(nxt, s2)["score"].to_numpy())
    finally:
        bundle.explain = "alerts"
    out = bundle.score(world.iloc[3200:4200], s1)  # explain="alerts": non-alerts get an empty list
    assert all(isinstance(r, list) and (len(r) > 0) == al for r, al in zip(out["reasons"], out["is_alert"]))
    # caches derived at scoring time are not pickled (a bundle pickled before them loads the same way)
    assert "_colmap" in vars(bundle) and "_plain_input" in vars(bundle)
    b2 = pickle.loads(pickle.dumps(bundle))
    assert "_colmap" not in vars(b2) and "_plain_input" not in vars(b2)


def test_labels_added_after_scoring_equal_labelled_rows(bundle, world):
    """The stream scores rows without labels and gets them later through add_labels: the next rows score as if
    the history had carried its labels, also after a checkpoint round trip; without the feedback they do not."""
    hist, nxt = world.iloc[:6000], world.iloc[6000:7000]
    labelled, late, never = bundle.new_state(), bundle.new_state(), bundle.new_state()
    bundle.score_frame(hist, batch_size=1000, state=labelled)
    for st in (late, never):
        bundle.score_frame(hist.drop(columns="label"), batch_size=1000, state=st)
    f = bundle.featurizers[0]
    horizon = pd.Timedelta(days=float(f.delay_days) + max(f.windows))  # what the terminal log keeps
    assert bundle.add_labels(late, hist) == {
        "BaselineFeatures": int((hist["timestamp"] > hist["timestamp"].iloc[-1] - horizon).sum())}
    back = safestate.loads(safestate.dumps(late))
    want = bundle.score(nxt, labelled)["score"].to_numpy()
    np.testing.assert_array_equal(bundle.score(nxt, late)["score"].to_numpy(), want)
    np.testing.assert_array_equal(bundle.score(nxt, back)["score"].to_numpy(), want)
    assert (bundle.score(nxt, never)["score"].to_numpy() != want).any()


def test_add_labels_names_bad_input(bundle, world):
    st = bundle.new_state()
    bundle.score(world.iloc[:50], st)
    with pytest.raises(SchemaError, match=r"feedback\.csv: missing field\(s\) 'label'"):
        bundle.add_labels(st, world.iloc[:5].drop(columns="label"), source="feedback.csv")
    bad = world.iloc[:3].assign(label=[0, 7, 1])
    with pytest.raises(ValidationError, match=f"feedback.csv: label 7 of transaction '{bad['tx_id'].iloc[1]}'"):
        bundle.add_labels(st, bad, source="feedback.csv")
    with pytest.raises(ModelError, match="featurizer state"):
        bundle.add_labels(type(st)([]), world.iloc[:5])
