"""Our models in the handbook bench registry: they run through the product pipeline and keep the
information rule."""
from __future__ import annotations

import numpy as np
import pytest

from benchmarks import handbook, ours
from fraud.errors import ConfigError
from fraud.evaluate import splits_for, train_test


@pytest.fixture(scope="module")
def world():
    from fraud.simulate import simulate

    return simulate(customers=150, terminals=300, days=32, seed=7)


def test_registered_and_featurizer_known():
    from fraud.training import featurizers

    assert "ours" in handbook.MODELS and "ours-unsupervised" in handbook.MODELS
    assert featurizers.FEATURIZERS["behaviour"] == "fraud.features.behaviour:BehaviourFeatures"
    assert featurizers.featurizer_class("behaviour").__name__ == "BehaviourFeatures"


def test_bench_runs_ours_models(world):
    res = handbook.run(world, protocol="single", models=["ours", "ours-unsupervised", "logistic_regression"])
    for m in ("ours", "ours-unsupervised"):
        entry = res["models"][m]
        assert set(entry) >= {"auc", "ap", "cp@100"}
        assert all(np.isfinite(entry[k]) for k in ("auc", "ap"))
    fraud_rate = float(world["label"].mean())
    assert res["models"]["ours"]["ap"] > 3 * fraud_rate  # far better than chance
    assert res["models"]["ours-unsupervised"]["ap"] > 3 * fraud_rate
    assert res["models"]["ours"]["ap"] > res["models"]["logistic_regression"]["ap"]  # beats the book's baseline


def test_supervised_config_is_a_valid_training_config():
    """The bench's configuration builds the product's detector: the head with HEAD_PARAMS over both featurizers."""
    from fraud.training import TrainConfig
    from fraud.training.detector import make_detector
    from fraud.training.featurizers import make_featurizer

    cfg = TrainConfig(**ours.SUPERVISED_CONFIG)
    det = make_detector(cfg, supervised=True)
    assert det.supervised == "lightgbm" and det.supervised_params == ours.HEAD_PARAMS
    beh = make_featurizer("behaviour", cfg).fit(None)
    assert {"BH_C_MAX_PRIOR_RATIO_14D", "BH_T_KNOWN_PLAIN_FRAUD_28D"} <= set(beh.feature_names_)


#: a lighter supervised head for the rule checks (the rule does not depend on the model's size)
LIGHT = dict(ensemble_params={"supervised_params": {"n_estimators": 40}})


def score(train, test, history):
    return ours.pipeline_scores(train, test, history=history, config=LIGHT)


def test_information_rule_and_history_check(world):
    split = splits_for(world, "single")[0]
    data = handbook.with_features(world, [split])
    train, test = train_test(data, split)
    base = score(train, test, world)
    assert base.shape == (len(test),) and np.isfinite(base).all()

    # a test row at t reads labels older than t - 7 days only: the test week's labels are never read
    ts = world["timestamp"]
    hidden = (ts >= split.test_start).to_numpy()
    flipped = world.copy()
    flipped.loc[hidden, "label"] = (1 - world.loc[hidden, "label"]).astype(np.int8)
    np.testing.assert_allclose(score(train, test, flipped), base)

    # ... while the training week's labels are what the supervised head learns from
    moved = world.copy()
    wk = ((ts >= split.train_start) & (ts < split.train_end)).to_numpy()
    moved.loc[wk, "label"] = np.int8(0)
    moved.loc[wk & (world["amount"] > 100).to_numpy(), "label"] = np.int8(1)
    assert not np.allclose(score(train, test, moved), base)

    # no labels at all: the unsupervised model's scores ignore every label
    u = ours.ours_unsupervised(train, test, history=world)
    no_labels = world.assign(label=np.int8(0))
    np.testing.assert_allclose(ours.ours_unsupervised(train, test, history=no_labels), u)

    with pytest.raises(ConfigError, match="not part of"):
        ours.ours(train, test, history=world.iloc[:10])
