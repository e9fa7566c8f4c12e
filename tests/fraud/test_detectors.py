"""Detector contract suite, fast lookup detectors vs PyOD, fusion, thresholds, ensemble behaviour."""
from __future__ import annotations

import pickle
import warnings

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import average_precision_score

from fraud.detectors import (AutoEncoderDetector, Ensemble, FastCOPOD, FastECOD, LogisticCombiner, MeanCombiner,
                             RankNormalizer, SupervisedHead, make_detector, threshold_for_budget,
                             threshold_for_precision)
from fraud.detectors.unsupervised import FastHBOS
from fraud.errors import ModelError, NotFittedError, SchemaError

FAST_AE = {"epochs": 2, "hidden": (8, 3), "batch_size": 128}


def _data(n=1500, seed=0):
    """Inliers + a few planted outliers (label 1) far out on amount and count."""
    rng = np.random.default_rng(seed)
    X = pd.DataFrame({
        "amount": rng.lognormal(3.0, 0.5, n),
        "count_7d": rng.poisson(4, n).astype(float),
        "ratio": rng.normal(1.0, 0.2, n),
        "night": (rng.random(n) < 0.1).astype(float),
    })
    y = np.zeros(n)
    out = rng.choice(n, size=n // 50, replace=False)
    X.loc[out, "amount"] = X.loc[out, "amount"] * 8
    X.loc[out, "ratio"] = X.loc[out, "ratio"] * 4
    y[out] = 1
    return X, y


def _make(name):
    if name == "autoencoder":
        return make_detector("autoencoder", seed=0, **FAST_AE)
    if name in ("lightgbm", "hgb"):
        return SupervisedHead(kind=name, n_estimators=30, n_jobs=1, seed=0)
    if name == "ensemble-unsup":
        return Ensemble(supervised=None, detector_params={"autoencoder": FAST_AE}, seed=0)
    if name == "ensemble-sup":
        return Ensemble(supervised="lightgbm", supervised_params={"n_estimators": 30, "n_jobs": 1},
                        detector_params={"autoencoder": FAST_AE}, seed=0)
    if name == "ecod-max-right":
        return make_detector("ecod", seed=0, tail="right", aggregate="max")
    return make_detector(name, seed=0)


SUPERVISED_LIKE = ("lightgbm", "hgb", "ensemble-unsup", "ensemble-sup")


def _fit(name, X, y):
    return _make(name).fit(X, y) if name in SUPERVISED_LIKE else _make(name).fit(X)


ALL = ["iforest", "ecod", "ecod-max-right", "copod", "hbos", "autoencoder", "lightgbm", "hgb", "ensemble-unsup",
       "ensemble-sup"]


@pytest.fixture(scope="module")
def data():
    return _data()


@pytest.fixture(scope="module")
def fitted(data):
    X, y = data
    return {name: _fit(name, X, y) for name in ALL}


@pytest.mark.parametrize("name", ALL)
def test_contract_init_only_stores_params(name):
    det = _make(name)
    learned = [k for k in vars(det) if k.endswith("_") and not k.startswith("_")]
    assert learned == []
    params = det.get_params()
    assert params and all(hasattr(det, k) for k in params)
    with pytest.raises((NotFittedError, AttributeError, ValueError)):
        det.decision_function(np.zeros((2, 4)))


@pytest.mark.parametrize("name", ALL)
def test_contract_fit_scores_and_attributes(name, data, fitted):
    X, y = data
    det = fitted[name]
    s = det.decision_function(X)
    assert s.shape == (len(X),) and np.isfinite(s).all()
    assert det.decision_scores_.shape == (len(X),)
    assert np.isfinite(float(det.threshold_))
    # higher = more suspicious: planted outliers outrank inliers on average
    assert average_precision_score(y, s) > 3 * y.mean()
    assert np.median(s[y == 1]) > np.median(s[y == 0])
    # fit returns self
    fresh = _make(name)
    out = fresh.fit(X.iloc[:400], y[:400]) if name in SUPERVISED_LIKE else fresh.fit(X.iloc[:400])
    assert out is fresh


@pytest.mark.parametrize("name", ALL)
def test_contract_batch_independent_and_picklable(name, data, fitted):
    X, _ = data
    det = fitted[name]
    whole = det.decision_function(X)
    parts = np.concatenate([det.decision_function(X.iloc[i:i + 7]) for i in range(0, 70, 7)])
    np.testing.assert_allclose(parts, whole[:70], rtol=1e-6, atol=1e-9)
    one = det.decision_function(X.iloc[[5]])
    np.testing.assert_allclose(one, whole[[5]], rtol=1e-6, atol=1e-9)
    clone = pickle.loads(pickle.dumps(det))
    np.testing.assert_array_equal(clone.decision_function(X), whole)


@pytest.mark.parametrize("name", ALL)
def test_contract_same_seed_same_scores(name, data, fitted):
    X, y = data
    again = _fit(name, X, y)
    np.testing.assert_array_equal(again.decision_function(X), fitted[name].decision_function(X))


def _skewed(n, rng):
    return np.column_stack([rng.lognormal(size=n), -rng.exponential(size=n), rng.gamma(2.0, size=n),
                            np.round(rng.lognormal(size=n), 1)])  # last one has many ties


@pytest.mark.parametrize("fast,pyod_name", [(FastECOD, "ecod"), (FastCOPOD, "copod")])
def test_fast_ecdf_detectors_match_pyod(fast, pyod_name):
    from pyod.models.copod import COPOD
    from pyod.models.ecod import ECOD

    slow_cls = ECOD if pyod_name == "ecod" else COPOD
    rng = np.random.default_rng(3)
    X, Q = _skewed(400, rng), _skewed(25, rng)
    Q[0] = X.max(axis=0) * 3  # beyond every training value
    Q[1] = X.min(axis=0) - 1
    f, p = fast().fit(X), slow_cls().fit(X)
    np.testing.assert_allclose(f.decision_scores_, p.decision_scores_, rtol=0, atol=1e-9)
    assert f.threshold_ == pytest.approx(p.threshold_, abs=1e-9)
    # PyOD scored one row at a time (each row appended alone to the training set)
    one_by_one = np.array([slow_cls().fit(X).decision_function(Q[i:i + 1])[0] for i in range(len(Q))])
    np.testing.assert_allclose(f.decision_function(Q), one_by_one, rtol=0, atol=1e-9)


def test_fast_ecod_matches_pyod_on_symmetric_features():
    """ECOD takes the max over both tails, so the skewness sign (the one documented difference)
    cannot change its scores even for near-symmetric features."""
    from pyod.models.ecod import ECOD

    rng = np.random.default_rng(4)
    X, Q = rng.normal(size=(300, 3)), rng.normal(size=(20, 3)) * 3
    one_by_one = np.array([ECOD().fit(X).decision_function(Q[i:i + 1])[0] for i in range(len(Q))])
    np.testing.assert_allclose(FastECOD().fit(X).decision_function(Q), one_by_one, rtol=0, atol=1e-9)


def test_fast_hbos_matches_pyod():
    from pyod.models.hbos import HBOS

    rng = np.random.default_rng(5)
    X, Q = _skewed(500, rng), _skewed(50, rng) * 2 - 0.5
    a, b = HBOS(n_bins=20).fit(X), FastHBOS(n_bins=20).fit(X)
    np.testing.assert_allclose(b.decision_scores_, a.decision_scores_, atol=1e-12)
    np.testing.assert_allclose(b.decision_function(Q), a.decision_function(Q), atol=1e-12)


def test_rank_normalizer_maps_to_unit_interval_and_is_monotone():
    rng = np.random.default_rng(0)
    train = rng.lognormal(size=20_000)
    exact = RankNormalizer(max_points=10**9).fit(train)
    small = RankNormalizer(max_points=500).fit(train)
    q = np.sort(np.concatenate([rng.lognormal(size=2000), [-5.0, 0.0, 1e9]]))
    for norm in (exact, small):
        r = norm.transform(q)
        assert r.min() >= 0.0 and r.max() <= 1.0
        assert (np.diff(r) >= 0).all()
        assert r[0] == 0.0 and r[-1] == 1.0
    # without compression it is the empirical CDF: fraction of training scores <= s
    np.testing.assert_allclose(exact.transform(train[:50]), (np.sort(train)[None, :] <= train[:50, None]).mean(1))
    # compression keeps the tail: levels 0.999 and 0.9999 are knots within 1e-4
    s999 = np.quantile(train, 0.9995)
    assert abs(small.transform([s999])[0] - exact.transform([s999])[0]) < 2e-4
    assert RankNormalizer().fit([2.0, 2.0]).transform([1.0, 2.0, 3.0]).tolist() == [0.0, 1.0, 1.0]


def test_combiners_in_unit_interval_and_monotone():
    rng = np.random.default_rng(1)
    R = rng.random((500, 3))
    y = (R[:, 0] + 0.3 * R[:, 1] + 0.1 * rng.random(500) > 0.9).astype(int)
    for comb in (MeanCombiner().fit(R), LogisticCombiner().fit(R, y)):
        s = comb.combine(R)
        assert s.min() >= 0 and s.max() <= 1
        bumped = R.copy()
        bumped[:, 0] = np.minimum(bumped[:, 0] + 0.2, 1.0)
        assert (comb.combine(bumped) >= s - 1e-12).all()
    assert (LogisticCombiner().fit(R, y).coef_ >= 0).all()
    assert MeanCombiner().fit(R).combine(np.array([[0.2, 0.4, 0.9]]))[0] == pytest.approx(0.5)


def test_threshold_for_budget_hand_computed():
    ts = pd.to_datetime(["2024-01-01 01:00", "2024-01-01 05:00", "2024-01-01 23:00",
                         "2024-01-02 10:00", "2024-01-02 11:00", "2024-01-03 09:00"], utc=True)
    scores = np.array([0.9, 0.1, 0.5, 0.7, 0.3, 0.2])
    # 3 days x 1 alert/day = 3 alerts -> the 3rd highest score is 0.5
    assert threshold_for_budget(scores, ts, 1) == 0.5
    assert threshold_for_budget(scores, ts, 1 / 3) == 0.9  # 1 alert
    assert threshold_for_budget(scores, ts, 10) == 0.1  # more than rows: everything
    t0 = threshold_for_budget(scores, ts, 0)
    assert t0 > 0.9 and (scores >= t0).sum() == 0


def test_threshold_for_precision_hand_computed():
    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4])
    y = np.array([1, 1, 0, 1, 0, 0])
    # cut at 0.9: 1/1, 0.8: 2/2, 0.7: 2/3, 0.6: 3/4, 0.5: 3/5, 0.4: 3/6
    assert threshold_for_precision(scores, y, 1.0) == 0.8
    assert threshold_for_precision(scores, y, 0.75) == 0.6
    assert threshold_for_precision(scores, y, 0.5) == 0.4
    # unknown labels ignored; ties are cut only after the whole tie group
    y2 = np.array([1, np.nan, 0, 1, -1, 0])
    assert threshold_for_precision(scores, y2, 0.66) == 0.6
    assert threshold_for_precision([0.9, 0.9, 0.1], [1, 0, 0], 0.5) == 0.9
    with pytest.raises(ModelError, match="best is 0.5000"):
        threshold_for_precision([0.9, 0.9, 0.1], [1, 0, 0], 0.9)


