"""``fraud.evasion``: each tactic has its defining property, genuine rows are untouched, one seed one frame."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from fraud.errors import ConfigError
from fraud.evasion import TACTICS, draw_params, inject
from fraud.worlds import draw_spec, generate

DAYS = 14


@pytest.fixture(scope="module")
def world():
    df = generate(draw_spec(7, customers=200, terminals=400, days=49, late_from=35))
    return df, df["timestamp"].iloc[0].floor("D") + pd.Timedelta(days=35)


@pytest.fixture(scope="module", params=[3, 11])
def injected(request, world):
    df, start = world
    return request.param, inject(df, start, DAYS, seed=request.param)


def _hist(df, start):
    return df[df["timestamp"] < start]


def _of(out, name):
    sid = {v: k for k, v in TACTICS.items()}[name]
    return out[out["scenario"] == sid]


def test_genuine_rows_untouched_and_new_rows_well_formed(world, injected):
    df, start = world
    _, out = injected
    old = out[out["tx_id"].isin(df["tx_id"])].set_index("tx_id").loc[df["tx_id"]]
    pd.testing.assert_frame_equal(old.reset_index(), df.reset_index(drop=True), check_like=True)
    new = out[~out["tx_id"].isin(df["tx_id"])]
    assert out["tx_id"].is_unique and out["timestamp"].is_monotonic_increasing
    assert (new["label"] == 1).all() and set(new["scenario"]) == set(TACTICS)
    assert new["timestamp"].between(start, start + pd.Timedelta(days=DAYS), inclusive="left").all()
    assert (new["amount"] > 0).all()


def test_deterministic_per_seed(world, injected):
    df, start = world
    seed, out = injected
    pd.testing.assert_frame_equal(out, inject(df, start, DAYS, seed=seed))
    other = inject(df, start, DAYS, seed=seed + 100)
    assert len(other) != len(out) or not other["amount"].equals(out["amount"])
    assert draw_params(seed) != draw_params(seed + 100)


def test_under_usual_stays_below_each_cards_own_median_mostly_at_own_terminals(world, injected):
    df, start = world
    hist = _hist(df, start)
    rows = _of(injected[1], "under_usual")
    med = hist.groupby("customer_id")["amount"].median()
    assert len(rows) and (rows["amount"].to_numpy() < med.loc[rows["customer_id"]].to_numpy()).all()
    own = set(zip(hist["customer_id"], hist["terminal_id"]))
    at_own = np.mean([(c, t) in own for c, t in zip(rows["customer_id"], rows["terminal_id"])])
    assert 0.5 <= at_own < 1.0  # mostly the card's own terminals, plus a few new ones


def test_slow_testing_spaces_tiny_tests_then_cashes_out(injected):
    seed, out = injected
    p = draw_params(seed)["slow_testing"]
    cashouts = 0
    for _, ev in _of(out, "slow_testing").groupby("customer_id"):
        gaps = ev["timestamp"].diff().dt.total_seconds().dropna()
        assert (gaps >= p["gap_hours"][0] * 3600 - 1).all()
        big = ev["amount"].to_numpy() > p["test_amount"][1]  # the cash-out: last, unless cut by the window's end
        assert not big[:-1].any() and (ev["amount"] >= p["test_amount"][0]).all()
        cashouts += int(big[-1])
    assert cashouts >= 1


def test_aged_mules_have_months_of_history(world, injected):
    df, start = world
    seed, out = injected
    p = draw_params(seed)["aged_mules"]
    hist = _hist(df, start)
    first, n = hist.groupby("customer_id")["timestamp"].min(), hist.groupby("customer_id").size()
    cards = _of(out, "aged_mules")["customer_id"].unique()
    assert len(cards) >= p["members"][0]
    min_age = min(p["min_age_days"], 0.75 * (start - first.min()) / pd.Timedelta(days=1))
    assert (first.loc[cards] <= start - pd.Timedelta(days=min_age)).all()
    assert (n.loc[cards] >= p["min_history"]).all()


def test_rotated_terminals_each_used_briefly_on_their_regulars(world, injected):
    df, start = world
    seed, out = injected
    rows = _of(out, "rotated_terminals")
    days_used = rows.groupby("terminal_id")["timestamp"].agg(lambda s: s.dt.floor("D").nunique())
    assert len(days_used) >= 2 and days_used.max() <= draw_params(seed)["rotated_terminals"]["max_days"]
    hist = _hist(df, start)
    known = set(zip(hist["customer_id"], hist["terminal_id"]))
    assert all((c, t) in known for c, t in zip(rows["customer_id"], rows["terminal_id"]))


def test_spread_ring_uses_many_terminals_few_visits_each(injected):
    seed, out = injected
    p = draw_params(seed)["spread_ring"]
    rows = _of(out, "spread_ring")
    visits = rows.groupby("terminal_id").size()
    assert visits.max() <= p["cap"]
    assert len(visits) >= len(rows) / p["cap"] and len(visits) >= p["members"][0] * 2 // p["cap"]


def test_bad_arguments_name_the_value(world):
    df, start = world
    with pytest.raises(ConfigError, match="nope"):
        inject(df, start, DAYS, tactics=("nope",))
    with pytest.raises(ConfigError, match="no history"):
        inject(df, df["timestamp"].iloc[0], DAYS)
    with pytest.raises(ConfigError, match="seed"):
        inject(df, start, DAYS, seed=-1)
    only = inject(df, start, DAYS, tactics=(22, "spread_ring"), seed=3)
    assert set(only.loc[only["label"] == 1, "scenario"]) - set(df["scenario"]) == {22, 25}
