import numpy as np
import pandas as pd
import pytest

from fraud.errors import ConfigError
from featurizer_checks import assert_replay_equals_transform
from fraud.features.graph import GraphFeatures

PARAMS = dict(dim=8, proj_dim=4, walk_length=10, walks_per_node=3, drop_columns=())  # every column


@pytest.fixture(scope="module")
def world():
    from fraud.simulate import simulate

    return simulate(customers=150, terminals=300, days=40, seed=5)


@pytest.fixture(scope="module")
def fitted(world):
    hist = world.loc[world["timestamp"] < world["timestamp"].min() + pd.Timedelta(days=25)]
    return GraphFeatures(**PARAMS).fit(hist)


def test_an_unknown_embedder_is_named(tiny_frame):
    with pytest.raises(ConfigError, match="embedder"):
        GraphFeatures(embedder="bogus").fit(tiny_frame)


def test_information_rule(world, fitted):
    sub = world.iloc[-3000:].reset_index(drop=True)
    i = 2000
    t_i = sub.loc[i, "timestamp"]
    base = fitted.transform(sub)
    other = sub.copy()
    recent = other["timestamp"] >= t_i - pd.Timedelta(days=7)
    other.loc[recent, "label"] = (1 - other.loc[recent, "label"]).astype(np.int8)  # labels not yet known
    later = other.index > i
    other.loc[later, "terminal_id"] = other.loc[later, "terminal_id"].iloc[::-1].to_numpy()
    other.loc[later, "amount"] = 1.0
    got = fitted.transform(other)
    np.testing.assert_array_equal(got.iloc[: i + 1].to_numpy(), base.iloc[: i + 1].to_numpy())
    # and a label that is old enough does count
    old = sub.copy()
    cut = t_i - pd.Timedelta(days=7)
    c = sub.loc[i, "customer_id"]
    mask = (old["customer_id"] == c) & (old["timestamp"] < cut)
    assert mask.any()
    old.loc[mask, "label"] = 1
    assert fitted.transform(old).loc[i, "g_c_known"] == float(mask.sum())


def test_unseen_customer_gets_inductive_embedding(world, fitted):
    rows = world.iloc[-200:].copy()
    t_known = [t for t in rows["terminal_id"].unique() if t in fitted.t_index_][:3]
    ts = rows["timestamp"].max() + pd.to_timedelta([1, 2, 3], unit="s")
    new = pd.DataFrame({"tx_id": ["n1", "n2", "n3"], "timestamp": ts, "customer_id": ["brand-new"] * 3,
                        "terminal_id": t_known, "amount": [10.0, 20.0, 30.0], "label": np.zeros(3, np.int8),
                        "scenario": np.zeros(3, np.int16)})
    X = fitted.transform(pd.concat([rows, new], ignore_index=True)).iloc[-3:]
    assert (X["g_c_seen"] == 0).all() and (X["g_t_seen"] == 1).all()
    cols = [f"g_c{k}" for k in range(fitted.proj_dim)]
    # third row: mean of the three known terminals' embeddings, projected
    e = fitted.emb_t_[[fitted.t_index_[t] for t in t_known]].mean(0)
    expected = (e - fitted.mean_) @ fitted.components_.T
    np.testing.assert_allclose(X[cols].iloc[2].to_numpy(), expected, atol=1e-9)
    assert np.abs(X[cols].to_numpy()).sum(1).min() > 0


def test_ring_signal(world, fitted):
    X = fitted.transform(world)
    s = world["scenario"].to_numpy()
    assert (s == 4).sum() > 10
    # mules concentrate on a few colluding terminals: the ring's pairs stand out from genuine ones
    assert X.loc[s == 4, "g_t_ndist"].mean() > X.loc[s == 0, "g_t_ndist"].mean()


def test_gnn_embedder(world):
    hist = world.loc[world["timestamp"] < world["timestamp"].min() + pd.Timedelta(days=25)]
    f = GraphFeatures(embedder="gnn", dim=8, proj_dim=4, gnn_epochs=5).fit(hist)
    X = f.transform(world.iloc[-300:])
    assert np.isfinite(X.to_numpy()).all() and X["g_cos"].abs().sum() > 0


