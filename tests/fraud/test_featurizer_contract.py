"""The featurizer contract (``fraud.features.base``), checked over every registered featurizer
(``fraud.training.featurizers.FEATURIZERS``), as River's ``check_estimator`` runs over every estimator: fit returns self and
only adds learned attributes ending in ``_``; the online replay equals the batch transform; ``update_many`` equals
one ``update`` per state; a label newer than ``t - delay`` does not change features at ``t``; a fresh state scores
safely; a state round-trips through :mod:`fraud.safestate`. Labels reach featurizers in the rows' ``label``
column or, after the rows were scored, through ``add_labels``: both give the same later features."""
from __future__ import annotations

import copy

import numpy as np
import pandas as pd
import pytest
from featurizer_checks import assert_replay_equals_transform, assert_update_many_equals_updates
from sklearn.base import clone

from fraud import safestate
from fraud.errors import NotFittedError, SchemaError, ValidationError
from fraud.training.featurizers import FEATURIZERS, featurizer_class

#: small parameters per featurizer (every registered featurizer must have an entry: a new one is checked too)
PARAMS = {
    "tabular": {},
    "behaviour": {},
    "graph": dict(dim=8, proj_dim=4, walk_length=10, walks_per_node=3, drop_columns=()),
    "sequence": dict(hidden=8, term_dim=4, novelty_buckets=32, epochs=1, window=16, batch_customers=32,
                     max_train_events=3000, embedding=True, random_state=7),
    "collusion": {},
}
#: tolerance of online vs batch paths (float32 torch inside the sequence encoder; 0: bit for bit)
ATOL = {"sequence": 1e-5, "graph": 1e-12}
NAMES = sorted(FEATURIZERS)
#: the featurizers that read labels (add_labels matters for them; the others apply none)
LABELLED = {"tabular", "behaviour", "graph"}


@pytest.fixture(scope="module")
def world() -> pd.DataFrame:
    from fraud.simulate import simulate

    return simulate(customers=150, terminals=300, days=40, seed=5)


@pytest.fixture(scope="module")
def split(world):
    """(history to fit on, live rows after it)."""
    cut = world["timestamp"].min() + pd.Timedelta(days=25)
    hist = world.loc[world["timestamp"] < cut].reset_index(drop=True)
    return hist, world.loc[world["timestamp"] >= cut].iloc[:900].reset_index(drop=True)


@pytest.fixture(scope="module", params=NAMES)
def fitted(request, split):
    name = request.param
    f = featurizer_class(name)(**PARAMS[name])
    assert f.fit(split[0]) is f, f"{name}: fit must return self"
    return name, f


def test_every_registered_featurizer_is_checked():
    assert set(PARAMS) == set(FEATURIZERS)


def test_init_stores_parameters_and_fit_adds_only_learned_attributes(fitted, split):
    name, f = fitted
    fresh = type(f)(**PARAMS[name])
    assert set(vars(fresh)) == set(fresh.get_params()), f"{name}: __init__ must only store its parameters"
    with pytest.raises(NotFittedError, match="not fitted"):
        fresh.transform(split[1].iloc[:5])
    assert not hasattr(clone(f), "feature_names_") and clone(f).get_params().keys() == f.get_params().keys()
    added = [k for k in set(vars(f)) - set(vars(fresh)) if not k.startswith("_")]
    assert added and all(k.endswith("_") for k in added), f"{name}: learned attributes {sorted(added)}"
    assert list(f.feature_names_) and len(set(f.feature_names_)) == len(f.feature_names_)


def test_online_replay_equals_batch_transform(fitted, split):
    name, f = fitted
    atol = ATOL.get(name, 0.0) or 1e-9
    assert_replay_equals_transform(f, split[1].iloc[:400], batch_sizes=(7, 400), atol=atol)
    assert_replay_equals_transform(f, split[1].iloc[:60], batch_sizes=(1,), atol=atol)
    X = f.transform(split[1].iloc[:60])
    assert list(X.columns) == list(f.feature_names_) and X.index.equals(split[1].index[:60])


