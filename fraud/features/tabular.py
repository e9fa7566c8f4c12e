"""The handbook's 15 baseline features, vectorized, with an online (micro-batch) path.

Features (names as in the Fraud Detection Handbook, chapter 3, in this order)::

    TX_AMOUNT, TX_DURING_WEEKEND, TX_DURING_NIGHT,
    CUSTOMER_ID_NB_TX_{w}DAY_WINDOW, CUSTOMER_ID_AVG_AMOUNT_{w}DAY_WINDOW   for w in windows
    TERMINAL_ID_NB_TX_{w}DAY_WINDOW, TERMINAL_ID_RISK_{w}DAY_WINDOW         for w in windows

Definitions are identical to the book's pandas ``rolling('{w}d')`` code: customer windows ``(t - w, t]``
up to and including the row in time order; terminal windows shifted back by the feedback delay ``d``,
``(t - d - w, t - d]``, so only labels at least ``d`` days old are read (the information rule). A row
without a label counts as a transaction but not as a fraud (until ``add_labels`` gives it one).

Speed: ``transform`` sorts once per entity type and answers every window with one exact ``searchsorted``
on an integer (entity, timestamp-rank) key; ``update`` runs the same kernel on the batch plus the kept
history of the entities it touches (bounded to the longest window). Details: docs/detection.md.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from fraud import safestate
from fraud._jit import compiled
from fraud.errors import ConfigError, SchemaError
from fraud.features.base import Featurizer, column, id_list, label_rows, tx_keys
from fraud.features.eventlog import EventLog

DAY_NS = 86_400 * 10**9
HOUR_NS = 3_600 * 10**9


def feature_names(windows=(1, 7, 30)) -> list[str]:
    names = ["TX_AMOUNT", "TX_DURING_WEEKEND", "TX_DURING_NIGHT"]
    for w in windows:
        names += [f"CUSTOMER_ID_NB_TX_{_wname(w)}DAY_WINDOW", f"CUSTOMER_ID_AVG_AMOUNT_{_wname(w)}DAY_WINDOW"]
    for w in windows:
        names += [f"TERMINAL_ID_NB_TX_{_wname(w)}DAY_WINDOW", f"TERMINAL_ID_RISK_{_wname(w)}DAY_WINDOW"]
    return names


def _wname(w) -> str:
    return str(int(w)) if float(w).is_integer() else str(w)


def _days_ns(days) -> int:
    return int(round(float(days) * DAY_NS))


def timestamps_ns(s: pd.Series) -> np.ndarray:
    """Timestamps as int64 nanoseconds since the epoch, UTC (naive values are taken as UTC)."""
    dt = getattr(s, "dtype", None)
    if isinstance(dt, pd.DatetimeTZDtype):  # the canonical column: no DatetimeIndex round trip (~90 us a call)
        arr = s.array
        return np.asarray((arr if dt.unit == "ns" else arr.as_unit("ns")).asi8, dtype=np.int64)
    idx = pd.DatetimeIndex(s)
    idx = idx.tz_localize("UTC") if idx.tz is None else idx.tz_convert("UTC")
    return np.asarray(idx.as_unit("ns").asi8, dtype=np.int64)


def _calendar(ts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(weekend flag, night flag) as float64 from int64 ns UTC timestamps."""
    days = np.floor_divide(ts, DAY_NS)
    weekday = (days + 3) % 7  # 1970-01-01 was a Thursday (weekday 3)
    hour = np.floor_divide(ts - days * DAY_NS, HOUR_NS)
    return (weekday >= 5).astype(np.float64), (hour <= 6).astype(np.float64)


#: composite int64 keys (entity * span + time) are used while entity count * span stays below this
_SPAN_LIMIT = 2**63 - 1
_UNITS = (86_400 * 10**9, 10**9, 10**6, 10**3, 1)


