"""Behaviour features: amounts relative to the customer's own history, and known-fraud recency.

Grounded in the Fraud Detection Handbook generator's scenarios (scenarios 1-3 of ``fraud.simulate``
follow it: docs/simulator.md): a compromised card's inflated amounts, a compromised terminal's run of
frauds, and a card with a known fraud being likely still compromised. Customer windows end at the row;
label windows end at ``t - delay``, so only labels at least the delay old are read (the information
rule). Labels: 1 = fraud, 0 or missing = not (yet) reported; labels come with the rows (``label``
column) or later through ``add_labels``. The "activity" group reads no label: a card's and a terminal's
events of the last day against its own past rate, and the card's run of unusually small amounts (adaptive
fraud that stays under the card's usual amounts, tests it slowly or rotates terminals). Nothing is learned
(``fit`` validates parameters); ``transform`` is vectorized and ``update`` runs the same kernel on the batch
plus the kept history, bounded to the longest window. Column definitions, figures and history: docs/detection.md.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from fraud import safestate
from fraud.errors import ConfigError
from fraud.features.base import Featurizer, column, label_rows, text_ids, tx_keys
from fraud.features.tabular import DAY_NS, _codes, _days_ns, _known_codes
from fraud.features.tabular import _group_cumsum as _run_cumsum
from fraud.features.eventlog import EventLog
from fraud.features.tabular import _labels, _query_order, _require, _Sorted, _stacked, _wname, timestamps_ns


def _group_cumsum(values: np.ndarray, scode: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(running sum restarting at each entity run, running sum just before each event); the sums are pandas'
    groupby cumsum, bit for bit (the tabular module's compiled kernel)."""
    csum = _run_cumsum(scode, values)
    before = np.empty_like(csum)
    if len(csum):
        before[0] = 0.0
        before[1:] = np.where(scode[1:] == scode[:-1], csum[:-1], 0.0)
    return csum, before


def _range_sum(csum, before, lo, hi):
    """Sum over sorted positions [lo, hi) of one entity run (0 when empty)."""
    last = np.maximum(hi - 1, 0)
    return np.where(hi > lo, csum[last] - before[np.minimum(lo, len(csum) - 1)], 0.0)


#: columns of the customer block (BH_C_*), in order, before its label-free activity columns
N_CUSTOMER = 9
#: label-free activity columns at the end of the customer block (BH_C_TX_EXCESS, BH_C_NB_SMALL)
N_CUSTOMER_ACTIVITY = 2
#: positions in the customer block of the lagged amount ratio and the max prior ratio
C_RATIO_LAG, C_MAX_PRIOR = 3, 6


