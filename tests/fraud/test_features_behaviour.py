"""BehaviourFeatures: hand-computed values, replay == transform, leakage, bounded state, feedback."""
from __future__ import annotations

import pickle

import numpy as np
import pandas as pd
import pytest

from fraud.errors import ConfigError, NotFittedError, SchemaError
from featurizer_checks import assert_replay_equals_transform
from fraud.features.base import replay
from fraud.features.behaviour import GROUPS, BehaviourFeatures

SMALL = dict(delay_days=2, amount_window=5, lag_days=2, recent_days=1, customer_label_window=5,
             terminal_windows=(3,), terminal_label_window=5)


@pytest.fixture(scope="module")
def world(random_world) -> pd.DataFrame:
    return random_world(50, 70, 40, fraud_rate=0.08)


def test_names_and_groups():
    f = BehaviourFeatures().fit(None)
    assert f.feature_names_[:3] == ["BH_AMOUNT", "BH_C_NB_TX_60D", "BH_C_AMT_RATIO_60D"]
    assert "BH_T_DAYS_SINCE_FIRST_FRAUD" in f.feature_names_ and len(set(f.feature_names_)) == len(f.feature_names_)
    amount_only = BehaviourFeatures(groups=("amount",)).fit(None)
    assert amount_only.feature_names_ == ["BH_AMOUNT", "BH_C_NB_TX_60D", "BH_C_AMT_RATIO_60D", "BH_C_AMT_Z_60D",
                                          "BH_C_AMT_RATIO_LAG14D", "BH_C_RECENT_RATIO_7D", "BH_C_NB_UNUSUAL_7D",
                                          "BH_C_MAX_PRIOR_RATIO_14D"]
    assert f.feature_names_[-4:] == ["BH_T_KNOWN_PLAIN_FRAUD_28D", "BH_C_TX_EXCESS_1D", "BH_C_NB_SMALL_7D",
                                     "BH_T_TX_EXCESS_1D"]
    assert BehaviourFeatures(groups="activity").fit(None).feature_names_ == f.feature_names_[-3:]
    on = BehaviourFeatures(cards_surprise=True).fit(None).feature_names_
    assert on == f.feature_names_ + ["BH_T_CARDS_SURPRISE_1D"]
    assert set(GROUPS) == {"amount", "customer_fraud", "terminal", "activity"}