def test_ensemble_scores_in_unit_interval_and_reasons(data, fitted):
    X, y = data
    for name in ("ensemble-unsup", "ensemble-sup"):
        ens = fitted[name]
        s = ens.decision_function(X)
        assert s.min() >= 0.0 and s.max() <= 1.0
        ds = ens.detector_scores(X.iloc[:10])
        assert list(ds.columns[:5]) == ["iforest", "ecod", "copod", "hbos", "autoencoder"]
        assert ((ds >= 0) & (ds <= 1)).all().all()
        top = np.argsort(-s)[:5]
        reasons = ens.explain(X.iloc[top], top=3)
        assert len(reasons) == 5
        for rs in reasons:
            feats = [r for r in rs if r.startswith("feature:")]
            dets = [r for r in rs if r.startswith("detector:")]
            assert 1 <= len(feats) <= 3 and len(dets) == 2
            assert all(r.split(":")[1].split(" ")[0] in X.columns for r in feats)
            assert all(r.split(":")[1].split(" ")[0] in ds.columns for r in dets)
        # the planted outliers are explained by the planted features
        named = " ".join(sum(reasons, []))
        assert "feature:amount" in named or "feature:ratio" in named
    assert fitted["ensemble-sup"].combine_ == "stack" and fitted["ensemble-unsup"].combine_ == "mean"


