"""The handbook benchmark: the book's random forest on the handbook data, and the bench on a simulated world."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from benchmarks import handbook as hb
from fraud.errors import ConfigError


@pytest.mark.slow
def test_random_forest_reproduces_the_book_on_the_single_split(handbook_path):
    """The proof that protocol, features and metrics are the book's: AP within 0.02 of 0.658."""
    from fraud.io import PRESETS, _apply_mapping
    from fraud.schema import validate_frame

    # only the days the single split needs (38 days of warm-up + train + delay + test): same features
    raw = pd.read_parquet(handbook_path, filters=[("TX_DATETIME", ">=", pd.Timestamp("2018-06-15")),
                                                  ("TX_DATETIME", "<", pd.Timestamp("2018-08-15"))])
    frame = validate_frame(_apply_mapping(raw, PRESETS["handbook"], str(handbook_path), "handbook")).valid
    res = hb.run(frame, protocol="single", models=["random_forest"])
    assert res["dates"] == "handbook"
    assert res["splits"] == ["train 2018-07-25..2018-07-31, test 2018-08-08..2018-08-14"]
    rf = res["models"]["random_forest"]
    assert abs(rf["ap"] - 0.658) <= 0.02, rf
    assert abs(rf["auc"] - 0.867) <= 0.02, rf
    assert abs(rf["cp@100"] - 0.287) <= 0.02, rf
    assert res["book"]["random_forest"] == {"auc": 0.867, "ap": 0.658, "cp@100": 0.287}


@pytest.fixture(scope="module")
def world_file(tmp_path_factory, small_world):
    path = tmp_path_factory.mktemp("bench") / "world.parquet"
    small_world.to_parquet(path, index=False)
    return path


def test_bench_on_a_simulated_world_json(world_file):
    from fraud.cli import main

    r = CliRunner().invoke(main, ["bench", "handbook", "--data", str(world_file), "--protocol", "prequential",
                                  "--models", "logistic_regression", "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["protocol"] == "prequential" and out["dates"] == "end"
    lr = out["models"]["logistic_regression"]
    assert set(lr) == {"auc", "ap", "cp@100", "auc_std", "ap_std", "cp@100_std"}
    assert 0.5 < lr["auc"] <= 1.0 and 0.0 < lr["ap"] <= 1.0 and 0.0 <= lr["cp@100"] <= 1.0
    assert len(out["folds"]["logistic_regression"]) == 4 and out["book"] == {}


def test_bench_table_detects_the_handbook_columns(tmp_path, small_world):
    """A file with the handbook's column names needs no --preset; the table shows our figures."""
    from fraud.cli import main
    from fraud.io import PRESETS

    path = tmp_path / "hb_like.parquet"
    small_world.rename(columns=PRESETS["handbook"]).to_parquet(path, index=False)
    r = CliRunner().invoke(main, ["bench", "handbook", "--data", str(path), "--models", "logistic_regression"])
    assert r.exit_code == 0, r.output
    assert "logistic_regression" in r.output and "book AP" in r.output and "split: train" in r.output


def test_model_registry_is_extensible(small_world, monkeypatch):
    calls = []

    def by_amount(train, test):
        calls.append((len(train), len(test)))
        assert set(hb.FEATURES) <= set(test.columns)
        return test["TX_AMOUNT"].to_numpy()

    monkeypatch.setitem(hb.MODELS, "amount", by_amount)
    res = hb.run(small_world, protocol="single", models=["amount"])
    assert list(res["models"]) == ["amount"] and len(calls) == 1
    m = res["models"]["amount"]
    assert np.isfinite(m["auc"]) and np.isfinite(m["ap"])
    rows = hb.table_rows(res)
    assert rows[0][:2] == ["single", "amount"]
    with pytest.raises(ConfigError, match="unknown model"):
        hb.run(small_world, protocol="single", models=["nope"])
    with pytest.raises(ConfigError, match="label"):
        hb.run(small_world.drop(columns="label"), protocol="single", models=["amount"])


def test_features_bench_command(world_file):
    from fraud.cli import main

    r = CliRunner().invoke(main, ["bench", "features", "--data", str(world_file), "--batch", "500", "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["rows"] > 0 and out["transform_s"] >= 0 and out["update_ms_median"] is not None
