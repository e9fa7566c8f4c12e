"""Ceilings of the handbook benchmark: oracles that know which frauds carry any evidence at scoring time.

They are not models: they read the ground truth (``label``, ``scenario`` and the labels of the whole history) to
rank, and exist to measure how far any model can go under the book's protocol. Run them with
``fraud bench handbook --protocol prequential --models oracle,oracle-unsupervised``. Importing this module
registers both in :data:`benchmarks.handbook.MODELS` (not among the defaults).

What the handbook's generator leaves to find (its README, "How the data was generated"):

* scenario 1: an amount above 220 (label-free evidence);
* scenario 3: a third of a drawn card's transactions over 14 days with the amount multiplied by 5 (label-free
  evidence: the amount against the card's own history);
* scenario 2: every transaction of a drawn terminal over the next 28 days, with nothing else changed. The only
  evidence is the terminal's own fraud labels, and under the feedback delay a label is known only once it is
  ``delay_days`` old. A scenario-2 fraud at time t is *detectable* when its terminal has a known scenario-2
  fraud: one dated in [t - delay - ``window_days``, t - delay) (28 days: the compromise's length). Before that,
  its transaction is a genuine-looking one at a terminal with no known compromise. (Other frauds at the terminal,
  scenario 1 or 3, are no evidence of its compromise: the generator draws compromised terminals uniformly, so
  such a label raises the terminal's genuine transactions as much as its frauds. Counting them as evidence, the
  oracle would credit itself with luck no model has.)

``oracle`` (the supervised ceiling): every detectable fraud first (scenarios 1 and 3, and scenario 2 once its
terminal has a known compromise), every other transaction after them in one tie. ``oracle-unsupervised`` (no
label at all): scenarios 1 and 3 first, every other transaction in one tie. A tie is the expected value of what a
scorer can do with transactions that carry no evidence (a random order; any better order of them is luck): AUC
is then exactly 1 - u/2 (u: the share of frauds without evidence) and AP its tie value; CP@100 fills the rest of
each day's top 100 in the metric's tie order (card order, no information).

Why they bound every model: a fraud without evidence has the feature distribution of a genuine transaction (the
generator changed nothing a model can see), so any model ranks it against genuine transactions like a genuine
one, AUC 0.5 in expectation, while the oracle ranks every fraud with evidence above everything else.

``oracle-unsupervised`` is generous: it also ranks first the scenario-3 frauds whose x5 fell on a low draw of the
card's amount (measured on the 4 test weeks, per fold: a quarter of them are below 2.5-3.5x the card's mean
amount over (t - 60 d, t - 14 d], a tenth below 1.1-2.4x, where genuine transactions also are), so the label-free
ceiling is lower still.

They are *expected* ceilings: on one fold a model can pass them by luck on the frauds without evidence (83-107
per fold). Measured (prequential, 4 folds): on the fold testing 2018-08-08..14, ``ours`` AUC 0.902 against
the oracle's 0.892, its 83 frauds without evidence ranked at AUC 0.556 against genuine transactions (1.7 standard
errors above chance; 0.509 on the fold testing 2018-08-29..09-04). Over the 4 folds: ``ours`` AUC 0.883, AP 0.751,
CP@100 0.312 against the oracle's 0.886, 0.774, 0.312; without labels AP 0.279 against 0.314.
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