def test_ensemble_falls_back_to_unsupervised_without_positive_labels(data):
    X, y = data
    kw = dict(unsupervised=("ecod", "hbos"), supervised="lightgbm", seed=0)
    for labels in (np.zeros(len(X)), np.full(len(X), np.nan), None):
        with pytest.warns(UserWarning, match="falling back to unsupervised"):
            ens = Ensemble(**kw).fit(X, labels)
        assert ens.supervised_ is None and ens.combine_ == "mean"
        assert list(ens.detector_scores(X.iloc[:3]).columns) == ["ecod", "hbos"]


def test_ensemble_uses_only_known_labels_and_logistic_combiner(data):
    X, y = data
    y_partial = y.copy()
    y_partial[: len(y) // 2] = -1  # unknown (e.g. inside the feedback delay)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ens = Ensemble(unsupervised=("ecod", "iforest"), supervised="lightgbm", combine="logistic",
                       supervised_params={"n_estimators": 30, "n_jobs": 1}, seed=0).fit(X, y_partial)
    assert ens.n_labelled_ == len(y) - len(y) // 2
    s = ens.decision_function(X)
    assert 0 <= s.min() and s.max() <= 1
    assert average_precision_score(y, s) > 0.5


def test_ensemble_input_errors(data, fitted):
    X, _ = data
    ens = fitted["ensemble-unsup"]
    with pytest.raises(SchemaError, match="'ratio'"):
        ens.decision_function(X.drop(columns=["ratio"]))
    # extra columns and column order do not matter; NaN is imputed
    shuffled = X[["night", "ratio", "amount", "count_7d"]].assign(extra=1.0)
    np.testing.assert_array_equal(ens.decision_function(shuffled.iloc[:20]), ens.decision_function(X.iloc[:20]))
    holes = X.iloc[:5].copy()
    holes.loc[holes.index[0], "amount"] = np.nan
    assert np.isfinite(ens.decision_function(holes)).all()
    with pytest.raises(NotFittedError):
        Ensemble().decision_function(X)


