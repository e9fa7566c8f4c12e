"""ActivityAlarm: the override above the training quantiles of the activity columns; TrainConfig's switch."""
from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

from fraud.detectors.activity import COLUMNS, ActivityAlarm
from fraud.errors import ConfigError, NotFittedError


class Base:
    feature_names_ = ["x", *COLUMNS]

    def decision_function(self, X):
        return np.asarray(X, dtype=float)[:, 0]

    def explain(self, X, top=3):
        return [["base"] for _ in range(len(X))]


def _train() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    z = rng.normal(size=(1000, 3))
    return pd.DataFrame(np.column_stack([rng.random(1000), z]), columns=Base.feature_names_)


def test_thresholds_are_the_training_quantiles_and_alarms_outrank_the_rest():
    train = _train()
    alarm = ActivityAlarm(Base(), quantile=0.99).fit(train)
    np.testing.assert_allclose(alarm.thresholds_, np.quantile(train[list(COLUMNS)].to_numpy(), 0.99, axis=0))
    th = alarm.thresholds_
    X = np.array([[0.9, *(th - 1)],                       # no alarm: the base score, scaled
                  [0.1, *(th - 1)],
                  [0.0, th[0] + 0.5, th[1] - 1, th[2] - 1],  # the card's volume just above
                  [0.0, th[0] - 1, th[1] - 1, th[2] + 4]])   # the terminal's, far above
    s = alarm.decision_function(X)
    assert s[0] == pytest.approx(0.9 * 0.999) and s[1] == pytest.approx(0.1 * 0.999)
    assert 0.999 < s[2] < s[3] <= 1.0
    np.testing.assert_allclose(alarm.decision_function(pd.DataFrame(X, columns=Base.feature_names_)), s)
    ex = alarm.explain(X)
    assert ex[0] == ["base"] and ex[3][0].startswith("activity: BH_T_TX_EXCESS_1D = ")
    assert ex[2][0].startswith("activity: BH_C_TX_EXCESS_1D = ") and ex[2][1:] == ["base"]


def test_missing_columns_bad_parameters_and_unfitted():
    with pytest.raises(ConfigError, match=r"\['BH_C_NB_SMALL_7D'\] are missing"):
        ActivityAlarm(Base()).fit(_train().drop(columns="BH_C_NB_SMALL_7D"))
    with pytest.raises(ConfigError, match="quantile=1.5"):
        ActivityAlarm(Base(), quantile=1.5).fit(_train())
    with pytest.raises(NotFittedError):
        ActivityAlarm(Base()).decision_function(np.zeros((2, 4)))


def test_train_config_switch_puts_it_under_the_collusion_alarm():
    from fraud.simulate import simulate
    from fraud.training import TrainConfig, train

    world = simulate(customers=120, terminals=240, days=35, seed=3)
    light = dict(featurizers=("tabular", "behaviour", "collusion"), unsupervised=("hbos",), warm_state_days=0,
                 baseline_guard=False, ensemble_params={"supervised_params": {"n_estimators": 30, "n_jobs": 1}})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        on = train(world, TrainConfig(**light, activity_alarm=True)).bundle
        off = train(world, TrainConfig(**light)).bundle
    assert type(on.detector).__name__ == "CollusionAlarm" and isinstance(on.detector.base, ActivityAlarm)
    assert not isinstance(off.detector.base, ActivityAlarm)
    assert TrainConfig(activity_alarm=True).params()["activity_alarm"] is True
    assert "activity_alarm" not in TrainConfig().params()
    X = on.features_batch(world)
    fired = on.detector.base.alarm(X) > 0
    assert 0 < fired.sum() < 0.01 * len(X)  # the 0.999 quantile of the training rows
    under = on.detector.base.decision_function(X)
    assert under[fired].min() > under[~fired].max()
    with pytest.raises(ConfigError, match="behaviour featurizer"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            train(world, TrainConfig(**{**light, "featurizers": ("tabular", "collusion")}, activity_alarm=True))


def test_below_lifts_alarms_under_the_confident_rows_only():
    """``below``: an alarm lifts a row to the base's training score at that quantile (not above every row); rows
    scored above it by the base keep their place, rows without an alarm keep their score."""
    train = _train()
    alarm = ActivityAlarm(Base(), columns=("BH_T_TX_EXCESS_1D",), quantile=0.99, below=0.9).fit(train)
    assert alarm.level_ == pytest.approx(np.quantile(train["x"], 0.9))
    th = alarm.thresholds_[0]
    X = np.array([[0.95, 0, 0, th - 1],    # confident, no alarm
                  [0.10, 0, 0, th - 1],    # no alarm: unchanged
                  [0.10, 0, 0, th + 0.5],  # alarm: lifted to the level
                  [0.10, 0, 0, th + 4],    # a larger excess: a little higher
                  [0.97, 0, 0, th + 4]])   # an alarm on a confident row: its own score
    s = alarm.decision_function(X)
    assert s[0] == 0.95 and s[1] == 0.10 and s[4] == 0.97
    assert alarm.level_ < s[2] < s[3] < alarm.level_ + 1e-5 < s[0]
    with pytest.raises(ConfigError, match="below"):
        ActivityAlarm(Base(), below=1.5).fit(train)


def test_train_config_terminal_alarm_lifts_bursts_under_the_model_and_needs_its_column():
    from fraud.detectors.activity import TERMINAL_COLUMNS
    from fraud.simulate import simulate
    from fraud.training import TrainConfig, train

    world = simulate(customers=120, terminals=240, days=35, seed=3)
    light = dict(featurizers=("tabular", "behaviour"), unsupervised=("hbos",), warm_state_days=0,
                 baseline_guard=False, ensemble_params={"supervised_params": {"n_estimators": 30, "n_jobs": 1}})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        on = train(world, TrainConfig(**light, terminal_alarm=True)).bundle
        without = train(world, TrainConfig(**{**light, "featurizers": ("tabular",)}, terminal_alarm=True)).bundle
    assert isinstance(on.detector, ActivityAlarm) and on.detector.columns == TERMINAL_COLUMNS
    assert not isinstance(without.detector, ActivityAlarm)  # no activity column: skipped, not an error
    assert TrainConfig(terminal_alarm=True).params()["terminal_alarm"] is True
    X = on.features_batch(world)
    fired = on.detector.alarm(X) > 0
    assert 0 < fired.sum() < 0.01 * len(X)
    base, s = on.detector.base.decision_function(X), on.detector.decision_function(X)
    assert (s[~fired] == base[~fired]).all() and (s[fired] >= base[fired]).all()
    assert (s[fired] < on.detector.level_ + 1e-5).sum() == (base[fired] < on.detector.level_).sum()
