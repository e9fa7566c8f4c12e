"""Label-free collusion signals: unrelated established cards converging on the same few merchants.

Per transaction (card c at merchant t): is it c's first visit to t, c's age, how many established
cards made a first visit to t in the last ``window_days`` (and how many of them share none of their
recent merchants with c: unrelated), and t's newcomer rate against its own history. One sequential
pass, so ``transform`` is a replay from an empty state. Definitions and figures: docs/detection.md.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from fraud.errors import ConfigError
from fraud.features.base import Featurizer

NAMES = ["CL_NEW_PAIR", "CL_C_AGE_DAYS", "CL_T_NEW_AGED", "CL_T_UNRELATED_NEW", "CL_T_NEW_RATIO", "CL_CONVERGE"]
DAY_NS = 86_400 * 10**9


class CollusionState:
    """Per card: first-seen time and its ``max_terminals`` most recent merchants (oldest first). Per merchant:
    first-seen time, newcomers before the window (count), and the newcomers of the window
    (time ns, card, aged flag), oldest first."""

    def __init__(self):
        self.c_first: dict = {}
        self.c_terms: dict = {}
        self.t_first: dict = {}
        self.t_old_new: dict = {}
        self.t_recent: dict = {}

    def to_arrays(self) -> tuple[dict, dict, list]:
        cards = list(self.c_first)
        lens = [len(self.c_terms.get(c, ())) for c in cards]
        terms = list(self.t_first)
        rec = [self.t_recent.get(t, []) for t in terms]
        arrays = {"cards": cards, "c_first": np.array([self.c_first[c] for c in cards], np.int64),
                  "c_terms_len": np.array(lens, np.int64),
                  "c_terms": [t for c in cards for t in self.c_terms.get(c, ())],
                  "terms": terms, "t_first": np.array([self.t_first[t] for t in terms], np.int64),
                  "t_old_new": np.array([self.t_old_new.get(t, 0) for t in terms], np.int64),
                  "t_recent_len": np.array([len(r) for r in rec], np.int64),
                  "t_recent_ts": np.array([e[0] for r in rec for e in r], np.int64),
                  "t_recent_card": [e[1] for r in rec for e in r],
                  "t_recent_aged": np.array([e[2] for r in rec for e in r], np.int8)}
        return {}, arrays, []

    @classmethod
    def from_arrays(cls, meta: dict, arrays: dict, children: list) -> "CollusionState":
        st = cls()
        cards, terms = list(arrays["cards"]), list(arrays["terms"])
        ends = np.cumsum(arrays["c_terms_len"])
        ct = list(arrays["c_terms"])
        for i, c in enumerate(cards):
            st.c_first[c] = int(arrays["c_first"][i])
            st.c_terms[c] = ct[ends[i] - arrays["c_terms_len"][i]:ends[i]]
        ends = np.cumsum(arrays["t_recent_len"])
        cards_r = list(arrays["t_recent_card"])
        for i, t in enumerate(terms):
            st.t_first[t] = int(arrays["t_first"][i])
            st.t_old_new[t] = int(arrays["t_old_new"][i])
            lo = int(ends[i] - arrays["t_recent_len"][i])
            st.t_recent[t] = [(int(arrays["t_recent_ts"][j]), cards_r[j], int(arrays["t_recent_aged"][j]))
                              for j in range(lo, int(ends[i]))]
        return st


class CollusionFeatures(Featurizer):
    """Collusion features (no labels); ``aged_days``: a card at least this old is established."""

    def __init__(self, window_days: float = 7.0, aged_days: float = 28.0, age_cap_days: float = 90.0,
                 max_terminals: int = 32):
        self.window_days = window_days
        self.aged_days = aged_days
        self.age_cap_days = age_cap_days
        self.max_terminals = max_terminals

    def fit(self, df: pd.DataFrame | None = None, y=None) -> "CollusionFeatures":
        if not (self.window_days > 0 and self.aged_days >= 0 and self.max_terminals >= 1):
            raise ConfigError(f"CollusionFeatures: window_days={self.window_days!r} must be > 0, aged_days="
                              f"{self.aged_days!r} >= 0, max_terminals={self.max_terminals!r} >= 1")
        self.feature_names_ = list(NAMES)
        return self

    def new_state(self) -> CollusionState:
        return CollusionState()

    def transform(self, df: pd.DataFrame) -> pd.DataFrame:
        self._check_fitted()
        return self.update(self.new_state(), df)

    def update(self, state: CollusionState, rows: pd.DataFrame) -> pd.DataFrame:
        self._check_fitted()
        for col in ("timestamp", "customer_id", "terminal_id"):
            if col not in rows.columns:
                raise ConfigError(f"CollusionFeatures: rows lack column {col!r}")
        ts = rows["timestamp"].to_numpy(dtype="datetime64[ns]").astype(np.int64)
        cards = rows["customer_id"].astype(str).tolist()
        terms = rows["terminal_id"].astype(str).tolist()
        out = np.zeros((len(rows), len(NAMES)), dtype=np.float64)
        for i in range(len(rows)):
            out[i] = self._row(state, int(ts[i]), cards[i], terms[i])
        return pd.DataFrame(out, columns=list(NAMES), index=rows.index)

    def _row(self, st: CollusionState, now: int, c: str, t: str) -> tuple:
        win, aged_ns = int(self.window_days * DAY_NS), int(self.aged_days * DAY_NS)
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
            if len(mine) > self.max_terminals:
                mine.pop(0)
        else:
            mine.remove(t)
            mine.append(t)
        newcomers = {e[1] for e in recent if e[2]}  # established cards new to t in the window (c included)
        n_aged = len(newcomers)
        others = newcomers - {c}
        mine_set = set(mine) - {t}
        unrelated = sum(1 for o in others if not mine_set.intersection(st.c_terms.get(o, ())))
        hist_days = max((now - first_t - win) / DAY_NS, self.window_days)
        expected = st.t_old_new.get(t, 0) * self.window_days / hist_days
        ratio = len(recent) / (1.0 + expected)
        age = min((now - first_c) / DAY_NS, self.age_cap_days)
        converge = float(new and aged) * unrelated
        return float(new), age, float(n_aged), float(unrelated), ratio, converge