def test_autoencoder_different_seed_differs(data):
    X, _ = data
    a = AutoEncoderDetector(seed=0, **FAST_AE).fit(X.iloc[:300])
    b = AutoEncoderDetector(seed=1, **FAST_AE).fit(X.iloc[:300])
    assert not np.array_equal(a.decision_scores_, b.decision_scores_)


@pytest.mark.parametrize("kw", [{}, {"max_features": 0.5}, {"bootstrap": True}])
def test_fast_iforest_matches_pyod(kw):
    from pyod.models.iforest import IForest

    from fraud.detectors.unsupervised import FastIForest

    rng = np.random.default_rng(6)
    X, Q = _skewed(2000, rng), _skewed(300, rng) * 1.5
    Q[0] = X.max(axis=0) * 3
    a = IForest(contamination=0.05, random_state=0, max_samples=256, **kw).fit(X)
    b = FastIForest(contamination=0.05, random_state=0, max_samples=256, **kw).fit(X)
    np.testing.assert_allclose(b.decision_scores_, a.decision_scores_, rtol=0, atol=1e-9)
    assert b.threshold_ == pytest.approx(a.threshold_, abs=1e-9)
    assert b.detector_.offset_ == pytest.approx(a.detector_.offset_, abs=1e-12)
    np.testing.assert_allclose(b.decision_function(Q), a.decision_function(Q), rtol=0, atol=1e-9)
    np.testing.assert_allclose(b.decision_function(Q[:1]), a.decision_function(Q[:1]), rtol=0, atol=1e-9)
    np.testing.assert_array_equal(b.predict(Q), a.predict(Q))
    # the numpy fallback (no numba) gives the same scores
    from fraud.detectors import unsupervised as U

    saved = U._KERNEL[:]
    try:
        U._KERNEL[:] = [None]
        np.testing.assert_allclose(b.decision_function(Q), a.decision_function(Q), rtol=0, atol=1e-9)
    finally:
        U._KERNEL[:] = saved


