"""models.sequence: packing, one path for batch and single events, state, cold start."""
from __future__ import annotations

import pickle

import numpy as np
import pytest

from models.sequence import SCORE_NAMES, SequenceEncoder, build_packed


def _events(n_cust=30, days=10, seed=0, k=4):
    rng = np.random.default_rng(seed)
    rows = []
    for c in range(n_cust):
        n = rng.poisson(3 * days)
        t = np.sort(rng.uniform(0, days * 86400, n)) + 1.7e9
        terms = rng.choice(50, 5, replace=False)
        mu = rng.uniform(10, 80)
        for ti in t:
            rows.append((ti, f"c{c}", int(rng.choice(terms)), abs(rng.normal(mu, mu / 3))))
    rows.sort(key=lambda r: r[0])
    ts = np.array([r[0] for r in rows])
    keys = np.array([r[1] for r in rows], dtype=object)
    term = np.array([r[2] for r in rows])
    vecs = np.random.default_rng(1).normal(size=(50, k)).astype(np.float32)
    known = (term % 7 != 0).astype(np.float64)  # some terminals without a descriptor
    tv = vecs[term] * known[:, None].astype(np.float32)
    th = (term.astype(np.uint64) * np.uint64(2654435761)) % np.uint64(2**32)
    amount = np.array([r[3] for r in rows])
    return keys, ts, th, tv, known, amount


@pytest.fixture(scope="module")
def fitted():
    ev = _events()
    enc = SequenceEncoder(hidden=8, novelty_buckets=32, epochs=1, window=16, batch_customers=16, random_state=3)
    return enc.fit(*ev), ev


def test_build_packed_matches_naive():
    rng = np.random.default_rng(0)
    group = rng.integers(0, 6, 40)
    packed, batch_sizes, rank, step, offsets = build_packed(group)
    assert sorted(packed.tolist()) == list(range(40))
    assert batch_sizes.sum() == 40
    counts = np.bincount(group, minlength=6)
    for g in range(6):
        idx = np.flatnonzero(group == g)
        assert step[idx].tolist() == list(range(len(idx)))
        # the g-th sequence sits at its rank in every step it is active
        assert (packed[idx] == offsets[np.arange(len(idx))] + rank[g]).all()
        assert all(batch_sizes[k] > rank[g] for k in range(counts[g]))


def test_batch_equals_single_events_and_microbatches(fitted):
    enc, ev = fitted
    n = len(ev[1])
    full = enc.process(enc.new_state(), *ev)
    assert full.shape == (n, enc.hidden + len(SCORE_NAMES))
    assert np.isfinite(full).all()
    for fast in (True, False):
        enc.fast_single = fast
        st = enc.new_state()
        one = np.concatenate([enc.process(st, *[e[i:i + 1] for e in ev]) for i in range(n)])
        np.testing.assert_allclose(one, full, atol=1e-5, rtol=1e-5)
    enc.fast_single = True
    st = enc.new_state()
    parts = np.concatenate([enc.process(st, *[e[i:i + 13] for e in ev]) for i in range(0, n, 13)])
    np.testing.assert_allclose(parts, full, atol=1e-5, rtol=1e-5)


def test_score_one_does_not_learn_and_learn_one_does(fitted):
    enc, ev = fitted
    st = enc.new_state()
    enc.process(st, *[e[:200] for e in ev])
    args = [e[200] for e in ev]
    before = pickle.dumps(st)
    s1 = enc.score_one(st, *args)
    assert pickle.dumps(st) == before
    assert s1 == enc.score_one(st, *args)
    assert set(s1) == set(enc.feature_names())
    h_before = st.h[st.slots[args[0]]].copy()
    enc.learn_one(st, *args)
    assert not np.array_equal(st.h[st.slots[args[0]]], h_before)


def test_state_is_bounded_per_customer(fitted):
    enc, ev = fitted
    st = enc.new_state()
    key = ev[0][0]
    one = [np.array([key] * 300, dtype=object), np.sort(ev[1][:300]), ev[2][:300], ev[3][:300], ev[4][:300],
           ev[5][:300]]
    enc.process(st, *one)
    assert len(st) == 1
    assert st.term_last.shape[1] == enc.novelty_buckets and st.h.shape[1] == enc.hidden
    assert st.n_events[st.slots[key]] == 300
    size = len(pickle.dumps(st))
    enc.process(st, *[np.asarray(a)[:1] for a in one[:1]], one[1][-1:] + 10, *[a[:1] for a in one[2:]])
    assert abs(len(pickle.dumps(st)) - size) < 64  # more events, same memory


