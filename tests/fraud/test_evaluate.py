"""Metrics and protocol of fraud.evaluate on hand-computed examples."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from fraud.errors import ConfigError, SchemaError
from fraud.evaluate import (
    Split, average_precision, book_metrics, card_precision_at_k, card_precision_at_k_per_day, derive_splits,
    handbook_splits, recall_at_budget, roc_auc, splits_for, train_test,
)


def frame(rows, cols=("timestamp", "customer_id", "label", "score")) -> pd.DataFrame:
    df = pd.DataFrame(rows, columns=list(cols))
    df["timestamp"] = pd.to_datetime(df["timestamp"], utc=True)
    return df


def test_auc_and_ap_hand_computed():
    y, s = [0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]
    assert roc_auc(y, s) == pytest.approx(0.75)  # 3 of 4 (pos, neg) pairs ordered
    assert average_precision(y, s) == pytest.approx(0.5 * 1.0 + 0.5 * 2 / 3)
    assert np.isnan(roc_auc([0, 0], [0.1, 0.2])) and np.isnan(average_precision([0, 0], [0.1, 0.2]))


def test_card_precision_hand_computed():
    df = frame([
        # day 1: A max .9 (has a fraud), B .8 (genuine), C .3 (fraud); top 2 = A, B -> 1/2
        ("2024-01-01 08:00", "A", 0, 0.9), ("2024-01-01 09:00", "A", 1, 0.1),
        ("2024-01-01 10:00", "B", 0, 0.8), ("2024-01-01 11:00", "C", 1, 0.3),
        # day 2: A (already detected) is removed; D .6 (fraud), C .5 (genuine) -> 1/2
        # without the removal the top 2 would be A and D -> 2/2
        ("2024-01-02 08:00", "A", 1, 0.95), ("2024-01-02 09:00", "B", 1, 0.2),
        ("2024-01-02 10:00", "C", 0, 0.5), ("2024-01-02 11:00", "D", 1, 0.6),
    ])
    assert card_precision_at_k(df, k=2) == pytest.approx(0.5)
    assert card_precision_at_k(df, k=2, remove_detected=False) == pytest.approx(0.75)
    per_day = card_precision_at_k_per_day(df, k=2)
    assert per_day["cp"].tolist() == [0.5, 0.5]
    assert per_day["n_compromised"].tolist() == [2, 2]  # day 2: B and D (A removed)
    assert per_day["day"].dt.strftime("%Y-%m-%d").tolist() == ["2024-01-01", "2024-01-02"]
    # k larger than the number of cards: precision still divides by k (the book's definition)
    assert card_precision_at_k(df, k=10) == pytest.approx((2 / 10 + 2 / 10) / 2)


def test_card_precision_ties_break_by_card_id():
    df = frame([("2024-01-01 08:00", "b", 1, 0.5), ("2024-01-01 09:00", "a", 0, 0.5)])
    assert card_precision_at_k(df, k=1) == 0.0  # "a" comes first among equal scores
    with pytest.raises(ConfigError):
        card_precision_at_k(df, k=0)
    with pytest.raises(SchemaError, match="score"):
        card_precision_at_k(df.drop(columns="score"))


def test_recall_at_budget_hand_computed():
    df = frame([
        # day 1: A max .9, B max .8 -> budget 1 alerts A
        ("2024-01-01 08:00", "A", 1, 0.9, 1), ("2024-01-01 09:00", "B", 1, 0.8, 2),
        ("2024-01-01 10:00", "B", 1, 0.1, 2), ("2024-01-01 11:00", "C", 0, 0.2, 0),
        # day 2: B .7 alerted; C .6 not
        ("2024-01-02 08:00", "B", 1, 0.7, 2), ("2024-01-02 09:00", "C", 1, 0.6, 3),
    ], cols=("timestamp", "customer_id", "label", "score", "scenario"))
    r = recall_at_budget(df, budget=1)
    assert r == {"all": pytest.approx(2 / 5), "1": 1.0, "2": pytest.approx(1 / 3), "3": 0.0}
    assert recall_at_budget(df, budget=1, by_scenario=False) == {"all": pytest.approx(0.4)}
    assert recall_at_budget(df, budget=3)["all"] == 1.0
    assert np.isnan(recall_at_budget(df.assign(label=0), budget=1)["all"])


def test_book_metrics_keys():
    df = frame([("2024-01-01 08:00", "A", 1, 0.0), ("2024-01-01 09:00", "B", 0, 0.0)])
    m = book_metrics(df, [0.9, 0.1], k=1)
    assert m == {"auc": 1.0, "ap": 1.0, "cp@1": 1.0}


def test_train_test_removes_known_compromised_cards():
    s = Split(pd.Timestamp("2024-01-01", tz="UTC"))  # train 01-01..01-07, delay 01-08..01-14, test 01-15..01-21
    assert s.describe() == "train 2024-01-01..2024-01-07, test 2024-01-15..2024-01-21"
    df = frame([
        ("2023-12-30 10:00", "T", 1, 0),  # fraud before training: never "known"
        ("2024-01-02 10:00", "N", 0, 0),
        ("2024-01-03 10:00", "P", 1, 0),  # fraud in the training week: P removed from every test day
        ("2024-01-08 10:00", "Q", 1, 0),  # day 7 after start: known from test day 01-16 (01-16 - 8 days)
        ("2024-01-13 10:00", "S", 1, 0),  # known from 01-21
        ("2024-01-14 10:00", "R", 1, 0),  # known only from 01-22: never within the test week
        ("2024-01-15 10:00", "P", 0, 0), ("2024-01-15 11:00", "Q", 0, 0), ("2024-01-15 12:00", "U", 1, 0),
        ("2024-01-16 10:00", "Q", 0, 0), ("2024-01-16 11:00", "U", 0, 0), ("2024-01-16 12:00", "T", 0, 0),
        ("2024-01-20 10:00", "S", 0, 0), ("2024-01-21 10:00", "S", 0, 0), ("2024-01-21 11:00", "R", 0, 0),
        ("2024-01-22 10:00", "N", 0, 0),  # after the test week
    ])
    train, test = train_test(df, s)
    assert train["customer_id"].tolist() == ["N", "P"]
    got = list(zip(test["timestamp"].dt.strftime("%m-%d"), test["customer_id"]))
    assert got == [("01-15", "Q"), ("01-15", "U"), ("01-16", "U"), ("01-16", "T"), ("01-20", "S"), ("01-21", "R")]


def test_handbook_dates():
    single = handbook_splits("single")
    assert [x.describe() for x in single] == ["train 2018-07-25..2018-07-31, test 2018-08-08..2018-08-14"]
    preq = handbook_splits("prequential")
    assert [x.test_start.strftime("%Y-%m-%d") for x in preq] == ["2018-08-29", "2018-08-22", "2018-08-15", "2018-08-08"]
    with pytest.raises(ConfigError, match="protocol"):
        handbook_splits("kfold")
    cover = frame([("2018-04-01 00:00", "A", 0, 0), ("2018-09-30 23:00", "A", 0, 0)])
    assert splits_for(cover, "prequential") == preq
    assert splits_for(cover, "single", dates="end")[0].train_start == pd.Timestamp("2018-08-20", tz="UTC")  # 10-01 - 42 days


def test_splits_derived_from_the_end():
    df = frame([("2024-01-01 05:00", "A", 0, 0), ("2024-03-10 17:00", "A", 0, 0)])  # end (exclusive) 03-11
    preq = derive_splits(df, "prequential")
    assert [x.train_start.strftime("%m-%d") for x in preq] == ["02-19", "02-12", "02-05", "01-29"]
    assert preq[0].test_end == pd.Timestamp("2024-03-11", tz="UTC")
    assert splits_for(df, "single") == [preq[-1]]  # single = the oldest fold, as in the handbook
    short = frame([("2024-01-01 05:00", "A", 0, 0), ("2024-01-30 17:00", "A", 0, 0)])  # 30 days
    assert [x.train_start.strftime("%m-%d") for x in derive_splits(short, "single")] == ["01-03"]
    with pytest.raises(ConfigError, match="enough for 2"):
        derive_splits(short, "prequential")
    with pytest.raises(ConfigError, match="shorter than one"):
        derive_splits(frame([("2024-01-01", "A", 0, 0), ("2024-01-15", "A", 0, 0)]), "single")