@pytest.mark.parametrize("attr", ["_decision_path_lengths", "_max_samples"])
def test_fast_iforest_names_a_missing_sklearn_internal_and_the_version(attr):
    """A scikit-learn release without one of the private attributes FastIForest reads (here removed from a real
    fitted forest) fails with ModelError naming the attribute and the installed version, not an AttributeError."""
    import sklearn
    from sklearn.ensemble import IsolationForest

    from fraud.detectors.unsupervised import _iforest_arrays

    forest = IsolationForest(n_estimators=5, random_state=0).fit(np.random.default_rng(0).normal(size=(64, 3)))
    assert set(_iforest_arrays(forest)) >= {"feature", "leaf_value", "denominator"}
    delattr(forest, attr)
    with pytest.raises(ModelError, match=f"scikit-learn {sklearn.__version__} has no {attr}"):
        _iforest_arrays(forest)


def test_ensemble_uses_fast_iforest():
    from fraud.detectors.unsupervised import FastIForest

    assert isinstance(make_detector("iforest"), FastIForest)


@pytest.mark.parametrize("kind", ["lightgbm", "hgb"])
def test_path_contributions_sum_to_raw_score_and_track_treeshap(kind, data):
    from fraud.detectors import supervised as S

    X, y = data
    A = X.to_numpy()
    head = SupervisedHead(kind=kind, n_estimators=40, n_jobs=1, seed=0).fit(A, y)
    top = np.argsort(-head.decision_function(A))[:60]
    P = head.path_contributions(A[top])
    assert P.shape == (60, A.shape[1])
    # efficiency: the credits of a row add up to its raw score minus the trees' root values
    if kind == "lightgbm":
        raw = head.model_.predict_proba(A[top], raw_score=True)
    else:
        raw = head.model_.decision_function(A[top]) - float(np.ravel(head.model_._baseline_prediction)[0])
    roots = head._paths["value"][head._paths["roots"]].sum()
    np.testing.assert_allclose(P.sum(axis=1), raw - roots, rtol=0, atol=1e-4)
    # rows with NaN (the tree walk) too, and the walk equals QuickScorer on finite rows
    B = A[top].copy()
    B[::2, 0] = np.nan
    np.testing.assert_allclose(head.path_contributions(B).sum(axis=1),
                               S.predict_raw(head._paths, B) - head._paths["init"] - roots, rtol=0, atol=1e-9)
    qs, head._paths["qs"] = head._paths["qs"], None
    try:
        np.testing.assert_allclose(head.path_contributions(A[top]), P, rtol=0, atol=1e-12)
    finally:
        head._paths["qs"] = qs
    if kind == "lightgbm":  # the top feature agrees with TreeSHAP's top-3 on most top-scored rows
        shap = head.contributions(A[top])
        ref = np.argsort(-shap, axis=1)[:, :3]
        assert (np.argmax(P, axis=1)[:, None] == ref).any(axis=1).mean() >= 0.8