def test_hand_computed_tiny_frame(tiny_frame):
    # customer A: t0 01-01 10:00 (10), t2 01-02 09:00 (30), t3 01-03 23:30 (40), t5 01-06 13:00 (60, fraud),
    #             t7 01-10 11:00 (80); customer B: t1 01-01 12:00 (20, fraud), t4 01-05 08:00 (50), t6 01-09 10:00 (70)
    # terminal X: t0, t1 (fraud), t3, t5 (fraud), t6; terminal Y: t2, t4, t7
    X = BehaviourFeatures(**SMALL).fit(tiny_frame).transform(tiny_frame)
    assert list(X.index) == list(tiny_frame.index)
    # t3 (A, X, 01-03 23:30, 40): 5-day window = t0, t2, t3 (10, 30, 40)
    mean = 80 / 3
    std = np.sqrt((100 + 900 + 1600) / 3 - mean ** 2)
    row = X.loc[3]
    assert row["BH_AMOUNT"] == 40 and row["BH_C_NB_TX_5D"] == 3
    assert row["BH_C_AMT_RATIO_5D"] == pytest.approx(40 / mean)
    assert row["BH_C_AMT_Z_5D"] == pytest.approx((40 - mean) / std)
    assert row["BH_C_AMT_RATIO_LAG2D"] == pytest.approx(40 / 10)  # (t-5d, t-2d] holds t0 only
    assert row["BH_C_RECENT_RATIO_1D"] == pytest.approx(40 / mean)  # last day: t3 only
    assert row["BH_C_KNOWN_FRAUD_5D"] == 0 and row["BH_C_DAYS_SINCE_FRAUD"] == 7  # none: d + Hc
    # terminal X, labels in (t-5d, t-2d] = (12-29 23:30, 01-01 23:30]: t0 (genuine), t1 (fraud, 01-01 12:00)
    assert row["BH_T_KNOWN_FRAUD_3D"] == 1
    assert row["BH_T_DAYS_SINCE_FRAUD"] == pytest.approx(2 + 11.5 / 24)
    assert row["BH_T_DAYS_SINCE_FIRST_FRAUD"] == pytest.approx(2 + 11.5 / 24)
    assert row["BH_T_FRAUD_SHARE_SINCE_FIRST"] == 1.0 and row["BH_T_LAST_IS_FRAUD"] == 1.0
    # t6 (B, X, 01-09 10:00, 70): B's 5-day window = t4 (50), t6; lagged (t-5d, t-2d] = t4
    row = X.loc[6]
    assert row["BH_C_AMT_RATIO_5D"] == pytest.approx(70 / 60) and row["BH_C_AMT_RATIO_LAG2D"] == pytest.approx(70 / 50)
    assert row["BH_C_KNOWN_FRAUD_5D"] == 0  # B's fraud t1 (01-01 12:00) is before t - 2d - 5d
    # X: (t-5d, t-2d] = (01-04 10:00, 01-07 10:00] holds t5 (fraud, 01-06 13:00); Ht window adds t3 (genuine)
    assert row["BH_T_KNOWN_FRAUD_3D"] == 1
    assert row["BH_T_DAYS_SINCE_FRAUD"] == pytest.approx(2 + 21 / 24)
    assert row["BH_T_DAYS_SINCE_FIRST_FRAUD"] == pytest.approx(2 + 21 / 24)
    # t7 (A, Y, 01-10 11:00): A's fraud t5 (01-06 13:00) is in (t-7d, t-2d]
    row = X.loc[7]
    assert row["BH_C_KNOWN_FRAUD_5D"] == 1 and row["BH_C_DAYS_SINCE_FRAUD"] == pytest.approx(3 + 22 / 24)
    assert row["BH_T_KNOWN_FRAUD_3D"] == 0 and row["BH_T_DAYS_SINCE_FRAUD"] == 7 and row["BH_T_LAST_IS_FRAUD"] == 0
    # the first event of a customer: ratio 1, z 0
    assert X.loc[0, "BH_C_AMT_RATIO_5D"] == 1.0 and X.loc[0, "BH_C_AMT_Z_5D"] == 0.0


