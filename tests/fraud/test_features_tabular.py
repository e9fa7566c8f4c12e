"""BaselineFeatures: hand-computed values, the book's pandas definition, replay == transform, leakage."""
from __future__ import annotations

import pickle

import numpy as np
import pandas as pd
import pytest

from fraud.errors import ConfigError, NotFittedError, SchemaError
from fraud.features import tabular
from featurizer_checks import assert_replay_equals_transform
from fraud.features.base import replay
from fraud.features.tabular import BaselineFeatures, feature_names


@pytest.fixture(scope="module")
def world(random_world) -> pd.DataFrame:
    return random_world(120, 160, 45, per_customer_day=2)


def book_reference(df: pd.DataFrame, windows=(1, 7, 30), delay=7) -> pd.DataFrame:
    """The handbook's chapter-3 pandas code (rolling windows per customer / terminal), with a stable sort."""
    out = pd.DataFrame(index=df.index)
    out["TX_AMOUNT"] = df["amount"]
    out["TX_DURING_WEEKEND"] = (df["timestamp"].dt.day_of_week >= 5).astype(float)
    out["TX_DURING_NIGHT"] = (df["timestamp"].dt.hour <= 6).astype(float)
    parts = []
    for _, g in df.groupby("customer_id"):
        g = g.sort_values("timestamp", kind="stable")
        s = pd.Series(g["amount"].to_numpy(), index=g["timestamp"])
        cols = {}
        for w in windows:
            tot, cnt = s.rolling(f"{w}D").sum(), s.rolling(f"{w}D").count()
            cols[f"CUSTOMER_ID_NB_TX_{w}DAY_WINDOW"] = cnt.to_numpy()
            cols[f"CUSTOMER_ID_AVG_AMOUNT_{w}DAY_WINDOW"] = (tot / cnt).to_numpy()
        parts.append(pd.DataFrame(cols, index=g.index))
    cust = pd.concat(parts)
    parts = []
    for _, g in df.groupby("terminal_id"):
        g = g.sort_values("timestamp", kind="stable")
        lab = pd.Series(g["label"].to_numpy(dtype=float), index=g["timestamp"])
        nf_d, nt_d = lab.rolling(f"{delay}D").sum(), lab.rolling(f"{delay}D").count()
        cols = {}
        for w in windows:
            nf = lab.rolling(f"{delay + w}D").sum() - nf_d
            nt = lab.rolling(f"{delay + w}D").count() - nt_d
            cols[f"TERMINAL_ID_NB_TX_{w}DAY_WINDOW"] = nt.to_numpy()
            cols[f"TERMINAL_ID_RISK_{w}DAY_WINDOW"] = (nf / nt).fillna(0).to_numpy()
        parts.append(pd.DataFrame(cols, index=g.index))
    term = pd.concat(parts)
    return pd.concat([out, cust, term], axis=1)[feature_names()]


def test_names_are_the_books():
    f = BaselineFeatures().fit(None)
    assert f.feature_names_ == [
        "TX_AMOUNT", "TX_DURING_WEEKEND", "TX_DURING_NIGHT",
        "CUSTOMER_ID_NB_TX_1DAY_WINDOW", "CUSTOMER_ID_AVG_AMOUNT_1DAY_WINDOW",
        "CUSTOMER_ID_NB_TX_7DAY_WINDOW", "CUSTOMER_ID_AVG_AMOUNT_7DAY_WINDOW",
        "CUSTOMER_ID_NB_TX_30DAY_WINDOW", "CUSTOMER_ID_AVG_AMOUNT_30DAY_WINDOW",
        "TERMINAL_ID_NB_TX_1DAY_WINDOW", "TERMINAL_ID_RISK_1DAY_WINDOW",
        "TERMINAL_ID_NB_TX_7DAY_WINDOW", "TERMINAL_ID_RISK_7DAY_WINDOW",
        "TERMINAL_ID_NB_TX_30DAY_WINDOW", "TERMINAL_ID_RISK_30DAY_WINDOW",
    ]


