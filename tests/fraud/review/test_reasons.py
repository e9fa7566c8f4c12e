"""Reason codes in words: sentences from the feature's meaning and values, embeddings folded, no-signal dropped."""
from __future__ import annotations

from fraud.review.reasons import PAIRING, glossary, top_reason_is_opaque, words


def texts(codes, **kw):
    return [r.text for r in words(codes, **kw)]


def test_sentences_from_names_and_values():
    t = texts(["feature:BH_T_KNOWN_FRAUD_28D high (3.00 vs p99 1.00)",
               "feature:BH_C_AMT_RATIO_LAG7D high (4.3 vs p99 2.1)", "detector:autoencoder 1.00"], top=0)
    assert t[0] == "terminal had 3 confirmed frauds in the last 28 days"
    assert t[1] == "amount 4.3x this card's usual average"
    assert "autoencoder" in t[2]


def test_embeddings_folded_never_alone_and_no_signal_dropped():
    t = texts(["feature:g_t1 high (0.42 vs p99 0.3)", "feature:g_c3 high (0.9 vs p99 0.5)",
               "feature:g_t_new_cust_share high (0.00 vs p50 0.00)", "detector:supervised 0.97"],
              nearest_fraud_case="CASE-0007", top=0)
    assert t[0].startswith("resembles confirmed frauds")
    assert t[1] == PAIRING + ", near confirmed-fraud case CASE-0007" and len(t) == 2
    assert not any("g_t" in x or "0.00" in x for x in t)
    assert not top_reason_is_opaque(["feature:g_t1 high (0.42 vs p99 0.3)", "feature:g_cos low (0.1 vs p1 0.2)"])
    assert texts(["feature:g_t_new_cust_share high (0.00 vs p50 0.00)"]) == []


def test_glossary_lists_every_family():
    g = glossary()
    codes = " ".join(r["code"] for r in g)
    for needle in ("BH_T_KNOWN_FRAUD", "g_overlap", "seq_nll_total", "detector:autoencoder", "g_c0", "median"):
        assert needle in codes


def test_every_behaviour_feature_is_worded():
    from fraud.features.behaviour import BehaviourFeatures
    for name in BehaviourFeatures().fit(None).feature_names_:
        for d in ("high", "low"):
            r = words([f"feature:{name} {d} (3.00 vs p99 1.00)"], top=0)[0]
            assert r.family != "other feature" and name not in r.text, (name, d, r.text)
    t = texts(["feature:BH_C_NB_SMALL_7D high (4.00 vs p99 1.00)", "feature:BH_T_TX_EXCESS_1D high (3.2 vs p99 1.5)"])
    assert t == ["4 unusually small amounts on this card in 7 days (card testing?)",
                 "terminal busier in the last 1 day than its own usual rate (3.2 standard deviations above): compromise?"]


def test_cluster_grouped_codes_are_worded():
    """A cluster's reasons are grouped codes without values (clusters.reason_code): they read as words too."""
    from fraud.review.reasons import PAIRING, explain, words

    assert explain("feature:g_t1").text == PAIRING
    assert explain("detector:autoencoder").text == "unusual combination of this transaction's features (autoencoder)"
    assert explain("detector:newdet").text == "flagged by the newdet detector"
    for code in ("feature:BH_T_KNOWN_FRAUD_7D", "feature:BH_T_DAYS_SINCE_FIRST_FRAUD", "detector:iforest"):
        text = words([code], top=1)[0].text
        assert "feature:" not in text and "detector:" not in text and "_" not in text, text


def test_grouped_feature_codes_claim_no_direction():
    """A cluster's grouped code drops the direction (clusters.reason_code), so its words must not invent one."""
    from fraud.review.reasons import explain

    assert explain("feature:BH_T_KNOWN_FRAUD_7D").text == "unusual terminal fraud history (7-day window)"
    assert explain("feature:g_pair_prior").text == "cards at terminals new to them"  # not "unusual first visit"
    assert "high" not in explain("feature:BH_T_LAST_IS_FRAUD").text


def test_cluster_table_says_each_feature_family_once():
    """`fraud review clusters` printed "terminal fraud history; terminal fraud history (7-day window)" for a cluster
    whose two top reasons were features of one family: the why line keeps one sentence per family."""
    from types import SimpleNamespace

    from fraud.commands.review import _cluster_table

    c = SimpleNamespace(rank=1, id="C1", risk=1.0, n_tx=3, amount_at_risk=10.0, customers=["a"], terminals=["t"],
                        score_max=0.9, first_seen="2024-03-01T00:00", last_seen="2024-03-02T00:00", scenario_mix=None,
                        reasons=[["feature:BH_T_LAST_IS_FRAUD", 3], ["feature:BH_T_KNOWN_FRAUD_7D", 2],
                                 ["detector:iforest", 1]])
    why = _cluster_table([c]).split("why: ")[1]
    assert why.count("terminal fraud history") == 1, why
    assert "isolation forest" in why, why


def test_zero_counts_read_as_an_analyst_says_them():
    from fraud.review.reasons import _word

    assert _word("TERMINAL_ID_NB_TX_7DAY_WINDOW", False, 0.0, 12.0)[1] == "terminal had no transactions in 7 days"
    assert _word("CUSTOMER_ID_NB_TX_7DAY_WINDOW", False, 0.0, 12.0)[1].startswith("card not used in 7 days")
    assert _word("TERMINAL_ID_NB_TX_7DAY_WINDOW", False, 3.0, 12.0)[1] == "terminal had only 3 transactions in 7 days"