def test_hand_computed_unusual_amounts_and_terminal_runs(tiny_frame):
    """Unusual amounts (lagged ratio > normal_ratio = 2), the terminal's known frauds on normal-looking amounts,
    its run of known frauds and the known genuine transactions after its last known fraud."""
    X = BehaviourFeatures(**SMALL).fit(tiny_frame).transform(tiny_frame)
    # t3 (A, 40): lagged mean over (t-5d, t-2d] = t0 (10): ratio 4 -> unusual; the last day holds t3 only
    assert X.loc[3, "BH_C_NB_UNUSUAL_1D"] == 1
    # t2 (A, 30): no lagged history -> the 5-day ratio 30 / 20 = 1.5; last day: t0 (first event, normal) and t2
    assert X.loc[2, "BH_C_NB_UNUSUAL_1D"] == 0
    # t3 (terminal X): known (12-29 23:30, 01-01 23:30] = t0 (genuine), t1 (fraud, B's first event: ratio 1, normal)
    row = X.loc[3]
    assert row["BH_T_KNOWN_NORMAL_FRAUD_5D"] == 1 and row["BH_T_FRAUD_STREAK"] == 1
    assert row["BH_T_GENUINE_AFTER_FRAUD"] == 0
    # t5 (X, 01-06 13:00): known (12-30 13:00, 01-04 13:00] = t0, t1 (fraud), t3 (genuine): the run is broken
    row = X.loc[5]
    assert row["BH_T_KNOWN_NORMAL_FRAUD_5D"] == 1 and row["BH_T_FRAUD_STREAK"] == 0
    assert row["BH_T_GENUINE_AFTER_FRAUD"] == 1
    # t6 (X, 01-09 10:00): known (01-02 10:00, 01-07 10:00] = t3 (genuine), t5 (fraud: A's 60 vs lagged mean
    # (30 + 40) / 2 = 35, ratio 1.71 <= 2, normal)
    row = X.loc[6]
    assert row["BH_T_KNOWN_NORMAL_FRAUD_5D"] == 1 and row["BH_T_FRAUD_STREAK"] == 1
    assert row["BH_T_GENUINE_AFTER_FRAUD"] == 0
    # a lower normal_ratio makes t5's amount unusual: it is no longer a normal-looking known fraud at t6
    X2 = BehaviourFeatures(**SMALL, normal_ratio=1.5).fit(tiny_frame).transform(tiny_frame)
    assert X2.loc[6, "BH_T_KNOWN_NORMAL_FRAUD_5D"] == 0 and X2.loc[6, "BH_T_FRAUD_STREAK"] == 1
    # t7 (Y, 01-10 11:00): known at Y in (01-03 11:00, 01-08 11:00] = t4 (genuine), no fraud: all known count
    row = X.loc[7]
    assert row["BH_T_KNOWN_NORMAL_FRAUD_5D"] == 0 and row["BH_T_FRAUD_STREAK"] == 0
    assert row["BH_T_GENUINE_AFTER_FRAUD"] == 1


def test_hand_computed_card_max_prior_ratio_and_plain_terminal_frauds(tiny_frame):
    """BH_C_MAX_PRIOR_RATIO (the card's largest earlier lagged ratio in (t - c, t)) and the terminal's known frauds
    that neither their amount nor their card's earlier amounts explain (BH_T_KNOWN_PLAIN_FRAUD)."""
    X = BehaviourFeatures(**SMALL, card_window=3).fit(tiny_frame).transform(tiny_frame)
    # lagged ratios: A: t0 1 (first event), t2 1.5 (no lagged history: 5-day ratio 30 / 20), t3 4.0, t5 60 / 35,
    # t7 80 / 60; B: t1 1, t4 50 / 20 = 2.5, t6 70 / 50
    m = X["BH_C_MAX_PRIOR_RATIO_3D"]
    assert m[0] == 0 and m[1] == 0  # no earlier transaction
    assert m[2] == 1.0  # A's t0 in (12-30 09:00, 01-02 09:00)
    assert m[3] == 1.5  # t0, t2
    assert m[5] == 4.0  # (01-03 13:00, 01-06 13:00): t3
    assert m[7] == 0 and m[4] == 0 and m[6] == 0  # nothing in the last 3 days
    # t3 (X): known (12-29 23:30, 01-01 23:30] = t0, t1 (fraud, ratio 1, no earlier transaction: plain)
    assert X.loc[3, "BH_T_KNOWN_PLAIN_FRAUD_5D"] == 1
    # t6 (X): known = t3, t5 (fraud with a normal amount, 60 / 35, but its card showed a x4 amount just before)
    assert X.loc[6, "BH_T_KNOWN_NORMAL_FRAUD_5D"] == 1 and X.loc[6, "BH_T_KNOWN_PLAIN_FRAUD_5D"] == 0
    X2 = BehaviourFeatures(**SMALL, card_window=3, card_ratio=5).fit(tiny_frame).transform(tiny_frame)
    assert X2.loc[6, "BH_T_KNOWN_PLAIN_FRAUD_5D"] == 1
    # the replay gives the same values, one row at a time (the per-event ratio and flag kept in the state)
    f = BehaviourFeatures(**SMALL, card_window=3).fit(tiny_frame)
    np.testing.assert_array_equal(replay(f, tiny_frame, batch_size=1).to_numpy(), X.to_numpy())


