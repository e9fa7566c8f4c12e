"""The scoring model a scorer holds: what it must offer, how it is loaded and warmed up, and the heap freeze.

The model is one registered bundle (``fraud.bundle.ScoringBundle``), loaded from the registry by URI and
swapped between batches when its alias moves. Warm-up pays one-time costs (numba compilation, lazy imports) at
load time rather than on the first live batch; freezing the heap afterwards keeps Python's full garbage
collections (which would walk the ~0.5 M objects of the libraries and the model) off the scoring thread.
"""
from __future__ import annotations

import gc
import logging
import time
from typing import Protocol

import numpy as np
import pandas as pd

log = logging.getLogger("streaming.model")


class Bundle(Protocol):
    """What the scorer needs of a model (``fraud.bundle.ScoringBundle`` is one)."""

    version: str | None

    def new_state(self): ...

    def warm_state(self): ...

    def score_poll(self, rows: pd.DataFrame, bounds, states) -> dict: ...

    def score_batch(self, df: pd.DataFrame, explain: str | None = None) -> pd.DataFrame: ...

    def features_online(self, rows: pd.DataFrame, state) -> pd.DataFrame: ...


def default_loader(uri: str, tracking_uri: str | None) -> Bundle:
    from fraud.registry import load_bundle

    return load_bundle(uri, tracking_uri=tracking_uri)


def default_resolver(name: str, alias: str, tracking_uri: str | None) -> str:
    """The version ``models:/NAME@ALIAS`` points to, in the tracking store ``tracking_uri``."""
    from fraud import registry

    return registry.resolve_alias(name, alias, tracking_uri=tracking_uri)


def newer_model(cfg, loader, resolver, current: str | None) -> Bundle | None:
    """The model ``cfg.model_uri``'s alias points at now, loaded and warmed up, when it is not version ``current``;
    else None. Raises what the registry raises."""
    from fraud.registry import parse_model_uri

    name, alias, _ = parse_model_uri(cfg.model_uri)
    target = str(resolver(name, alias, cfg.tracking_uri))
    if target == str(current):
        return None
    bundle = loader(f"models:/{name}/{target}", cfg.tracking_uri)
    warm_up(bundle)
    return bundle


def warm_up(bundle: Bundle) -> float:
    """Score two synthetic events on a throwaway state and explain them, so one-time costs are paid now.
    Returns seconds taken."""
    t0 = time.perf_counter()
    ts = pd.Timestamp.now(tz="UTC").floor("s")
    rows = pd.DataFrame({"tx_id": ["__warmup_1", "__warmup_2"],
                         "timestamp": pd.Series([ts, ts + pd.Timedelta(seconds=1)], dtype="datetime64[ns, UTC]"),
                         "customer_id": ["__warmup", "__warmup"], "terminal_id": ["__warmup", "__warmup"],
                         "amount": np.array([10.0, 5000.0])})
    two = pd.concat([rows, rows.assign(tx_id=["__w3", "__w4"])], ignore_index=True)
    bundle.score_poll(two, [(0, 2), (2, 4)], [bundle.new_state(), bundle.new_state()])  # a poll of two partitions
    bundle.score_batch(rows, explain="all")  # the explanation path, as an alert takes it
    if hasattr(bundle, "timings"):
        bundle.timings.clear()
    dt = time.perf_counter() - t0
    log.info("model warm-up seconds=%.2f", dt)
    return dt


_GC_BEFORE: dict = {}


def freeze_heap() -> int:
    """Collect once, then move every live object to the permanent GC generation (``gc.freeze``); full
    collections 10x rarer than the default. Frozen objects are still freed by reference counting; only their
    cycles are never collected, so this runs at start-up and after a model swap. Returns the frozen count."""
    gc.unfreeze()
    gc.collect()
    gc.freeze()
    g0, g1, g2 = gc.get_threshold()
    _GC_BEFORE.setdefault("threshold", (g0, g1, g2))
    gc.set_threshold(g0, g1, 100)
    return gc.get_freeze_count()


def thaw_heap() -> None:
    """Undo :func:`freeze_heap` (objects back to the collected generations, the thresholds as they were)."""
    gc.unfreeze()
    if "threshold" in _GC_BEFORE:
        gc.set_threshold(*_GC_BEFORE.pop("threshold"))
