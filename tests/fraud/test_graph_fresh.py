"""Fresh embeddings (``refresh_lr``) and convergence columns (``convergence``) of ``GraphFeatures``: the online
contract with them on, checkpoints mid-stream, that a node's vector really follows its new neighbours, that many
unrelated cards converging on one quiet terminal stand out, bounded memory, and that off is the old featurizer."""
import numpy as np
import pandas as pd
import pytest
from featurizer_checks import assert_replay_equals_transform, assert_update_many_equals_updates

from fraud import safestate
from fraud.errors import ConfigError
from fraud.features.graph import GraphFeatures

PARAMS = dict(dim=8, proj_dim=4, walk_length=10, walks_per_node=3, drop_columns=())
ON = dict(refresh_lr=0.05, convergence=True)
FRESH_COLS = ["g_c_shift", "g_t_shift", "g_conv_dist", "g_conv_rel", "g_conv_far", "g_conv_disp"]


@pytest.fixture(scope="module")
def world():
    from fraud.simulate import simulate

    return simulate(customers=150, terminals=300, days=40, seed=5)


@pytest.fixture(scope="module")
def hist(world):
    return world.loc[world["timestamp"] < world["timestamp"].min() + pd.Timedelta(days=25)].reset_index(drop=True)


@pytest.fixture(scope="module")
def live(world, hist):
    return world.iloc[len(hist):].reset_index(drop=True)


@pytest.fixture(scope="module")
def on(hist):
    return GraphFeatures(**PARAMS, **ON).fit(hist)


def test_replay_in_any_micro_batches_equals_transform(on, live):
    assert on.feature_names_[-6:] == FRESH_COLS
    X = on.transform(live.iloc[:1500])
    assert (X[FRESH_COLS].to_numpy() != 0).any(axis=0).all()  # every new column says something
    assert_replay_equals_transform(on, live.iloc[:1500], batch_sizes=(1, 7, 400), atol=1e-12)


def test_update_many_equals_per_state_updates(on, hist, live):
    both = pd.concat([hist.iloc[-1000:], live.iloc[:300]], ignore_index=True)
    part = both["customer_id"].astype(int).to_numpy() % 3
    # atol as the contract's: the projection's matrix product may differ in the last bit by batch shape
    assert_update_many_equals_updates(on, hist.iloc[-1000:], live.iloc[:300], part, batch=41, atol=1e-12)


def test_state_round_trips_mid_stream(on, live):
    rows = live.iloc[:2000]
    want = on.transform(rows).to_numpy()
    st = on.new_state()
    on.update(st, rows.iloc[:1100])
    back = safestate.loads(safestate.dumps(st))  # data-only arrays, trimmed to the nodes seen
    assert back.dim == on.emb_c_.shape[1] and len(back.fc) == back.n_c and len(back.tz) == back.n_t
    assert back.fc_ok.sum() > 0 and back.fmeta[0] == 1100
    np.testing.assert_array_equal(on.update(back, rows.iloc[1100:]).to_numpy(), want[1100:])


def test_a_node_follows_its_new_neighbours(on, hist):
    """A known card that starts shopping at a terminal of another part of the graph: its fresh vector moves toward
    that terminal's (cosine up, shift from the fitted vector up); frozen (off), nothing moves."""
    emb_c, emb_t = on.emb_c_, on.emb_t_
    cust = next(iter(on.c_index_))
    ce = emb_c[on.c_index_[cust]]
    cos = {t: ce @ emb_t[i] / (np.linalg.norm(ce) * np.linalg.norm(emb_t[i]) + 1e-12) for t, i in on.t_index_.items()}
    far = min(cos, key=cos.get)
    t0 = hist["timestamp"].max() + pd.Timedelta(hours=1)
    n = 40
    rows = pd.DataFrame({"tx_id": [f"f{i}" for i in range(n)],
                         "timestamp": [t0 + pd.Timedelta(hours=6 * i) for i in range(n)], "customer_id": cust,
                         "terminal_id": far, "amount": 10.0, "label": np.zeros(n, np.int8)})
    X = on.transform(rows)
    assert X["g_cos"].iloc[-1] > X["g_cos"].iloc[0] + 0.2
    assert X["g_c_shift"].iloc[0] == 0 and np.all(np.diff(X["g_c_shift"].to_numpy()[:10]) > 0)
    off = GraphFeatures(**PARAMS).fit(hist).transform(rows)
    assert off["g_cos"].nunique() == 1


