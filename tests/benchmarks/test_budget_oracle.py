"""The ceiling of recall at a daily card budget (``benchmarks.oracle.budget_oracle``) and the evasion bench's use of
it: no ranking beats it, it catches everything when the budget covers the day's fraud cards."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from benchmarks.evasion import ceilings
from benchmarks.oracle import budget_oracle
from fraud.errors import ConfigError
from fraud.evaluate import recall_at_budget

T0 = pd.Timestamp("2024-03-01", tz="UTC")


def _frame(seed: int, days: int = 6, cards: int = 40, rows: int = 900) -> pd.DataFrame:
    """Random card activity; a third of the cards turn fraudulent on some days, with scenarios 1-3."""
    rng = np.random.default_rng(seed)
    t = T0 + pd.to_timedelta(np.sort(rng.uniform(0, days * 86_400, rows)), unit="s")
    card = rng.integers(0, cards, rows)
    bad = (card % 3 == 0) & (rng.random(rows) < 0.5)
    return pd.DataFrame({"timestamp": t, "customer_id": [f"c{c}" for c in card], "label": bad.astype(np.int8),
                         "scenario": np.where(bad, 1 + card % 9 // 3, 0)})


def _fraud_cards_per_day(f: pd.DataFrame) -> int:
    fr = f[f["label"] == 1]
    return int(fr.groupby(fr["timestamp"].dt.floor("D"))["customer_id"].nunique().max())


def _recall(f, scores, budget):
    return recall_at_budget(f.assign(score=scores), budget=budget)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_no_ranking_beats_the_oracle_overall_nor_a_scenario_ranked_first(seed):
    f = _frame(seed)
    rng = np.random.default_rng(100 + seed)
    rankings = [rng.random(len(f)) for _ in range(20)]
    rankings += [f["label"].to_numpy() + rng.random(len(f)), (f["scenario"] == 2).to_numpy() + rng.random(len(f))]
    for budget in (1, 3, 6):
        best = _recall(f, budget_oracle(f, seed=seed), budget)
        firsts = {s: _recall(f, budget_oracle(f, (f["scenario"] == s).to_numpy(), seed=seed), budget)[str(s)]
                  for s in (1, 2, 3)}
        for r in rankings:
            got = _recall(f, r, budget)
            assert got["all"] <= best["all"] + 1e-12
            assert all(got[str(s)] <= firsts[s] + 1e-12 for s in (1, 2, 3))
        assert best["all"] < 1.0 or budget >= _fraud_cards_per_day(f)


def test_oracle_catches_every_fraud_once_the_budget_covers_the_fraud_cards():
    f = _frame(3)
    need = _fraud_cards_per_day(f)
    assert _recall(f, budget_oracle(f), need - 1)["all"] < 1.0
    assert set(_recall(f, budget_oracle(f), need).values()) == {1.0}


def test_ties_are_random_but_fixed_by_the_seed_and_one_score_per_card_day():
    f = _frame(4)
    a, b, c = budget_oracle(f, seed=7), budget_oracle(f, seed=7), budget_oracle(f, seed=8)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    per = pd.Series(a).groupby([f["timestamp"].dt.floor("D").to_numpy(), f["customer_id"].to_numpy()]).nunique()
    assert (per == 1).all()
    assert len(budget_oracle(f.iloc[:0])) == 0


def test_oracle_rejects_a_bad_frame_or_target():
    f = _frame(5)
    with pytest.raises(ConfigError, match=r"target has shape \(3,\), the frame 900 rows"):
        budget_oracle(f, target=[True, False, True])
    with pytest.raises(ConfigError, match=r"lacks column\(s\) \['label'\]"):
        budget_oracle(f.drop(columns="label"))


def test_evasion_ceilings_reach_one_per_tactic_at_a_covering_budget():
    from fraud.evasion import TACTICS, inject
    from fraud.worlds import draw_spec, generate

    base = generate(draw_spec(11, 120, 240, 35, late_from=21))
    start = base["timestamp"].iloc[0].floor("D") + pd.Timedelta(days=21)
    df = inject(base, start, 14, seed=11)
    test = (df["timestamp"] >= start).to_numpy()
    week2 = (df["timestamp"] >= start + pd.Timedelta(days=7)).to_numpy()
    need = _fraud_cards_per_day(df[test])
    full = ceilings(df, test, week2, need, seed=11)
    assert set(full) == {"oracle", "tactic_first", "oracle_week2", "tactic_first_week2"}
    for arm, rec in full.items():
        assert set(rec) >= {str(s) for s in TACTICS} and set(rec.values()) == {1.0}, arm
    low = ceilings(df, test, week2, 1, seed=11)
    assert low["oracle"]["all"] < 1.0
    assert all(low["tactic_first"][str(s)] >= low["oracle"][str(s)] for s in TACTICS)


def test_evasion_config_scales_the_analyst_with_the_budget_and_switches_the_alarm():
    from benchmarks.evasion import EvasionConfig
    from benchmarks.loop import FAST_TRAIN

    assert (EvasionConfig().card_budget(), EvasionConfig().cases_per_day()) == (5, 5)
    assert EvasionConfig(budget=50).cases_per_day() == 50 and EvasionConfig(budget=50, cases=7).cases_per_day() == 7
    assert EvasionConfig().train_kw(FAST_TRAIN) == FAST_TRAIN and EvasionConfig().train_kw() == {}
    on = EvasionConfig(activity_alarm=True, train={"unsupervised": ("hbos",)})
    assert on.train_kw(FAST_TRAIN) == {**FAST_TRAIN, "unsupervised": ("hbos",), "activity_alarm": True}
