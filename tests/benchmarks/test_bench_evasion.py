"""``fraud bench evasion`` on a tiny world: the result's structure and invariants (not the goals), the loop part
against ``benchmarks.loop``'s API, no label leak after week 1."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from benchmarks.evasion import EvasionConfig, adapted_scores, run_evasion
from fraud.errors import ConfigError
from fraud.evasion import TACTICS

pytestmark = pytest.mark.slow

ARMS = ("current", "current_week2", "forest", "retrained_week1_labels", "loop_week2")
CEILINGS = ("oracle", "tactic_first", "oracle_week2", "tactic_first_week2")
TINY = {"featurizers": ("tabular", "behaviour", "collusion"), "unsupervised": ("hbos",),
        "ensemble_params": {"supervised_params": {"n_estimators": 60}},
        "baseline_trees": 20}  # a small head and guard forest: the structure, not the goals


@pytest.fixture(scope="module")
def cfg():
    return EvasionConfig(seeds=(3000,), customers=150, terminals=300, train_days=35, train=TINY)


@pytest.fixture(scope="module")
def result(cfg):
    return run_evasion(cfg)


def _ok(v):
    return math.isnan(v) or 0 <= v <= 1


def test_structure_and_invariants(result):
    (w,) = result["worlds"]
    assert result["config"]["budget"] == 5 and w["seed"] == 3000
    assert set(w["tactic_rows"]) == set(TACTICS.values()) and min(w["tactic_rows"].values()) > 0
    assert tuple(w["recall"]) == ARMS + CEILINGS
    for arm in ARMS[:4] + CEILINGS:
        assert set(w["recall"][arm]) == set(TACTICS.values()) and all(_ok(v) for v in w["recall"][arm].values())
    assert set(w["recall_all"]) == set(ARMS) | {"oracle", "oracle_week2"}
    assert all(_ok(v) for v in w["recall_all"].values())
    for arm, ranks in w["median_rank"].items():
        assert set(ranks) == set(TACTICS.values()) and all(r >= 1 for r in ranks.values())
    s = result["summary"]
    rounded = {k: round(v, 3) for k, v in w["recall"]["current"].items()}
    assert s["current"]["mean"] == pytest.approx(rounded, nan_ok=True)
    assert set(s["goals"]) == {"loop_week2_recall_ge_0.5_every_tactic", "retrained_week2_recall_ge_0.5_every_tactic",
                               "below_0.5_after_adaptation", "oracle_week2_ge_0.5_every_tactic",
                               "oracle_week2_below_0.5"}


def test_every_arm_is_under_its_ceiling(result):
    (w,) = result["worlds"]
    rec, every = w["recall"], w["recall_all"]
    for arm in ARMS:
        week2 = arm in ("current_week2", "retrained_week1_labels", "loop_week2")
        first = rec["tactic_first_week2" if week2 else "tactic_first"]
        assert all(v <= first[t] + 1e-12 for t, v in rec[arm].items()), arm
        if arm in every:
            assert every[arm] <= every["oracle_week2" if week2 else "oracle"] + 1e-12, arm
    assert all(rec["oracle"][t] <= rec["tactic_first"][t] + 1e-12 for t in TACTICS.values())


def test_loop_part_reports_week2_per_tactic(result):
    (w,) = result["worlds"]
    assert set(w["recall"]["loop_week2"]) == set(TACTICS.values())
    assert all(_ok(v) for v in w["recall"]["loop_week2"].values())


def test_retrained_model_never_sees_labels_after_week_one(cfg):
    from fraud.evasion import inject
    from fraud.worlds import draw_spec, generate

    base = generate(draw_spec(5, 120, 240, 42, late_from=28))
    start = base["timestamp"].iloc[0].floor("D") + pd.Timedelta(days=28)
    df = inject(base, start, 14, seed=5)
    late = (df["timestamp"] >= start + pd.Timedelta(days=7)).to_numpy()
    flipped = df.assign(label=np.where(late, 0, df["label"]).astype(np.int8))
    np.testing.assert_array_equal(adapted_scores(df, start, TINY), adapted_scores(flipped, start, TINY))


def test_cli_registers_the_command_and_rejects_bad_seeds():
    from click.testing import CliRunner

    from fraud.cli import main

    runner = CliRunner()
    ok = runner.invoke(main, ["bench", "evasion", "--help"])
    assert ok.exit_code == 0 and all(o in ok.output for o in ("--seeds", "--no-loop", "--cases", "--activity-alarm"))
    bad = runner.invoke(main, ["bench", "evasion", "--seeds", "3000,x"])
    assert bad.exit_code == 2 and "'3000,x' is not a comma-separated list of integers" in bad.output


def test_expose_reaches_the_loop_and_bad_values_fail_before_any_training():
    from click.testing import CliRunner

    from benchmarks.evasion import loop_config
    from fraud.cli import main

    assert loop_config(EvasionConfig(budget=50, expose=5)).expose == 5
    runner = CliRunner()
    for args, words in ((["--no-loop", "--expose", "1"], "changes the loop only, and the loop is off"),
                        (["--budget", "5", "--expose", "5"], "expose=5 must be an integer >= 0, below the budget")):
        bad = runner.invoke(main, ["bench", "evasion", "--seeds", "3000", *args, "--json"])
        assert bad.exit_code != 0 and isinstance(bad.exception, ConfigError) and words in str(bad.exception)


def test_alarm_switches_reach_every_arms_training_config():
    from benchmarks.loop import FAST_TRAIN

    assert "terminal_alarm" not in EvasionConfig(train=TINY).train_kw()  # TrainConfig's own default
    on = EvasionConfig(train=TINY, terminal_alarm=True, activity_alarm=True)
    assert on.train_kw() == {**TINY, "terminal_alarm": True, "activity_alarm": True}
    assert EvasionConfig(terminal_alarm=False).train_kw(FAST_TRAIN) == {**FAST_TRAIN, "terminal_alarm": False}


def test_set_overrides_reach_every_arm_and_keep_the_loops_fast_training():
    """``--set`` goes into every arm's TrainConfig; the loop's arm keeps its fast defaults beside the override."""
    from click.testing import CliRunner

    from benchmarks.loop import FAST_TRAIN
    from benchmarks.worlds import train_overrides
    from fraud.cli import main

    fresh = train_overrides(["graph.refresh_lr=0.05", "graph.convergence=true"], "bench evasion")
    assert fresh == {"featurizer_params": {"graph": {"refresh_lr": 0.05, "convergence": True}}}
    cfg = EvasionConfig(train=fresh)
    assert cfg.train_kw() == fresh and cfg.train_kw(FAST_TRAIN) == {**FAST_TRAIN, **fresh}
    bad = CliRunner().invoke(main, ["bench", "evasion", "--set", "nonsense", "--json"])
    assert bad.exit_code != 0 and "bench evasion: --set 'nonsense' is not KEY=VALUE" in str(bad.exception)



def test_reach_back_through_the_cli_reports_its_arms_beside_todays():
    """``fraud bench evasion --reach-back`` on a tiny world without the loop: the ``*_reach`` arms beside the
    model's own ranking, each under its ceiling."""
    import json

    from click.testing import CliRunner

    from fraud.cli import main

    args = ["bench", "evasion", "--seeds", "3000", "--customers", "120", "--terminals", "240", "--train-days", "28",
            "--budget", "10", "--no-loop", "--reach-back", "--json",
            "--set", 'featurizers=["tabular","behaviour","collusion"]', "--set", 'unsupervised=["hbos"]',
            "--set", 'ensemble_params={"supervised_params":{"n_estimators":60}}', "--set", "baseline_trees=20"]
    r = CliRunner().invoke(main, args, catch_exceptions=False)
    assert r.exit_code == 0, r.output[-500:]
    res = json.loads(r.output)
    (w,) = res["worlds"]
    reach = ("current_reach", "current_week2_reach", "retrained_week1_labels_reach")
    assert set(w["recall"]) == set(ARMS + CEILINGS + reach) and w["recall"]["loop_week2"] is None
    for arm in reach:
        first = w["recall"]["tactic_first" if arm == "current_reach" else "tactic_first_week2"]
        assert all(_ok(v) and v <= first[t] + 1e-12 for t, v in w["recall"][arm].items()), arm
        assert _ok(w["recall_all"][arm])
    assert res["config"]["reach_back"] is True and "below_0.5_after_adaptation_reach" in res["summary"]["goals"]