def test_converging_strangers_stand_out(on, hist):
    """A new terminal with a local clientele (cards close in the embedding space, three rounds of visits); then
    cards from far away each make a first visit: their relative distance, the terminal's count of far first visits
    and its dispersion rise above the clientele's, with fresh vectors and with the frozen ones."""
    ids = list(on.c_index_)
    e = on.emb_c_[[on.c_index_[c] for c in ids]]
    near = np.argsort(np.linalg.norm(e - e[0], axis=1))[:6]
    strangers = [ids[j] for j in np.argsort(-np.linalg.norm(e - e[near].mean(0), axis=1))[:12]]
    cust = [ids[j] for j in near] * 3 + strangers
    t0 = hist["timestamp"].max() + pd.Timedelta(hours=1)
    rows = pd.DataFrame({"tx_id": [f"r{i}" for i in range(len(cust))],
                         "timestamp": [t0 + pd.Timedelta(hours=3 * i) for i in range(len(cust))],
                         "customer_id": cust, "terminal_id": "T-new", "amount": 10.0,
                         "label": np.zeros(len(cust), np.int8)})
    for kw in (ON, dict(convergence=True)):
        f = GraphFeatures(**PARAMS, **kw).fit(hist)
        X = f.transform(rows)
        reg, new = X.iloc[6:18], X.iloc[18:]  # the clientele once the terminal has a history, the strangers
        assert new["g_conv_rel"].median() > 2 * reg["g_conv_rel"].median()
        assert new["g_conv_far"].iloc[-1] >= 6 > reg["g_conv_far"].max()
        assert new["g_conv_disp"].iloc[-1] > 1.5 * reg["g_conv_disp"].iloc[-1]


def test_memory_is_bounded_by_the_nodes_seen(on, live):
    st = on.new_state()
    on.update(st, live.iloc[:3000])
    D = on.emb_c_.shape[1]
    assert st.fc.shape[1] == st.ft.shape[1] == st.tz.shape[1] == D
    assert len(st.fc) < 2 * max(st.n_c, 16) and len(st.ft) < 2 * max(st.n_t, 16)  # grows like the other arrays
    assert st.fc_ok[:st.n_c].all() and st.ft_ok[:st.n_t].all()
    assert len(st.nb_c) == len(st.nb_t) == st.edges  # the negatives' ring does not grow
    a = st.to_arrays()[1]
    assert len(a["fc"]) == st.n_c and len(a["tz"]) == st.n_t and len(a["nb_c"]) == st.edges


def test_off_is_the_old_featurizer(hist, live):
    """Off (the default): the old columns, bit for bit whatever the other fresh knobs say, and a checkpoint without
    the fresh arrays (readable as before)."""
    off = GraphFeatures(**PARAMS).fit(hist)
    knobs = GraphFeatures(**PARAMS, refresh_neg=5, refresh_anchor=3.0, conv_days=2.0).fit(hist)
    assert not set(FRESH_COLS) & set(off.feature_names_) and off.feature_names_ == knobs.feature_names_
    np.testing.assert_array_equal(off.transform(live).to_numpy(), knobs.transform(live).to_numpy())
    st = off.new_state()
    off.update(st, live.iloc[:500])
    meta, arrays, _ = st.to_arrays()
    assert st.dim == 0 and "dim" not in meta and "fc" not in arrays
    back = safestate.loads(safestate.dumps(st))
    np.testing.assert_array_equal(off.update(back, live.iloc[500:900]).to_numpy(),
                                  off.update(st, live.iloc[500:900]).to_numpy())


def test_a_state_of_the_other_mode_is_refused(on, hist, live):
    off = GraphFeatures(**PARAMS).fit(hist)
    with pytest.raises(ConfigError, match="dim"):
        on.update(off.new_state(), live.iloc[:5])
    with pytest.raises(ConfigError, match="refresh_lr"):
        GraphFeatures(**PARAMS, refresh_lr=-1).fit(hist)


def test_gnn_embeddings_refresh_too(hist, live):
    f = GraphFeatures(embedder="gnn", dim=8, proj_dim=4, gnn_epochs=5, **ON).fit(hist)
    X = f.transform(live.iloc[:600])
    assert np.isfinite(X.to_numpy()).all() and X["g_c_shift"].max() > 0
    assert_replay_equals_transform(f, live.iloc[:600], batch_sizes=(9,), atol=1e-12)