def test_hand_computed_activity_against_own_past(tiny_frame):
    """The activity group (no labels): a card's / terminal's events of the last day beyond its own usual rate,
    (n - e) / sqrt(e + 1), and the card's unusually small amounts (lagged ratio below small_ratio)."""
    X = BehaviourFeatures(**SMALL, small_ratio=1.5).fit(tiny_frame).transform(tiny_frame)
    # t2 (A, 01-02 09:00): last day = t0, t2; nothing before it: e = 0
    assert X.loc[2, "BH_C_TX_EXCESS_1D"] == 2.0
    # t3 (A, 01-03 23:30): last day = t3; before it (12-29 23:30, 01-02 23:30] = t0, t2 over the 37.5 h since t0
    e = 2 * 24 / 37.5
    assert X.loc[3, "BH_C_TX_EXCESS_1D"] == pytest.approx((1 - e) / np.sqrt(e + 1))
    # terminal X at t1 (01-01 12:00): t0, t1 in the last day, no past; at t6 (01-09 10:00): t6, past = t5
    # (01-06 13:00) over the 45 h to 01-08 10:00
    assert X.loc[1, "BH_T_TX_EXCESS_1D"] == 2.0
    e = 24 / 45
    assert X.loc[6, "BH_T_TX_EXCESS_1D"] == pytest.approx((1 - e) / np.sqrt(e + 1))
    # lagged ratios (see above): A t0 1, t2 1.5, t3 4, t7 1.33; B t1 1, t6 1.4: below 1.5 = t0, t7, t1, t6
    small = X["BH_C_NB_SMALL_1D"]
    assert list(small) == [1, 1, 1, 0, 0, 0, 1, 1]
    assert (BehaviourFeatures(**SMALL).fit(tiny_frame).transform(tiny_frame)["BH_C_NB_SMALL_1D"] == 0).all()
    f = BehaviourFeatures(**SMALL, small_ratio=1.5).fit(tiny_frame)
    np.testing.assert_array_equal(replay(f, tiny_frame, batch_size=1).to_numpy(), X.to_numpy())
    with pytest.raises(ConfigError, match="burst_days"):
        BehaviourFeatures(**{**SMALL, "burst_days": 5}).fit(None)


def test_columns_selection(random_world):
    cols = ("BH_AMOUNT", "BH_C_AMT_RATIO_LAG14D")
    f = BehaviourFeatures(groups=("amount",), columns=cols).fit(None)
    assert f.feature_names_ == list(cols)
    df = random_world(10, 10, 10, seed=1, fraud_rate=0.08)
    full = BehaviourFeatures().fit(df).transform(df)
    got = f.transform(df)
    np.testing.assert_array_equal(got.to_numpy(), full[list(cols)].to_numpy())
    np.testing.assert_array_equal(replay(f, df, batch_size=50).to_numpy(), got.to_numpy())
    with pytest.raises(ConfigError, match="BH_T_FRAUD_STREAK"):
        BehaviourFeatures(groups=("amount",), columns=("BH_T_FRAUD_STREAK",)).fit(None)


def test_replay_equals_transform(world):
    f = BehaviourFeatures(amount_window=20, lag_days=5, customer_label_window=10, terminal_windows=(1, 7),
                          terminal_label_window=14).fit(world)
    assert_replay_equals_transform(f, world, batch_sizes=(13, 500))
    assert_replay_equals_transform(BehaviourFeatures(amount_window=20, cards_surprise=True).fit(world), world,
                                   batch_sizes=(13,))
    assert_replay_equals_transform(f, world.iloc[:300], batch_sizes=(1,))
    # a card window longer than the amount window: the state keeps the events it needs
    f = BehaviourFeatures(delay_days=1, amount_window=4, lag_days=2, recent_days=2, card_window=9,
                          customer_label_window=3, terminal_label_window=3, terminal_windows=(2,)).fit(world)
    assert f.new_state().horizon_ns == 9 * 86_400 * 10**9
    assert_replay_equals_transform(f, world, batch_sizes=(97,))