def test_hand_computed_tiny_frame(tiny_frame):
    # customer A: t0 01-01 10:00 (10), t2 01-02 09:00 (30), t3 01-03 23:30 (40), t5 01-06 13:00 (60), t7 01-10 11:00 (80)
    # customer B: t1 01-01 12:00 (20), t4 01-05 08:00 (50), t6 01-09 10:00 (70)
    # terminal X: t0 (0), t1 (fraud), t3 (0), t5 (fraud), t6 (0); terminal Y: t2, t4, t7 (all 0)
    X = BaselineFeatures().fit(tiny_frame).transform(tiny_frame)
    assert list(X.index) == list(tiny_frame.index)
    exp = {
        "TX_AMOUNT": [10, 20, 30, 40, 50, 60, 70, 80],
        "TX_DURING_WEEKEND": [0, 0, 0, 0, 0, 1, 0, 0],  # 2024-01-06 is a Saturday
        "TX_DURING_NIGHT": [0] * 8,
        "CUSTOMER_ID_NB_TX_1DAY_WINDOW": [1, 1, 2, 1, 1, 1, 1, 1],
        "CUSTOMER_ID_AVG_AMOUNT_1DAY_WINDOW": [10, 20, 20, 40, 50, 60, 70, 80],
        "CUSTOMER_ID_NB_TX_7DAY_WINDOW": [1, 1, 2, 3, 2, 4, 2, 3],
        "CUSTOMER_ID_AVG_AMOUNT_7DAY_WINDOW": [10, 20, 20, 80 / 3, 35, 35, 60, 60],
        "CUSTOMER_ID_NB_TX_30DAY_WINDOW": [1, 1, 2, 3, 2, 4, 3, 5],
        "CUSTOMER_ID_AVG_AMOUNT_30DAY_WINDOW": [10, 20, 20, 80 / 3, 35, 35, 140 / 3, 44],
        # t6 (X, 01-09 10:00): delayed 1-day window (01-01 10:00, 01-02 10:00] holds t1 only
        # (t0 sits exactly on the open boundary); the 7-day one holds t0 and t1.
        # t7 (Y, 01-10 11:00): 7-day window (12-27 11:00, 01-03 11:00] holds t2 (genuine).
        "TERMINAL_ID_NB_TX_1DAY_WINDOW": [0, 0, 0, 0, 0, 0, 1, 0],
        "TERMINAL_ID_RISK_1DAY_WINDOW": [0, 0, 0, 0, 0, 0, 1.0, 0],
        "TERMINAL_ID_NB_TX_7DAY_WINDOW": [0, 0, 0, 0, 0, 0, 2, 1],
        "TERMINAL_ID_RISK_7DAY_WINDOW": [0, 0, 0, 0, 0, 0, 0.5, 0],
        "TERMINAL_ID_NB_TX_30DAY_WINDOW": [0, 0, 0, 0, 0, 0, 2, 1],
        "TERMINAL_ID_RISK_30DAY_WINDOW": [0, 0, 0, 0, 0, 0, 0.5, 0],
    }
    for col, values in exp.items():
        np.testing.assert_allclose(X[col].to_numpy(), np.asarray(values, dtype=float), err_msg=col)

    # a shorter delay: t3 (X, 01-03 23:30) with d=2 sees (12-31 23:30, 01-01 23:30] = t0, t1 -> 2 tx, risk 0.5
    X2 = BaselineFeatures(delay_days=2, windows=(1,)).fit(tiny_frame).transform(tiny_frame)
    assert list(X2.columns)[-2:] == ["TERMINAL_ID_NB_TX_1DAY_WINDOW", "TERMINAL_ID_RISK_1DAY_WINDOW"]
    assert X2.loc[3, "TERMINAL_ID_NB_TX_1DAY_WINDOW"] == 2 and X2.loc[3, "TERMINAL_ID_RISK_1DAY_WINDOW"] == 0.5