def test_ecdf_tail_and_max_aggregate():
    """tail="right" ignores small values; aggregate="max" ranks one extreme feature above several moderate ones."""
    rng = np.random.default_rng(3)
    X = rng.normal(0.0, 1.0, (2000, 3))
    Q = np.array([[0.0, 0.0, 0.0],     # typical
                  [-6.0, 0.0, 0.0],    # extreme on the left only
                  [2.0, 2.0, 2.0],     # moderately high everywhere
                  [6.0, 0.0, 0.0],     # one extreme high value
                  [9.0, 0.0, 0.0]])    # beyond it (ties beyond the training range broken by the sum)
    both = FastECOD().fit(X).decision_function(Q)
    right = FastECOD(tail="right").fit(X)
    r = right.decision_function(Q)
    assert both[1] > both[0] and r[1] < r[2]  # the left extreme counts for ECOD, not for the right tail
    n = len(X)
    # the right tail of one feature: -log((#{train >= x} + 1) / (n + 1))
    np.testing.assert_allclose(right.feature_outlyingness(Q)[3, 0], -np.log(1.0 / (n + 1)))
    m = FastECOD(tail="right", aggregate="max").fit(X)
    s = m.decision_function(Q)
    assert s[3] > s[2] and r[3] < r[2]  # max: one extreme value first; sum: the moderate-everywhere row first
    assert s[4] >= s[3]
    O = m.feature_outlyingness(Q)
    np.testing.assert_allclose(s, O.max(axis=1) + 1e-3 * O.sum(axis=1))
    with pytest.raises(Exception, match="tail"):
        FastECOD(tail="up").fit(X)
    with pytest.raises(Exception, match="aggregate"):
        FastECOD(aggregate="mean").fit(X)


@pytest.mark.filterwarnings("ignore:Precision loss:RuntimeWarning")  # the constant feature
def test_ecdf_tails_kernel_is_bit_identical_to_numpy_path():
    """The numba tails kernel equals the per-feature searchsorted path bit for bit: ties (integer
    features), a constant feature, values beyond the training range, +-inf, NaN, -0.0, tiny batches;
    tail/aggregate options and a pickle (no cached lookup arrays inside) score the same."""
    from fraud.detectors.unsupervised import _ecdf_kernel

    assert _ecdf_kernel() is not None  # numba is a dependency: the fast path must be the one tested
    rng = np.random.default_rng(3)
    n = 700
    Xt = np.column_stack([rng.integers(0, 12, n).astype(float), rng.normal(size=n).round(1), rng.lognormal(size=n),
                          np.ones(n), rng.normal(size=n)])
    Q = np.column_stack([rng.integers(-3, 16, 400).astype(float), rng.normal(scale=3, size=400).round(1),
                         rng.lognormal(size=400) * 3, rng.integers(0, 3, 400).astype(float), rng.normal(size=400)])
    Q[rng.random(Q.shape) < 0.05] = np.nan
    Q[0] = np.inf
    Q[1] = -np.inf
    Q[2] = -0.0
    Q[3] = Xt[5]  # exact training values
    for cls in (FastECOD, FastCOPOD):
        for kw in ({}, {"tail": "right", "aggregate": "max"}, {"tail": "left"}):
            det = cls(**kw).fit(Xt)
            for rows in (Q, Q[:1], Q[:37], Q[:0]):
                fast, ref = det._tails(rows), det._tails_numpy(rows)
                for a, b in zip(fast, ref):
                    assert a.shape == b.shape and a.flags.c_contiguous
                    assert np.array_equal(a.view(np.int64), b.view(np.int64))
            scores = det.decision_function(Q)
            restored = pickle.loads(pickle.dumps(det))
            assert "_lookup_cache" not in restored.__dict__
            assert np.array_equal(restored.decision_function(Q), scores, equal_nan=True)
            assert np.array_equal(det.feature_outlyingness(Q[:50]),
                                  det._outlyingness(*det._tails_numpy(Q[:50])), equal_nan=True)


