"""fraud.features.sequence.SequenceFeatures: contract, replay == transform, cold start, no leakage."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from featurizer_checks import assert_replay_equals_transform
from fraud.features.base import replay
from fraud.features.sequence import SequenceFeatures

PARAMS = dict(hidden=8, term_dim=4, novelty_buckets=32, epochs=1, window=16, batch_customers=32,
              max_train_events=3000, embedding=True, random_state=7)


def _frame(n_cust=40, days=12, seed=0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    start = pd.Timestamp("2024-03-01", tz="UTC").value // 10**9
    rows = []
    for c in range(n_cust):
        terms = rng.choice(80, 6, replace=False)
        mu = rng.uniform(10, 80)
        n = rng.poisson(rng.uniform(1, 4) * days)
        for t in np.sort(rng.integers(0, days * 86400, n)):
            rows.append((start + int(t), f"C{c}", f"T{rng.choice(terms)}", round(abs(rng.normal(mu, mu / 3)), 2)))
    df = pd.DataFrame(rows, columns=["ts", "customer_id", "terminal_id", "amount"])
    df["timestamp"] = pd.to_datetime(df["ts"], unit="s", utc=True).astype("datetime64[ns, UTC]")
    df = df.sort_values("timestamp", kind="stable").reset_index(drop=True)
    df["tx_id"] = [f"x{i}" for i in range(len(df))]
    df["label"] = (rng.random(len(df)) < 0.02).astype(np.int8)
    return df[["tx_id", "timestamp", "customer_id", "terminal_id", "amount", "label"]]


@pytest.fixture(scope="module")
def data():
    df = _frame()
    split = df["timestamp"].min() + pd.Timedelta(days=8)
    return df, df.loc[df["timestamp"] < split]


@pytest.fixture(scope="module")
def fitted(data):
    df, hist = data
    return SequenceFeatures(**PARAMS).fit(hist)


def test_determinism_for_a_seed(data, fitted):
    df, hist = data
    a = fitted.transform(df)
    b = SequenceFeatures(**PARAMS).fit(hist).transform(df)
    pd.testing.assert_frame_equal(a, b)
    c = SequenceFeatures(**{**PARAMS, "random_state": 8}).fit(hist).transform(df)
    assert not np.allclose(a.to_numpy(), c.to_numpy())


def test_cold_start(data, fitted):
    df, _ = data
    new = df.iloc[[5]].copy()
    new["customer_id"] = "never-seen"
    new["terminal_id"] = "never-seen-terminal"
    state = fitted.new_state()
    out = fitted.update(state, new)
    prior = fitted.encoder_.net_.h0.detach().numpy()
    emb = out[[f"seq_emb_{i}" for i in range(PARAMS["hidden"])]].to_numpy()[0]
    np.testing.assert_allclose(emb, prior, atol=1e-7)  # a new customer starts from the learned prior
    assert np.isfinite(out.to_numpy()).all() and out["seq_nll_total"].iloc[0] > 0
    assert out["seq_novel"].iloc[0] == 1.0
    # the first transaction of every customer in a batch transform is scored the same way
    X = fitted.transform(df)
    firsts = ~df["customer_id"].duplicated()
    np.testing.assert_allclose(X.loc[firsts, [f"seq_emb_{i}" for i in range(PARAMS["hidden"])]].to_numpy(),
                               np.repeat(prior[None], firsts.sum(), 0), atol=1e-7)


def test_no_leakage(data, fitted):
    df, hist = data
    X = fitted.transform(df)
    k = len(df) // 2
    # later events change nothing (equal up to float32 rounding of different matrix shapes)
    pd.testing.assert_frame_equal(fitted.transform(df.iloc[:k]), X.iloc[:k], check_exact=False, atol=1e-5, rtol=1e-5)
    # labels change nothing (self-supervised): neither fit nor transform looks at them
    flipped = df.copy()
    flipped["label"] = (1 - flipped["label"]).astype(np.int8)
    g = SequenceFeatures(**PARAMS).fit(flipped.loc[hist.index])
    pd.testing.assert_frame_equal(g.transform(flipped), X)
    # a changed later event does not change earlier features
    changed = df.copy()
    changed.loc[changed.index[k:], "amount"] *= 7
    pd.testing.assert_frame_equal(fitted.transform(changed).iloc[:k], X.iloc[:k], check_exact=False, atol=1e-5,
                                  rtol=1e-5)


def test_score_rows_keeps_state(data, fitted):
    df, _ = data
    state = fitted.new_state()
    replay(fitted, df.iloc[:300], batch_size=100, state=state)
    a = fitted.score_rows(state, df.iloc[300:310])
    b = fitted.update(state, df.iloc[300:310])
    pd.testing.assert_frame_equal(a, b)


def test_surprise_flags_card_testing_and_takeover(small_world):
    df = small_world
    hist = df.loc[df["timestamp"] < df["timestamp"].min() + pd.Timedelta(days=30)]
    f = SequenceFeatures(hidden=8, term_dim=8, epochs=1, max_train_events=20000, random_state=0).fit(hist)
    X = f.transform(df)
    gen = (df["scenario"] == 0).to_numpy()
    ct = (df["scenario"] == 5).to_numpy()
    ato = (df["scenario"] == 6).to_numpy()
    assert ct.any() and ato.any()
    # card testing: bursts of tiny amounts at far, never-used terminals are very surprising
    assert X.loc[ct, "seq_nll_total"].median() > X.loc[gen, "seq_nll_total"].quantile(0.95)
    assert X.loc[ct, "seq_amount_z"].median() < -1.0 and X.loc[ct, "seq_gap_z"].median() < -2.0
    # account takeover: new terminals far from the customer's usual ones
    assert X.loc[ato, "seq_novel"].mean() > 2 * X.loc[gen, "seq_novel"].mean()
    assert X.loc[ato, "seq_term_dist"].median() > 1.5 * X.loc[gen, "seq_term_dist"].median()


def test_without_embedding_columns(data, fitted):
    df, hist = data
    X = fitted.transform(df)
    g = SequenceFeatures(**{**PARAMS, "embedding": False}).fit(hist)
    Y = g.transform(df)
    assert not any(c.startswith("seq_emb_") for c in Y.columns)
    pd.testing.assert_frame_equal(Y, X[[c for c in X.columns if not c.startswith("seq_emb_")]])
    assert_replay_equals_transform(g, df.iloc[:200], batch_sizes=(1, 50))


def test_cached_terminal_hashes_equal_crc32(data, fitted):
    """Terminal hashes looked up from the fit-time cache equal the CRC32 computed per row, unseen terminals
    included; the canonical-timestamp shortcut equals the general conversion."""
    from fraud.features import sequence as S

    df, _ = data
    terms = df["terminal_id"].tolist()[:200] + ["never-seen-1", "never-seen-2"] * 20
    idx = fitted.term_index_.get_indexer(np.asarray(terms, dtype=object))
    assert (idx < 0).sum() == 40 and (idx >= 0).sum() > 0
    np.testing.assert_array_equal(fitted._hashes(terms, idx), S._hash(terms))
    for unit in ("ns", "us"):
        ts = df["timestamp"].astype(f"datetime64[{unit}, UTC]")
        np.testing.assert_array_equal(S._seconds(ts), pd.DatetimeIndex(ts).as_unit("ns").asi8 / 1e9)
