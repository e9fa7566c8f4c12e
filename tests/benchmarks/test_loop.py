"""``fraud bench loop`` on a tiny world: scoring carries the state over, decisions are the ground truth and reach the
retrain, the frozen arm never changes model, a promoted model scores from the next day on."""
from __future__ import annotations

import dataclasses
import json

import numpy as np
import pandas as pd
import pytest

from benchmarks.loop import (FRESH_PARAM, BenchConfig, LoopConfig, arm_setup, fresh_available, initial_bundle,
                             loop_labels, loop_world, oracle_arm, run_arm, summary, train_config, weekly)
from fraud.errors import ConfigError
from fraud.evaluate import recall_at_budget

pytestmark = pytest.mark.slow

TINY = {"featurizers": ("tabular", "behaviour"), "unsupervised": ("hbos",), "supervised": "lightgbm",
        "ensemble_params": {"supervised_params": {"n_estimators": 30}}, "feedback_delay_days": 1, "baseline_trees": 20,
        "warm_state_days": 14}
WEEKS = 2


@pytest.fixture(scope="module")
def world():
    cfg = BenchConfig(seed=5, customers=150, terminals=300, weeks=5, train_weeks=3, onset_weeks=0,
                      loop=LoopConfig(budget=5, cases_per_day=3, train_kw=dict(TINY)))
    df, spec = loop_world(cfg)
    split = df["timestamp"].iloc[0].floor("D") + 21 * pd.Timedelta(days=1)
    return cfg, df, split, initial_bundle(df, split, cfg.loop)


@pytest.fixture(scope="module")
def arms(world):
    cfg, df, split, base = world
    return {arm: run_arm(df, split, WEEKS, arm, cfg.loop, initial=base, keep_frame=True)
            for arm in ("frozen", "no_labels", "full")}


def test_world_has_new_patterns_after_training(world):
    cfg, df, split, _ = world
    fraud = df[df["label"] == 1]
    before = set(fraud.loc[fraud["timestamp"] < split, "scenario"])
    after = set(fraud.loc[fraud["timestamp"] >= split, "scenario"])
    assert {12, 15} <= after - before and before  # the ring and the night burst are new; an old pattern is labelled


def test_frozen_scores_as_one_stream_and_never_changes_model(world, arms):
    cfg, df, split, base = world
    res = arms["frozen"]
    assert res["retrains"] == [] and {d["model_version"] for d in res["days"]} == {"1"}
    loop = df[(df["timestamp"] >= split) & (df["timestamp"] < split + 7 * WEEKS * pd.Timedelta(days=1))]
    state = base.warm_state()
    whole = base.score_frame(loop.drop(columns="scenario").reset_index(drop=True), state=state)
    np.testing.assert_allclose(res["frame"]["score"].to_numpy(), whole["score"].to_numpy(), rtol=1e-9)