def _range_max(values: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Max of ``values[lo:hi]`` per query (0 when the range is empty); one ``maximum.reduceat`` pass."""
    out = np.zeros(len(lo), dtype=np.float64)
    if len(lo) == 0 or len(values) == 0:
        return out
    idx = np.empty(2 * len(lo), dtype=np.intp)
    idx[0::2] = np.minimum(lo, len(values) - 1)
    idx[1::2] = np.minimum(hi, len(values) - 1)
    red = np.maximum.reduceat(values, idx)[0::2]
    # a range reaching the end of the array: reduceat stops one short when hi == len(values)
    tail = hi >= len(values)
    if tail.any():
        red = red.copy()
        red[tail] = np.maximum(red[tail], values[-1])
    return np.where(hi > lo, red, 0.0)


def _excess(s: "_Sorted", p, rc, rt, burst: int, window: int) -> np.ndarray:
    """Events of the entity in (t - burst, t] (the row included) beyond its own usual rate, in Poisson
    standard deviations: (n - e) / sqrt(e + 1), ``e`` = its events in (t - window, t - burst] per ``burst``
    over the span they cover (from the first of them, at least ``burst``): label-free, own history only."""
    lo_b = s.first_after(rc, rt - burst)
    lo = s.first_after(rc, rt - window)
    n = (p - lo_b + 1).astype(np.float64)
    span = np.maximum(rt - burst - s.ts_at(np.minimum(lo, s.n - 1)), burst)
    e = np.where(lo_b > lo, (lo_b - lo) * (burst / span), 0.0)
    return (n - e) / np.sqrt(e + 1.0)


def _fresh(sc: np.ndarray, p: np.ndarray, lo_b: np.ndarray) -> np.ndarray:
    """Per query (sorted position ``p``, entity = terminal): no event of its card (``sc``: cards in sorted order)
    at the terminal in sorted positions [lo_b, p), i.e. in the last ``burst``: a card counts once per ``burst``."""
    out = np.ones(len(p), dtype=bool)
    k, live = 1, np.flatnonzero(p - lo_b >= 1)
    while len(live):
        hit = sc[p[live] - k] == sc[p[live]]
        out[live[hit]] = False
        k += 1
        live = live[~hit & (p[live] - k >= lo_b[live])]
    return out


def _surprise(s: "_Sorted", flag: np.ndarray, p, rc, rt, lo_b, burst: int, window: int) -> np.ndarray:
    """-log10 P(N >= n), N ~ Poisson(mu): ``n`` the flagged events of the entity in (t - burst, t] (the row
    included; ``lo_b`` its first sorted position there), ``mu`` = (its flagged events in (t - window, t - burst]
    + 1) per ``burst`` over the span they cover (from the first event in the window, at least ``burst``) plus one
    ``burst``: a tail probability for small counts, where a z-score is too coarse; label-free, own history only."""
    from scipy.special import pdtrc  # P(N > k), N ~ Poisson(mu)

    cum = np.concatenate(([0], np.cumsum(flag.astype(np.int64))))
    lo = s.first_after(rc, rt - window)
    n = cum[p + 1] - cum[lo_b]
    span = np.maximum(rt - burst - s.ts_at(np.minimum(lo, s.n - 1)), burst)
    mu = (cum[lo_b] - cum[lo] + 1.0) * burst / (span + burst)
    with np.errstate(divide="ignore"):
        tail = np.log(pdtrc(np.maximum(n - 1, 0), mu))
    return np.where(n > 0, np.minimum(-tail / np.log(10), 50.0), 0.0)


def _customer_block(code, ts, amount, fraud, p_ns: dict, rows, normal=None, rlag=None) -> np.ndarray:
    """Customer features (N_CUSTOMER + N_CUSTOMER_ACTIVITY columns) for input rows ``rows`` (all other rows
    are history).

    ``normal``: per input row, whether its amount looked normal for its customer (lagged amount ratio
    <= ``normal_ratio``); ``rlag``: per input row, its lagged amount ratio; only the history rows' values
    are read (the query rows' are computed here); None when every row is a query row."""
    L, lag, rec, d, hc, cw = p_ns["L"], p_ns["lag"], p_ns["recent"], p_ns["d"], p_ns["hc"], p_ns["cw"]
    out = np.empty((len(rows), N_CUSTOMER + N_CUSTOMER_ACTIVITY), dtype=np.float64)
    if len(rows) == 0:
        return out
    s = _Sorted(code, ts, [L, lag, rec, d, d + hc, cw, p_ns["burst"]], qmin=ts[rows].min())
    scode = code[s.order]
    samt = amount[s.order]
    c1, b1 = _group_cumsum(samt, scode)
    c2, b2 = _group_cumsum(samt * samt, scode)
    fcum = np.concatenate(([0], np.cumsum(fraud[s.order].astype(np.int64))))
    idx = np.arange(s.n, dtype=np.int64)
    lastf = np.maximum.accumulate(np.where(fraud[s.order], idx, -1))
    # queries in sorted order (cache-friendly searches); results go back to row order through perm
    p, perm = _query_order(s, rows, all_rows=len(rows) == s.n)
    rc, rt = s.code_at(p), s.ts_at(p)
    a = samt[p]

    lo = s.first_after(rc, rt - L)
    cnt = (p - lo + 1).astype(np.float64)
    tot = c1[p] - b1[lo]
    mean = tot / cnt
    var = np.maximum((c2[p] - b2[lo]) / cnt - mean * mean, 0.0)
    std = np.maximum(np.sqrt(var), 0.1 * np.abs(mean))
    ratio = np.where(mean > 0, a / np.where(mean > 0, mean, 1.0), 1.0)
    z = np.where((cnt > 1) & (std > 0), (a - mean) / np.where(std > 0, std, 1.0), 0.0)

    hi_lag = s.first_after(rc, rt - lag)
    cnt_lag = (hi_lag - lo).astype(np.float64)
    mean_lag = _range_sum(c1, b1, lo, hi_lag) / np.maximum(cnt_lag, 1.0)
    ratio_lag = np.where((cnt_lag > 0) & (mean_lag > 0), a / np.where(mean_lag > 0, mean_lag, 1.0), ratio)

    lo_r = s.first_after(rc, rt - rec)
    mean_r = (c1[p] - b1[lo_r]) / (p - lo_r + 1)
    recent = np.where(mean > 0, mean_r / np.where(mean > 0, mean, 1.0), 1.0)
    # the customer's unusual amounts (lagged ratio above normal_ratio) in (t - recent, t], the row included
    unusual = np.zeros(s.n, dtype=bool) if normal is None else ~np.asarray(normal, dtype=bool)[s.order]
    unusual[p] = ratio_lag > p_ns["normal_ratio"]
    ucum = np.concatenate(([0], np.cumsum(unusual.astype(np.int64))))
    n_unusual = (ucum[p + 1] - ucum[lo_r]).astype(np.float64)
    # the largest lagged ratio among the customer's earlier transactions in (t - cw, t), the row excluded
    sr = np.ones(s.n, dtype=np.float64) if rlag is None else np.asarray(rlag, dtype=np.float64)[s.order]
    sr[p] = ratio_lag
    max_prior = _range_max(sr, s.first_after(rc, rt - cw), p)
    # the customer's unusually small amounts (lagged ratio below small_ratio) in (t - recent, t], the row included
    small = sr < p_ns["small_ratio"]
    scum = np.concatenate(([0], np.cumsum(small.astype(np.int64))))
    n_small = (scum[p + 1] - scum[lo_r]).astype(np.float64)

    hi = s.first_after(rc, rt - d)
    lo_f = s.first_after(rc, rt - d - hc)
    nf = (fcum[hi] - fcum[lo_f]).astype(np.float64)
    j = lastf[np.maximum(hi - 1, 0)]
    has = (hi > lo_f) & (j >= lo_f)
    since = np.where(has, (rt - s.ts_at(np.maximum(j, 0))) / DAY_NS, (d + hc) / DAY_NS)

    out[perm] = np.column_stack([cnt, ratio, z, ratio_lag, recent, n_unusual, max_prior, nf, since,
                                 _excess(s, p, rc, rt, p_ns["burst"], L), n_small])
    return out


#: terminal columns after the known-fraud counts (one per terminal window)
N_TERMINAL_EXTRA = 8


def _terminal_block(code, ts, fraud, normal, p_ns: dict, rows, plain=None, cards=None,
                    fresh=None) -> tuple[np.ndarray, np.ndarray]:
    """(Terminal features: len(windows) + N_TERMINAL_EXTRA columns, then the label-free BH_T_TX_EXCESS and
    BH_T_CARDS_SURPRISE; per input row ``rows``, its fresh flag) for input rows ``rows``.

    ``normal``: per event, True when its amount looked normal for its customer (the lagged amount ratio
    at most ``normal_ratio``: computed from the customer's earlier transactions, no label); ``plain``: per
    event, normal and its card's max prior ratio at most ``card_ratio`` (None: all False); ``cards``: per
    event, its customer code (None: BH_T_CARDS_SURPRISE is not computed); ``fresh``: per event, whether it was
    its card's first at the terminal in the last ``burst`` (only the history rows' values are read; None when
    every row is a query row)."""
    d, ht, wins = p_ns["d"], p_ns["ht"], p_ns["tw"]
    out = np.empty((len(rows), len(wins) + N_TERMINAL_EXTRA + 2), dtype=np.float64)
    if len(rows) == 0:
        return out, np.zeros(0, dtype=bool)
    s = _Sorted(code, ts, [d, d + ht, p_ns["burst"], p_ns["L"]] + [d + w for w in wins], qmin=ts[rows].min())
    sf = fraud[s.order]
    fcum = np.concatenate(([0], np.cumsum(sf.astype(np.int64))))
    ncum = np.concatenate(([0], np.cumsum((sf & normal[s.order]).astype(np.int64))))
    pl = np.zeros(s.n, dtype=bool) if plain is None else np.asarray(plain, dtype=bool)[s.order]
    pcum = np.concatenate(([0], np.cumsum((sf & pl).astype(np.int64))))
    idx = np.arange(s.n, dtype=np.int64)
    lastf = np.maximum.accumulate(np.where(sf, idx, -1))
    lastg = np.maximum.accumulate(np.where(sf, -1, idx))
    nextf = np.minimum.accumulate(np.where(sf, idx, s.n)[::-1])[::-1]
    nextf = np.concatenate((nextf, [s.n]))
    p, perm = _query_order(s, rows, all_rows=len(rows) == s.n)
    rc, rt = s.code_at(p), s.ts_at(p)
    res = np.empty_like(out)
    hi = s.first_after(rc, rt - d)
    for k, w in enumerate(wins):
        lo = s.first_after(rc, rt - d - w)
        res[:, k] = fcum[hi] - fcum[lo]
    lo = s.first_after(rc, rt - d - ht)
    none = (d + ht) / DAY_NS
    j = lastf[np.maximum(hi - 1, 0)]
    has = (hi > lo) & (j >= lo)
    res[:, len(wins)] = np.where(has, (rt - s.ts_at(np.maximum(j, 0))) / DAY_NS, none)
    f = nextf[lo]
    has = f < hi
    res[:, len(wins) + 1] = np.where(has, (rt - s.ts_at(np.minimum(f, s.n - 1))) / DAY_NS, none)
    # share of frauds among the terminal's transactions from its first fraud of the window to t - d
    res[:, len(wins) + 2] = np.where(has, (fcum[hi] - fcum[np.minimum(f, s.n)]) / np.maximum(hi - f, 1), 0.0)
    # the terminal's last transaction in (t - d - Ht, t - d] is a fraud
    res[:, len(wins) + 3] = ((hi > lo) & sf[np.maximum(hi - 1, 0)]).astype(np.float64)
    # known frauds whose amount looked normal for their card (not explained by the amount: the terminal)
    res[:, len(wins) + 4] = ncum[hi] - ncum[lo]
    # the run of frauds that ends with the terminal's last known transaction, and the known genuine
    # transactions after its last known fraud (a compromised terminal: a long run, none after)
    last = np.maximum(hi - 1, 0)
    res[:, len(wins) + 5] = np.where(hi > lo, (hi - 1) - np.maximum(lastg[last], lo - 1), 0)
    res[:, len(wins) + 6] = np.where(hi > lo, (hi - 1) - np.maximum(lastf[last], lo - 1), 0)
    # known frauds that neither their amount nor their card's earlier amounts explain
    res[:, len(wins) + 7] = pcum[hi] - pcum[lo]
    # label-free: the terminal's volume of the last ``burst`` against its own past rate
    res[:, len(wins) + 8] = _excess(s, p, rc, rt, p_ns["burst"], p_ns["L"])
    # label-free: its distinct cards of the last ``burst`` (each card's first visit there in a ``burst``); not
    # computed without ``cards`` (the column is opt-in: its rows read 0 and every fresh flag True, never used)
    fr = np.ones(s.n, dtype=bool) if fresh is None else np.asarray(fresh, dtype=bool)[s.order]
    if cards is None:
        res[:, len(wins) + 9] = 0.0
    else:
        lo_b = s.first_after(rc, rt - p_ns["burst"])
        fr[p] = _fresh(np.asarray(cards)[s.order], p, lo_b)
        res[:, len(wins) + 9] = _surprise(s, fr, p, rc, rt, lo_b, p_ns["burst"], p_ns["L"])
    out[perm] = res
    fresh_rows = np.empty(len(rows), dtype=bool)
    fresh_rows[perm] = fr[p]
    return out, fresh_rows


def _flags(cust: np.ndarray, p_ns: dict) -> tuple[np.ndarray, np.ndarray]:
    """Per event (label-free): its amount looked normal for its card, and it is "plain" (normal, and its card's
    earlier amounts did not look inflated either)."""
    normal = cust[:, C_RATIO_LAG] <= p_ns["normal_ratio"]
    return normal, normal & (cust[:, C_MAX_PRIOR] <= p_ns["card_ratio"])


#: the feature groups BehaviourFeatures(groups=...) can output (columns per group: BehaviourFeatures._group_of)
GROUPS = ("amount", "customer_fraud", "terminal", "activity")


#: label-free activity columns at the end of the terminal block (BH_T_TX_EXCESS, BH_T_CARDS_SURPRISE)
N_TERMINAL_ACTIVITY = 2


def _assemble(amount, cust, term) -> np.ndarray:
    """All columns in name order: BH_AMOUNT, the customer and terminal blocks, then the activity columns."""
    k = N_TERMINAL_ACTIVITY
    return np.hstack([amount[:, None], cust[:, :N_CUSTOMER], term[:, :-k], cust[:, N_CUSTOMER:], term[:, -k:]])


class BehaviourState:
    """Online state of :class:`BehaviourFeatures`: the events of the last ``horizon`` (customer and
    terminal code, time, amount, label, per-event flags), numpy columns in arrival order (picklable)."""

    def __init__(self, horizon_ns: int):
        self.horizon_ns = int(horizon_ns)
        self.customer_codes: dict = {}
        self.terminal_codes: dict = {}
        self.events = EventLog(**self.COLUMNS)
        self.latest_ns: int | None = None

    COLUMNS = {"ccode": np.int64, "tcode": np.int64, "ts": np.int64, "amount": np.float64, "label": np.int8,
               "normal": np.bool_, "rlag": np.float64, "plain": np.bool_, "fresh": np.bool_, "tx": np.int64}

    def to_arrays(self) -> tuple[dict, dict, list]:
        """Checkpoint form (:mod:`fraud.safestate`)."""
        arrays = self.events.to_arrays("events.")
        arrays["customer_codes.keys"], arrays["customer_codes.values"] = safestate.str_dict(self.customer_codes)
        arrays["terminal_codes.keys"], arrays["terminal_codes.values"] = safestate.str_dict(self.terminal_codes)
        return {"horizon_ns": self.horizon_ns, "latest_ns": self.latest_ns, "events_sorted": self.events._ts_sorted}, \
            arrays, []

    @classmethod
    def from_arrays(cls, meta: dict, arrays: dict, children: list) -> "BehaviourState":
        st = cls(meta["horizon_ns"])
        st.latest_ns = None if meta["latest_ns"] is None else int(meta["latest_ns"])
        st.customer_codes = safestate.dict_from(arrays["customer_codes.keys"], arrays["customer_codes.values"],
                                                "customer_codes")
        st.terminal_codes = safestate.dict_from(arrays["terminal_codes.keys"], arrays["terminal_codes.values"],
                                                "terminal_codes")
        st.events = EventLog.from_arrays({k: v for k, v in arrays.items() if k.startswith("events.")}, "events.",
                                     cls.COLUMNS, meta["events_sorted"])
        return st

    @property
    def n_events(self) -> int:
        return len(self.events)

class BehaviourFeatures(Featurizer):
    """Customer-relative amounts and known-fraud recency (see the module docstring).

    Parameters
    ----------
    delay_days : feedback delay d (days), > 0.
    amount_window : L, days of customer history for the amount statistics.
    lag_days : the lagged customer window ends ``lag_days`` before the row (0 < lag < L).
    recent_days : the recent customer window (0 < recent <= L).
    customer_label_window : Hc, days (before t - d) in which the customer's known frauds are looked up.
    terminal_windows : windows (days, before t - d) for the terminal's known-fraud counts.
    terminal_label_window : Ht, days (before t - d) in which the terminal's last / first fraud is looked up.
    normal_ratio : a transaction's amount "looked normal" for its card when its lagged amount ratio
        (BH_C_AMT_RATIO_LAG) is at most this; the terminal's known frauds that looked normal are counted.
    card_window : c, days before the row in which the customer's largest earlier lagged ratio is taken
        (BH_C_MAX_PRIOR_RATIO).
    card_ratio : a known fraud is "plain" (BH_T_KNOWN_PLAIN_FRAUD) when it looked normal and its card's
        BH_C_MAX_PRIOR_RATIO was at most this.
    burst_days : the short window of the activity group: a card's or terminal's events in the last
        ``burst_days`` against its own rate over the rest of ``amount_window`` (0 < burst < amount_window).
    small_ratio : a transaction's amount is "unusually small" for its card when its lagged amount ratio is
        below this (BH_C_NB_SMALL counts them over ``recent_days``).
    cards_surprise : output BH_T_CARDS_SURPRISE (activity group; off by default: on the evasion bench it lifted
        rotated terminals a little and cost a little elsewhere; ``TrainConfig(terminal_alarm=True)`` turns it on).
    groups : the feature groups to output, a subset of ``GROUPS``: "amount" (BH_AMOUNT and the customer
        amount statistics: no labels; the unsupervised set), "customer_fraud" (the customer's known frauds),
        "terminal" (the terminal's known frauds), "activity" (no labels: volume and small amounts against
        the card's or terminal's own past).
    columns : optional subset of the groups' feature names to output (in the module's order); None = all.
    """

    def __init__(self, delay_days: float = 7, amount_window: float = 60, lag_days: float = 14,
                 recent_days: float = 7, customer_label_window: float = 30, terminal_windows=(1, 7, 28),
                 terminal_label_window: float = 28, normal_ratio: float = 2.0, groups=GROUPS, columns=None,
                 card_window: float = 14, card_ratio: float = 2.5, burst_days: float = 1,
                 small_ratio: float = 0.25, cards_surprise: bool = False):
        self.delay_days = delay_days
        self.cards_surprise = cards_surprise
        self.burst_days = burst_days
        self.small_ratio = small_ratio
        self.card_window = card_window
        self.card_ratio = card_ratio
        self.columns = columns
        self.normal_ratio = normal_ratio
        self.groups = groups
        self.amount_window = amount_window
        self.lag_days = lag_days
        self.recent_days = recent_days
        self.customer_label_window = customer_label_window
        self.terminal_windows = terminal_windows
        self.terminal_label_window = terminal_label_window

    def _params(self) -> dict:
        names = ("delay_days", "amount_window", "lag_days", "recent_days", "customer_label_window",
                 "terminal_label_window", "normal_ratio", "card_window", "card_ratio", "burst_days", "small_ratio")
        vals = {}
        for n in names:
            v = getattr(self, n)
            unit = "" if n in ("normal_ratio", "card_ratio", "small_ratio") else " of days"
            try:
                v = float(v)
            except (TypeError, ValueError):
                raise ConfigError(f"BehaviourFeatures: {n}={v!r} must be a number{unit}") from None
            if not np.isfinite(v) or v <= 0:
                raise ConfigError(f"BehaviourFeatures: {n}={v!r} must be a positive number{unit}")
            vals[n] = v
        try:
            tw = [float(w) for w in self.terminal_windows]
        except (TypeError, ValueError):
            raise ConfigError(f"BehaviourFeatures: terminal_windows={self.terminal_windows!r} must be days") from None
        if not tw or any(not np.isfinite(w) or w <= 0 for w in tw):
            raise ConfigError(f"BehaviourFeatures: terminal_windows={self.terminal_windows!r} must be positive days")
        if vals["lag_days"] >= vals["amount_window"]:
            raise ConfigError(f"BehaviourFeatures: lag_days={self.lag_days!r} must be < amount_window="
                              f"{self.amount_window!r}")
        if vals["burst_days"] >= vals["amount_window"]:
            raise ConfigError(f"BehaviourFeatures: burst_days={self.burst_days!r} must be < amount_window="
                              f"{self.amount_window!r}")
        if vals["recent_days"] > vals["amount_window"]:
            raise ConfigError(f"BehaviourFeatures: recent_days={self.recent_days!r} must be <= amount_window="
                              f"{self.amount_window!r}")
        return {"d": _days_ns(vals["delay_days"]), "L": _days_ns(vals["amount_window"]),
                "lag": _days_ns(vals["lag_days"]), "recent": _days_ns(vals["recent_days"]),
                "hc": _days_ns(vals["customer_label_window"]), "ht": _days_ns(vals["terminal_label_window"]),
                "tw": [_days_ns(w) for w in tw], "normal_ratio": vals["normal_ratio"],
                "cw": _days_ns(vals["card_window"]), "card_ratio": vals["card_ratio"],
                "burst": _days_ns(vals["burst_days"]), "small_ratio": vals["small_ratio"]}

    def _group_of(self) -> list[str]:
        """The group of each column of the full feature list."""
        return (["amount"] * 8 + ["customer_fraud"] * 2 + ["terminal"] * (len(self.terminal_windows) + N_TERMINAL_EXTRA)
                + ["activity"] * 4)

    def _selected(self) -> np.ndarray:
        groups = (self.groups,) if isinstance(self.groups, str) else tuple(self.groups)
        bad = [g for g in groups if g not in GROUPS]
        if bad or not groups:
            raise ConfigError(f"BehaviourFeatures: groups={self.groups!r} must be a non-empty subset of {GROUPS}")
        keep = np.array([g in groups for g in self._group_of()])
        if not self.cards_surprise:  # opt-in (docs/benchmarks.md, "Rotated terminals"); its state flag is kept anyway
            keep &= ~np.char.startswith(np.array(self._all_names()), "BH_T_CARDS_SURPRISE_")
        if self.columns is not None:
            cols = [self.columns] if isinstance(self.columns, str) else list(self.columns)
            names = self._all_names()
            unknown = [c for c in cols if c not in [n for n, k in zip(names, keep) if k]]
            if unknown or not cols:
                raise ConfigError(f"BehaviourFeatures: columns={self.columns!r}: {unknown or 'none'} not among the "
                                  f"features of groups {groups}: {[n for n, k in zip(names, keep) if k]}")
            keep &= np.isin(names, cols)
        return keep

    def _names(self) -> list[str]:
        return [n for n, keep in zip(self._all_names(), self._selected()) if keep]

    def _all_names(self) -> list[str]:
        L, lag, r = _wname(self.amount_window), _wname(self.lag_days), _wname(self.recent_days)
        b = _wname(self.burst_days)
        names = ["BH_AMOUNT", f"BH_C_NB_TX_{L}D", f"BH_C_AMT_RATIO_{L}D", f"BH_C_AMT_Z_{L}D",
                 f"BH_C_AMT_RATIO_LAG{lag}D", f"BH_C_RECENT_RATIO_{r}D",
                 f"BH_C_NB_UNUSUAL_{r}D", f"BH_C_MAX_PRIOR_RATIO_{_wname(self.card_window)}D",
                 f"BH_C_KNOWN_FRAUD_{_wname(self.customer_label_window)}D",
                 "BH_C_DAYS_SINCE_FRAUD"]
        names += [f"BH_T_KNOWN_FRAUD_{_wname(w)}D" for w in self.terminal_windows]
        return names + ["BH_T_DAYS_SINCE_FRAUD", "BH_T_DAYS_SINCE_FIRST_FRAUD", "BH_T_FRAUD_SHARE_SINCE_FIRST",
                        "BH_T_LAST_IS_FRAUD", f"BH_T_KNOWN_NORMAL_FRAUD_{_wname(self.terminal_label_window)}D",
                        "BH_T_FRAUD_STREAK", "BH_T_GENUINE_AFTER_FRAUD",
                        f"BH_T_KNOWN_PLAIN_FRAUD_{_wname(self.terminal_label_window)}D",
                        f"BH_C_TX_EXCESS_{b}D", f"BH_C_NB_SMALL_{r}D", f"BH_T_TX_EXCESS_{b}D",
                        f"BH_T_CARDS_SURPRISE_{b}D"]

    def _out_index(self) -> np.ndarray:
        """Positions of ``feature_names_`` (the selected columns) among all computed columns."""
        return np.flatnonzero(self._selected())

    def fit(self, df: pd.DataFrame | None = None, y=None) -> "BehaviourFeatures":
        """Nothing is learned; validates the parameters and sets ``feature_names_``."""
        self._params()
        self._selected()
        self.feature_names_ = self._names()
        return self

    def transform(self, df: pd.DataFrame) -> pd.DataFrame:
        self._check_fitted()
        _require(df, ("timestamp", "customer_id", "terminal_id", "amount"), "BehaviourFeatures.transform")
        p = self._params()
        ts = timestamps_ns(df["timestamp"])
        amount = df["amount"].to_numpy(dtype=np.float64)
        fraud = _labels(df) == 1
        cc = pd.factorize(df["customer_id"], sort=False)[0].astype(np.int64)
        tc = pd.factorize(df["terminal_id"], sort=False)[0].astype(np.int64)
        rows = np.arange(len(df))
        if len(df) == 0:
            return pd.DataFrame(np.empty((0, len(self.feature_names_))), index=df.index,
                                columns=list(self.feature_names_))
        cust = _customer_block(cc, ts, amount, fraud, p, rows)
        normal, plain = _flags(cust, p)
        cards = cc if self.cards_surprise else None
        term, _ = _terminal_block(tc, ts, fraud, normal, p, rows, plain=plain, cards=cards)
        X = _assemble(amount, cust, term)
        X = X[:, self._out_index()]
        return self.output_frame(X, df.index)

    # -- online -------------------------------------------------------------------------------
    def new_state(self) -> BehaviourState:
        p = self._params()
        return BehaviourState(max(p["L"], p["cw"], p["d"] + p["hc"], p["d"] + p["ht"], p["d"] + max(p["tw"])))

    def update(self, state: BehaviourState, rows: pd.DataFrame) -> pd.DataFrame:
        """Features of ``rows`` (each sees the state plus earlier rows of the batch), then absorb them."""
        out = self.update_many([(state, rows)])
        out.index = rows.index
        return out

    def update_many(self, pairs) -> pd.DataFrame:
        """``update`` for several independent states in one pass (tabular's ``_stacked``: each state's entities
        get their own codes), one customer block and one terminal block for all of them."""
        return self.output_frame(self.update_many_matrix(pairs))

    def update_many_matrix(self, pairs) -> np.ndarray:
        """``update_many``'s values as a float64 matrix (the scoring bundle's path: no frame to build)."""
        self._check_fitted()
        p = self._params()
        batches = []
        for state, rows in pairs:
            _require(rows, ("timestamp", "customer_id", "terminal_id", "amount"), "BehaviourFeatures.update")
            n = len(rows)
            if n == 0:
                continue
            batches.append((state, rows, timestamps_ns(column(rows, "timestamp")),
                            column(rows, "amount").to_numpy(dtype=np.float64), _labels(rows),
                            _codes(state.customer_codes, _text_ids(rows, "customer_id")),
                            _codes(state.terminal_codes, _text_ids(rows, "terminal_id"))))
        if not batches:
            return np.empty((0, len(self.feature_names_)))
        ones = [np.ones(len(b[2]), dtype=bool) for b in batches]
        code, t, v, q = _stacked([(st.events, cc, ts,
                                   {"amount": amount, "label": labels, "normal": one, "rlag": one.astype(np.float64)})
                                  for (st, _, ts, amount, labels, cc, _), one in zip(batches, ones)], "ccode")
        cust = _customer_block(code, t, v["amount"], v["label"] == 1, p, q, normal=v["normal"], rlag=v["rlag"])
        normal, plain = _flags(cust, p)
        cuts = np.cumsum([len(b[2]) for b in batches])[:-1]
        normals, plains = np.split(normal, cuts), np.split(plain, cuts)
        rlags = np.split(cust[:, C_RATIO_LAG], cuts)
        items = []
        for (st, _, ts, _, labels, cc, tc), nb, pb, one in zip(batches, normals, plains, ones):
            cols = {"label": labels, "normal": nb, "plain": pb}
            if self.cards_surprise:  # BH_T_CARDS_SURPRISE's inputs, gathered only when it is output
                cols.update(ccode=cc, fresh=one)
            items.append((st.events, tc, ts, cols))
        code, t, v, q = _stacked(items, "tcode")
        term, fresh = _terminal_block(code, t, v["label"] == 1, v["normal"], p, q, plain=v["plain"],
                                      cards=v.get("ccode"), fresh=v.get("fresh"))
        freshes = np.split(fresh, cuts)
        for (state, rows, ts, amount, labels, cc, tc), nb, pb, rb, fb in zip(batches, normals, plains, rlags, freshes):
            latest = int(ts.max())
            state.latest_ns = latest if state.latest_ns is None else max(state.latest_ns, latest)
            log = state.events
            log.append(ccode=cc, tcode=tc, ts=ts, amount=amount, label=labels, normal=nb, rlag=rb, plain=pb, fresh=fb,
                       tx=tx_keys(rows))
            log.evict(state.latest_ns - state.horizon_ns)
        amount = np.concatenate([b[3] for b in batches])
        return _assemble(amount, cust, term)[:, self._out_index()]

    def add_labels(self, state: BehaviourState, rows: pd.DataFrame) -> int:
        """Label feedback (``Featurizer.add_labels``): each row's label is set on the kept event of its customer,
        terminal, time and transaction (its ``tx_id``'s key). Returns the number of rows matched, again on a
        repeat; a row of an entity never seen or older than the horizon matches nothing."""
        self._check_fitted()
        rows, lab = label_rows(rows, "BehaviourFeatures.add_labels")
        cc = _known_codes(state.customer_codes, _text_ids(rows, "customer_id"))
        tc = _known_codes(state.terminal_codes, _text_ids(rows, "terminal_id"))
        pos = state.events.find(timestamps_ns(rows["timestamp"]), ccode=cc, tcode=tc, tx=tx_keys(rows))
        hit = pos >= 0
        state.events.set("label", pos[hit], lab[hit])
        return int(hit.sum())


def _text_ids(rows: pd.DataFrame, name: str) -> list:
    """``rows[name].astype(str).tolist()``: the shared id list when it holds only str (then the same values)."""
    ids = text_ids(rows, name)
    return ids if ids is not None else column(rows, name).astype(str).tolist()
