"""Ceilings of the handbook benchmark: oracles that know which frauds carry any evidence at scoring time.

They are not models: they read the ground truth to rank, and measure how far any model can go under the
book's protocol (``fraud bench handbook --protocol prequential --models oracle,oracle-unsupervised``).
``oracle`` ranks every fraud with evidence first (scenarios 1 and 3, and scenario 2 once its terminal has a
known compromise under the feedback delay) and every other transaction after them in one tie;
``oracle-unsupervised`` (no label at all) only scenarios 1 and 3. Importing this module registers both in
:data:`benchmarks.handbook.MODELS` (not among the defaults). Why they bound every model, and the figures:
docs/benchmarks.md ("Ceilings of the handbook benchmark").

:func:`budget_oracle` is the ceiling of recall at a daily card budget (``fraud bench evasion`` and ``loop``):
each day the cards with the most frauds (or rows of one tactic) first, ties at random with a fixed seed.
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


def budget_oracle(frame: pd.DataFrame, target=None, seed: int = 0) -> np.ndarray:
    """Per row of ``frame`` (timestamp, customer_id, label): its card-day's count of ``target`` rows (default: the
    frauds; a boolean mask per row otherwise) plus a random tie-break in [0, 1) drawn per card-day from ``seed``.
    Alerting each UTC day's ``budget`` cards with the highest score (``fraud.evaluate.recall_at_budget``,
    ``benchmarks.loop.budget_alerts``) then catches the most ``target`` rows any ranking can: the ceiling of
    recall at budget, for the whole target when ranked by it."""
    from fraud.features.tabular import DAY_NS, timestamps_ns

    missing = [c for c in ("timestamp", "customer_id", "label") if c not in frame.columns]
    if missing:
        raise ConfigError(f"budget oracle: the frame lacks column(s) {missing}; present: {list(frame.columns)}")
    hit = frame["label"].to_numpy() == 1 if target is None else np.asarray(target, dtype=bool)
    if hit.shape != (len(frame),):
        raise ConfigError(f"budget oracle: target has shape {hit.shape}, the frame {len(frame)} rows")
    if not len(frame):
        return np.zeros(0)
    keys = pd.DataFrame({"day": np.floor_divide(timestamps_ns(frame["timestamp"]), DAY_NS),
                         "card": frame["customer_id"].astype(str).to_numpy()})
    codes = keys.groupby(["day", "card"], sort=True).ngroup().to_numpy()
    n = int(codes.max()) + 1
    count = np.bincount(codes, weights=hit.astype(float), minlength=n)
    return (count + np.random.default_rng(seed).random(n))[codes]