@pytest.mark.filterwarnings("ignore:Precision loss:RuntimeWarning")
def test_hbos_kernel_is_bit_identical_to_numpy_path():
    """FastHBOS's numba scoring equals the numpy feature scores bit for bit: values on the bin edges, beyond
    them (inside and outside the tolerance), +-inf, NaN, a constant feature; a pickle scores the same."""
    from fraud.detectors.unsupervised import _hbos_feature_scores, _hbos_kernel

    assert _hbos_kernel() is not None
    rng = np.random.default_rng(4)
    Xt = np.column_stack([rng.lognormal(size=600), rng.integers(0, 5, 600).astype(float), np.ones(600),
                          rng.normal(size=600)])
    det = FastHBOS(n_bins=10).fit(Xt)
    Q = np.column_stack([rng.lognormal(size=300) * 2 - 0.5, rng.integers(-2, 8, 300).astype(float),
                         rng.integers(0, 3, 300).astype(float), rng.normal(scale=2, size=300)])
    Q[:11] = det.bin_edges_
    Q[11:22] = det.bin_edges_ + (det.bin_edges_[1] - det.bin_edges_[0]) * det.tol * 0.5
    Q[22:33] = det.bin_edges_ - (det.bin_edges_[1] - det.bin_edges_[0]) * det.tol * 0.5
    Q[rng.random(Q.shape) < 0.05] = np.nan
    Q[40] = np.inf
    Q[41] = -np.inf
    for rows in (Q, Q[:1], Q[:0]):
        ref = -_hbos_feature_scores(rows, det.bin_edges_, det.hist_, 10, det.alpha, det.tol).sum(axis=1)
        got = det.decision_function(rows)
        assert np.array_equal(got.view(np.int64), ref.view(np.int64))
    restored = pickle.loads(pickle.dumps(det))
    assert "_log_hist_cache" not in restored.__dict__
    assert np.array_equal(restored.decision_function(Q), det.decision_function(Q))


def test_explain_rows_reuses_the_decision_and_equals_explaining_the_taken_rows(data, fitted):
    """``explain(X, rows=idx)`` (what the scoring bundle calls right after ``decision_function(X)``: the components
    are reused) equals ``explain(X[idx])``, for the ensemble and the alarms laid over it, frame or matrix; the kept
    components are never pickled and a large decision keeps none."""
    from fraud.detectors.activity import ActivityAlarm
    from fraud.detectors.collusion import CollusionAlarm

    X, y = data
    Xc = X.assign(CL_T_NEW_AGED=np.where(np.arange(len(X)) % 97 == 0, 9.0, 0.0))
    with_c = _make("ensemble-sup").fit(Xc, y)  # a matrix holds every column the alarm reads: the bundle's way
    for name in ("ensemble-unsup", "ensemble-sup"):
        ens = fitted[name]
        coll = CollusionAlarm(with_c).fit(Xc.iloc[:1000].assign(CL_T_NEW_AGED=0.0))
        act = ActivityAlarm(ens, columns=("amount",), quantile=0.99).fit(X)
        for det, frame in ((ens, X), (coll, Xc), (act, X)):
            assert det.explains_rows
            for rows in (frame.iloc[:200], frame.iloc[:200].to_numpy()):
                idx = np.flatnonzero(det.decision_function(rows) >= 0.3)[:7]
                got = det.explain(rows, top=3, rows=idx)
                take = rows.iloc[idx] if isinstance(rows, pd.DataFrame) else rows[idx]
                assert got == det.explain(take, top=3) and len(got) == len(idx)
                assert det.explain(rows.copy(), top=3, rows=idx) == got  # another X: computed, not reused
        assert "_last" in vars(ens) and "_last" not in vars(pickle.loads(pickle.dumps(ens)))
        ens.decision_function(X.iloc[:ens.reuse_rows + 1])
        assert len(ens._last[0]) <= ens.reuse_rows
    assert not CollusionAlarm.rows_aware or CollusionAlarm(fitted["lightgbm"]).explains_rows is False


def test_pickling_a_head_leaves_its_own_walk_in_place(data, fitted):
    """The pickle drops the packed walk and per-leaf paths (rebuilt on first use), the pickled head keeps them."""
    X, _ = data
    head = fitted["lightgbm"]
    head.path_contributions(X.iloc[:5].to_numpy())
    head.decision_function(X.iloc[:5].to_numpy())
    built = set(head._paths)
    back = pickle.loads(pickle.dumps(head))
    assert {"packed", "leaves"} <= built
    assert set(head._paths) == built and not {"packed", "leaves"} & set(back._paths)
    np.testing.assert_array_equal(back.decision_function(X.iloc[:50]), head.decision_function(X.iloc[:50]))
