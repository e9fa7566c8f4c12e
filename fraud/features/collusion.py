"""Label-free collusion signals: unrelated established cards converging on the same few merchants.

Per transaction (card c at merchant t): is it c's first visit to t, c's age, how many established
cards made a first visit to t in the last ``window_days`` (and how many of them share none of their
recent merchants with c: unrelated), and t's newcomer rate against its own history. One sequential
pass (a numba kernel, :func:`_kernel_py` compiled, over the flat arrays of :class:`CollusionState`),
so ``transform`` is a replay from an empty state. Definitions and figures: docs/detection.md.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from fraud import safestate
from fraud._jit import compiled
from fraud.errors import ConfigError, StateError
from fraud.features.base import Featurizer, column, id_list

NAMES = ["CL_NEW_PAIR", "CL_C_AGE_DAYS", "CL_T_NEW_AGED", "CL_T_UNRELATED_NEW", "CL_T_NEW_RATIO", "CL_CONVERGE"]
DAY_NS = 86_400 * 10**9
_UNSET = np.iinfo(np.int64).min  # first-seen time of an id not seen yet


def _grow(a: np.ndarray, n: int, fill=0, width: int = 0) -> np.ndarray:
    """``a`` with at least ``n`` rows (capacity doubles) and, 2-d, ``width`` columns; new cells set to ``fill``."""
    rows = len(a) if len(a) >= n else max(n, 2 * len(a), 16)
    shape = (rows,) if a.ndim == 1 else (rows, max(a.shape[1], width))
    if shape == a.shape:
        return a
    out = np.full(shape, fill, dtype=a.dtype)
    out[tuple(slice(0, k) for k in a.shape)] = a
    return out


class CollusionState:
    """Cards and merchants get dense ids in order of first appearance (``c_ids`` / ``t_ids``). Per card:
    first-seen time and its ``max_terminals`` most recent merchants, oldest first (``c_terms[:c_len]``). Per
    merchant: first-seen time, newcomers that left the window (count), and the newcomers of the window (time
    ns, card, aged flag), oldest first, in ``r_*[t, r_head:r_head + r_len]``: a merchant keeps its window's
    newcomers only. ``c_mark`` / ``t_mark`` are scratch stamps (``stamp``) for set intersections."""

    def __init__(self):
        self.c_ids: dict = {}
        self.t_ids: dict = {}
        self.n_c = self.n_t = 0
        self.c_first = np.zeros(0, np.int64)
        self.c_terms = np.zeros((0, 1), np.int32)
        self.c_len = np.zeros(0, np.int64)
        self.c_mark = np.zeros(0, np.int64)
        self.t_first = np.zeros(0, np.int64)
        self.t_old_new = np.zeros(0, np.int64)
        self.t_mark = np.zeros(0, np.int64)
        self.r_head = np.zeros(0, np.int64)
        self.r_len = np.zeros(0, np.int64)
        self.r_ts = np.zeros((0, 4), np.int64)
        self.r_card = np.zeros((0, 4), np.int32)
        self.r_aged = np.zeros((0, 4), np.int8)
        self.stamp = np.zeros(1, np.int64)

    def ids(self, values, cards: bool) -> np.ndarray:
        """Dense ids of ``values`` (a Series or a list; as text, new ones assigned and the arrays grown)."""
        if isinstance(values, pd.Series):
            values = values.tolist() if isinstance(values.dtype, pd.StringDtype) else values.astype(str).tolist()
        d = self.c_ids if cards else self.t_ids
        got = list(map(d.get, values))  # one C-level pass; new ids are the exception
        if None in got:
            got = [d.setdefault(v if type(v) is str else str(v), len(d)) if g is None else g
                   for v, g in zip(values, got)]
            self._reserve(cards, len(d))
        return np.array(got, dtype=np.int64)

    def _reserve(self, cards: bool, n: int) -> None:
        if cards:
            self.c_first = _grow(self.c_first, n, _UNSET)
            self.c_terms, self.c_len, self.c_mark = (_grow(a, n) for a in (self.c_terms, self.c_len, self.c_mark))
            self.n_c = n
        else:
            self.t_first = _grow(self.t_first, n, _UNSET)
            for k in ("t_old_new", "t_mark", "r_head", "r_len", "r_ts", "r_card", "r_aged"):
                setattr(self, k, _grow(getattr(self, k), n))
            self.n_t = n

    def widen(self, max_terminals: int) -> None:
        """Room for ``max_terminals`` merchants per card."""
        self.c_terms = _grow(self.c_terms, 0, width=max_terminals)

    def widen_window(self) -> None:
        """Twice the room for each merchant's window newcomers (a merchant's list was full)."""
        w = 2 * self.r_ts.shape[1]
        self.r_ts, self.r_card, self.r_aged = (_grow(a, 0, width=w) for a in (self.r_ts, self.r_card, self.r_aged))

    def to_arrays(self) -> tuple[dict, dict, list]:
        """Checkpoint form (:mod:`fraud.safestate`): ids as text, each list as its used entries, oldest first."""
        nc, nt = self.n_c, self.n_t
        cards, terms = safestate.str_dict(self.c_ids)[0], safestate.str_dict(self.t_ids)[0]
        c_mask = np.arange(self.c_terms.shape[1]) < self.c_len[:nc, None]
        head, ln = self.r_head[:nt, None], self.r_len[:nt, None]
        col = np.arange(self.r_ts.shape[1])
        r_mask = (col >= head) & (col < head + ln)
        tnames, cnames = np.array(terms + [""], dtype=object), np.array(cards + [""], dtype=object)
        arrays = {"cards": cards, "c_first": self.c_first[:nc].copy(), "c_terms_len": self.c_len[:nc].copy(),
                  "c_terms": tnames[self.c_terms[:nc][c_mask]].tolist(),
                  "terms": terms, "t_first": self.t_first[:nt].copy(), "t_old_new": self.t_old_new[:nt].copy(),
                  "t_recent_len": self.r_len[:nt].copy(), "t_recent_ts": self.r_ts[:nt][r_mask],
                  "t_recent_card": cnames[self.r_card[:nt][r_mask]].tolist(),
                  "t_recent_aged": self.r_aged[:nt][r_mask].astype(np.int8)}
        return {}, arrays, []

    @classmethod
    def from_arrays(cls, meta: dict, arrays: dict, children: list) -> "CollusionState":
        st = cls()
        st.ids(list(arrays["cards"]), True)
        st.ids(list(arrays["terms"]), False)
        c_len, r_len = np.asarray(arrays["c_terms_len"], np.int64), np.asarray(arrays["t_recent_len"], np.int64)
        if len(c_len) != st.n_c or len(r_len) != st.n_t or c_len.sum() != len(arrays["c_terms"]) or \
                r_len.sum() != len(arrays["t_recent_ts"]):
            raise StateError(f"CollusionState: {st.n_c} cards with {c_len.sum()} merchants listed for "
                             f"{len(arrays['c_terms'])}, {st.n_t} merchants with {r_len.sum()} newcomers listed for "
                             f"{len(arrays['t_recent_ts'])}")
        st.c_first[:st.n_c], st.c_len[:st.n_c] = arrays["c_first"], c_len
        st.t_first[:st.n_t], st.t_old_new[:st.n_t], st.r_len[:st.n_t] = arrays["t_first"], arrays["t_old_new"], r_len
        st.widen(max(1, int(c_len.max(initial=0))))
        st.c_terms[:st.n_c][np.arange(st.c_terms.shape[1]) < c_len[:, None]] = st.ids(list(arrays["c_terms"]), False)
        while st.r_ts.shape[1] < r_len.max(initial=0):
            st.widen_window()
        mask = np.arange(st.r_ts.shape[1]) < r_len[:, None]
        st.r_ts[:st.n_t][mask] = arrays["t_recent_ts"]
        st.r_card[:st.n_t][mask] = st.ids(list(arrays["t_recent_card"]), True)
        st.r_aged[:st.n_t][mask] = arrays["t_recent_aged"]
        if len(st.c_ids) != st.n_c or len(st.t_ids) != st.n_t:
            raise StateError("CollusionState: lists name cards or merchants that are not in the state")
        return st


def _kernel_py(start, cc, tt, ts, c_first, c_terms, c_len, c_mark, t_first, t_old_new, t_mark, r_head, r_len,
               r_ts, r_card, r_aged, stamp, win, aged_ns, lim, window_days, age_cap, out):
    """Rows ``start..`` of (card ``cc``, merchant ``tt``, time ``ts``) through the state; features into ``out``.
    Returns the row it stopped at: ``len(cc)``, or a row whose merchant's window list is full (grow, call again
    from there: the row's changes so far are idempotent)."""
    width = r_ts.shape[1]
    for i in range(start, len(cc)):
        c, t, now = cc[i], tt[i], ts[i]
        if c_first[c] == _UNSET:
            c_first[c] = now
        if t_first[t] == _UNSET:
            t_first[t] = now
        h, n_r = r_head[t], r_len[t]
        while n_r > 0 and r_ts[t, h] <= now - win:  # leaves the window: counts towards the history
            h += 1
            n_r -= 1
            t_old_new[t] += 1
        if n_r == 0:
            h = 0
        r_head[t], r_len[t] = h, n_r
        n_m, p = c_len[c], -1
        for j in range(n_m):
            if c_terms[c, j] == t:
                p = j
                break
        new = p < 0
        aged = now - c_first[c] >= aged_ns
        if new:
            if n_r == width:
                return i
            if h + n_r == width:  # slide the list to the front of its row
                for k in range(n_r):
                    r_ts[t, k], r_card[t, k], r_aged[t, k] = r_ts[t, h + k], r_card[t, h + k], r_aged[t, h + k]
                h = 0
                r_head[t] = 0
            r_ts[t, h + n_r], r_card[t, h + n_r], r_aged[t, h + n_r] = now, c, 1 if aged else 0
            n_r += 1
            r_len[t] = n_r
            if n_m < lim:
                c_terms[c, n_m] = t
                c_len[c] = n_m + 1
                n_m += 1
            else:
                p = 0
        if p >= 0:  # move to the most recent end (a new merchant on a full list: the oldest leaves)
            for j in range(p, n_m - 1):
                c_terms[c, j] = c_terms[c, j + 1]
            c_terms[c, n_m - 1] = t
        s = stamp[0] + 1
        stamp[0] = s
        for j in range(n_m):  # c's other recent merchants
            if c_terms[c, j] != t:
                t_mark[c_terms[c, j]] = s
        n_aged, unrelated = 0, 0
        for k in range(h, h + n_r):  # distinct established newcomers of t's window (c included)
            o = r_card[t, k]
            if r_aged[t, k] and c_mark[o] != s:
                c_mark[o] = s
                n_aged += 1
                if o != c:
                    shared = False
                    for j in range(c_len[o]):
                        if t_mark[c_terms[o, j]] == s:
                            shared = True
                            break
                    if not shared:
                        unrelated += 1
        hist_days = max(float(now - t_first[t] - win) / DAY_NS, window_days)
        expected = float(t_old_new[t]) * window_days / hist_days
        out[i, 0] = 1.0 if new else 0.0
        out[i, 1] = min(float(now - c_first[c]) / DAY_NS, age_cap)
        out[i, 2] = n_aged
        out[i, 3] = unrelated
        out[i, 4] = n_r / (1.0 + expected)
        out[i, 5] = float(unrelated) if new and aged else 0.0
    return len(cc)