def test_online_columns_subset(world, fitted):
    f = GraphFeatures(**PARAMS, columns="online").fit(world.iloc[:3000])
    X = f.transform(world.iloc[-500:])
    assert "g_cos" in X.columns and "g_c0" not in X.columns and "g_c_core" not in X.columns
    assert list(X.columns) == f.feature_names_ and set(X.columns) < set(f.all_names_)
    assert_replay_equals_transform(f, world.iloc[-300:], batch_sizes=(7,))
    g = GraphFeatures(**{**PARAMS, "drop_columns": ("g_overlap",)}, columns="online").fit(world.iloc[:3000])
    Y = g.transform(world.iloc[-500:])
    assert list(Y.columns) == [c for c in X.columns if c != "g_overlap"] and "g_overlap_share" in Y.columns
    # the default leaves out g_t_ndist and g_overlap (no AP gain on the handbook; see benchmarks.ablation)
    d = GraphFeatures(dim=8, proj_dim=4, walk_length=10, walks_per_node=3, columns="online").fit(world.iloc[:3000])
    assert d.feature_names_ == [c for c in f.feature_names_ if c not in ("g_t_ndist", "g_overlap")]
    with pytest.raises(ConfigError, match="g_bogus"):
        GraphFeatures(**{**PARAMS, "drop_columns": ("g_bogus",)}).fit(world.iloc[:3000])


def _reference_features(f, rows):
    """The original pure-Python state machine (dicts in recency order), kept as the oracle of the numba kernel."""
    from collections import deque

    day = 86_400 * 10**9
    cust_terms, term_custs, known_c, known_t_cust, first_seen = {}, {}, {}, {}, {}
    pending, released = deque(), deque()

    def lru_add(d, key, cap, ts, lim):
        n, last = d.pop(key, (0, ts))
        d[key] = (n + 1 if last >= lim else 1, ts)  # a stale entry (outside the neighbour window) restarts
        if len(d) > cap:
            del d[next(iter(d))]

    def fresh(d, lim):  # the entries last seen inside the neighbour window: key -> count
        return {k: n for k, (n, last) in d.items() if last >= lim}

    cust, term = rows["customer_id"].tolist(), rows["terminal_id"].tolist()
    t_ns = rows["timestamp"].to_numpy(dtype="datetime64[ns]").astype(np.int64).tolist()
    lab = rows["label"].tolist()
    delay, new_ns = int(round(f.delay_days * day)), int(round(f.new_days * day))
    known_ns = None if f.known_days is None else int(round(f.known_days * day))
    nbr_ns = None if f.nbr_days is None else int(round(f.nbr_days * day))
    ec, et, S = np.zeros((len(rows), f.emb_c_.shape[1])), np.zeros((len(rows), f.emb_c_.shape[1])), np.zeros((len(rows), 16))
    for i, (c, t, ts) in enumerate(zip(cust, term, t_ns)):
        while pending and pending[0][0] < ts - delay:
            released.append(pending.popleft())
            _, pc, pt = released[-1]
            known_c[pc] = known_c.get(pc, 0) + 1
            s = known_t_cust.setdefault(pt, {})
            s[pc] = s.get(pc, 0) + 1  # a count per known-fraud customer, in order of first release
            if len(s) > f.max_known:
                del s[next(iter(s))]
        while known_ns is not None and released and released[0][0] < ts - delay - known_ns:
            _, pc, pt = released.popleft()  # expired: older than the known-fraud window
            known_c[pc] -= 1
            if not known_c[pc]:
                del known_c[pc]
            s = known_t_cust.get(pt, {})
            if pc in s:
                s[pc] -= 1
                if not s[pc]:
                    del s[pc]
        ct_all, tc_all = cust_terms.get(c, {}), term_custs.get(t, {})
        lim = -2**63 if nbr_ns is None else ts - nbr_ns
        ct, tc = fresh(ct_all, lim), fresh(tc_all, lim)
        ci, ti = f.c_index_.get(c), f.t_index_.get(t)
        nb = [f.t_index_[x] for x in ct_all if x in f.t_index_ and x != t] + ([ti] if ti is not None else [])
        ec[i] = f.emb_c_[ci] if ci is not None else (f.emb_t_[nb].mean(0) if nb else 0)
        nb = [f.c_index_[x] for x in tc_all if x in f.c_index_ and x != c] + ([ci] if ci is not None else [])
        et[i] = f.emb_t_[ti] if ti is not None else (f.emb_c_[nb].mean(0) if nb else 0)
        others = [u for u in tc if u != c]
        kc = sum(u in known_c for u in others)
        nw = sum(first_seen[u] > ts - new_ns for u in others)
        nbr = sum(1 for x in ct if x != t and known_t_cust.get(x) and (len(known_t_cust[x]) > 1 or c not in known_t_cust[x]))
        recent = [x for x in reversed(ct) if x != t][:f.overlap_terminals] if tc else []
        best = max([len((set(tc) & set(fresh(term_custs[x], lim))) - {c}) for x in recent], default=0)
        ndt = len(others)
        fs = first_seen.setdefault(c, ts)
        S[i] = [ci is not None, ti is not None, f.core_c_[ci] if ci is not None else 0, f.core_t_[ti] if ti is not None else 0,
                ct.get(t, 0), ct.get(t, 0) / sum(ct.values()) if ct else 0, len(ct), len(tc), known_c.get(c, 0), kc,
                kc / ndt if ndt else 0, nbr, best, min((ts - fs) / day, f.age_cap_days), nw, nw / ndt if ndt else 0]
        lru_add(cust_terms.setdefault(c, {}), t, f.max_terminals, ts, lim)
        lru_add(term_custs.setdefault(t, {}), c, f.max_customers, ts, lim)
        if lab[i] == 1:
            pending.append((ts, c, t))
    return ec, et, S


