"""The baseline guard: the registered detector is never below the book forest on the evaluation week; tags."""
from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

from fraud.training import TrainConfig, train
from fraud.training.baseline import WEIGHTS, Blend, BookForest, book_columns, guard
from fraud.training.evaluation import window_metrics

LIGHT = dict(featurizers=("tabular", "collusion"), unsupervised=("hbos",), warm_state_days=0,
             ensemble_params={"supervised_params": {"n_estimators": 40, "n_jobs": 1}})


@pytest.fixture(scope="module")
def world() -> pd.DataFrame:
    from fraud.simulate import simulate

    return simulate(customers=150, terminals=300, days=40, seed=7)


class Noise:
    """A useless pipeline: random scores."""

    def __init__(self, names):
        self.feature_names_ = names

    def decision_function(self, X):
        return np.random.default_rng(len(X)).random(len(X))


def _frame(n=3000, seed=0):
    rng = np.random.default_rng(seed)
    X = pd.DataFrame(rng.normal(size=(n, len(book_columns()))), columns=book_columns())
    y = (X.iloc[:, 0] + 0.5 * rng.normal(size=n) > 2.0).astype(float).to_numpy()
    return X, y


def test_guard_never_chooses_below_the_forest():
    X, y = _frame()
    ev = np.arange(len(X)) >= 2000
    y_fit = np.where(~ev, y, np.nan)
    det, info = guard(Noise(list(X.columns)), X, y_fit, y[ev], ev, y_fit)
    assert info["baseline.choice"] != "pipeline" and isinstance(det, Blend)
    assert info["baseline.chosen_ap"] >= max(info["baseline.ap"], info["pipeline.ap"])
    assert info["baseline.weight"] in WEIGHTS and info["baseline.ap"] > info["pipeline.ap"]
    s = det.decision_function(X.to_numpy()[ev])  # a plain matrix in the pipeline's column order works too
    assert s.shape == (int(ev.sum()),) and ((0 <= s) & (s <= 1)).all()


def test_book_forest_needs_the_book_columns():
    from fraud.errors import ConfigError

    X, y = _frame(200)
    with pytest.raises(ConfigError, match="tabular"):
        BookForest().fit(X.drop(columns=[book_columns()[0]]), y)


def test_training_tags_and_the_registered_detector(world):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = train(world, TrainConfig(**LIGHT))
    t = res.tags
    assert {"baseline.model", "baseline.ap", "pipeline.ap", "baseline.choice", "baseline.weight"} <= set(t)
    assert t["baseline.chosen_ap"] >= max(t["baseline.ap"], t["pipeline.ap"])
    # the evaluation-week AP of the registered bundle (its collusion alarm on top) is the reported metric
    assert res.metrics["ap"] == pytest.approx(window_metrics(res.eval_frame)["ap"])
    assert type(res.bundle.detector).__name__ == "CollusionAlarm"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        off = train(world, TrainConfig(**LIGHT, baseline_guard=False))
    assert off.tags == {"baseline.choice": "pipeline (guard off)"}


def test_the_guard_forest_has_the_configured_number_of_trees():
    X, y = _frame()
    ev = np.arange(len(X)) >= 2000
    y_fit = np.where(~ev, y, np.nan)
    det, _ = guard(Noise(list(X.columns)), X, y_fit, y[ev], ev, y_fit, trees=7)
    assert len(det.forest.forest_.estimators_) == 7


def test_baseline_trees_is_checked_and_logged_when_not_the_books():
    from fraud.config import Settings
    from fraud.errors import ConfigError
    from fraud.training.config import config_from_options

    for bad in (0, 2.5, True, "20"):
        with pytest.raises(ConfigError, match=f"baseline_trees={bad!r}"):
            TrainConfig(baseline_trees=bad)
    cfg, _ = config_from_options(Settings(), "m", "tabular", "hbos", baseline_trees=9)
    assert cfg.baseline_trees == 9 and cfg.params()["baseline.trees"] == 9
    assert "baseline.trees" not in TrainConfig().params()


def test_cli_tree_counts_refuse_0_and_read_an_empty_value_as_not_given():
    """``--baseline-trees`` / ``--head-trees``: 0 is a usage error; "" (an MLproject parameter left empty) is the
    default, so the command goes on to read its data."""
    from click.testing import CliRunner

    from fraud.cli import main

    base = ["train", "--data", "x.csv", "--train-until", "2024-01-01", "--no-register"]
    for opt in ("--baseline-trees", "--head-trees"):
        res = CliRunner().invoke(main, [*base, opt, "0"])
        assert res.exit_code == 2 and opt in res.output
        res = CliRunner().invoke(main, [*base, opt, ""])
        assert res.exit_code not in (0, 2) and "x.csv" in res.output