_KERNEL: list = []  # the compiled kernel (fraud._jit.compiled); [None]: the pure-Python one


class CollusionFeatures(Featurizer):
    """Collusion features (no labels); ``aged_days``: a card at least this old is established."""

    #: columns that grow with the span of the data seen (drift reports them apart: fraud.drift.report)
    clock_columns = ("CL_C_AGE_DAYS",)

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
        return pd.DataFrame(self._absorb(state, rows), columns=list(NAMES), index=rows.index, copy=False)

    def update_many(self, pairs) -> pd.DataFrame:
        """``update`` for several independent states, one frame for all of them."""
        return self.output_frame(self.update_many_matrix(pairs))

    def update_many_matrix(self, pairs) -> np.ndarray:
        """:meth:`update_many`'s values as a float64 matrix (columns ``NAMES``): what the scoring bundle reads."""
        self._check_fitted()
        out = [self._absorb(st, rows) for st, rows in pairs]
        return (np.concatenate(out) if len(out) > 1 else out[0]) if out else np.zeros((0, len(NAMES)))

    def _absorb(self, st: CollusionState, rows: pd.DataFrame) -> np.ndarray:
        """The features of ``rows`` as a matrix; ``rows`` absorbed into ``st``."""
        for col in ("timestamp", "customer_id", "terminal_id"):
            if col not in rows.columns:
                raise ConfigError(f"CollusionFeatures: rows lack column {col!r}")
        out = np.zeros((len(rows), len(NAMES)), dtype=np.float64)
        if not len(rows):
            return out
        ts = np.ascontiguousarray(column(rows, "timestamp").to_numpy(dtype="datetime64[ns]").astype(np.int64))
        cc, tt = st.ids(id_list(rows, "customer_id"), True), st.ids(id_list(rows, "terminal_id"), False)
        st.widen(int(self.max_terminals))
        kernel = compiled(_KERNEL, _kernel_py) or _kernel_py
        win, aged_ns = int(self.window_days * DAY_NS), int(self.aged_days * DAY_NS)
        i = 0
        while True:
            i = kernel(i, cc, tt, ts, st.c_first, st.c_terms, st.c_len, st.c_mark, st.t_first, st.t_old_new,
                       st.t_mark, st.r_head, st.r_len, st.r_ts, st.r_card, st.r_aged, st.stamp, np.int64(win),
                       np.int64(aged_ns), np.int64(self.max_terminals), np.float64(self.window_days),
                       np.float64(self.age_cap_days), out)
            if i == len(rows):
                return out
            st.widen_window()
