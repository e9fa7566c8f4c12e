"""``fraud bench loop --chargebacks SHARE``: cardholders of a share of the fraud cards dispute the charges, and each
disputed fraud reaches the weekly retrain ``--chargeback-days`` after it happened, in every retrained arm. Checked
on the function and through the CLI on a tiny world, reading what the retrain receives."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

import benchmarks.loop as loop
from benchmarks.loop import LoopConfig, chargebacks, loop_labels, with_labels
from fraud.cli import main
from fraud.errors import ConfigError

WORLD = {"seed": 5, "customers": 150, "terminals": 300, "weeks": 6, "train_weeks": 3, "onset_weeks": 0}
TINY = ['featurizers=["tabular","behaviour"]', 'unsupervised=["hbos"]', "supervised=lightgbm",
        'ensemble_params={"supervised_params":{"n_estimators":30}}', "warm_state_days=14",
        "baseline_trees=20"]  # a small guard forest: the structure, not its figures


def _frame(n_cards=400, days=20):
    rng = np.random.default_rng(0)
    ts = pd.Timestamp("2019-01-01", tz="UTC") + pd.to_timedelta(rng.uniform(0, days, 4000), unit="D")
    return pd.DataFrame({"tx_id": [f"t{i}" for i in range(4000)], "timestamp": ts,
                         "customer_id": [f"c{k}" for k in rng.integers(0, n_cards, 4000)],
                         "label": (rng.random(4000) < 0.3).astype(np.int8)})


def test_disputes_are_old_enough_loop_frauds_of_whole_cards_drawn_by_seed():
    df, start, until = _frame(), pd.Timestamp("2019-01-05", tz="UTC"), pd.Timestamp("2019-01-18", tz="UTC")
    got = chargebacks(df, start, until, LoopConfig(chargebacks=0.5, chargeback_days=7, seed=1))
    rows = df.set_index("tx_id").loc[got["tx_id"]]
    assert len(got) and (got["label"] == 1).all() and (rows["label"] == 1).all()
    assert (rows["timestamp"] >= start).all() and (rows["timestamp"] <= until - pd.Timedelta(days=7)).all()
    eligible = df[(df["label"] == 1) & (df["timestamp"] >= start) & (df["timestamp"] <= until - pd.Timedelta(days=7))]
    disputing = set(rows["customer_id"])
    assert set(eligible.loc[eligible["customer_id"].isin(disputing), "tx_id"]) == set(got["tx_id"])  # whole cards
    share = len(disputing) / eligible["customer_id"].nunique()
    assert 0.4 < share < 0.6
    later = chargebacks(df, start, until + pd.Timedelta(days=2), LoopConfig(chargebacks=0.5, seed=1))
    assert set(got["tx_id"]) < set(later["tx_id"])  # the same cards keep disputing as their frauds age
    other = chargebacks(df, start, until, LoopConfig(chargebacks=0.5, chargeback_days=7, seed=2))
    assert set(other["tx_id"]) != set(got["tx_id"])
    assert chargebacks(df, start, until, LoopConfig(chargebacks=0.0)).empty
    assert len(chargebacks(df, start, until, LoopConfig(chargebacks=1.0, chargeback_days=7))) == len(eligible)
    lab = with_labels(df.assign(amount=1.0, terminal_id="t"), loop_labels(df, start, [got]))
    assert lab.set_index("tx_id").loc[got["tx_id"], "label"].eq(1).all()  # over "not reported"
    for bad in ({"chargebacks": 1.5}, {"chargebacks": -0.1}, {"chargebacks": True}, {"chargeback_days": -1},
                {"chargeback_days": 2.5}):
        with pytest.raises(ConfigError, match=next(iter(bad))):
            LoopConfig(**bad).check()


@pytest.mark.slow
def test_a_retrain_without_analyst_labels_receives_the_disputes_through_the_cli(monkeypatch):
    trained = []
    real = loop._train
    monkeypatch.setattr(loop, "_train",
                        lambda df, until, cfg: trained.append((df.copy(), until)) or real(df, until, cfg))
    args = ["bench", "loop", "--arms", "no_labels", "--chargebacks", "0.5", "--chargeback-days", "3", "--json"]
    args += [a for k, v in WORLD.items() for a in (f"--{k.replace('_', '-')}", str(v))]
    res = CliRunner().invoke(main, args + [a for s in TINY for a in ("--set", s)])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    start = pd.Timestamp(out["train_until"])
    assert out["config"]["loop"]["chargebacks"] == 0.5 and out["config"]["loop"]["chargeback_days"] == 3
    retrains = out["arms"]["no_labels"]["retrains"]
    assert len(retrains) == 2 == len(trained) - 1
    for (df, until), r in zip(trained[1:], retrains):
        loop_rows = df[df["timestamp"] >= start]
        disputed = loop_rows[loop_rows["label"] == 1]
        assert len(disputed) == r["chargebacks"] > 0 and r["loop_frauds_labelled"] == 0
        assert (disputed["timestamp"] <= until - pd.Timedelta(days=3)).all()


@pytest.mark.parametrize("days", [0, 2])
def test_daily_disputes_under_sent_labels_tile_the_days_once(days):
    """``live_labels="sent"``: the disputes sent at the end of each day are every disputed fraud exactly once, on
    the day it becomes known (a fraud at midnight included), as the retrains' ``chargebacks`` knows them."""
    from benchmarks.loop import DAY, LoopConfig, _due_disputes, chargebacks

    t0 = pd.Timestamp("2024-01-01", tz="UTC")
    ts = [t0 + DAY * k for k in range(6)] + [t0 + DAY * k + pd.Timedelta(hours=7) for k in range(6)]
    df = pd.DataFrame({"tx_id": [f"t{i}" for i in range(len(ts))], "timestamp": ts,
                       "customer_id": [f"c{i}" for i in range(len(ts))], "label": 1}).sort_values("timestamp")
    cfg = LoopConfig(chargebacks=1.0, chargeback_days=days)
    sent = [_due_disputes(df, t0, t0 + DAY * (d + 1), cfg)["tx_id"].tolist() for d in range(8)]
    flat = [t for day in sent for t in day]
    assert len(flat) == len(set(flat))
    assert set(flat) == set(chargebacks(df, t0, t0 + DAY * 8, cfg)["tx_id"]) == set(df["tx_id"][
        df["timestamp"] <= t0 + DAY * (8 - days)])