def test_kernel_equals_python_reference(world):
    """Small memories (evictions everywhere): the numba kernel equals the original Python state machine."""
    hist = world.iloc[:4000]
    f = GraphFeatures(**PARAMS, max_terminals=4, max_customers=6, max_known=2, overlap_terminals=3,
                      delay_days=2, new_days=3, known_days=4, age_cap_days=5, nbr_days=2).fit(hist)
    rows = world.iloc[2000:9000]
    ec, et, S = _reference_features(f, rows)
    X = f.transform(rows)
    names = f.all_names_[2 * f.proj_dim + 1:]
    want = np.column_stack([S[:, :15], np.where(S[:, 7] > 0, S[:, 12] / np.maximum(S[:, 7], 1), 0), S[:, 15]])
    np.testing.assert_allclose(X[names].to_numpy(), want, rtol=1e-12, atol=1e-12)
    assert (X["g_c_known"] > 0).any() and (X["g_c_nbr_risk"] > 0).any() and (X["g_overlap"] > 0).any()
    assert (X["g_c_seen"] == 0).any() and (X["g_t_seen"] == 0).any()
    nrm = np.linalg.norm(ec, axis=1) * np.linalg.norm(et, axis=1)
    cos = np.where(nrm > 0, (ec * et).sum(1) / np.where(nrm > 0, nrm, 1), 0)
    np.testing.assert_allclose(X["g_cos"].to_numpy(), cos, atol=1e-9)
    proj = np.where((np.abs(ec).sum(1) > 0)[:, None], (ec - f.mean_) @ f.components_.T, 0)
    np.testing.assert_allclose(X[[f"g_c{k}" for k in range(f.proj_dim)]].to_numpy(), proj, atol=1e-9)


def test_state_pickles_and_resumes(world, fitted):
    import pickle

    sub = world.iloc[-1200:]
    want = fitted.transform(sub)
    st = fitted.new_state()
    fitted.update(st, sub.iloc[:700])
    st = pickle.loads(pickle.dumps(st))  # checkpoint: trimmed arrays, grows again on new nodes
    np.testing.assert_array_equal(fitted.update(st, sub.iloc[700:]).to_numpy(), want.iloc[700:].to_numpy())


def test_known_fraud_window_and_age_cap(world):
    """A fraud label counts from delay after its transaction until delay + known_days; the age saturates."""
    f = GraphFeatures(**PARAMS, delay_days=7, known_days=10, age_cap_days=20).fit(world.iloc[:3000])
    t0 = pd.Timestamp("2030-01-01", tz="UTC")
    days = [0, 1, 6, 9, 18, 30]  # rows of customer A at terminal T (fraud at day 0) and of B at T
    rows = pd.DataFrame({
        "tx_id": [f"x{i}" for i in range(2 * len(days))],
        "timestamp": [t0 + pd.Timedelta(days=d, hours=h) for d in days for h in (0, 1)],
        "customer_id": ["A", "B"] * len(days), "terminal_id": ["T"] * (2 * len(days)),
        "amount": 1.0, "label": np.array([1] + [0] * (2 * len(days) - 1), np.int8),
        "scenario": np.zeros(2 * len(days), np.int16)})
    X = f.transform(rows)
    a, b = X.iloc[0::2], X.iloc[1::2]
    # A's fraud (day 0) is usable after day 7 and counts until day 17
    assert a["g_c_known"].tolist() == [0, 0, 0, 1, 0, 0]
    assert b["g_t_known_cust"].tolist() == [0, 0, 0, 1, 0, 0]
    assert a["g_c_age_days"].tolist() == [0, 1, 6, 9, 18, 20]
    # without the window the label counts for ever (the old behaviour)
    old = GraphFeatures(**PARAMS, delay_days=7, known_days=None, age_cap_days=None).fit(world.iloc[:3000])
    Xo = old.transform(rows)
    assert Xo.iloc[0::2]["g_c_known"].tolist() == [0, 0, 0, 1, 1, 1]
    assert Xo.iloc[0::2]["g_c_age_days"].tolist() == [0, 1, 6, 9, 18, 30]
    assert_replay_equals_transform(f, rows, batch_sizes=(1, 5))


