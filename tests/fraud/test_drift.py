"""Drift (fraud.drift): PSI of identical vs shifted samples, the online window equals the batch computation, the
training profile, and the archive report."""
from __future__ import annotations

import pickle

import numpy as np
import pandas as pd
import pytest

from fraud import drift


def _profile(rng, n=20_000):
    X = np.c_[rng.normal(0, 1, n), (rng.random(n) < 0.05).astype(float), rng.gamma(2.0, 30.0, n)]
    return drift.reference(X, ["z", "flag", "amount"], rng.beta(1, 20, n)), X


def test_psi_of_identical_distributions_is_near_zero_and_of_shifted_ones_large():
    rng = np.random.default_rng(0)
    prof, _ = _profile(rng)
    same = np.c_[rng.normal(0, 1, 5000), (rng.random(5000) < 0.05).astype(float), rng.gamma(2.0, 30.0, 5000)]
    r = drift.compare(prof, same, rng.beta(1, 20, 5000))
    assert max(r["features"].values()) < 0.02 and r["score"] < 0.02
    assert all(v == "stable" for _, _, v in drift.summary(r))
    shifted = np.c_[rng.normal(1.0, 1, 5000), (rng.random(5000) < 0.30).astype(float), rng.gamma(2.0, 60.0, 5000)]
    r = drift.compare(prof, shifted, rng.beta(1, 3, 5000))
    assert min(r["features"].values()) > 0.25 and r["score"] > 0.25
    rows = drift.summary(r)
    assert rows[0][0] == "score" and [x[1] for x in rows[1:]] == sorted([x[1] for x in rows[1:]], reverse=True)
    assert {v for _, _, v in rows} == {"drifted"} and drift.max_psi(r) == max(x[1] for x in rows)


def test_binary_feature_keeps_two_bins_and_missing_values_have_their_own():
    e = drift.edges_of(np.r_[np.zeros(95), np.ones(5)])
    assert e.tolist() == [0.0]
    assert drift.bin_index(e, [0.0, 1.0, np.nan, -1.0]).tolist() == [0, 1, 2, 0]
    assert drift.psi([0.5, 0.5, 0.0], [0.5, 0.5, 0.0]) == 0.0
    assert drift.psi([0.5, 0.5, 0.0], [0.25, 0.25, 0.5]) > 1.0  # half the values went missing


def test_window_equals_compare_and_keeps_only_its_last_days():
    rng = np.random.default_rng(1)
    prof, _ = _profile(rng)
    X = np.c_[rng.normal(0.5, 1, 3000), (rng.random(3000) < 0.1).astype(float), rng.gamma(2.0, 40.0, 3000)]
    X[::50, 0] = np.nan
    s = rng.beta(1, 10, 3000)
    w = drift.DriftWindow(prof, ["z", "flag", "amount"], days=2)
    assert w.psi()["n"] == 0 and np.isnan(w.psi()["score"])
    day = pd.Timestamp("2024-03-01 12:00", tz="UTC")
    for i in range(0, 3000, 700):  # micro-batches on one day
        w.update(X[i:i + 700], s[i:i + 700], day)
    got, want = w.psi(), drift.compare(prof, X, s)
    assert got["n"] == 3000
    assert got["score"] == pytest.approx(want["score"], rel=1e-9)
    assert got["features"] == pytest.approx(want["features"], rel=1e-9)
    w.update(X[:10], s[:10], day + pd.Timedelta(days=1))
    assert w.psi()["n"] == 3010
    w.update(X[:10], s[:10], day + pd.Timedelta(days=2))  # the first day leaves the 2-day window
    assert w.psi()["n"] == 20 and len(w._days) == 2
    w.update(X[:5], s[:5], day)  # a late batch counts for the newest day
    assert w.psi()["n"] == 25 and len(w._days) == 2
    # the features are matched by name: a matrix with its columns in another order gives the same counts
    w2 = drift.DriftWindow(prof, ["amount", "z", "flag"])
    w2.update(X[:, [2, 0, 1]], s, day)
    assert w2.psi()["features"] == pytest.approx(want["features"], rel=1e-9)


@pytest.fixture(scope="module")
def world(drift_world):
    return drift_world


@pytest.fixture(scope="module")
def bundle(drift_bundle):
    return drift_bundle


def test_training_records_a_plain_profile_that_pickles_with_the_bundle(bundle):
    p = bundle.drift_profile
    assert p["features"] == bundle.feature_names and len(p["edges"]) == len(p["shares"]) == len(p["features"])
    assert 0 < p["n"] <= 50_000 and p["window"][1].startswith("2018-")
    for e, sh in zip(p["edges"], p["shares"]):
        assert isinstance(e, np.ndarray) and len(sh) == len(e) + 2 and sh.sum() == pytest.approx(1.0)
    back = pickle.loads(pickle.dumps(bundle))
    assert back.drift_profile["features"] == p["features"] and back.observer is None


def test_report_on_the_training_data_is_stable_and_on_shifted_amounts_drifted(bundle, world):
    r = drift.report(bundle, world, days=7)
    assert r["n"] > 500 and r["window"][1] == str(world["timestamp"].max())
    assert max(r["features"].values()) < 0.1
    moved = world.assign(amount=world["amount"] * np.where(world["timestamp"] > world["timestamp"].max()
                                                           - pd.Timedelta(days=7), 4.0, 1.0))
    r2 = drift.report(bundle, moved, days=7)
    assert r2["features"]["TX_AMOUNT"] > 0.25 and r2["max_psi"] > 0.25


def test_report_refuses_a_bundle_without_profile(bundle, world):
    import copy

    old = copy.copy(bundle)
    old.drift_profile = None
    with pytest.raises(ValueError, match="no drift profile"):
        drift.report(old, world)
