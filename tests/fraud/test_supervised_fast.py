"""The supervised head's compiled tree predictor equals the libraries' own predict_proba (to 1e-9), on every
path: QuickScorer (finite rows), the packed tree walk (rows with NaN, categorical or Zero-missing splits), the
library itself without numba, any batch size, a pickled head."""
from __future__ import annotations

import pickle
import warnings

import numpy as np
import pytest

from fraud.detectors import supervised as S
from fraud.detectors.supervised import SupervisedHead

TOL = 1e-9


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    n, d = 3000, 10
    X = rng.normal(size=(n, d))
    X[rng.random(X.shape) < 0.05] = np.nan
    X[:, 3] = np.where(rng.random(n) < 0.3, 0.0, X[:, 3])  # many exact zeros (Zero-missing splits)
    y = ((np.nan_to_num(X[:, 0]) + np.isnan(X[:, 1]) + 0.5 * rng.normal(size=n)) > 1).astype(float)
    Q = 2 * rng.normal(size=(700, d))
    Q[:300][rng.random((300, d)) < 0.2] = np.nan  # the first 300 query rows carry NaN, the rest are finite
    Q[300:400, 3] = 0.0
    Q[400:420, 3] = 1e-40  # |x| <= 1e-35 counts as zero for Zero-missing splits
    Q[420:430] = X[:10]  # exact training values: ties with thresholds
    return X, y, Q


def _no_numba():
    """Context: predictor kernels unavailable (the head then predicts with the library)."""
    import contextlib

    @contextlib.contextmanager
    def cm():
        saved = dict(S._KERNELS)
        S._KERNELS["_walk"] = [None]
        try:
            yield
        finally:
            S._KERNELS.clear()
            S._KERNELS.update(saved)
    return cm()


@pytest.mark.parametrize("kind", ["lightgbm", "hgb"])
def test_head_decision_function_equals_library(kind, data):
    X, y, Q = data
    head = SupervisedHead(kind=kind, n_estimators=40, n_jobs=1, seed=0).fit(X, y)
    assert head._paths["qs"] is not None  # the QuickScorer tables were built at fit
    ref = head._library_proba(Q)
    got = head.decision_function(Q)
    np.testing.assert_allclose(got, ref, rtol=0, atol=TOL)
    assert np.abs(got - ref).max() < TOL and not np.allclose(ref, ref.mean())  # a real spread of scores
    for n in (1, 3, 63, 64, 65, 130):  # block edges of the vectorised kernel
        np.testing.assert_allclose(head.decision_function(Q[300:300 + n]), ref[300:300 + n], rtol=0, atol=TOL)
    np.testing.assert_allclose(head.decision_function(Q[:5]), ref[:5], rtol=0, atol=TOL)  # NaN rows: tree walk
    with _no_numba():
        np.testing.assert_allclose(head.decision_function(Q), ref, rtol=0, atol=TOL)
    np.testing.assert_allclose(head.decision_scores_, head._library_proba(X), rtol=0, atol=TOL)


@pytest.mark.parametrize("params", [{}, {"zero_as_missing": True}, {"use_missing": False}])
def test_lightgbm_categorical_and_missing_types(params, data):
    """LightGBM's decision rules: categorical splits (NaN, negative and unseen categories go right, a float
    category is truncated), Zero / NaN / None missing types with their default side."""
    import lightgbm as lgb

    X, y, Q = data
    rng = np.random.default_rng(1)
    Xc, Qc = X.copy(), Q.copy()
    Xc[:, 4] = rng.integers(0, 30, len(X))
    Xc[rng.random(len(X)) < 0.05, 4] = np.nan
    yc = ((y + np.isin(Xc[:, 4], [3, 7, 11, 20])) > 0).astype(int)
    Qc[:, 4] = rng.integers(-3, 35, len(Q)) + 0.9 * rng.random(len(Q))
    Qc[::7, 4] = np.nan
    Qc[1::9, 4] = -0.5  # truncates to category 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = lgb.LGBMClassifier(n_estimators=40, verbose=-1, n_jobs=1, **params).fit(Xc, yc, categorical_feature=[4])
    arrays = S._lgbm_arrays(m.booster_)
    assert (arrays["flags"] & S._CATEGORICAL).any()
    ref = m.predict_proba(Qc)[:, 1]
    np.testing.assert_allclose(S.predict_proba(arrays, Qc), ref, rtol=0, atol=TOL)


def test_a_pickled_head_predicts_the_same(data):
    X, y, Q = data
    head = SupervisedHead(kind="lightgbm", n_estimators=30, n_jobs=1, seed=0).fit(X, y)
    ref = head._library_proba(Q)
    np.testing.assert_allclose(head.decision_function(Q), ref, rtol=0, atol=TOL)  # builds the walk's tables
    again = pickle.loads(pickle.dumps(head))
    assert "packed" not in again._paths and again._paths["qs"] is not None
    np.testing.assert_allclose(again.decision_function(Q), ref, rtol=0, atol=TOL)
    assert again.decision_function(Q[:0]).shape == (0,)
    for n in (1, 1500):  # one row, more rows than the test data (repeated)
        Qn = np.resize(Q, (n, Q.shape[1]))
        np.testing.assert_allclose(again.decision_function(Qn), again._library_proba(Qn), rtol=0, atol=TOL)


def test_wrong_width_is_named(data):
    from fraud.errors import ModelError

    X, y, Q = data
    head = SupervisedHead(kind="lightgbm", n_estimators=5, n_jobs=1).fit(X, y)
    with pytest.raises(ModelError, match="trained on 10 features"):
        head.decision_function(Q[:, :4])