def test_update_many_equals_per_state_updates(fitted, split):
    name, f = fitted
    hist, live = split
    both = pd.concat([hist.iloc[-1500:], live], ignore_index=True)
    part = both["customer_id"].astype(int).to_numpy() % 3
    states, ref = assert_update_many_equals_updates(f, hist.iloc[-1500:], live.iloc[:300], part, batch=53,
                                                    atol=ATOL.get(name, 0.0))
    nxt = live.iloc[300:360].reset_index(drop=True)  # the states absorbed the same events
    for a, b in zip(states, ref):
        np.testing.assert_allclose(f.update(a, nxt).to_numpy(), f.update(b, nxt).to_numpy(), rtol=0,
                                   atol=ATOL.get(name, 0.0), err_msg=name)


def test_a_label_newer_than_the_delay_changes_nothing(fitted, split):
    """The information rule: at time t only labels of transactions older than t - delay count. Flipping the labels
    of every row newer than (last time - delay) can change no row's features (label-free featurizers: any label),
    while flipping the older ones does change some (the data reaches past the delay)."""
    name, f = fitted
    df = pd.concat([split[0].iloc[-3000:], split[1]], ignore_index=True)
    delay = getattr(f, "delay_days", None)
    newer = (df["timestamp"] > df["timestamp"].iloc[-1] - pd.Timedelta(days=float(delay))).to_numpy() \
        if delay is not None else np.ones(len(df), dtype=bool)
    X = f.transform(df).to_numpy()

    def flip(mask):
        return f.transform(df.assign(label=np.where(mask, 1 - df["label"], df["label"]).astype(df["label"].dtype)))

    assert 0 < newer.sum()
    np.testing.assert_array_equal(flip(newer).to_numpy(), X, err_msg=name)
    if delay is not None:
        assert (flip(~newer).to_numpy() != X).any(), f"{name}: older labels should count"


def test_a_fresh_state_scores_safely(fitted, split):
    """Before any warm-up, unseen customers and terminals, rows without a label column: finite features."""
    name, f = fitted
    rows = split[1].iloc[:20].drop(columns=["label"]).assign(
        customer_id=[f"new-c{i}" for i in range(20)], terminal_id=[f"new-t{i % 3}" for i in range(20)])
    out = f.update(f.new_state(), rows)
    assert list(out.columns) == list(f.feature_names_) and out.index.equals(rows.index)
    assert np.isfinite(out.to_numpy(dtype=float)).all(), name
    assert len(f.update(f.new_state(), rows.iloc[:0])) == 0


def test_a_state_round_trips_through_safestate(fitted, split):
    name, f = fitted
    hist, live = split
    st = f.new_state()
    f.update(st, hist.iloc[-800:].reset_index(drop=True))
    back = safestate.loads(safestate.dumps(st))
    assert type(back) is type(st)
    nxt = live.iloc[:200]
    np.testing.assert_array_equal(f.update(back, nxt).to_numpy(), f.update(st, nxt).to_numpy(), err_msg=name)


def test_update_many_default_stacks_updates(random_world):
    """The contract's default (featurizers without their own update_many): updates stacked, index 0..n-1."""
    from fraud.features.base import Featurizer
    from fraud.features.tabular import BaselineFeatures

    df = random_world(20, 10, 10, seed=1)
    f = BaselineFeatures().fit(df)
    s1, s2 = f.new_state(), f.new_state()
    a, b = df.iloc[:30], df.iloc[30:70]
    out = Featurizer.update_many(f, [(s1, a), (s2, b)])
    expect = np.vstack([f.update(f.new_state(), a).to_numpy(), f.update(f.new_state(), b).to_numpy()])
    assert out.index.equals(pd.RangeIndex(70))
    np.testing.assert_array_equal(out.to_numpy(), expect)


