"""The collusion kernel (compiled and pure-Python) equals the per-row dict reference below, bit for bit, on random
streams; replay in random micro-batches and update_many equal transform; checkpoints round trip, including the
layout the dict state wrote (restored into the array state, the stream goes on identically)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from fraud import safestate
from fraud.features import collusion
from fraud.features.collusion import DAY_NS, NAMES, CollusionFeatures, CollusionState


class RefState:
    """The dict state the featurizer had before its kernel (same checkpoint layout)."""

    def __init__(self):
        self.c_first, self.c_terms, self.t_first, self.t_old_new, self.t_recent = {}, {}, {}, {}, {}

    def to_arrays(self) -> tuple[dict, dict, list]:
        cards, terms = list(self.c_first), list(self.t_first)
        rec = [self.t_recent.get(t, []) for t in terms]
        return {}, {"cards": cards, "c_first": np.array([self.c_first[c] for c in cards], np.int64),
                    "c_terms_len": np.array([len(self.c_terms.get(c, ())) for c in cards], np.int64),
                    "c_terms": [t for c in cards for t in self.c_terms.get(c, ())],
                    "terms": terms, "t_first": np.array([self.t_first[t] for t in terms], np.int64),
                    "t_old_new": np.array([self.t_old_new.get(t, 0) for t in terms], np.int64),
                    "t_recent_len": np.array([len(r) for r in rec], np.int64),
                    "t_recent_ts": np.array([e[0] for r in rec for e in r], np.int64),
                    "t_recent_card": [e[1] for r in rec for e in r],
                    "t_recent_aged": np.array([e[2] for r in rec for e in r], np.int8)}, []


def ref_update(f: CollusionFeatures, st: RefState, rows: pd.DataFrame) -> np.ndarray:
    ts = rows["timestamp"].to_numpy(dtype="datetime64[ns]").astype(np.int64)
    cards, terms = rows["customer_id"].astype(str).tolist(), rows["terminal_id"].astype(str).tolist()
    return np.array([ref_row(f, st, int(ts[i]), cards[i], terms[i]) for i in range(len(rows))],
                    dtype=np.float64).reshape(-1, len(NAMES))


def ref_row(f: CollusionFeatures, st: RefState, now: int, c: str, t: str) -> tuple:
    win, aged_ns = int(f.window_days * DAY_NS), int(f.aged_days * DAY_NS)
    first_c = st.c_first.setdefault(c, now)
    first_t = st.t_first.setdefault(t, now)
    mine = st.c_terms.setdefault(c, [])
    recent = st.t_recent.setdefault(t, [])
    while recent and recent[0][0] <= now - win:  # leaves the window: counts towards the history
        recent.pop(0)
        st.t_old_new[t] = st.t_old_new.get(t, 0) + 1
    new = t not in mine
    aged = now - first_c >= aged_ns
    if new:
        recent.append((now, c, int(aged)))
        mine.append(t)
        if len(mine) > f.max_terminals:
            mine.pop(0)
    else:
        mine.remove(t)
        mine.append(t)
    newcomers = {e[1] for e in recent if e[2]}  # established cards new to t in the window (c included)
    others = newcomers - {c}
    mine_set = set(mine) - {t}
    unrelated = sum(1 for o in others if not mine_set.intersection(st.c_terms.get(o, ())))
    hist_days = max(float(now - first_t - win) / DAY_NS, f.window_days)
    expected = st.t_old_new.get(t, 0) * f.window_days / hist_days
    age = min(float(now - first_c) / DAY_NS, f.age_cap_days)
    return float(new), age, float(len(newcomers)), float(unrelated), len(recent) / (1.0 + expected), \
        float(new and aged) * unrelated


def stream(seed: int, n: int = 3000, cards: int = 60, terms: int = 25, days: float = 150.0) -> pd.DataFrame:
    """Random events over ``days`` (past 2**53 ns of history), a few busy merchants, equal timestamps."""
    rng = np.random.default_rng(seed)
    t = np.sort(rng.integers(0, int(days * DAY_NS), n))
    t[rng.random(n) < 0.05] = t[0]
    t.sort()
    busy = rng.random(n) < 0.3
    term = np.where(busy, rng.integers(0, 3, n), rng.integers(0, terms, n))
    return pd.DataFrame({"tx_id": [f"x{i}" for i in range(n)],
                         "timestamp": pd.to_datetime(t + 1_700_000_000 * 10**9, utc=True),
                         "customer_id": [f"c{k}" for k in rng.integers(0, cards, n)],
                         "terminal_id": [f"m{k}" for k in term], "amount": 1.0})


PARAMS = [dict(), dict(window_days=2.5, aged_days=3.0, age_cap_days=200.0, max_terminals=3),
          dict(window_days=20.0, aged_days=0.0, max_terminals=1)]


@pytest.fixture(params=[False, True], ids=["compiled", "python"])
def kernel(request, monkeypatch):
    if request.param:
        monkeypatch.setattr(collusion, "_KERNEL", [None])
    return request.param


@pytest.mark.parametrize("params", PARAMS)
@pytest.mark.parametrize("seed", [0, 1])
def test_kernel_equals_the_dict_reference(kernel, params, seed):
    df = stream(seed, n=3000 if not kernel else 800)
    f = CollusionFeatures(**params).fit(df)
    want = ref_update(f, RefState(), df)
    np.testing.assert_array_equal(f.transform(df).to_numpy(), want)
    assert want[:, 3].max() >= 1 and want[:, 0].min() == 0  # unrelated newcomers and repeat visits occur


@pytest.mark.parametrize("params", PARAMS[:2])
def test_micro_batches_and_update_many_equal_transform(params):
    df = stream(3)
    f = CollusionFeatures(**params).fit(df)
    want = f.transform(df).to_numpy()
    rng = np.random.default_rng(0)
    cuts = np.unique(np.r_[0, rng.integers(0, len(df), 40), len(df)])
    st = f.new_state()
    got = np.concatenate([f.update(st, df.iloc[a:b]).to_numpy() for a, b in zip(cuts[:-1], cuts[1:])])
    np.testing.assert_array_equal(got, want)
    part = df["customer_id"].str[1:].astype(int).to_numpy() % 3
    sts = [f.new_state() for _ in range(3)]
    ref = [RefState() for _ in range(3)]
    for a, b in zip(cuts[:-1], cuts[1:]):
        b_rows, p = df.iloc[a:b], part[a:b]
        groups = [b_rows[p == k] for k in range(3)]
        many = f.update_many(list(zip(sts, groups))).to_numpy()
        np.testing.assert_array_equal(many, np.concatenate([ref_update(f, r, g) for r, g in zip(ref, groups)]))


def test_checkpoints_round_trip_and_read_the_dict_layout():
    df = stream(4)
    f = CollusionFeatures(window_days=3.0, aged_days=5.0, max_terminals=4).fit(df)
    head, tail = df.iloc[:2000], df.iloc[2000:]
    st, ref = f.new_state(), RefState()
    f.update(st, head)
    ref_update(f, ref, head)
    a, b = st.to_arrays()[1], ref.to_arrays()[1]
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(np.asarray(a[k]), np.asarray(b[k]), err_msg=k)
    back = safestate.loads(safestate.dumps(st))
    from_ref = CollusionState.from_arrays({}, *ref.to_arrays()[1:])
    want = ref_update(f, ref, tail)
    for s in (back, from_ref):
        np.testing.assert_array_equal(f.update(s, tail).to_numpy(), want)
    np.testing.assert_array_equal(f.update(st, tail).to_numpy(), want)


def test_memory_per_merchant_follows_its_window():
    """A merchant's list holds only its window's newcomers: 2,000 one-off visits a day apart leave one."""
    n = 2000
    df = pd.DataFrame({"timestamp": pd.to_datetime(np.arange(n) * DAY_NS, utc=True),
                       "customer_id": [f"c{i}" for i in range(n)], "terminal_id": "m"})
    st = CollusionState()
    X = CollusionFeatures(window_days=1.0).fit(df).update(st, df)
    assert st.r_len[0] == 1 and st.r_ts.shape[1] == 4 and st.t_old_new[0] == n - 1
    assert (X["CL_T_NEW_AGED"] <= 1).all()