def test_no_leakage_from_recent_labels_or_later_transactions(world):
    f = BehaviourFeatures(amount_window=20, lag_days=5, customer_label_window=10, terminal_label_window=14).fit(world)
    new = ["BH_C_NB_UNUSUAL_7D", "BH_C_MAX_PRIOR_RATIO_14D", "BH_T_KNOWN_NORMAL_FRAUD_14D", "BH_T_FRAUD_STREAK",
           "BH_T_GENUINE_AFTER_FRAUD", "BH_T_KNOWN_PLAIN_FRAUD_14D"]
    assert set(new) <= set(f.feature_names_)  # every feature, the label-run ones included, is checked below
    base = f.transform(world)
    cut = world["timestamp"].iloc[len(world) * 2 // 3]
    early = (world["timestamp"] <= cut).to_numpy()
    rng = np.random.default_rng(5)

    flipped = world.copy()
    recent = (world["timestamp"] > cut - pd.Timedelta(days=7)).to_numpy()
    flipped.loc[recent, "label"] = (1 - world.loc[recent, "label"]).astype(np.int8)
    got = f.transform(flipped)
    np.testing.assert_array_equal(got.to_numpy()[early], base.to_numpy()[early])
    assert not np.array_equal(got.to_numpy()[~early], base.to_numpy()[~early])  # the flip matters later
    for c in new[2:]:  # ... to each label-based terminal feature
        assert not np.array_equal(got[c].to_numpy()[~early], base[c].to_numpy()[~early]), c

    later = world.copy()
    nl = int((~early).sum())
    later.loc[~early, "amount"] = rng.gamma(2.0, 50.0, nl)
    later.loc[~early, "customer_id"] = rng.integers(0, 50, nl).astype(str)
    later.loc[~early, "terminal_id"] = rng.integers(0, 70, nl).astype(str)
    later.loc[~early, "label"] = (rng.random(nl) < 0.5).astype(np.int8)
    extra = later.iloc[-100:].copy()
    extra["tx_id"] = [f"x{i}" for i in range(100)]
    later = pd.concat([later, extra], ignore_index=True)
    got = f.transform(later)
    np.testing.assert_array_equal(got.to_numpy()[: len(world)][early], base.to_numpy()[early])


def test_scenario_signals(random_world):
    """A x5 amount stands out against the customer's own history; a terminal with known frauds is flagged."""
    df = random_world(20, 30, 40, seed=3, fraud_rate=0.08)
    df["label"] = np.int8(0)
    i = len(df) - 1
    df.loc[i, "amount"] = df.loc[df["customer_id"] == df.loc[i, "customer_id"], "amount"].mean() * 5
    X = BehaviourFeatures().fit(df).transform(df)
    others = X["BH_C_AMT_RATIO_LAG14D"].drop(index=i)
    assert X.loc[i, "BH_C_AMT_RATIO_LAG14D"] > others.quantile(0.99)
    assert (X["BH_T_KNOWN_FRAUD_28D"] == 0).all()  # no label at all: no terminal signal


def test_online_state_is_bounded_and_picklable(world):
    f = BehaviourFeatures(amount_window=10, lag_days=3, customer_label_window=5, terminal_windows=(1, 3),
                          terminal_label_window=5, card_window=9).fit(world)
    st = f.new_state()
    replay(f, world, batch_size=400, state=st)
    horizon = pd.Timedelta(days=12)  # max(10, 2 + 5 ...) with d = 7 -> 7 + 5 = 12
    kept = world[world["timestamp"] > world["timestamp"].iloc[-1] - horizon]
    assert st.n_events == len(kept)
    st2 = pickle.loads(pickle.dumps(st))
    assert st2.n_events == st.n_events


def test_errors():
    with pytest.raises(NotFittedError):
        BehaviourFeatures().transform(pd.DataFrame())
    with pytest.raises(ConfigError, match="delay_days"):
        BehaviourFeatures(delay_days=0).fit(None)
    with pytest.raises(ConfigError, match="lag_days"):
        BehaviourFeatures(amount_window=10, lag_days=10).fit(None)
    with pytest.raises(ConfigError, match="normal_ratio"):
        BehaviourFeatures(normal_ratio=0).fit(None)
    with pytest.raises(ConfigError, match="card_window"):
        BehaviourFeatures(card_window=-1).fit(None)
    with pytest.raises(ConfigError, match="card_ratio"):
        BehaviourFeatures(card_ratio="x").fit(None)
    with pytest.raises(ConfigError, match="groups"):
        BehaviourFeatures(groups=("nope",)).fit(None)
    with pytest.raises(SchemaError, match="amount"):
        BehaviourFeatures().fit(None).transform(pd.DataFrame({"timestamp": [], "customer_id": [], "terminal_id": []}))



def _burst_frame() -> pd.DataFrame:
    """Terminal T: card a at 12:00 on days 0-9; on day 10 cards b (10:00, 11:30), c (11:00, 12:00) and a (13:00);
    terminal U: one visit of card d a day at 09:00 (another terminal, not counted at T)."""
    day = pd.Timestamp("2024-01-01", tz="UTC")
    rows = [(day + pd.Timedelta(days=i, hours=12), "a", "T") for i in range(10)]
    rows += [(day + pd.Timedelta(days=i, hours=9), "d", "U") for i in range(11)]
    rows += [(day + pd.Timedelta(days=10, hours=h), c, "T") for h, c in ((10, "b"), (11, "c"), (11.5, "b"),
                                                                           (12, "c"), (13, "a"))]
    df = pd.DataFrame(rows, columns=["timestamp", "customer_id", "terminal_id"]).sort_values("timestamp", kind="stable")
    return df.assign(tx_id=[f"t{i}" for i in range(len(df))], amount=10.0, label=0).reset_index(drop=True)


def test_hand_computed_cards_surprise():
    """BH_T_CARDS_SURPRISE: -log10 P(N >= n), N ~ Poisson(mu), n = the distinct cards at the terminal in the last
    day (a card's second visit within a day is not counted again), mu = (its past such visits + 1) per day over
    the span they cover plus one day; no labels."""
    from scipy.stats import poisson

    df = _burst_frame()
    f = BehaviourFeatures(amount_window=20, cards_surprise=True).fit(df)
    X = f.transform(df).set_index(df["tx_id"])["BH_T_CARDS_SURPRISE_1D"]
    hour = df["timestamp"].dt.hour + df["timestamp"].dt.minute / 60
    at = dict(zip(zip(df["customer_id"], df["timestamp"].dt.day, hour), df["tx_id"]))  # (card, day of month, hour)

    def surprise(n, past, span_days):
        return -poisson.logsf(n - 1, (past + 1) / (span_days + 1)) / np.log(10)

    # a's first visit: one card, no past: mu = 1 / (1 + 1)
    assert X[at["a", 1, 12]] == pytest.approx(surprise(1, 0, 1))
    # day 10, 11:00: b and c are new at T today; a's visit of day 9 at 12:00 lies within the last day too
    assert X[at["c", 11, 11]] == pytest.approx(surprise(3, 9, 8 + 23 / 24))
    # 12:00: b's and c's second visits are not counted again; a's visit at day 9 12:00 left the window:
    # past = a's 10 visits (days 0-9, each a day after the previous one) over the 9 days they span
    assert X[at["c", 11, 12]] == pytest.approx(surprise(2, 10, 9))
    assert X[at["b", 11, 11.5]] == pytest.approx(surprise(3, 9, 8 + 23.5 / 24))
    # 13:00: a's visit is fresh again (its previous was 25 h before): b, c, a
    assert X[at["a", 11, 13]] == pytest.approx(surprise(3, 10, 9 + 1 / 24))
    # the flag of each event is kept in the state: one row at a time gives the same values
    np.testing.assert_array_equal(replay(f, df, batch_size=1).to_numpy(), f.transform(df).to_numpy())
