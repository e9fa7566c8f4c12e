"""Compile every numba kernel once, into numba's on-disk cache (``fraud compile``).

Kernels compile on first use in each new process unless their cache is on disk: without it a scorer's first
start and each restart after a crash, a CLI run or a test worker spends its first seconds compiling. This runs a
tiny simulated world through training and scoring, which calls every kernel of the product with the argument
types the product uses; ``make install`` and the Docker image run it, so every later process loads the kernels.
"""
from __future__ import annotations

import sys
import time
import warnings

#: a world just large enough to hold labelled fraud in the training window (the supervised head's kernels)
_WORLD = {"customers": 120, "terminals": 200, "days": 24, "seed": 1}
_TRAIN_DAYS = 18


def warm_kernels() -> float:
    """Train and score a tiny world with every default featurizer and detector; the seconds it took."""
    import pandas as pd

    from fraud.simulate import simulate
    from fraud.training import TrainConfig, train

    t0 = time.perf_counter()
    df = simulate(**_WORLD)
    cut = df["timestamp"].min() + pd.Timedelta(days=_TRAIN_DAYS)
    cfg = TrainConfig(alert_budget_per_day=5, warmup_days=3, eval_days=4, warm_state_days=3,
                      featurizer_params={"graph": {"walk_length": 10, "walks_per_node": 2}, "sequence": {"epochs": 1}})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        bundle = train(df[df["timestamp"] < cut], cfg).bundle
        bundle.score_frame(df[df["timestamp"] >= cut].reset_index(drop=True), batch_size=200)
        _label_feedback(bundle, df[df["timestamp"] >= cut].reset_index(drop=True))
    _head_walk()
    _review_kernels()
    return time.perf_counter() - t0


def _label_feedback(bundle, rows) -> None:
    """Labels sent back for events scored without them (``fraud send-labels``): the graph featurizer counts the
    late frauds in a kernel of its own, which a live scorer would otherwise compile on its first label event."""
    state = bundle.warm_state()
    bundle.score(rows.drop(columns="label"), state)
    bundle.add_labels(state, rows[rows["label"] == 1], "warm-up labels")


def _head_walk() -> None:
    """The supervised head's predictor for rows with a missing feature (its tree walk; the warm-up's world has
    none), on a small head of the default kind."""
    import numpy as np

    from fraud.detectors.supervised import SupervisedHead

    rng = np.random.default_rng(0)
    X = rng.normal(size=(400, 4))
    head = SupervisedHead(n_estimators=5, min_child_samples=10).fit(X, (X[:, 0] > 1).astype(int))
    X[1, 0] = np.nan
    head.decision_function(X[:2])


def _review_kernels() -> None:
    """The review's default embedder (``models.node2vec`` with p = q = 1) on a small graph."""
    import networkx as nx

    from fraud.review.clusters import node2vec_embedding

    node2vec_embedding(nx.barabasi_albert_graph(60, 2, seed=0), dim=8, walks_per_node=2, epochs=1)


def numba_dispatchers(prefixes=("fraud", "models", "streaming")) -> dict:
    """{module.function: dispatcher} of every numba kernel the loaded product modules hold (module globals and
    the ``fraud._jit.compiled`` stores); a test checks that :func:`warm_kernels` leaves each with an on-disk
    cache."""
    found = {}
    for mod_name, mod in list(sys.modules.items()):
        if mod is None or mod_name.split(".")[0] not in prefixes:
            continue
        for val in list(vars(mod).values()):
            for d in _dispatchers_in(val):
                found[f"{mod_name}.{d.py_func.__name__}"] = d
    return found


def _dispatchers_in(val) -> list:
    """The numba dispatchers in a module global: itself, or a ``compiled`` store (a list, or a dict of them)."""
    from numba.core.registry import CPUDispatcher

    if isinstance(val, CPUDispatcher):
        return [val]
    if isinstance(val, dict):
        val = [d for store in val.values() if isinstance(store, list) for d in store]
    return [d for d in val if isinstance(d, CPUDispatcher)] if isinstance(val, list) else []
