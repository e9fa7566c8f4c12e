"""CompromiseCases: a day's card-days lifted by the most surprising terminal they used that day."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from fraud.errors import ConfigError, NotFittedError
from benchmarks.compromise import CompromiseCases, surprise_column

DAY1 = pd.Timestamp("2024-03-01", tz="UTC")


def _fitted(q=0.99, u=0.97) -> CompromiseCases:
    rng = np.random.default_rng(0)
    return CompromiseCases(quantile=q, below=u).fit(rng.random(10_000), rng.exponential(size=10_000))


def _day() -> pd.DataFrame:
    """Card "early" uses terminal T on day 2 before its burst (its own surprise is 0 there), "before" used T on day
    1, the burst cards later on day 2; "confident" is a fraud the model is sure of; "other" is an ordinary card."""
    h = pd.Timedelta(hours=1)
    rows = [("before", "T", DAY1 + 20 * h, 0.10, 0.0),
            ("early", "T", DAY1 + 32 * h, 0.05, 0.0), ("early", "U", DAY1 + 34 * h, 0.20, 0.0),
            ("b1", "T", DAY1 + 40 * h, 0.30, 3.0), ("b2", "T", DAY1 + 41 * h, 0.30, 12.0),
            ("confident", "V", DAY1 + 42 * h, 0.999, 0.0), ("other", "W", DAY1 + 43 * h, 0.50, 0.5)]
    return pd.DataFrame(rows, columns=["customer_id", "terminal_id", "timestamp", "score", "z"])


def test_fit_learns_the_training_quantiles():
    cc = _fitted()
    assert cc.level_ == pytest.approx(0.97, abs=0.01)
    assert cc.threshold_ == pytest.approx(np.log(100), rel=0.1)


def test_a_burst_lifts_the_earlier_visitors_of_the_same_day_and_not_the_day_before():
    f, cc = _day(), _fitted()
    case = pd.Series(cc.case_scores(f, f["score"], f["z"]), index=f.index)
    early = case[f["customer_id"] == "early"]
    assert (early >= cc.level_).all() and early.nunique() == 1  # every row of the card-day carries its case score
    assert case[f["customer_id"] == "before"].iloc[0] == pytest.approx(0.10)  # day 1: its own score
    assert case[f["customer_id"] == "other"].iloc[0] == pytest.approx(0.50)  # no surprising terminal: its own
    assert case[f["customer_id"] == "b2"].iloc[0] >= cc.level_
    # the card-days of T's burst order among themselves by T's largest surprise of the day: all equal here
    assert case[f["customer_id"] == "b1"].iloc[0] == pytest.approx(early.iloc[0])


def test_a_confident_fraud_stays_above_a_lifted_card():
    f, cc = _day(), _fitted()
    case = pd.Series(cc.case_scores(f, f["score"], f["z"]), index=f["customer_id"])
    assert case["confident"] > case["b2"] > case["other"]
    assert case["b2"] < cc.level_ + 1e-5


def test_terminals_names_the_days_candidates():
    f, cc = _day(), _fitted()
    t = cc.terminals(f, f["z"])
    assert t["terminal_id"].tolist() == ["T"]
    assert t["cards"].iloc[0] == 3 and t["surprise"].iloc[0] == 12.0  # early, b1, b2 (not "before": day 1)


def test_surprise_column_sees_a_terminals_burst_of_distinct_cards():
    """End to end with the behaviour featurizer's column: a terminal with one regular a day for 20 days, then six
    new cards in an hour; the burst's first card reads no surprise itself but its card-day is lifted."""
    rows = [(DAY1 + pd.Timedelta(days=d, hours=10), "reg", "T") for d in range(20)]
    rows += [(DAY1 + pd.Timedelta(days=d, hours=11), f"c{d % 7}", f"X{d % 5}") for d in range(21)]
    burst = DAY1 + pd.Timedelta(days=20, hours=14)
    rows += [(burst + pd.Timedelta(minutes=10 * i), f"new{i}", "T") for i in range(6)]
    f = pd.DataFrame(rows, columns=["timestamp", "customer_id", "terminal_id"]).sort_values("timestamp")
    f = f.assign(amount=20.0).reset_index(drop=True)
    z = surprise_column(f)
    first = f.index[f["customer_id"] == "new0"][0]
    last = f.index[f["customer_id"] == "new5"][0]
    assert z[last] > z[first] and z[last] > 2
    train = (f["timestamp"] < DAY1 + pd.Timedelta(days=20)).to_numpy()
    scores = np.linspace(0, 1, len(f))[np.argsort(np.argsort(-f.index.to_numpy()))]  # not by surprise
    cc = CompromiseCases(quantile=0.99, below=0.9).fit(scores[train], z[train])
    case = cc.case_scores(f, scores, z)
    assert case[first] >= cc.level_ > scores[first]


def test_errors_name_the_bad_value():
    f = _day()
    with pytest.raises(NotFittedError):
        CompromiseCases().case_scores(f, f["score"], f["z"])
    with pytest.raises(ConfigError, match="below=1.5"):
        CompromiseCases(below=1.5).fit([0.1], [0.1])
    with pytest.raises(ConfigError, match="lacks column"):
        _fitted().case_scores(f.drop(columns="terminal_id"), f["score"], f["z"])
    with pytest.raises(ConfigError, match="one value per row"):
        _fitted().case_scores(f, f["score"][:3], f["z"])


def test_placed_on_moves_the_level_to_other_scores_and_keeps_the_threshold():
    f, cc = _day(), _fitted()
    day = cc.placed_on(f["score"])
    assert day.threshold_ == cc.threshold_ and day.level_ == pytest.approx(np.quantile(f["score"], 0.97))
    case = pd.Series(day.case_scores(f, f["score"], f["z"]), index=f["customer_id"]).groupby(level=0).max()
    assert case["early"] >= day.level_ and case["before"] == pytest.approx(0.10)
    with pytest.raises(NotFittedError):
        CompromiseCases().placed_on([0.5])