def test_weekly_recall_is_recall_at_the_card_budget(world, arms):
    cfg, *_ = world
    f = arms["full"]["frame"]
    for w, row in zip(range(WEEKS), arms["full"]["weeks"]):
        week = f[f["day"] // 7 == w]
        assert row["recall"] == pytest.approx(recall_at_budget(week, budget=cfg.loop.budget)["all"])
        assert (week.groupby("day")["customer_id"].apply(lambda c: c[week.loc[c.index, "alerted"]].nunique())
                <= cfg.loop.budget).all()
    assert weekly(f) == arms["full"]["weeks"]


def test_analyst_decisions_are_truth_and_reach_the_full_retrain_only(arms):
    full, nolab = arms["full"], arms["no_labels"]
    fraud_found = np.cumsum([d["fraud_decided"] for d in full["days"]])
    assert fraud_found[-1] > 0  # the analyst found fraud among the alerts
    for r in full["retrains"]:
        assert r["loop_frauds_labelled"] == fraud_found[r["day"]]
    assert [r["loop_frauds_labelled"] for r in nolab["retrains"]] == [0] * len(nolab["retrains"])


def test_promoted_model_scores_from_the_next_day(arms):
    for arm in ("no_labels", "full"):
        res = arms[arm]
        assert [r["day"] for r in res["retrains"]] == list(range(6, 7 * WEEKS - 1, 7))
        version = [d["model_version"] for d in res["days"]]
        for r in res["retrains"]:
            d = r["day"]
            assert (version[d + 1] != version[d]) == r["promote"]
            if r["promote"]:
                assert int(version[d + 1]) == int(version[d]) + 1
    assert all(r["promote"] and "schedule" in r["reason"] for r in arms["no_labels"]["retrains"])
    assert all("promoted by schedule" not in r["reason"] for r in arms["full"]["retrains"])


def test_loop_labels_latest_decision_wins():
    ts = pd.to_datetime(["2019-01-01", "2019-01-02", "2019-01-03"], utc=True)
    seen = pd.DataFrame({"tx_id": ["a", "b", "c"], "timestamp": ts, "label": [1, 1, 1]})
    dec = [pd.DataFrame({"tx_id": ["c"], "label": [0]}), pd.DataFrame({"tx_id": ["c"], "label": [1]})]
    lab = loop_labels(seen, ts[1], dec)
    last = lab.drop_duplicates("tx_id", keep="last").set_index("tx_id")["label"]
    assert last.to_dict() == {"a": 1, "b": 0, "c": 1}  # known before the cutoff; unreported after; the last decision


def test_summary_and_pattern_timing(arms):
    s = summary(arms, onset_week=0)
    for name, arm in arms.items():
        for sid, p in arm["patterns"].items():
            assert sid in (12, 15) or p["first_fraud_day"] >= 0
            if p["days_to_first_alert"] is not None and p["days_to_half_recall"] is not None:
                assert p["days_to_first_alert"] <= p["days_to_half_recall"]
        assert 0 <= s["arms"][name]["recall"] <= 1
    assert s["goals"]["recall_gain_after_onset"] == pytest.approx(s["arms"]["full"]["recall"]
                                                                  - s["arms"]["frozen"]["recall"])


def test_result_is_json_without_the_frame(arms):
    out = json.loads(json.dumps({k: v for k, v in arms["full"].items() if k != "frame"}))
    assert [w["week"] for w in out["weeks"]] == list(range(WEEKS))


def test_fresh_embeddings_arm_is_a_training_switch():
    arm, lc = arm_setup("full_fresh", LoopConfig(train_kw=dict(TINY)))
    assert arm == "full" and lc.fresh_embeddings
    if fresh_available():
        assert train_config(lc).featurizer_params["graph"][FRESH_PARAM] == lc.fresh_lr > 0
        assert train_config(LoopConfig()).featurizer_params["graph"][FRESH_PARAM] == 0.0
    else:
        with pytest.raises(ConfigError, match=FRESH_PARAM):
            train_config(lc)
    assert arm_setup("frozen", lc) == ("frozen", lc)


def test_oracle_arm_bounds_every_arm_week_by_week(world, arms):
    cfg, df, split, _ = world
    oracle = oracle_arm(df, split, WEEKS, cfg.loop.budget)
    assert [w["week"] for w in oracle["weeks"]] == list(range(WEEKS)) and oracle["retrains"] == []
    assert set(oracle["pattern_first"]) == set(oracle["patterns"]) == set(arms["full"]["patterns"])
    for res in arms.values():
        for o, w in zip(oracle["weeks"], res["weeks"]):
            assert w["recall"] <= o["recall"] + 1e-12 and o["n_fraud"] == w["n_fraud"]
            for s, r in w["by_scenario"].items():
                if s in oracle["pattern_first"]:
                    assert r <= oracle["pattern_first"][s][w["week"]] + 1e-12
    wide = oracle_arm(df, split, WEEKS, 10_000)
    assert all(w["recall"] == 1.0 for w in wide["weeks"])
    assert all(r == 1.0 for p in wide["pattern_first"].values() for r in p.values())
    s = summary({**arms, "oracle": oracle}, onset_week=0)
    assert s["goals"]["largest_possible_gain_over_frozen"] == pytest.approx(s["arms"]["oracle"]["recall"]
                                                                           - s["arms"]["frozen"]["recall"])
    assert set(s["arms"]["oracle"]["pattern_first_after_onset"]) == set(oracle["patterns"])


def test_sent_labels_the_frozen_scorer_sees_no_label_and_the_full_one_its_analysts(world, arms):
    """``live_labels="sent"``: the events carry no label, so the frozen arm scores them as one unlabelled stream;
    the full arm's state receives the analyst's decisions at the end of each day (its scores then differ from the
    unlabelled stream's, and from the events-carry-labels run)."""
    cfg, df, split, base = world
    sent = dataclasses.replace(cfg.loop, live_labels="sent")
    frozen = run_arm(df, split, 1, "frozen", sent, initial=base, keep_frame=True)
    loop = df[(df["timestamp"] >= split) & (df["timestamp"] < split + 7 * pd.Timedelta(days=1))]
    rows = loop.drop(columns=["scenario", "label"]).reset_index(drop=True)
    whole = base.score_frame(rows, state=base.warm_state())
    np.testing.assert_allclose(frozen["frame"]["score"].to_numpy(), whole["score"].to_numpy(), rtol=1e-9)
    labelled = arms["frozen"]["frame"]["score"].to_numpy()[:len(rows)]
    assert not np.allclose(labelled, whole["score"].to_numpy())  # the events' labels did count in the default
    full = run_arm(df, split, 1, "full", sent, initial=base, keep_frame=True)
    assert sum(d["fraud_decided"] for d in full["days"][:-1]) > 0
    assert not np.allclose(full["frame"]["score"].to_numpy(), whole["score"].to_numpy())
    with pytest.raises(ConfigError, match="live_labels='x'"):
        dataclasses.replace(cfg.loop, live_labels="x").check()


def test_exposure_review_fills_the_kept_slots_with_cards_exposed_at_confirmed_frauds():
    """``expose``: the budget's last slots go to the cards used at a confirmed fraud's terminal that day (the
    analyst decides their transactions), the rest to the next cards by score, whose cases the analyst then works
    in place of the exposed cards it did not get (the same work a day)."""
    from benchmarks.loop import analyst, budget_alerts, exposure_review

    t = pd.Timestamp("2024-03-01 10:00", tz="UTC")
    rows = [("a1", "A", "T1", 0.9, 0), ("f1", "F", "T9", 0.8, 1), ("b1", "B", "T2", 0.7, 0),
            ("c1", "C", "T3", 0.6, 0), ("x1", "X", "T9", 0.1, 1), ("x2", "X", "T4", 0.05, 0),
            ("y1", "Y", "T9", 0.2, 0), ("z1", "Z", "T5", 0.01, 0)]
    scored = pd.DataFrame([{"tx_id": i, "timestamp": t + pd.Timedelta(hours=k), "customer_id": c, "terminal_id": term,
                            "amount": 5.0, "score": s} for k, (i, c, term, s, _) in enumerate(rows)])
    truth = pd.Series({i: lab for i, *_, lab in rows})
    cfg = LoopConfig(budget=4, cases_per_day=4, expose=2, analyst="cards")
    alert = budget_alerts(scored, cfg.budget - cfg.expose)                  # A and F
    dec = analyst(scored.loc[alert], truth, cfg)
    assert set(dec["tx_id"]) == {"a1", "f1"}                                # 4 - 2 cases: both alerted cards
    alert2, dec2 = exposure_review(scored, alert, dec, truth, cfg)
    assert set(scored.loc[alert2, "customer_id"]) == {"A", "F", "Y", "X"}    # Y (0.2) before X (0.1): both at T9
    ex = dec2[dec2["exposed"]]
    assert ex.set_index("tx_id")["label"].to_dict() == {"x1": 1, "x2": 0, "y1": 0} and len(dec2) == 5
    no_fraud = dec.assign(label=[0, 0])                                     # nothing confirmed: next cards by score,
    alert3, dec3 = exposure_review(scored, alert, no_fraud, truth, cfg)     # and the analyst works their cases
    assert set(scored.loc[alert3, "customer_id"]) == {"A", "F", "B", "C"} and not dec3["exposed"].any()
    assert set(dec3["tx_id"]) == {"a1", "f1", "b1", "c1"} and dec3["tx_id"].is_unique
    explored = pd.concat([dec, pd.DataFrame({"tx_id": ["y1"], "label": [0], "explored": True, "exposed": False})])
    _, dec4 = exposure_review(scored, alert, explored, truth, cfg)         # Y was explored: not exposed again
    assert dec4["tx_id"].is_unique and set(dec4.loc[dec4["exposed"], "tx_id"]) == {"x1", "x2"}
    for bad in ({"expose": 4}, {"expose": 3, "cases_per_day": 3}, {"expose": 1, "explore": 3, "cases_per_day": 4}):
        with pytest.raises(ConfigError, match=f"expose={bad['expose']}"):
            dataclasses.replace(cfg, **bad).check()
    dataclasses.replace(cfg, expose=0, explore=4).check()                   # no exposure: exploration may take all


def test_an_arm_with_exposure_keeps_the_budget_and_reports_its_reviews(world, arms):
    cfg, df, split, base = world
    res = run_arm(df, split, 1, "frozen", dataclasses.replace(cfg.loop, expose=2), initial=base, keep_frame=True)
    f = res["frame"]
    np.testing.assert_allclose(f["score"].to_numpy(), arms["frozen"]["frame"]["score"].to_numpy()[:len(f)])
    per_day = f[f["alerted"]].groupby("day")["customer_id"].nunique()
    assert (per_day == cfg.loop.budget).all()
    assert all(d["exposed"] >= d["fraud_exposed"] >= 0 for d in res["days"])
    assert sum(d["fraud_exposed"] for d in res["days"]) > 0      # this world's week holds exposed frauds
    for d in res["days"]:                                          # an exposed review only after a confirmed fraud
        assert d["exposed"] == 0 or d["fraud_decided"] > d["fraud_exposed"]