def test_update_many_matrix_of_one_group_and_of_none(fitted, split):
    """Where a featurizer has the bundle's frameless path: one live group (with an empty one) equals ``update``,
    no live group gives no rows."""
    name, f = fitted
    if not hasattr(f, "update_many_matrix"):
        pytest.skip(f"{name} has no update_many_matrix")
    hist, live = split
    a, b = f.new_state(), f.new_state()
    f.update(a, hist.iloc[-500:].reset_index(drop=True))
    f.update(b, hist.iloc[-500:].reset_index(drop=True))
    rows, empty = live.iloc[:23].reset_index(drop=True), live.iloc[:0]
    got = f.update_many_matrix([(a, rows), (f.new_state(), empty)])
    assert np.array_equal(got, f.update(b, rows).to_numpy(dtype=np.float64), equal_nan=True), name
    assert f.update_many_matrix([(a, empty)]).shape == (0, len(f.feature_names_))


def _same_state(a, b) -> bool:
    """Two states hold the same data (their :mod:`fraud.safestate` form)."""
    (ha, aa), (hb, ab) = safestate.encode(a), safestate.encode(b)
    return ha == hb and aa.keys() == ab.keys() and all(
        np.array_equal(aa[k], ab[k], equal_nan=aa[k].dtype.kind in "fc") for k in aa)


@pytest.fixture(scope="module")
def feedback(split):
    """(history with labels, the live rows after it): the history reaches past the delay, so its labels count."""
    hist, live = split
    return hist.iloc[-3000:].reset_index(drop=True), live.iloc[:300].reset_index(drop=True)


def _absorbed(f, rows):
    st = f.new_state()
    f.update(st, rows)
    return st


def test_labels_that_arrive_later_equal_labels_that_came_with_the_rows(fitted, feedback):
    """History scored without labels, then ``add_labels``: the next rows' features equal those after the labelled
    history (and differ without the feedback, where the featurizer reads labels)."""
    name, f = fitted
    hist, nxt = feedback
    with_labels, late, never = _absorbed(f, hist), _absorbed(f, hist.drop(columns="label")), \
        _absorbed(f, hist.drop(columns="label"))
    n = f.add_labels(late, hist)
    assert (n > 0) == (name in LABELLED), (name, n)
    want = f.update(with_labels, nxt).to_numpy()
    np.testing.assert_allclose(f.update(late, nxt).to_numpy(), want, rtol=0, atol=ATOL.get(name, 0.0), err_msg=name)
    if name in LABELLED:
        assert (f.update(never, nxt).to_numpy() != want).any(), f"{name}: the history's labels should count"


def test_labels_within_the_delay_give_the_labelled_replay(fitted, feedback):
    """A stream whose labels arrive two days after their rows (within the delay) gives, row for row, the features
    of the labelled replay: nothing reads a label before it arrived."""
    name, f = fitted
    df = pd.concat(feedback, ignore_index=True)
    st, parts, done = f.new_state(), [], 0
    for i in range(0, len(df), 97):
        batch = df.iloc[i:i + 97]
        parts.append(f.update(st, batch.drop(columns="label")).to_numpy())
        ready = df.iloc[done:i + 97]
        ready = ready.loc[ready["timestamp"] <= batch["timestamp"].iloc[-1] - pd.Timedelta(days=2)]
        f.add_labels(st, ready)
        done += len(ready)
    assert done > len(df) // 2
    np.testing.assert_allclose(np.vstack(parts), f.transform(df).to_numpy(), rtol=0, atol=ATOL.get(name, 0.0) or 1e-9,
                               err_msg=name)


