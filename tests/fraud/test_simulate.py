"""The simulator: determinism, schema, scenario presence, rates and semantics, CLI."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from fraud.errors import ConfigError
from fraud.schema import validate_frame
from fraud.simulate import simulate, simulate_world

SMALL = dict(customers=400, terminals=800, days=60, seed=11)  # = the small_world fixture


@pytest.fixture(scope="module")
def world():
    return simulate_world(SMALL["customers"], SMALL["terminals"], SMALL["seed"])


def test_deterministic_for_a_seed():
    a = simulate(customers=150, terminals=300, days=30, seed=3)
    b = simulate(customers=150, terminals=300, days=30, seed=3)
    pd.testing.assert_frame_equal(a, b)
    c = simulate(customers=150, terminals=300, days=30, seed=4)
    assert len(a) != len(c) or not a["amount"].equals(c["amount"])


def test_schema_valid(small_world):
    df = small_world
    assert list(df.columns) == ["tx_id", "timestamp", "customer_id", "terminal_id", "amount", "label", "scenario"]
    rep = validate_frame(df, source="simulate")
    assert len(rep.problems) == 0 and rep.n_valid == len(df)
    assert str(df["timestamp"].dtype) == "datetime64[ns, UTC]"
    assert df["amount"].dtype == np.float64 and df["label"].dtype == np.int8 and df["scenario"].dtype == np.int16
    assert pd.api.types.is_string_dtype(df["tx_id"]) and pd.api.types.is_string_dtype(df["customer_id"])
    assert df["tx_id"].is_unique and df["timestamp"].is_monotonic_increasing
    assert df.index.equals(pd.RangeIndex(len(df)))
    assert (df["label"] == (df["scenario"] > 0)).all()
    first = df["timestamp"].min()
    assert first >= pd.Timestamp("2018-04-01", tz="UTC") and df["timestamp"].max() < pd.Timestamp("2018-05-31", tz="UTC")


def test_all_scenarios_present_with_sensible_rates(small_world):
    df = small_world
    n = len(df)
    counts = df["scenario"].value_counts()
    assert set(counts.index) == {0, 1, 2, 3, 4, 5, 6}
    assert 30_000 < n < 70_000  # 400 customers x ~2/day x 60 days
    for s in (4, 5, 6):  # new scenarios: rare, but enough to measure recall on
        assert 20 <= counts[s] <= 0.005 * n, (s, counts[s])
    assert 0.005 < df["label"].mean() < 0.08


def test_enough_positives_in_a_2000_customer_90_day_world():
    df = simulate(customers=2000, terminals=4000, days=90, seed=0)
    counts = df["scenario"].value_counts()
    for s in (4, 5, 6):
        assert counts[s] >= 150, (s, counts[s])
        assert 0.0005 <= counts[s] / len(df) <= 0.0015, (s, counts[s] / len(df))


def test_scenario_1_amount_rule(small_world):
    df = small_world
    assert (df.loc[df["scenario"] == 1, "amount"] > 220).all()
    # every amount above 220 is fraud (scenario 1, or a later handbook scenario overriding it)
    assert df.loc[df["amount"] > 220, "scenario"].isin([1, 2, 3]).all()
    # the new scenarios stay below the rule
    assert (df.loc[df["scenario"] >= 4, "amount"] < 220).all()


def test_scenario_2_compromised_terminals(small_world):
    df = small_world
    day = (df["timestamp"] - df["timestamp"].min().floor("D")).dt.days
    s2 = df["scenario"] == 2
    # 1 terminal a day in this world (at least 1/day), 28 days each: about days distinct terminals
    assert 40 <= df.loc[s2, "terminal_id"].nunique() <= 60
    # between the first and last fraud day of a terminal compromised once (span < 28 days), every
    # genuine-generator transaction at it is fraud (2, or 3 when a compromised card overrides)
    checked = 0
    for t, g in df[s2].groupby("terminal_id"):
        first, last = day[g.index].min(), day[g.index].max()
        if last - first >= 28:
            continue
        at_t = df[(df["terminal_id"] == t) & (day >= first) & (day <= last) & (df["scenario"] <= 3)]
        assert at_t["scenario"].isin([2, 3]).all()
        checked += 1
    assert checked >= 10


@pytest.fixture(scope="module")
def handbook_size_world():
    return simulate()  # 5,000 customers, 10,000 terminals, 183 days, seed 0


def test_handbook_size_totals_match_the_book(handbook_size_world):
    df = handbook_size_world
    hb = df[df["scenario"] <= 3]  # the handbook generator's rows
    # the book's data: 1,754,155 transactions; 973 / 9,077 / 4,631 frauds of scenarios 1 / 2 / 3
    assert abs(len(hb) / 1_754_155 - 1) < 0.04
    assert abs(hb["label"].mean() - 0.00837) < 0.001
    counts = hb["scenario"].value_counts()
    for s, book in ((1, 973), (2, 9077), (3, 4631)):
        assert abs(counts[s] / book - 1) < 0.2, (s, counts[s], book)
    for s in (4, 5, 6):
        assert 0.0005 <= (df["scenario"] == s).mean() <= 0.0015


def test_handbook_size_distributions_match_the_book_data(handbook_size_world, handbook_path):
    book = pd.read_parquet(handbook_path, columns=["TX_DATETIME", "CUSTOMER_ID", "TERMINAL_ID", "TX_AMOUNT"])
    ours = handbook_size_world[handbook_size_world["scenario"] <= 3]
    q = [0.1, 0.5, 0.9, 0.99]
    np.testing.assert_allclose(ours["amount"].quantile(q).to_numpy(), book["TX_AMOUNT"].quantile(q).to_numpy(),
                               rtol=0.1)
    h_ours = ours["timestamp"].dt.hour.value_counts(normalize=True).sort_index()
    h_book = book["TX_DATETIME"].dt.hour.value_counts(normalize=True).sort_index()
    assert np.abs(h_ours.to_numpy() - h_book.to_numpy()).max() < 0.005
    t_ours = ours.groupby("customer_id")["terminal_id"].nunique().mean()
    t_book = book.groupby("CUSTOMER_ID")["TERMINAL_ID"].nunique().mean()
    assert abs(t_ours / t_book - 1) < 0.05


def test_scenario_3_amounts_multiplied(small_world, world):
    df = small_world
    s3 = df[df["scenario"] == 3]
    means = world.customers.set_index("customer_id")["mean_amount"]
    ratio = s3["amount"].to_numpy() / means.loc[s3["customer_id"]].to_numpy()
    assert np.median(ratio) > 3  # x5 of a N(mean, mean/2) amount


def test_scenario_4_rings_dense_bipartite(small_world):
    df = small_world
    ring = df[df["scenario"] == 4]
    per_terminal = ring.groupby("terminal_id")["customer_id"].nunique()
    assert len(per_terminal) >= 2
    assert (per_terminal >= 5).all()  # each colluding terminal is shared by many mules
    per_mule = ring.groupby("customer_id")["terminal_id"].nunique()
    # every mule uses several ring terminals (>= 3 in a full ring; rings still running at the
    # end of the period are cut, so a few mules there have fewer)
    assert (per_mule >= 2).mean() >= 0.7 and (per_mule >= 3).any()
    new_accounts = ring.loc[ring["customer_id"].astype(int) >= SMALL["customers"], "customer_id"].unique()
    assert len(new_accounts) >= 1
    # new accounts do nothing but ring transactions
    assert (df.loc[df["customer_id"].isin(new_accounts), "scenario"] == 4).all()
    # spread over weeks
    span = ring["timestamp"].max() - ring["timestamp"].min()
    assert span >= pd.Timedelta(days=14)


def test_scenario_5_card_testing_bursts(small_world):
    df = small_world
    s5 = df[df["scenario"] == 5]
    genuine_terms = df[df["scenario"] == 0].groupby("customer_id")["terminal_id"].agg(set)
    n_bursts = 0
    for (cust, _day), g in s5.groupby([s5["customer_id"], s5["timestamp"].dt.floor("D")]):
        g = g.sort_values("timestamp")
        if len(g) < 5 or len(g) > 13:  # two events of one card on one day: skip the rare overlap
            continue
        n_bursts += 1
        assert g["timestamp"].iloc[-1] - g["timestamp"].iloc[0] <= pd.Timedelta(minutes=30)
        small = g["amount"].iloc[:-1]
        assert small.between(0.5, 5.0).all()
        assert 5.0 < g["amount"].iloc[-1] < 220
        assert not set(g["terminal_id"]) & genuine_terms.get(cust, set())
    assert n_bursts >= 3


def test_scenario_6_takeover_far_and_at_night(small_world, world):
    df = small_world
    s6 = df[df["scenario"] == 6]
    c = world.customers.set_index("customer_id")
    t = world.terminals.set_index("terminal_id")
    dist = np.hypot(c.loc[s6["customer_id"], "x"].to_numpy() - t.loc[s6["terminal_id"], "x"].to_numpy(),
                    c.loc[s6["customer_id"], "y"].to_numpy() - t.loc[s6["terminal_id"], "y"].to_numpy())
    assert (dist >= 20).all()
    hour = s6["timestamp"].dt.hour
    assert ((hour < 5) | (hour >= 22)).all()
    # amounts near the customer's usual ones
    ratio = s6["amount"].to_numpy() / c.loc[s6["customer_id"], "mean_amount"].to_numpy()
    assert 0.6 < np.median(ratio) < 1.4
    # the genuine customer's activity continues alongside
    assert (df["customer_id"].isin(s6["customer_id"].unique()) & (df["scenario"] == 0)).any()


def test_world_matches_simulation(small_world, world):
    df = small_world
    genuine = df[df["scenario"] == 0]
    c = world.customers.set_index("customer_id")
    t = world.terminals.set_index("terminal_id")
    d = np.hypot(c.loc[genuine["customer_id"], "x"].to_numpy() - t.loc[genuine["terminal_id"], "x"].to_numpy(),
                 c.loc[genuine["customer_id"], "y"].to_numpy() - t.loc[genuine["terminal_id"], "y"].to_numpy())
    assert (d < 5).all()  # genuine traffic only at terminals within radius 5
    no_terms = set(c.index[c["n_terminals"] == 0])
    assert not no_terms & set(df.loc[df["scenario"] <= 3, "customer_id"])


def test_bad_arguments_raise_config_error():
    with pytest.raises(ConfigError, match="customers=0"):
        simulate(customers=0, terminals=10, days=5)
    with pytest.raises(ConfigError, match="not-a-date"):
        simulate(customers=10, terminals=10, days=5, start="not-a-date")
    with pytest.raises(ConfigError, match="seed=-1"):
        simulate(customers=10, terminals=10, days=5, seed=-1)


def test_cli_writes_a_readable_file(tmp_path):
    from fraud.cli import main
    from fraud.io import read_transactions

    out = tmp_path / "w.parquet"
    r = CliRunner().invoke(main, ["simulate", "--customers", "100", "--terminals", "200", "--days", "15",
                                  "--seed", "2", "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert "per scenario:" in r.output
    rep = read_transactions(out)
    assert rep.ok
    expected = simulate(customers=100, terminals=200, days=15, seed=2)
    assert rep.n_valid == len(expected)
    assert f"{len(expected)} transactions" in r.output
    pd.testing.assert_frame_equal(rep.valid[expected.columns], expected, check_dtype=False)

    csv = tmp_path / "w.csv"
    r = CliRunner().invoke(main, ["simulate", "--customers", "50", "--terminals", "100", "--days", "5",
                                  "--out", str(csv)])
    assert r.exit_code == 0, r.output
    assert read_transactions(csv).ok


def test_cli_bench_json():
    from fraud.cli import main

    r = CliRunner().invoke(main, ["bench", "simulate", "--customers", "100", "--terminals", "200",
                                  "--days", "10", "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.output.strip().splitlines()[-1])
    assert set(out) == {"transactions", "seconds", "tx_per_s", "peak_mib"}
    assert out["transactions"] == len(simulate(customers=100, terminals=200, days=10, seed=0))
    assert out["peak_mib"] > 0 and out["tx_per_s"] > 0


@pytest.mark.parametrize("args", [(1, 1, 1), (3, 2, 2), (10, 10_000, 3), (300, 5, 4)])
def test_degenerate_worlds_stay_valid(args):
    c, t, d = args
    df = simulate(customers=c, terminals=t, days=d, seed=1)
    assert len(validate_frame(df).problems) == 0
    assert [str(x) for x in df.dtypes] == ["str", "datetime64[ns, UTC]", "str", "str", "float64", "int8", "int16"]
