"""``fraud bench loop --tactics``: evasion tactics injected from the onset on a tiny world, through the CLI; they are
reported as new patterns beside the world's own, and the oracle's ceilings bound every arm on them."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from benchmarks.loop import BenchConfig, check_tactics, loop_world, table
from fraud.cli import main
from fraud.errors import ConfigError
from fraud.evasion import TACTICS

pytestmark = pytest.mark.slow

TACTIC_LIST = ("under_usual", "aged_mules", "spread_ring")
WORLD = {"seed": 5, "customers": 150, "terminals": 300, "weeks": 6, "train_weeks": 3, "onset_weeks": 1}
TINY = ['featurizers=["tabular","behaviour"]', 'unsupervised=["hbos"]', "supervised=lightgbm",
        'ensemble_params={"supervised_params":{"n_estimators":30}}', "warm_state_days=14",
        "baseline_trees=20"]  # a small guard forest: the structure, not its figures


def _args(**extra) -> list:
    world = {**WORLD, **extra}
    out = ["bench", "loop", "--arms", "frozen,full", "--budget", "5", "--cases", "3", "--json"]
    for k, v in world.items():
        out += [f"--{k.replace('_', '-')}", str(v)]
    return out + [a for s in TINY for a in ("--set", s)]


@pytest.fixture(scope="module")
def result():
    res = CliRunner().invoke(main, _args(tactics=",".join(TACTIC_LIST), tactic_scale=1.0))
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout)


def _ids(names=TACTIC_LIST) -> list:
    return sorted(sid for sid, n in TACTICS.items() if n in names)


def test_injected_tactics_are_new_patterns_of_every_arm(result):
    inj = result["world"]["injected"]
    assert inj["names"] == list(TACTIC_LIST) and inj["ids"] == _ids() and inj["scale"] == 1.0
    assert all(inj["rows"][n] > 0 for n in TACTIC_LIST)
    onset_day = 7 * WORLD["onset_weeks"]
    for name in ("frozen", "full", "oracle"):
        pats = result["arms"][name]["patterns"]
        for sid in _ids():
            p = pats[str(sid)]
            assert p["first_fraud_day"] >= onset_day and p["n_fraud"] > 0
            assert result["pattern_names"][str(sid)] == f"{TACTICS[sid]} (tactic)"
        assert result["arms"][name]["weeks"][0]["by_scenario"].keys().isdisjoint(map(str, _ids()))
    text = table(result)
    assert all(f"{n} (tactic): first fraud day" in text for n in TACTIC_LIST) and "injected tactics:" in text


def test_ceilings_bound_the_arms_on_the_injected_patterns(result):
    oracle = result["arms"]["oracle"]
    assert set(oracle["pattern_first"]) >= set(map(str, _ids()))
    for name in ("frozen", "full"):
        for o, w in zip(oracle["weeks"], result["arms"][name]["weeks"]):
            assert w["recall"] <= o["recall"] + 1e-12 and w["n_fraud"] == o["n_fraud"]
            for s, r in w["by_scenario"].items():
                if s in oracle["pattern_first"]:
                    assert r <= oracle["pattern_first"][s][str(w["week"])] + 1e-12
    s = result["summary"]["arms"]
    for sid in map(str, _ids()):
        first = s["oracle"]["pattern_first_after_onset"][sid]
        assert all(s[a]["by_pattern"][sid] <= first + 1e-12 for a in ("frozen", "full"))
    goals = result["summary"]["goals"]
    assert goals["gain_0.25_reachable"] == (goals["largest_possible_gain_over_frozen"] >= 0.25)
    assert goals["injected_recall_gain"] == pytest.approx(s["full"]["injected"]["recall"]
                                                          - s["frozen"]["injected"]["recall"])


def test_injected_summary_pools_the_tactics_after_the_onset(result):
    for name in ("frozen", "full", "oracle"):
        weeks = [w for w in result["arms"][name]["weeks"] if w["week"] >= WORLD["onset_weeks"]]
        got = [(w["by_scenario"][s], w["n_by_scenario"][s]) for w in weeks for s in map(str, _ids())
               if s in w["by_scenario"]]
        pooled = sum(r * n for r, n in got) / sum(n for _, n in got)
        assert result["summary"]["arms"][name]["injected"]["recall"] == pytest.approx(pooled)


def test_tactics_add_fraud_rows_from_the_onset_and_leave_the_world_alone():
    base, _ = loop_world(BenchConfig(**WORLD))
    cfg = BenchConfig(**WORLD, tactics=("aged_mules", "slow_testing"))
    df, spec = loop_world(cfg)
    new = df[df["scenario"].isin(_ids(cfg.tactics))]
    onset = base["timestamp"].iloc[0].floor("D") + 7 * (WORLD["train_weeks"] + WORLD["onset_weeks"]) * pd.Timedelta(
        days=1)
    assert len(new) == sum(spec["injected"]["rows"].values()) > 0 and (new["label"] == 1).all()
    assert (new["timestamp"] >= onset).all() and spec["injected"]["scale"] == WORLD["customers"] / 500
    rest = df[~df["scenario"].isin(_ids(cfg.tactics))].reset_index(drop=True)
    pd.testing.assert_frame_equal(rest, base, check_dtype=False)
    assert np.isin(new["customer_id"], base["customer_id"]).all()  # existing cards, as an attacker holds them


def test_bad_tactics_are_refused():
    assert check_tactics(("all",)) == tuple(TACTICS.values())
    with pytest.raises(ConfigError, match="'nope'"):
        check_tactics(("aged_mules", "nope"))
    with pytest.raises(ConfigError, match="each once"):
        check_tactics(("aged_mules", "aged_mules"))
    res = CliRunner().invoke(main, _args(tactics="aged_mules,nope"))
    assert res.exit_code == 2 and "--tactics" in res.output and "nope" in res.output
    with pytest.raises(ConfigError, match="tactic_scale"):
        loop_world(BenchConfig(**WORLD, tactics=("aged_mules",), tactic_scale=0.0))


def test_analyst_frauds_are_counted_per_scenario(result):
    for name in ("frozen", "full"):
        for d in result["arms"][name]["days"]:
            assert sum(d["fraud_decided_by_scenario"].values()) == d["fraud_decided"]
            assert all(int(s) > 0 for s in d["fraud_decided_by_scenario"])
    found = {s for d in result["arms"]["full"]["days"] for s in d["fraud_decided_by_scenario"]}
    assert found & set(map(str, _ids()))  # the analyst decided some injected frauds on this world
