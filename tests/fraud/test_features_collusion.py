"""CollusionFeatures: hand-computed values, replay == transform, label-free, data-only state round trip; the alarm."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from fraud.detectors.collusion import CollusionAlarm
from featurizer_checks import assert_replay_equals_transform
from fraud.features.collusion import NAMES, CollusionFeatures


@pytest.fixture(scope="module")
def world(random_world) -> pd.DataFrame:
    return random_world(60, 40, 40, fraud_rate=0.05)


def _ring() -> pd.DataFrame:
    """Cards a, b, c each use their own merchant for 30 days, then visit merchant M one after another."""
    t0 = pd.Timestamp("2024-01-01", tz="UTC")
    rows = [(t0 + pd.Timedelta(days=d), c, f"home-{c}") for d in range(0, 30, 3) for c in "abc"]
    rows += [(t0 + pd.Timedelta(days=31, hours=h), c, "M") for h, c in ((1, "a"), (2, "b"), (3, "c"), (4, "a"))]
    df = pd.DataFrame(rows, columns=["timestamp", "customer_id", "terminal_id"])
    return df.assign(tx_id=[str(i) for i in range(len(df))], amount=10.0)


def test_hand_computed_ring():
    X = CollusionFeatures(aged_days=28).fit(None).transform(_ring())
    assert list(X.columns) == NAMES
    last = X.iloc[-4:]
    assert last["CL_NEW_PAIR"].tolist() == [1, 1, 1, 0]  # a's second visit to M is not new
    assert last["CL_T_NEW_AGED"].tolist() == [1, 2, 3, 3]  # established newcomers at M this week
    assert last["CL_T_UNRELATED_NEW"].tolist() == [0, 1, 2, 2]  # they share no merchant with each other
    assert last["CL_CONVERGE"].tolist() == [0, 1, 2, 0]
    assert last["CL_C_AGE_DAYS"].iloc[0] == pytest.approx(31 + 1 / 24)
    assert X["CL_T_NEW_AGED"].iloc[:-4].max() <= 1  # before the ring: at most the card itself


def test_replay_equals_transform(world):
    f = CollusionFeatures(window_days=5, aged_days=7, max_terminals=4).fit(world)
    assert_replay_equals_transform(f, world, batch_sizes=(1, 7, 500))


def test_alarm_raises_only_beyond_the_training_maximum():
    class Base:
        feature_names_ = ["x", "CL_T_NEW_AGED"]

        def decision_function(self, X):
            return np.full(len(X), 0.2)

        def explain(self, X, top=3):
            return [["base"] for _ in range(len(X))]

    train = pd.DataFrame({"x": [0.0, 1.0], "CL_T_NEW_AGED": [0.0, 2.0]})
    alarm = CollusionAlarm(Base()).fit(train)
    X = np.array([[0.0, 2.0], [0.0, 3.0], [0.0, 6.0]])
    s = alarm.decision_function(X)
    assert s[0] == pytest.approx(0.2 * 0.999) and 0.999 < s[1] < s[2] <= 1.0
    assert alarm.explain(X)[1][0].startswith("collusion: 3 established cards")