def test_cold_start_uses_learned_prior(fitted):
    enc, ev = fitted
    st = enc.new_state()
    f = enc.process(st, np.array(["new-customer"], dtype=object), ev[1][:1], ev[2][:1], ev[3][:1], ev[4][:1],
                    ev[5][:1])[0]
    prior = enc.net_.h0.detach().numpy()
    np.testing.assert_allclose(f[:enc.hidden], prior, atol=1e-7)
    assert np.isfinite(f).all()
    names = enc.feature_names()
    assert f[names.index("nll_total")] > 0 and f[names.index("novel")] == 1.0


def test_determinism_and_unfitted():
    ev = _events(n_cust=12, days=5)
    a = SequenceEncoder(hidden=8, novelty_buckets=16, epochs=1, random_state=5).fit(*ev)
    b = SequenceEncoder(hidden=8, novelty_buckets=16, epochs=1, random_state=5).fit(*ev)
    np.testing.assert_array_equal(a.process(a.new_state(), *ev), b.process(b.new_state(), *ev))
    c = SequenceEncoder.from_state(a.get_state())
    np.testing.assert_array_equal(a.process(a.new_state(), *ev), c.process(c.new_state(), *ev))
    with pytest.raises(AttributeError, match="not fitted"):
        SequenceEncoder().new_state()


def _process_many_reference(enc, states, batches):
    """process_many as it was: the touched slots gathered into a temporary state that ``process`` looks up by key."""
    from models.sequence import SequenceState

    touched, local, off = [], [], 0
    for st, b in zip(states, batches):
        u, inv = np.unique(st.slot_of(b[0], enc.net_.h0.detach().numpy()), return_inverse=True)
        touched.append(u)
        local.append(inv.reshape(-1) + off)
        off += len(u)
    tmp = SequenceState(enc.hidden, enc.novelty_buckets, enc.term_dim_, slots={i: i for i in range(off)},
                        **{a: np.concatenate([getattr(st, a)[u] for st, u in zip(states, touched)])
                           for a in enc.SLOT_ARRAYS})
    cols = list(zip(*batches))
    feats = enc.process(tmp, np.concatenate(local).tolist(), *[np.concatenate([np.asarray(x) for x in c])
                                                                for c in cols[1:]])
    i = 0
    for st, u in zip(states, touched):
        for a in enc.SLOT_ARRAYS:
            getattr(st, a)[u] = getattr(tmp, a)[i:i + len(u)]
        i += len(u)
    return feats


def test_process_stacked_equals_the_keyed_reference_bit_for_bit(fitted):
    """process_stacked / process_many (slots known: no lookup, no np.unique on the temporary state) give the
    features and states of the reference path exactly, on random polls over 3 states (1-event and empty ones too)."""
    enc, ev = fitted
    rng = np.random.default_rng(4)
    part = rng.integers(0, 3, len(ev[1]))
    fast = [enc.new_state() for _ in range(3)]
    ref = [enc.new_state() for _ in range(3)]
    lo = 0
    while lo < len(ev[1]):
        size = int(rng.choice([1, 2, 5, 28]))
        sl = np.arange(lo, min(lo + size, len(ev[1])))
        lo += size
        batches = [tuple(e[sl[part[sl] == k]] for e in ev) for k in range(3)]
        got = enc.process_stacked(fast, batches)
        want = _process_many_reference(enc, ref, batches)
        assert np.array_equal(got, want, equal_nan=True)
        split = enc.process_many([enc.new_state(), enc.new_state()], batches[:2])
        assert [len(s) for s in split] == [len(b[1]) for b in batches[:2]]
    for a, b in zip(fast, ref):
        assert a.slots == b.slots
        for name in enc.SLOT_ARRAYS:
            assert np.array_equal(getattr(a, name), getattr(b, name), equal_nan=True), name
