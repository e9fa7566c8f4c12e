"""`fraud monitor` / `retrain --if-drift` on traffic like the training window's: the features are replayed from the
model's training cutoff (a 30-day recompute read 60-day windows short: BH_C_NB_TX_60D "drifted" on an unchanged
world, and every drift-triggered retrain fired), and a card's age, which grows with the data's span, is reported
apart and counts for no verdict."""
from __future__ import annotations

import warnings

import pandas as pd
import pytest

from fraud import drift


@pytest.fixture(scope="module")
def model_and_world():
    from fraud.simulate import simulate
    from fraud.training import TrainConfig, train

    df = simulate(customers=200, terminals=400, days=75, seed=3)
    cut = df["timestamp"].min().normalize() + pd.Timedelta(days=60)
    cfg = TrainConfig(featurizers=("tabular", "behaviour", "collusion"), unsupervised=("iforest", "hbos"),
                      ensemble_params={"supervised_params": {"n_estimators": 60}}, baseline_trees=20)  # small: speed
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return train(df[df["timestamp"] < cut], cfg, train_until=cut).bundle, df


def test_unchanged_world_is_stable_when_replayed_from_the_cutoff(model_and_world):
    bundle, df = model_and_world
    r = drift.report(bundle, df, days=7)
    assert r["features_from"] == "replayed from the model's training cutoff"
    assert r["features"]["BH_C_NB_TX_60D"] < drift.DRIFTED
    assert "CL_C_AGE_DAYS" in r["clock"] and "CL_C_AGE_DAYS" not in r["features"]
    assert r["clock"]["CL_C_AGE_DAYS"] > drift.DRIFTED  # it does move, it is only not counted
    assert r["max_psi"] < drift.DRIFTED, drift.summary(r, top=3)
    assert "not counted" in drift.table(r)


def test_events_that_begin_after_the_cutoff_fall_back_to_the_lookback(model_and_world):
    bundle, df = model_and_world
    late = df[df["timestamp"] > df["timestamp"].max() - pd.Timedelta(days=10)]
    r = drift.report(bundle, late, days=7, lookback_days=3)
    assert r["features_from"] == "recomputed over a 3-day lookback"
    assert r["features"]["BH_C_NB_TX_60D"] > drift.DRIFTED  # what the short recompute reads: windows cut short