def test_neighbour_window(world):
    """Neighbour-list entries last seen more than nbr_days ago stop counting; a stale pair restarts at 1."""
    f = GraphFeatures(**PARAMS, nbr_days=10).fit(world.iloc[:3000])
    old = GraphFeatures(**PARAMS, nbr_days=None).fit(world.iloc[:3000])
    t0 = pd.Timestamp("2030-01-01", tz="UTC")
    spec = [(0, "A", "T"), (1, "A", "T"), (2, "B", "T"), (2.5, "A", "U"), (30, "A", "T"), (31, "A", "T"),
            (31.5, "C", "T")]
    rows = pd.DataFrame({
        "tx_id": [f"x{i}" for i in range(len(spec))],
        "timestamp": [t0 + pd.Timedelta(days=d) for d, _, _ in spec],
        "customer_id": [c for _, c, _ in spec], "terminal_id": [t for _, _, t in spec], "amount": 1.0,
        "label": np.zeros(len(spec), np.int8), "scenario": np.zeros(len(spec), np.int16)})
    X, Xo = f.transform(rows), old.transform(rows)
    assert X["g_pair_prior"].tolist() == [0, 1, 0, 0, 0, 1, 0]  # day 30: A-T last seen 29 days ago
    assert Xo["g_pair_prior"].tolist() == [0, 1, 0, 0, 2, 3, 0]
    assert X["g_t_ndist"].tolist() == [0, 1, 1, 0, 0, 1, 1]  # day 30: A and B at T are stale
    assert Xo["g_t_ndist"].tolist() == [0, 1, 1, 0, 2, 2, 2]
    assert X["g_c_ndist"].iloc[4] == 0 and Xo["g_c_ndist"].iloc[4] == 2
    assert_replay_equals_transform(f, rows, batch_sizes=(1, 3))


def test_a_late_row_does_not_hide_later_labels(world, fitted):
    """A row dated hours before what the state has seen (the stream scores late events) must not move the state's
    clock back: labels for the rows absorbed before it still count (they were dropped as "in the future")."""
    t0 = world["timestamp"].min()
    live = world[world["timestamp"] >= t0 + pd.Timedelta(days=20)].iloc[:200].reset_index(drop=True)
    late = live.iloc[[5]].assign(tx_id="late-1", timestamp=live["timestamp"].min() - pd.Timedelta(hours=20))
    frauds = live.assign(label=np.int8(1))
    applied = []
    for extra in (None, late):
        st = fitted.new_state()
        fitted.update(st, live.drop(columns="label"))
        if extra is not None:
            fitted.update(st, extra.drop(columns="label"))
        applied.append(fitted.add_labels(st, frauds))
    assert applied[0] > 0 and applied[1] == applied[0]


def test_two_frauds_of_one_card_terminal_and_time_count_twice_and_a_repeat_changes_nothing(world, fitted):
    t0 = world["timestamp"].min()
    live = world[world["timestamp"] >= t0 + pd.Timedelta(days=20)].iloc[:50].reset_index(drop=True)
    twin = live.iloc[[10]].assign(tx_id="twin")
    rows = pd.concat([live.iloc[:11], twin, live.iloc[11:]], ignore_index=True)
    labelled = fitted.new_state()
    fitted.update(labelled, rows.assign(label=np.int8(1)))
    st = fitted.new_state()
    fitted.update(st, rows.drop(columns="label"))
    frauds = rows.assign(label=np.int8(1))
    assert fitted.add_labels(st, frauds) == len(rows)
    assert fitted.add_labels(st, frauds) == 0
    held = lambda s: int(s.meta[1] - s.meta[3])  # noqa: E731 - frauds queued or released and not expired
    assert held(st) == held(labelled) == len(rows)
