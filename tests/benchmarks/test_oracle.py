"""The handbook ceilings: which frauds carry evidence when they are scored."""
from __future__ import annotations

import pandas as pd
import pytest

from benchmarks.oracle import evidence, oracle, oracle_unsupervised
from fraud.errors import ConfigError

T0 = pd.Timestamp("2024-01-01", tz="UTC")


def _frame(rows):
    return pd.DataFrame([{"timestamp": T0 + pd.Timedelta(days=d), "terminal_id": t, "label": int(s > 0),
                          "scenario": s} for d, t, s in rows])


def test_evidence_follows_the_delay_and_the_compromise_window():
    history = _frame([
        (0.0, "A", 2), (1.0, "A", 2), (5.0, "A", 2),   # terminal A compromised from day 0
        (0.0, "B", 1),                                 # a large amount at B: no evidence of B's compromise
        (20.0, "B", 2),
        (0.0, "C", 2),                                 # C compromised long before
    ])
    test = _frame([
        (6.5, "A", 2),    # A's first known label (day 0) is known from day 7 on: none yet
        (7.5, "A", 2),    # day 0 known: evidence
        (8.0, "A", 0),    # genuine: never flagged
        (25.0, "B", 2),   # B's only older fraud is scenario 1; its first compromise label (day 20) not known yet
        (40.0, "C", 2),   # C's known compromise ended 28+ days before the known horizon
        (3.0, "D", 1), (3.0, "E", 3),                  # label-free evidence
    ])
    got = evidence(test, history, delay_days=7, window_days=28)
    assert got.tolist() == [False, True, False, False, False, True, True]
    free = evidence(test, history, labels=False)
    assert free.tolist() == [False, False, False, False, False, True, True]
    # the registered oracles: frauds with evidence first, everything else in one tie
    assert oracle(history, test, history=history).tolist() == [0, 1, 0, 0, 0, 1, 1]
    assert oracle_unsupervised(history, test, history=history).tolist() == [0, 0, 0, 0, 0, 1, 1]


def test_oracle_needs_the_scenario_column():
    test = _frame([(1.0, "A", 2)]).drop(columns="scenario")
    with pytest.raises(ConfigError, match="scenario"):
        evidence(test, test)


def test_oracles_are_registered_but_not_run_by_default():
    from benchmarks.handbook import DEFAULT_MODELS, MODELS

    assert {"oracle", "oracle-unsupervised"} <= set(MODELS)
    assert not {"oracle", "oracle-unsupervised"} & set(DEFAULT_MODELS)
