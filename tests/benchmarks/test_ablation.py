import json

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from benchmarks.ablation import recall_at_budget, run_ablation, time_split
from fraud.errors import ConfigError




def test_recall_at_budget_by_hand():
    ts = pd.to_datetime(["2024-01-01 01:00", "2024-01-01 02:00", "2024-01-01 03:00", "2024-01-01 04:00",
                         "2024-01-02 01:00", "2024-01-02 02:00"], utc=True)
    df = pd.DataFrame({"timestamp": ts, "customer_id": ["a", "a", "b", "c", "a", "b"],
                       "label": [0, 1, 1, 1, 1, 0], "scenario": [0, 4, 2, 4, 4, 0]})
    scores = [0.9, 0.1, 0.5, 0.2, 0.1, 0.8]
    # day 1 card maxima: a 0.9, b 0.5, c 0.2 -> budget 2 alerts a, b; day 2: b 0.8, a 0.1 -> alerts b, a
    r = recall_at_budget(df, scores, budget=2)
    assert r == {"2": 1.0, "4": pytest.approx(2 / 3), "all": 0.75}
    r1 = recall_at_budget(df, scores, budget=1)  # day 1: a; day 2: b
    assert r1 == {"2": 0.0, "4": pytest.approx(1 / 3), "all": 0.25}


def test_time_split_obeys_the_delay():
    df = pd.DataFrame({"timestamp": pd.date_range("2024-01-01", periods=60 * 24, freq="h", tz="UTC")})
    sp = time_split(df, test_days=14, train_days=20, delay_days=7)
    assert sp["split"] == pd.Timestamp("2024-02-16", tz="UTC")
    assert sp["label_cut"] == sp["split"] - pd.Timedelta(days=7)
    assert sp["train_start"] == sp["label_cut"] - pd.Timedelta(days=20)
    with pytest.raises(ConfigError, match="too short"):
        time_split(df, test_days=30, train_days=40)


@pytest.fixture(scope="module")
def world_path(tmp_path_factory):
    from fraud.simulate import simulate

    p = tmp_path_factory.mktemp("abl") / "world.parquet"
    simulate(customers=250, terminals=500, days=45, seed=2).to_parquet(p)
    return p


@pytest.mark.slow
def test_cli_ablation_json(world_path):
    from fraud.cli import main

    res = CliRunner().invoke(main, ["bench", "ablation", "--data", str(world_path), "--preset", "canonical",
                                    "--sets", "tabular,tabular+graph", "--test-days", "14", "--train-days", "14",
                                    "--budget", "20", "--extra-budgets", "5", "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout[res.stdout.index("{"):])
    assert out["budget"] == 20 and out["dataset"] == str(world_path)
    assert set(out["feature_sets"]) == {"tabular", "tabular+graph"}
    for r in out["feature_sets"].values():
        assert 0 < r["ap"] <= 1 and 0.5 < r["auc"] <= 1
        assert set(r["recall_at_budget"]) >= {"all"} and all(0 <= v <= 1 for v in r["recall_at_budget"].values())
        assert set(r["recall_at_budgets"]) == {"5"}
    assert out["feature_sets"]["tabular+graph"]["n_features"] > out["feature_sets"]["tabular"]["n_features"]


def test_missing_featurizer_is_skipped_with_a_note(world_path, monkeypatch):
    from fraud.training import featurizers

    monkeypatch.setitem(featurizers.FEATURIZERS, "sequence", "fraud.features.not_written_yet:Nothing")
    notes = []
    df = pd.read_parquet(world_path)
    res = run_ablation(df, sets=["tabular", "tabular+sequence"], budget=10, test_days=14, train_days=14, log=notes.append)
    assert "tabular+sequence" in res["skipped"] and any("skipping" in n for n in notes)
    assert set(res["feature_sets"]) == {"tabular"}
    with pytest.raises(ConfigError, match="unknown feature set"):
        run_ablation(df, sets=["bogus"])


@pytest.mark.slow
def test_cli_node2vec_compares_with_pypi_package(world_path):
    """Both configurations (same parameters, each side's defaults) with times and held-out link AUCs."""
    from fraud.cli import main

    res = CliRunner().invoke(main, ["bench", "node2vec", "--data", str(world_path), "--preset", "canonical",
                                    "--compare-nodes", "300", "--window-days", "30", "--holdout-days", "7", "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout[res.stdout.index("{"):])
    c = out["compare"]
    assert c["heldout_pairs"] > 0 and c["nodes"] >= 300
    names = [r["name"] for r in c["same"]["runs"]]
    assert names[0].startswith("ours") and names[-1].startswith("PyPI") and len(c["defaults"]["runs"]) == 2
    for r in c["same"]["runs"] + c["defaults"]["runs"]:
        assert r["wall_s"] > 0 and 0.5 < r["link_auc"] <= 1
    assert c["same"]["runs"][-1]["params"]["dimensions"] == 32 == c["same"]["runs"][0]["params"]["dim"]
    assert c["defaults"]["runs"][1]["params"]["dimensions"] == 128  # the package's own default