def test_a_twin_transaction_keeps_its_own_label_through_repeats_and_undo(fitted, feedback):
    """Two transactions of one card, terminal and time (a double charge): each label lands on its own transaction
    however often it is sent, and an undo (label 0) takes back the right one. After each send, later rows of that
    card and terminal get the features of the history that carried the labels sent so far."""
    name, f = fitted
    hist, _ = feedback
    i = int(np.flatnonzero(hist["label"].to_numpy() == 1)[0])
    twin = hist.iloc[[i]].assign(tx_id="twin-of-a-fraud", label=np.int8(0))
    rows = pd.concat([hist.iloc[:i + 1], twin, hist.iloc[i + 1:]], ignore_index=True)
    a, b = rows.iloc[[i]], rows.iloc[[i + 1]]
    delay = pd.Timedelta(days=float(getattr(f, "delay_days", 7)))
    probes = pd.concat([a.assign(tx_id=f"probe-{h}", timestamp=a["timestamp"] + delay + pd.Timedelta(hours=h))
                        for h in (1, 30)], ignore_index=True)  # the same card and terminal, once the labels count
    st = _absorbed(f, rows.drop(columns="label"))
    f.add_labels(st, rows.drop(index=[i, i + 1]))
    known = rows["label"].to_numpy().copy()
    known[[i, i + 1]] = -1  # not sent yet
    for sent, label in ((a, 1), (a, 1), (b, 0), (a, 0)):  # A, A again, B, A undone
        f.add_labels(st, sent.assign(label=np.int8(label)))
        known[i if sent is a else i + 1] = label
        want = f.update(_absorbed(f, rows.assign(label=known.astype(np.int8))), probes).to_numpy()
        np.testing.assert_allclose(f.update(copy.deepcopy(st), probes).to_numpy(), want, rtol=0,
                                   atol=ATOL.get(name, 0.0), err_msg=f"{name}: {sent['tx_id'].iloc[0]}={label}")


def test_add_labels_is_idempotent_and_ignores_rows_never_seen(fitted, feedback):
    name, f = fitted
    hist, nxt = feedback
    once = _absorbed(f, hist.drop(columns="label"))
    twice = copy.deepcopy(once)
    n = f.add_labels(once, hist)
    f.add_labels(twice, hist)
    again = f.add_labels(twice, hist)
    assert again == (0 if name == "graph" else n), (name, again)  # graph counts changes; the others rows matched
    assert _same_state(once, twice), name
    unseen = hist.iloc[-50:].assign(customer_id=lambda d: "new-c" + d["customer_id"].astype(str),
                                    terminal_id=lambda d: "new-t" + d["terminal_id"].astype(str), label=np.int8(1))
    future = nxt.iloc[:50].assign(label=np.int8(1))  # rows after the state's events: not absorbed
    for rows in (unseen, future):
        assert f.add_labels(twice, rows) == 0, name
        assert _same_state(once, twice), name
    assert f.update(once, nxt).equals(f.update(twice, nxt))


def test_label_0_after_1_withdraws_the_fraud(fitted, feedback):
    """The analyst undid a fraud label: the state is as if it never came (released and pending frauds alike)."""
    name, f = fitted
    hist, nxt = feedback
    undone, never = _absorbed(f, hist.drop(columns="label")), _absorbed(f, hist.drop(columns="label"))
    frauds = hist.loc[hist["label"] == 1]
    f.add_labels(undone, frauds)
    f.add_labels(undone, frauds.assign(label=np.int8(0)))
    np.testing.assert_array_equal(f.update(undone, nxt).to_numpy(), f.update(never, nxt).to_numpy(), err_msg=name)


def test_a_state_with_late_labels_round_trips_through_safestate(fitted, feedback):
    name, f = fitted
    hist, nxt = feedback
    st = _absorbed(f, hist.drop(columns="label"))
    f.add_labels(st, hist)
    back = safestate.loads(safestate.dumps(st))
    np.testing.assert_array_equal(f.update(back, nxt).to_numpy(), f.update(st, nxt).to_numpy(), err_msg=name)


def test_add_labels_checks_its_rows(fitted, feedback):
    name, f = fitted
    if name not in LABELLED:
        pytest.skip(f"{name} reads no label")
    st = _absorbed(f, feedback[0].iloc[:100])
    with pytest.raises(SchemaError, match="label"):
        f.add_labels(st, feedback[0].iloc[:5].drop(columns="label"))
    with pytest.raises(ValidationError, match="label 2 of transaction"):
        f.add_labels(st, feedback[0].iloc[:5].assign(label=[0, 1, 2, 0, 1]))