def test_loop_reranker_lifts_a_day_by_its_own_scores_and_the_training_surprise():
    """The loop's day ranking: the surprise looked up by tx_id, the threshold from the training rows, the level
    from the day's own scores; a card that used the day's surprising terminal is lifted to that level."""
    from benchmarks.evasion import loop_reranker

    t0 = pd.Timestamp("2024-01-10", tz="UTC")
    day = pd.DataFrame({"tx_id": ["a", "b", "c", "d"], "customer_id": ["c1", "c1", "c2", "c3"],
                        "terminal_id": ["T", "U", "T", "V"],
                        "timestamp": [t0 + pd.Timedelta(hours=h) for h in (1, 2, 3, 4)]})
    past = pd.DataFrame({"tx_id": [f"p{i}" for i in range(200)]})
    df = pd.concat([past, day], ignore_index=True)
    z = np.concatenate([np.linspace(0, 1, 200), [0.0, 0.0, 9.0, 0.2]])
    rerank = loop_reranker(df, z, np.arange(len(df)) < 200)
    shuffled = day.assign(score=[0.1, 0.2, 0.3, 0.9]).sample(frac=1, random_state=0)  # looked up by tx_id
    scores = shuffled["score"].to_numpy()
    out = rerank(shuffled, scores)
    level = np.quantile(scores, 0.97)
    lifted = shuffled["customer_id"].isin(["c1", "c2"]).to_numpy()
    assert (out[lifted] >= level).all() and (out[lifted] < level + 1e-5).all()
    assert out[~lifted] == pytest.approx(scores[~lifted])
