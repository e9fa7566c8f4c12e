"""Every column a model can cite reads as words: each default featurizer (the graph one with its optional fresh
and convergence columns) is fitted on a tiny world, and each of its feature names, high and low, must get a
sentence from the reasons table, never the raw name (an analyst saw "CL_T_NEW_AGED is high: 6 (typical 2)")."""
from __future__ import annotations

import re

import pytest

from fraud.review.reasons import GRAPH_EMBEDDING, SEQ_EMBEDDING, explain, words
from fraud.training.config import DEFAULT_FEATURIZERS, TrainConfig
from fraud.training.featurizers import make_featurizer


@pytest.fixture(scope="module")
def feature_names():
    from fraud.simulate import simulate

    df = simulate(customers=60, terminals=120, days=20, seed=5)
    names = []
    for name in DEFAULT_FEATURIZERS:
        f = make_featurizer(name, TrainConfig())
        if name == "graph":
            f.set_params(refresh_lr=0.05, convergence=True)
        names += f.fit(df).feature_names_
    return names


def test_every_default_feature_is_worded(feature_names):
    assert len(feature_names) > 90 and any(n.startswith("CL_") for n in feature_names)
    cited = [n for n in feature_names if not (GRAPH_EMBEDDING.match(n) or SEQ_EMBEDDING.match(n))]
    for name in cited:
        for d in ("high", "low"):
            got = words([f"feature:{name} {d} (3.00 vs p99 1.00)"], top=0)
            for r in got:  # a direction with no signal may be dropped; what is shown must be words
                assert r.family != "other feature" and name not in r.text and "{" not in r.text, (name, d, r.text)
        assert words([f"feature:{name} high (3.00 vs p99 1.00)"], top=0), name  # the high side always speaks
        bare = explain(name).text  # a cluster's grouped code: no value, no direction
        assert name not in bare and not re.search(r"[A-Z]{2,}_|_[a-z]|unusual unusual", bare), (name, bare)


def test_collusion_and_graph_sentences():
    t = [r.text for r in words(["feature:CL_T_NEW_AGED high (6.00 vs p99 2.00)",
                                "feature:g_c_shift high (2.50 vs p99 0.70)"], top=0)]
    assert t == ["6 established cards came to this terminal for the first time in the last week (typical 2): cards "
                 "converging (ring signal)",
                 "the card's place in the transaction graph moved far from where the model learned it (2.5 graph "
                 "spreads)"]


def test_activity_alarm_reason_is_worded():
    """The activity alarm (off by default) cites a column above its training quantile: that reads as words too."""
    r = explain("activity: BH_T_TX_EXCESS_1D = 4.2 above its training 0.999 quantile 2.5")
    assert r.text == ("terminal busier in the last 1 day than its own usual rate (4.2 standard deviations above): "
                      "compromise?") and r.kind == "feature"
