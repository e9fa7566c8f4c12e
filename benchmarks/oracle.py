"""Ceilings of the handbook benchmark: oracles that know which frauds carry any evidence at scoring time.

They are not models: they read the ground truth to rank, and measure how far any model can go under the
book's protocol (``fraud bench handbook --protocol prequential --models oracle,oracle-unsupervised``).
``oracle`` ranks every fraud with evidence first (scenarios 1 and 3, and scenario 2 once its terminal has a
known compromise under the feedback delay) and every other transaction after them in one tie;
``oracle-unsupervised`` (no label at all) only scenarios 1 and 3. Importing this module registers both in
:data:`benchmarks.handbook.MODELS` (not among the defaults). Why they bound every model, and the figures:
docs/benchmarks.md ("Ceilings of the handbook benchmark").
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from benchmarks.handbook import register_model
from fraud.errors import ConfigError

DAY_NS = 86_400 * 10**9


def _need(frame: pd.DataFrame, what: str) -> None:
    missing = [c for c in ("timestamp", "terminal_id", "label", "scenario") if c not in frame.columns]
    if missing:
        raise ConfigError(f"bench handbook: the oracle needs column(s) {missing} in the {what} (the handbook's "
                          "TX_FRAUD_SCENARIO maps to scenario under --preset handbook)")


def _ns(ts: pd.Series) -> np.ndarray:
    t = pd.to_datetime(ts, utc=True)
    return t.dt.tz_convert("UTC").dt.tz_localize(None).to_numpy(dtype="datetime64[ns]").astype(np.int64)


def evidence(test: pd.DataFrame, history: pd.DataFrame, delay_days: float = 7, window_days: float = 28,
             labels: bool = True) -> np.ndarray:
    """Per test row: True for a fraud that carries evidence when it is scored (module doc). ``labels=False``:
    label-free evidence only (scenarios 1 and 3)."""
    _need(test, "test week")
    y = test["label"].to_numpy() == 1
    sc = pd.to_numeric(test["scenario"], errors="coerce").fillna(0).to_numpy()
    out = y & np.isin(sc, (1, 3))
    if not labels:
        return out
    _need(history, "history")
    hs = pd.to_numeric(history["scenario"], errors="coerce").fillna(0).to_numpy()
    fr = history[(history["label"].to_numpy() == 1) & (hs == 2)]
    t_fr = _ns(fr["timestamp"])
    term_fr = fr["terminal_id"].astype(str).to_numpy()
    order = np.lexsort((t_fr, term_fr))
    term_fr, t_fr = term_fr[order], t_fr[order]
    idx = np.flatnonzero(y & (sc == 2))
    if len(idx):
        t = _ns(test["timestamp"].iloc[idx])
        term = test["terminal_id"].iloc[idx].astype(str).to_numpy()
        known_until = t - int(delay_days * DAY_NS)  # labels strictly older than this are known
        known_from = known_until - int(window_days * DAY_NS)
        lo = np.searchsorted(term_fr, term, side="left")
        hi = np.searchsorted(term_fr, term, side="right")
        for j, (a, b) in enumerate(zip(lo, hi)):
            if a == b:
                continue
            times = t_fr[a:b]
            k = np.searchsorted(times, known_until[j], side="left")  # its frauds dated before known_until
            if k > 0 and times[k - 1] >= known_from[j]:
                out[idx[j]] = True
    return out


def _ranked(flags: np.ndarray) -> np.ndarray:
    """1 for the frauds with evidence, 0 (one tie) for every other transaction."""
    return flags.astype(np.float64)


@register_model("oracle")
def oracle(train: pd.DataFrame, test: pd.DataFrame, history: pd.DataFrame) -> np.ndarray:
    """The supervised ceiling under the 7-day feedback delay (module doc)."""
    return _ranked(evidence(test, history, labels=True))


@register_model("oracle-unsupervised")
def oracle_unsupervised(train: pd.DataFrame, test: pd.DataFrame, history: pd.DataFrame) -> np.ndarray:
    """The label-free ceiling (module doc)."""
    return _ranked(evidence(test, history, labels=False))
