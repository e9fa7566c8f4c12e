"""``fraud bench loop --unreviewed``: the label a weekly retrain gives loop events no analyst decided, through the CLI
on a tiny world ("genuine": 0, today's rule; "unknown": -1, skipped by the head, the guard and the gate); and
``--explore``: cases taken from the cards the budget left out, ranked by the label-free detectors."""
from __future__ import annotations

import json

import pandas as pd
import pytest
from click.testing import CliRunner

import numpy as np

from benchmarks.loop import LoopConfig, budget_alerts, exploration_alerts, loop_labels, with_labels
from fraud.cli import main
from fraud.errors import ConfigError

pytestmark = pytest.mark.slow

WORLD = {"seed": 5, "customers": 150, "terminals": 300, "weeks": 5, "train_weeks": 3, "onset_weeks": 0}
TINY = ['featurizers=["tabular","behaviour"]', 'unsupervised=["hbos"]', "supervised=lightgbm",
        'ensemble_params={"supervised_params":{"n_estimators":30}}', "warm_state_days=14",
        "baseline_trees=20"]  # a small guard forest: the structure, not its figures


def _run(policy: str) -> dict:
    args = ["bench", "loop", "--arms", "full", "--budget", "5", "--cases", "3", "--explore", "1", "--unreviewed",
            policy, "--json"]
    for k, v in WORLD.items():
        args += [f"--{k.replace('_', '-')}", str(v)]
    res = CliRunner().invoke(main, args + [a for s in TINY for a in ("--set", s)])
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout)


@pytest.fixture(scope="module")
def runs() -> dict:
    return {p: _run(p) for p in ("genuine", "unknown")}


def _decided_until(arm: dict, day: int) -> int:
    """Loop events the analyst decided on days 0..day (each tx once: an alerted event is decided on its day)."""
    return sum(d["decided"] for d in arm["days"] if d["day"] <= day)


def test_unreviewed_loop_events_reach_the_retrain_as_the_policy_says(runs):
    train_until = pd.Timestamp(runs["genuine"]["train_until"])
    for policy, res in runs.items():
        assert res["config"]["loop"]["unreviewed"] == policy
        arm = res["arms"]["full"]
        assert arm["retrains"], "the tiny world must hold a weekly retrain"
        for r in arm["retrains"]:
            lab = r["labels"]
            loop_events = sum(d["n"] for d in arm["days"] if d["day"] <= r["day"])
            decided = _decided_until(arm, r["day"])
            if policy == "unknown":  # every undecided loop event, and nothing else, is unknown
                assert lab["unknown"] == loop_events - decided > 0
            else:
                assert lab["unknown"] == 0
            assert pd.Timestamp(r["until"]) == train_until + (r["day"] + 1) * pd.Timedelta(days=1)
    # the same first retrain reads the same events and the same decisions: only the undecided events move
    g, u = (runs[p]["arms"]["full"]["retrains"][0]["labels"] for p in ("genuine", "unknown"))
    assert g["fraud"] == u["fraud"] and g["genuine"] == u["genuine"] + u["unknown"]


def test_the_gate_scores_only_labelled_events_under_unknown(runs):
    """The first retrain's gate window is the same under both policies (same champion, same events, same decisions);
    under "unknown" it scores exactly the window's undecided loop events fewer."""
    g, u = (runs[p]["arms"]["full"] for p in ("genuine", "unknown"))
    rg, ru = g["retrains"][0], u["retrains"][0]
    assert rg["window"] == ru["window"] and g["days"][:rg["day"] + 1] == u["days"][:ru["day"] + 1]
    train_until, end = pd.Timestamp(runs["genuine"]["train_until"]), pd.Timestamp(rg["window"][1])
    loop_days = [d for d in g["days"] if d["day"] < (end - train_until).days]
    assert loop_days and rg["gate_n_labelled"] - ru["gate_n_labelled"] == sum(d["n"] - d["decided"] for d in loop_days)


def test_loop_labels_policy_and_latest_decision():
    ts = pd.to_datetime(["2019-01-01", "2019-01-02", "2019-01-03", "2019-01-04"], utc=True)
    seen = pd.DataFrame({"tx_id": ["a", "b", "c", "d"], "timestamp": ts, "customer_id": "k", "terminal_id": "t",
                         "amount": 1.0, "label": [1, 1, 1, 0]})
    dec = [pd.DataFrame({"tx_id": ["c"], "label": [0]}), pd.DataFrame({"tx_id": ["c"], "label": [1]})]
    got = {p: with_labels(seen, loop_labels(seen, ts[1], dec, p)).set_index("tx_id")["label"].to_dict()
           for p in ("genuine", "unknown")}
    assert got["genuine"] == {"a": 1, "b": 0, "c": 1, "d": 0}
    assert got["unknown"] == {"a": 1, "b": -1, "c": 1, "d": -1}
    with pytest.raises(ConfigError, match="unreviewed='maybe'"):
        LoopConfig(unreviewed="maybe").check()
    with pytest.raises(ConfigError, match="no label"):
        with_labels(seen, pd.DataFrame({"tx_id": ["a"], "label": [1]}))


def test_exploration_decides_cases_beside_the_budget(runs):
    for res in runs.values():
        days = res["arms"]["full"]["days"]
        assert res["config"]["loop"]["explore"] == 1
        assert sum(d["explored"] for d in days) > 0
        assert all(0 <= d["fraud_explored"] <= d["explored"] <= d["decided"] for d in days)


def test_exploration_alerts_rank_the_cards_the_budget_left_out():
    rng = np.random.default_rng(0)
    scored = pd.DataFrame({"customer_id": rng.integers(0, 40, 400).astype(str), "score": rng.random(400),
                           "label_free": rng.random(400)})
    alert = budget_alerts(scored, 5)
    got = exploration_alerts(scored, alert, 5)
    alerted = set(scored.loc[alert, "customer_id"])
    rest = scored[~scored["customer_id"].isin(alerted)]
    best = rest.groupby("customer_id")["label_free"].max().nlargest(5).index
    assert set(got["customer_id"]) == set(best) and alerted.isdisjoint(got["customer_id"])
    assert np.array_equal(got["score"].to_numpy(), got["label_free"].to_numpy())  # ranked by the label-free score
    with pytest.raises(ConfigError, match="explore=4"):
        LoopConfig(cases_per_day=3, explore=4).check()