def test_night_flag_boundary():
    ts = pd.to_datetime(["2024-01-02 06:59:59", "2024-01-02 07:00:00", "2024-01-02 00:00:00"], utc=True)
    df = pd.DataFrame({"tx_id": ["a", "b", "c"], "timestamp": ts, "customer_id": ["c"] * 3,
                       "terminal_id": ["t"] * 3, "amount": [1.0, 2.0, 3.0]})
    X = BaselineFeatures().fit(df).transform(df)
    assert X["TX_DURING_NIGHT"].tolist() == [1.0, 0.0, 1.0]


def test_equals_the_books_pandas_code(world):
    X = BaselineFeatures().fit(world).transform(world)
    ref = book_reference(world)
    np.testing.assert_allclose(X.to_numpy(), ref.loc[X.index].to_numpy(), rtol=1e-9, atol=1e-7)


def test_both_key_encodings_agree(world, monkeypatch):
    f = BaselineFeatures().fit(world)
    X = f.transform(world)
    monkeypatch.setattr(tabular, "_SPAN_LIMIT", 0)  # force the rank encoding
    np.testing.assert_array_equal(f.transform(world).to_numpy(), X.to_numpy())
    monkeypatch.undo()
    # out-of-time-order input (the lexsort path) equals the same rows sorted by time (ties keep input order)
    shuffled = world.sample(frac=1.0, random_state=1)
    in_order = shuffled.sort_values("timestamp", kind="stable")
    np.testing.assert_allclose(f.transform(shuffled).loc[in_order.index].to_numpy(),
                               f.transform(in_order).to_numpy(), atol=1e-9)


def test_replay_equals_transform_tiny(tiny_frame):
    assert_replay_equals_transform(BaselineFeatures().fit(tiny_frame), tiny_frame, batch_sizes=(1, 3, 8))


def test_replay_equals_transform_world(world):
    f = BaselineFeatures().fit(world)
    assert_replay_equals_transform(f, world.iloc[:500], batch_sizes=(1,))
    assert_replay_equals_transform(f, world.iloc[:3000], batch_sizes=(7,))
    assert_replay_equals_transform(f, world, batch_sizes=(1000, 5000))


def test_replay_equals_transform_small_world(small_world):
    pytest.importorskip("fraud.simulate")
    f = BaselineFeatures().fit(small_world)
    assert_replay_equals_transform(f, small_world, batch_sizes=(997, 10_000))


def test_state_is_bounded_and_picklable(world):
    f = BaselineFeatures().fit(world)
    half = len(world) // 2
    st = f.new_state()
    f.update(st, world.iloc[:half])
    st2 = pickle.loads(pickle.dumps(st))
    a = f.update(st, world.iloc[half:])
    b = f.update(st2, world.iloc[half:])
    pd.testing.assert_frame_equal(a, b)
    last = world["timestamp"].iloc[-1]
    n_c = int((world["timestamp"] > last - pd.Timedelta(days=30)).sum())
    n_t = int((world["timestamp"] > last - pd.Timedelta(days=37)).sum())
    assert st.n_events == (n_c, n_t)
    assert n_t < len(world)


def test_rows_without_labels_count_but_not_as_frauds(world):
    """Stream rows may carry no label: they count as transactions but not as frauds."""
    f = BaselineFeatures().fit(world)
    expected = f.transform(world)
    nolab = f.transform(world.drop(columns="label"))
    assert (nolab.filter(like="_RISK_") == 0).all().all()
    np.testing.assert_array_equal(nolab.filter(like="_NB_TX_").to_numpy(), expected.filter(like="_NB_TX_").to_numpy())