class _Sorted:
    """Events sorted by (entity code, timestamp, input order) with an exact window search.

    Two exact integer encodings of the (entity, time) order: ``entity * span + (ts - base)/unit``
    when it fits in int64 (``unit`` = the coarsest of day/s/ms/us/ns dividing every timestamp and
    offset), otherwise ``entity * M + rank(ts)`` with ranks among the distinct timestamps.
    ``offsets`` are the values queries subtract from timestamps; ``qmin`` the smallest timestamp
    a query is made for (default: the smallest timestamp).
    """

    def __init__(self, code: np.ndarray, ts: np.ndarray, offsets, qmin: int | None = None):
        self.n = len(code)
        self._code, self._ts = code, ts
        tmin, tmax = int(ts.min()), int(ts.max())
        qmin = tmin if qmin is None else int(qmin)
        self.unit = next(u for u in _UNITS if all(int(o) % u == 0 for o in offsets)
                         and (u == 1 or not np.any(ts % u)))
        u = self.unit
        self.base = (min(tmin, qmin - max(offsets)) // u) - 1
        self.span = tmax // u - self.base + 1
        n_codes = int(code.max()) + 1
        self.by_span = n_codes * self.span < _SPAN_LIMIT
        small = code.astype(np.uint16) if n_codes <= 2**16 else code  # uint16: radix sort
        by_code = None
        if self.n > 1 and np.all(ts[1:] >= ts[:-1]):  # time-ordered input: a stable sort by entity suffices
            by_code = np.argsort(small, kind="stable")
        elif self.n > 1:
            # each entity's events already in time order (several states' logs and batches stacked, each in time
            # order, entity codes disjoint): the stable sort by entity is the (entity, time, input) order too
            o = np.argsort(small, kind="stable")
            c, t = code[o], ts[o]
            if np.all((t[1:] >= t[:-1]) | (c[1:] != c[:-1])):
                by_code = o
        if by_code is not None:
            self.order = by_code
        elif self.by_span:
            self.order = np.argsort(code * np.int64(self.span) + (ts // u - np.int64(self.base)), kind="stable")
        else:
            self.order = np.lexsort((ts, code))  # stable: ties keep input order
        if self.by_span:
            self.key = code[self.order] * np.int64(self.span) + (ts[self.order] // u - np.int64(self.base))
        else:
            sts = ts[self.order]
            self.uts = np.unique(sts)
            self.m = np.int64(len(self.uts) + 1)
            self.key = code[self.order] * self.m + (np.searchsorted(self.uts, sts) + 1)

    def code_at(self, p: np.ndarray) -> np.ndarray:
        return self._code[self.order[p]]

    def ts_at(self, p: np.ndarray) -> np.ndarray:
        return self._ts[self.order[p]]

    def positions(self, rows: np.ndarray) -> np.ndarray:
        """Sorted positions of the given input rows."""
        inv = np.empty(self.n, dtype=np.int64)
        inv[self.order] = np.arange(self.n, dtype=np.int64)
        return inv[rows]

    def first_after(self, code: np.ndarray, q: np.ndarray) -> np.ndarray:
        """Per query: sorted index of the first event of entity ``code`` with ts > ``q``
        (the end of the entity's run when none)."""
        if self.by_span:
            qk = code * np.int64(self.span) + (q // self.unit - np.int64(self.base))
        else:
            qk = code * self.m + np.searchsorted(self.uts, q, side="right")
        return np.searchsorted(self.key, qk, side="right")


def _query_order(s: "_Sorted", rows: np.ndarray, all_rows: bool) -> tuple[np.ndarray, np.ndarray]:
    """Sorted positions of the query rows in ascending order, and where each goes in the output:
    nondecreasing needles make every searchsorted cache-friendly."""
    if all_rows:
        return np.arange(s.n, dtype=np.int64), s.order
    p = s.positions(rows)
    perm = np.argsort(p, kind="stable")
    return p[perm], perm


def _kahan_group_cumsum(code, values, out):  # pragma: no cover - compiled
    """Running sums restarting at each change of ``code`` (runs of equal codes), Kahan-compensated exactly as
    pandas' ``groupby(...).cumsum()`` computes them (so the figures are bit-identical to it)."""
    acc = 0.0
    comp = 0.0
    for i in range(values.shape[0]):
        if i == 0 or code[i] != code[i - 1]:
            acc = 0.0
            comp = 0.0
        y = values[i] - comp
        t = acc + y
        comp = (t - acc) - y
        acc = t
        out[i] = t


_CUMSUM = []


def _group_cumsum(code: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Per-run cumulative sums of ``values`` (``code`` sorted, so each entity is one run): a numba kernel
    (~0.3 ms less per micro-batch than pandas' groupby machinery), pandas' groupby cumsum without numba."""
    f = compiled(_CUMSUM, _kahan_group_cumsum)
    if f is None or len(values) == 0:
        return pd.Series(values).groupby(code, sort=False).cumsum().to_numpy()
    out = np.empty(len(values), dtype=np.float64)
    f(np.ascontiguousarray(code), np.ascontiguousarray(values, dtype=np.float64), out)
    return out


def _block_rows(n: int, rows, width: int) -> tuple[np.ndarray, bool, np.ndarray]:
    """A block's query rows (default: all ``n``, in input order), whether that is every row, and its output."""
    all_rows = rows is None
    rows = np.arange(n) if all_rows else rows
    return rows, all_rows, np.empty((len(rows), width), dtype=np.float64)


def _customer_block(code, ts, amount, windows_ns, rows=None) -> np.ndarray:
    """Customer counts and mean amounts, shape (len(rows), 2 * len(windows)), for the input rows
    ``rows`` (default: all, in input order); the other rows act as history."""
    rows, all_rows, out = _block_rows(len(code), rows, 2 * len(windows_ns))
    if len(rows) == 0:
        return out
    s = _Sorted(code, ts, windows_ns, qmin=ts[rows].min())
    # running sums restart at each customer, so a customer's figures never depend on the
    # rounding of other customers' amounts (the leakage test compares exactly)
    scode = code[s.order]
    csum = _group_cumsum(scode, amount[s.order])
    before = np.empty_like(csum)  # running sum just before each event, 0 at a customer's first
    before[0] = 0.0
    before[1:] = np.where(scode[1:] == scode[:-1], csum[:-1], 0.0)
    p, perm = _query_order(s, rows, all_rows)
    rc, rt = s.code_at(p), s.ts_at(p)
    res = np.empty_like(out)
    for k, w in enumerate(windows_ns):
        lo = s.first_after(rc, rt - w)
        cnt = (p - lo + 1).astype(np.float64)
        res[:, 2 * k] = cnt
        res[:, 2 * k + 1] = (csum[p] - before[lo]) / cnt
    out[perm] = res
    return out


def _terminal_block(code, ts, fraud, windows_ns, delay_ns, rows=None) -> np.ndarray:
    """Terminal counts and fraud risk over (t - d - w, t - d] for the input rows ``rows``."""
    rows, all_rows, out = _block_rows(len(code), rows, 2 * len(windows_ns))
    if len(rows) == 0:
        return out
    s = _Sorted(code, ts, [delay_ns] + [delay_ns + w for w in windows_ns], qmin=ts[rows].min())
    fcum = np.concatenate(([0], np.cumsum(fraud[s.order].astype(np.int64))))
    p, perm = _query_order(s, rows, all_rows)
    rc, rt = s.code_at(p), s.ts_at(p)
    hi = s.first_after(rc, rt - delay_ns)
    res = np.empty_like(out)
    for k, w in enumerate(windows_ns):
        lo = s.first_after(rc, rt - delay_ns - w)
        cnt = hi - lo
        res[:, 2 * k] = cnt
        res[:, 2 * k + 1] = np.where(cnt > 0, (fcum[hi] - fcum[lo]) / np.maximum(cnt, 1), 0.0)
    out[perm] = res
    return out


def _labels(df: pd.DataFrame) -> np.ndarray:
    """int8 per row: 1 fraud, 0 genuine, -1 unknown (no label column / missing value)."""
    if "label" not in df.columns:
        return np.full(len(df), -1, dtype=np.int8)
    col = column(df, "label")
    if col.dtype.kind in "iu" and isinstance(col.dtype, np.dtype):  # plain integers (the canonical int8)
        return col.to_numpy().astype(np.int8, copy=False)
    lab = pd.to_numeric(col, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    return np.where(np.isnan(lab), -1, lab).astype(np.int8)


def _require(df: pd.DataFrame, cols, where: str) -> None:
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise SchemaError(f"{where}: missing column(s) {missing}; columns present: {list(df.columns)}")


class BaselineState:
    """Online state of :class:`BaselineFeatures`: recent events per customer and per terminal.

    Numpy columns in arrival order (picklable). Memory is bounded by the horizon: customer
    events older than ``latest - max(windows)`` and terminal events older than
    ``latest - (delay + max(windows))`` are dropped after each update. Entity ids are mapped to
    integer codes (one dict entry per customer/terminal ever seen).
    """

    def __init__(self, customer_horizon_ns: int, terminal_horizon_ns: int):
        self.customer_horizon_ns = int(customer_horizon_ns)
        self.terminal_horizon_ns = int(terminal_horizon_ns)
        self.customer_codes: dict = {}
        self.terminal_codes: dict = {}
        self.customers = EventLog(**self.CUSTOMER_COLUMNS)
        self.terminals = EventLog(**self.TERMINAL_COLUMNS)
        self.latest_ns: int | None = None

    CUSTOMER_COLUMNS = {"code": np.int64, "ts": np.int64, "amount": np.float64}
    TERMINAL_COLUMNS = {"code": np.int64, "ts": np.int64, "label": np.int8, "tx": np.int64}

    def to_arrays(self) -> tuple[dict, dict, list]:
        """Checkpoint form (:mod:`fraud.safestate`)."""
        arrays = {**self.customers.to_arrays("customers."), **self.terminals.to_arrays("terminals.")}
        arrays["customer_codes.keys"], arrays["customer_codes.values"] = safestate.str_dict(self.customer_codes)
        arrays["terminal_codes.keys"], arrays["terminal_codes.values"] = safestate.str_dict(self.terminal_codes)
        meta = {"customer_horizon_ns": self.customer_horizon_ns, "terminal_horizon_ns": self.terminal_horizon_ns,
                "latest_ns": self.latest_ns, "customers_sorted": self.customers._ts_sorted,
                "terminals_sorted": self.terminals._ts_sorted}
        return meta, arrays, []

    @classmethod
    def from_arrays(cls, meta: dict, arrays: dict, children: list) -> "BaselineState":
        st = cls(meta["customer_horizon_ns"], meta["terminal_horizon_ns"])
        st.latest_ns = None if meta["latest_ns"] is None else int(meta["latest_ns"])
        st.customer_codes = safestate.dict_from(arrays["customer_codes.keys"], arrays["customer_codes.values"],
                                                "customer_codes")
        st.terminal_codes = safestate.dict_from(arrays["terminal_codes.keys"], arrays["terminal_codes.values"],
                                                "terminal_codes")
        logs = {k: v for k, v in arrays.items() if not k.endswith(("_codes.keys", "_codes.values"))}
        st.customers = EventLog.from_arrays({k: v for k, v in logs.items() if k.startswith("customers.")}, "customers.",
                                        cls.CUSTOMER_COLUMNS, meta["customers_sorted"])
        st.terminals = EventLog.from_arrays({k: v for k, v in logs.items() if k.startswith("terminals.")}, "terminals.",
                                        cls.TERMINAL_COLUMNS, meta["terminals_sorted"])
        return st

    @property
    def n_events(self) -> tuple[int, int]:
        """(customer events kept, terminal events kept)."""
        return len(self.customers), len(self.terminals)


def _codes(index: dict, keys) -> np.ndarray:
    """Integer code per key (new keys get the next codes, in order of first appearance)."""
    got = list(map(index.get, keys))  # C-level lookups: ~3x faster than a generator of setdefault calls
    if None in got:
        for i, g in enumerate(got):
            if g is None:
                k = keys[i]
                g = index.get(k)
                if g is None:
                    g = index[k] = len(index)
                got[i] = g
    return np.array(got, dtype=np.int64)


def _known_codes(index: dict, keys) -> np.ndarray:
    """Integer code per key, -1 for a key never seen (the index does not grow)."""
    return np.fromiter(map(index.get, keys, [-1] * len(keys)), dtype=np.int64, count=len(keys))


def _stacked(items, code_col: str = "code") -> tuple:
    """The online blocks' input over several independent states: for each item ``(log, codes, ts, {column: batch
    values})`` (a state's event log, and its batch's entity codes, times and values), the log's kept events of the
    batch's entities (``log[code_col]``), then the batch. Entity codes are renumbered 0..k-1 per state (the
    composite keys stay small) and offset past the previous states', so the states never mix. Returns (codes,
    times, {column: values}, positions of the batch rows)."""
    codes, times, rows = [], [], []
    vals: dict = {}
    off = pos = 0
    for log, cc, ts, cols in items:
        present, local = np.unique(cc, return_inverse=True)
        h = log.rows_of(code_col, present)
        # code -> its new number (rank in present, past the previous states'): a table, not a binary search per
        # history row (the rows come in chain order, so each search would miss the cache)
        lut = np.empty(int(present[-1]) + 1 if len(present) else 0, dtype=np.int64)
        lut[present] = np.arange(off, off + len(present))
        codes += [lut[log[code_col][h]], local.reshape(-1) + off]
        times += [log["ts"][h], ts]
        for col, v in cols.items():
            vals.setdefault(col, []).extend([log[col][h], v])
        rows.append(np.arange(pos + len(h), pos + len(h) + len(cc)))
        off += len(present)
        pos += len(h) + len(cc)
    return (np.concatenate(codes), np.concatenate(times), {c: np.concatenate(v) for c, v in vals.items()},
            np.concatenate(rows))


class BaselineFeatures(Featurizer):
    """The Fraud Detection Handbook's 15 baseline features (see the module docstring).

    Parameters
    ----------
    delay_days : feedback delay d (days) for the terminal risk windows; must be > 0.
    windows : window lengths in days for the customer and terminal windows.
    """

    def __init__(self, delay_days: float = 7, windows=(1, 7, 30)):
        self.delay_days = delay_days
        self.windows = windows

    # -- parameters ---------------------------------------------------------------------------
    def _params(self) -> tuple[list[int], int]:
        try:
            windows = [float(w) for w in self.windows]
            delay = float(self.delay_days)
        except (TypeError, ValueError):
            raise ConfigError(f"BaselineFeatures: windows={self.windows!r} / delay_days={self.delay_days!r} "
                              "must be numbers of days") from None
        if not windows or any(not np.isfinite(w) or w <= 0 for w in windows):
            raise ConfigError(f"BaselineFeatures: windows={self.windows!r} must be positive numbers of days")
        if not np.isfinite(delay) or delay <= 0:
            raise ConfigError(f"BaselineFeatures: delay_days={self.delay_days!r} must be > 0 "
                              "(a zero delay would let a transaction see its own label)")
        return [_days_ns(w) for w in windows], _days_ns(delay)

    def fit(self, df: pd.DataFrame | None = None, y=None) -> "BaselineFeatures":
        """Nothing is learned; validates the parameters and sets ``feature_names_``."""
        self._params()
        self.feature_names_ = feature_names(self.windows)
        return self

    # -- batch --------------------------------------------------------------------------------
    def transform(self, df: pd.DataFrame) -> pd.DataFrame:
        self._check_fitted()
        _require(df, ("timestamp", "customer_id", "terminal_id", "amount"), "BaselineFeatures.transform")
        windows_ns, delay_ns = self._params()
        ts = timestamps_ns(df["timestamp"])
        amount = df["amount"].to_numpy(dtype=np.float64)
        ccode = pd.factorize(df["customer_id"], sort=False)[0].astype(np.int64)
        tcode = pd.factorize(df["terminal_id"], sort=False)[0].astype(np.int64)
        fraud = _labels(df) == 1
        X = self._matrix(ts, amount, _customer_block(ccode, ts, amount, windows_ns),
                         _terminal_block(tcode, ts, fraud, windows_ns, delay_ns))
        return self.output_frame(X, df.index)

    def _matrix(self, ts, amount, cust, term) -> np.ndarray:
        """The 15 columns in ``feature_names_`` order."""
        weekend, night = _calendar(ts)
        X = np.empty((len(ts), len(self.feature_names_)), dtype=np.float64)
        X[:, 0] = amount
        X[:, 1] = weekend
        X[:, 2] = night
        k = cust.shape[1]
        X[:, 3:3 + k] = cust
        X[:, 3 + k:] = term
        return X

    # -- online -------------------------------------------------------------------------------
    def new_state(self) -> BaselineState:
        windows_ns, delay_ns = self._params()
        return BaselineState(max(windows_ns), delay_ns + max(windows_ns))

    def update(self, state: BaselineState, rows: pd.DataFrame) -> pd.DataFrame:
        """Features of ``rows`` (each sees the state plus earlier rows of the batch), then absorb them.

        Rows are expected in time order after the state's events (as the canonical frame and the
        stream deliver them); a row older than the kept history is placed by its timestamp.
        """
        out = self.update_many([(state, rows)])
        out.index = rows.index
        return out

    def update_many(self, pairs) -> pd.DataFrame:
        """``update`` for several independent states in one pass: each state's entities get their own codes
        (offset past the previous states'), so one customer block and one terminal block serve them all."""
        return self.output_frame(self.update_many_matrix(pairs))

    def update_many_matrix(self, pairs) -> np.ndarray:
        """``update_many``'s values as a float64 matrix (the scoring bundle's path: no frame to build)."""
        self._check_fitted()
        windows_ns, delay_ns = self._params()
        nw = 2 * len(windows_ns)
        batches = []
        for state, rows in pairs:
            _require(rows, ("timestamp", "customer_id", "terminal_id", "amount"), "BaselineFeatures.update")
            ts = timestamps_ns(column(rows, "timestamp"))
            amount = column(rows, "amount").to_numpy(dtype=np.float64)
            if len(rows) == 0:
                batches.append((state, rows, ts, amount, None, None, None))
                continue
            batches.append((state, rows, ts, amount, _labels(rows),
                            _codes(state.customer_codes, id_list(rows, "customer_id")),
                            _codes(state.terminal_codes, id_list(rows, "terminal_id"))))
        live = [b for b in batches if b[4] is not None]
        ts_all = np.concatenate([b[2] for b in batches]) if batches else np.empty(0, np.int64)
        amount_all = np.concatenate([b[3] for b in batches]) if batches else np.empty(0)
        if live:
            code, t, v, q = _stacked([(st.customers, cc, ts, {"amount": amount})
                                      for st, _, ts, amount, _, cc, _ in live])
            cust = _customer_block(code, t, v["amount"], windows_ns, rows=q)
            code, t, v, q = _stacked([(st.terminals, tc, ts, {"label": labels})
                                      for st, _, ts, _, labels, _, tc in live])
            term = _terminal_block(code, t, v["label"] == 1, windows_ns, delay_ns, rows=q)
        else:
            cust = term = np.empty((0, nw))
        for state, rows, ts, amount, labels, cc, tc in live:
            self._absorb(state, cc, tc, ts, amount, labels, tx_keys(rows))
        return self._matrix(ts_all, amount_all, cust, term)

    def add_labels(self, state: BaselineState, rows: pd.DataFrame) -> int:
        """Label feedback (``Featurizer.add_labels``): each row's label is set on the kept terminal event of its
        terminal, time and transaction (its ``tx_id``'s key). Returns the number of rows matched, again on a
        repeat; a row of a terminal never seen or older than the terminal horizon matches nothing."""
        self._check_fitted()
        rows, lab = label_rows(rows, "BaselineFeatures.add_labels")
        tc = _known_codes(state.terminal_codes, id_list(rows, "terminal_id"))
        pos = state.terminals.find(timestamps_ns(rows["timestamp"]), code=tc, tx=tx_keys(rows))
        hit = pos >= 0
        state.terminals.set("label", pos[hit], lab[hit])
        return int(hit.sum())

    @staticmethod
    def _absorb(state: BaselineState, cc, tc, ts, amount, labels, tx) -> None:
        latest = int(ts.max())
        state.latest_ns = latest if state.latest_ns is None else max(state.latest_ns, latest)
        state.customers.append(code=cc, ts=ts, amount=amount)
        state.customers.evict(state.latest_ns - state.customer_horizon_ns)
        state.terminals.append(code=tc, ts=ts, label=labels, tx=tx)
        state.terminals.evict(state.latest_ns - state.terminal_horizon_ns)