def test_no_leakage_from_recent_labels_or_later_transactions(world):
    f = BaselineFeatures().fit(world)
    base = f.transform(world)
    cut = world["timestamp"].iloc[len(world) * 2 // 3]
    early = (world["timestamp"] <= cut).to_numpy()
    rng = np.random.default_rng(5)

    # 1. flip every label newer than cut - delay: no feature of a transaction at or before cut changes
    flipped = world.copy()
    recent = (world["timestamp"] > cut - pd.Timedelta(days=7)).to_numpy()
    flipped.loc[recent, "label"] = (1 - world.loc[recent, "label"]).astype(np.int8)
    got = f.transform(flipped)
    np.testing.assert_array_equal(got.to_numpy()[early], base.to_numpy()[early])
    assert not np.array_equal(got.to_numpy()[~early], base.to_numpy()[~early])  # the flip does matter later

    # 2. rewrite every later transaction (amount, customer, terminal, label) and add more of them
    later = world.copy()
    nl = int((~early).sum())
    later.loc[~early, "amount"] = rng.gamma(2.0, 50.0, nl)
    later.loc[~early, "customer_id"] = rng.integers(0, 120, nl).astype(str)
    later.loc[~early, "terminal_id"] = rng.integers(0, 160, nl).astype(str)
    later.loc[~early, "label"] = (rng.random(nl) < 0.5).astype(np.int8)
    extra = later.iloc[-200:].copy()
    extra["tx_id"] = [f"x{i}" for i in range(200)]
    later = pd.concat([later, extra], ignore_index=True)
    got = f.transform(later)
    np.testing.assert_array_equal(got.to_numpy()[: len(world)][early], base.to_numpy()[early])

    # 3. a label older than the delay does reach later features (the test above is not vacuous)
    old = world.copy()
    i = int(np.flatnonzero(early)[-1]) - 3000
    old.loc[i, "label"] = 1 - old.loc[i, "label"]
    assert not np.array_equal(f.transform(old).to_numpy(), base.to_numpy())

    # 4. the online path obeys the same rule: scoring early rows never depends on later rows' labels
    np.testing.assert_allclose(replay(f, flipped, batch_size=997).to_numpy()[early], base.to_numpy()[early],
                               atol=1e-9)


def test_errors(tiny_frame):
    with pytest.raises(NotFittedError):
        BaselineFeatures().transform(tiny_frame)
    with pytest.raises(ConfigError, match="delay_days"):
        BaselineFeatures(delay_days=0).fit(tiny_frame)
    with pytest.raises(ConfigError, match="windows"):
        BaselineFeatures(windows=(1, -7)).fit(tiny_frame)
    with pytest.raises(SchemaError, match="terminal_id"):
        BaselineFeatures().fit(tiny_frame).transform(tiny_frame.drop(columns="terminal_id"))
    f = BaselineFeatures().fit(tiny_frame)
    assert f.update(f.new_state(), tiny_frame.iloc[:0]).shape == (0, 15)


def test_fast_paths_equal_the_general_ones(monkeypatch):
    """The per-call shortcuts (numba group cumsum, tz-aware timestamps, integer labels, string ids) give the
    same values as the general pandas paths they bypass."""
    rng = np.random.default_rng(3)
    code = np.sort(rng.integers(0, 300, 20_000))
    v = rng.lognormal(3, 2, len(code))
    ref = pd.Series(v).groupby(code, sort=False).cumsum().to_numpy()
    np.testing.assert_array_equal(tabular._group_cumsum(code, v), ref)  # bit-identical (Kahan, like pandas)
    monkeypatch.setattr(tabular, "_CUMSUM", [None])
    np.testing.assert_array_equal(tabular._group_cumsum(code, v), ref)
    monkeypatch.undo()
    for unit in ("ns", "us", "s"):
        ts = pd.Series(pd.to_datetime(rng.integers(0, 2 * 10**9, 50), unit="s", utc=True)).astype(
            f"datetime64[{unit}, UTC]")
        np.testing.assert_array_equal(tabular.timestamps_ns(ts), pd.DatetimeIndex(ts).as_unit("ns").asi8)
    naive = pd.Series(pd.to_datetime(["2024-01-01 03:00"]))
    assert tabular.timestamps_ns(naive)[0] == pd.Timestamp("2024-01-01 03:00", tz="UTC").value
    lab = pd.DataFrame({"label": np.array([0, 1, 1, 0], np.int8)})
    assert tabular._labels(lab).tolist() == [0, 1, 1, 0] and tabular._labels(lab).dtype == np.int8
    lab = pd.DataFrame({"label": [0.0, np.nan, 1.0, None]})
    assert tabular._labels(lab).tolist() == [0, -1, 1, -1]
