"""Transaction-level features from the customer-terminal graph (``GraphFeatures``).

``fit(history)`` builds the graph of the history (``fraud.graph.build_graph``), embeds its nodes
(``models.node2vec``, or the inductive ``models.gnn``), projects the embeddings with a PCA and records
k-core numbers; labels are not used. Per transaction an online state machine (one numba kernel over the
flat arrays of ``GraphState``) gives embedding projections and affinity, the pair's history, neighbour
counts, known frauds around the customer and the terminal, ring overlap and new-customer shares;
``transform`` is the same machine from an empty state, so a replay in any micro-batches equals it.

Information rule: a row enters the state only after its features are computed, and a fraud label counts
only once its transaction is older than ``ts - delay_days``; memory per node is bounded; labels come
with the rows (``label`` column) or later through ``add_labels``. ``columns="online"`` drops node values
frozen at fit time, ``known_days`` / ``age_cap_days`` keep counts stationary, and ``drop_columns`` leaves out
two drifting columns by default. ``refresh_lr`` > 0: the state keeps fresh node vectors (one skip-gram SGD step per
edge, after the row's features, anchored to the fitted vectors) that the embedding columns then use;
``convergence``: per terminal the centroid and spread of its visitors' vectors, giving a card's distance
from it and the terminal's recent far first visits (unrelated cards converging). Both off by default.
The column table, why each option exists and the figures: docs/detection.md.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from fraud import safestate
from fraud.errors import ConfigError
from fraud.features.base import Featurizer, column, label_rows, text_ids, tx_keys
from fraud.features.eventlog import find_events
from fraud.features.tabular import timestamps_ns

_NS_DAY = 86_400 * 1_000_000_000
_UNSET = np.iinfo(np.int64).min  # first_seen of a node not seen yet


def _grow(a: np.ndarray, n: int, fill=0) -> np.ndarray:
    """``a`` with at least ``n`` rows (capacity doubles), new rows set to ``fill``."""
    if len(a) >= n:
        return a
    cap = max(n, 2 * len(a), 16)
    out = np.full((cap,) + a.shape[1:], fill, dtype=a.dtype)
    out[:len(a)] = a
    return out


class GraphState:
    """Online state of ``GraphFeatures``: flat numpy arrays indexed by internal node ids (picklable).

    Customers and terminals get dense ids in order of first appearance (``c_ids`` / ``t_ids``:
    id -> row). Per customer: its ``max_terminals`` most recent terminals with counts, oldest first
    (``ct_key``/``ct_cnt``/``ct_len``, an LRU list); per terminal: its ``max_customers`` most recent
    customers (``tc_*``) and at most ``max_known`` known-fraud customers in order of release
    (``kt_*``, with the number of their known frauds there); per customer the number of known frauds
    and its first-seen time. ``p_*``: fraud rows in time order: ``[meta[3], meta[0])`` released (usable,
    not yet expired), ``[meta[0], meta[1])`` not usable yet. ``meta[2]`` is the stamp of the ``mark``
    scratch array used to intersect neighbourhoods.
    """

    def __init__(self, max_terminals: int = 32, max_customers: int = 64, max_known: int = 64, dim: int = 0,
                 edges: int = 64):
        self.max_terminals, self.max_customers, self.max_known = int(max_terminals), int(max_customers), int(max_known)
        self.dim, self.edges = int(dim), int(edges)
        self.c_ids: dict = {}
        self.t_ids: dict = {}
        self.n_c = 0
        self.n_t = 0
        self.c_fit = np.zeros(0, np.int64)  # fit-graph index of the customer, -1 when unseen at fit
        self.t_fit = np.zeros(0, np.int64)
        self.ct_key = np.zeros((0, self.max_terminals), np.int32)
        self.ct_cnt = np.zeros((0, self.max_terminals), np.int32)
        self.ct_len = np.zeros(0, np.int32)
        self.ct_ts = np.zeros((0, self.max_terminals), np.int64)  # last-seen time of each entry
        self.tc_key = np.zeros((0, self.max_customers), np.int32)
        self.tc_cnt = np.zeros((0, self.max_customers), np.int32)
        self.tc_len = np.zeros(0, np.int32)
        self.tc_ts = np.zeros((0, self.max_customers), np.int64)
        self.kt_key = np.zeros((0, self.max_known), np.int32)
        self.kt_cnt = np.zeros((0, self.max_known), np.int32)
        self.kt_len = np.zeros(0, np.int32)
        self.known_c = np.zeros(0, np.int32)
        self.first_seen = np.zeros(0, np.int64)
        self.mark = np.zeros(0, np.int64)
        self.p_ts = np.zeros(0, np.int64)
        self.p_c = np.zeros(0, np.int32)
        self.p_t = np.zeros(0, np.int32)
        self.p_tx = np.zeros(0, np.int64)  # each fraud's transaction key (fraud.features.base.tx_keys): label feedback
        self.meta = np.zeros(4, np.int64)
        self.last_time: int | None = None
        # fresh embeddings and convergence (``dim`` columns; dim 0 when both are off): per customer its
        # fresh vector (``fc``, ``fc_ok`` once set); per terminal its fresh vector, the slow centroid of its
        # visitors' vectors (``tz``), their count and mean distance from it (``tz_n``, ``tz_d``), and decayed
        # sums of far visits, visits and relative distances (``tf``, last updated ``tf_ts``); a ring of the
        # ``edges`` most recent (customer, terminal) pairs gives the negative samples; fmeta[0] = edges seen
        d = self.dim
        self.fc = np.zeros((0, d))
        self.fc_ok = np.zeros(0, np.int8)
        self.ft = np.zeros((0, d))
        self.ft_ok = np.zeros(0, np.int8)
        self.tz = np.zeros((0, d))
        self.tz_n = np.zeros(0, np.int64)
        self.tz_d = np.zeros(0)
        self.tf = np.zeros((0, 3 if d else 0))
        self.tf_ts = np.zeros(0, np.int64)
        self.nb_c = np.zeros(self.edges if d else 0, np.int32)
        self.nb_t = np.zeros(self.edges if d else 0, np.int32)
        self.fmeta = np.zeros(1, np.int64)

    # checkpoints carry only the used rows
    def __getstate__(self):
        d = dict(self.__dict__)
        for k in self.C_ROWS:
            d[k] = d[k][:self.n_c].copy()
        for k in self.T_ROWS:
            d[k] = d[k][:self.n_t].copy()
        e, h, t = int(self.meta[3]), int(self.meta[0]), int(self.meta[1])
        for k in self.PENDING:
            d[k] = d[k][e:t].copy()
        d["meta"] = np.array([h - e, t - e, self.meta[2], 0], np.int64)
        return d

    #: the frauds' arrays (time, customer, terminal, transaction key): released ones then pending ones
    PENDING = ("p_ts", "p_c", "p_t", "p_tx")
    #: arrays with a row per customer / per terminal
    C_ROWS = ("c_fit", "ct_key", "ct_cnt", "ct_ts", "ct_len", "known_c", "first_seen", "mark", "fc", "fc_ok")
    T_ROWS = ("t_fit", "tc_key", "tc_cnt", "tc_ts", "tc_len", "kt_key", "kt_cnt", "kt_len", "ft", "ft_ok", "tz", "tz_n",
              "tz_d", "tf", "tf_ts")
    #: the arrays of a checkpoint (trimmed to the used rows by ``__getstate__``) and its scalars
    ARRAYS = ("c_fit", "t_fit", "ct_key", "ct_cnt", "ct_len", "ct_ts", "tc_key", "tc_cnt", "tc_len", "tc_ts", "kt_key",
              "kt_cnt", "kt_len", "known_c", "first_seen", "mark", "p_ts", "p_c", "p_t", "p_tx", "meta")
    FRESH = ("fc", "fc_ok", "ft", "ft_ok", "tz", "tz_n", "tz_d", "tf", "tf_ts", "nb_c", "nb_t", "fmeta")
    SCALARS = ("max_terminals", "max_customers", "max_known", "n_c", "n_t", "last_time")

    def to_arrays(self) -> tuple[dict, dict, list]:
        """Checkpoint form (:mod:`fraud.safestate`): what ``__getstate__`` keeps, as arrays."""
        d = self.__getstate__()
        arrays = {k: d[k] for k in self.ARRAYS + (self.FRESH if self.dim else ())}
        arrays["c_ids.keys"], arrays["c_ids.values"] = safestate.str_dict(self.c_ids)
        arrays["t_ids.keys"], arrays["t_ids.values"] = safestate.str_dict(self.t_ids)
        scalars = {k: (None if d[k] is None else int(d[k])) for k in self.SCALARS}
        if self.dim:  # absent from older checkpoints (read as dim 0)
            scalars.update(dim=self.dim, edges=self.edges)
        return scalars, arrays, []

    @classmethod
    def from_arrays(cls, meta: dict, arrays: dict, children: list) -> "GraphState":
        dim, edges = int(meta.get("dim", 0)), int(meta.get("edges", 64))
        fresh = cls(meta["max_terminals"], meta["max_customers"], meta["max_known"], dim, edges)
        d = {k: (None if meta[k] is None else int(meta[k])) for k in cls.SCALARS}
        d.update(dim=dim, edges=edges)
        for k in cls.ARRAYS + cls.FRESH:
            if k in cls.FRESH and not dim:  # off: empty rows of each node
                n = d["n_c"] if k in cls.C_ROWS else d["n_t"] if k in cls.T_ROWS else None
                like = getattr(fresh, k)
                d[k] = like if n is None else _grow(like, n)[:n]
                continue
            a, like = arrays[k], getattr(fresh, k)
            if a.dtype != like.dtype or a.shape[1:] != like.shape[1:]:
                raise ValueError(f"GraphState.{k}: {a.dtype} {a.shape}, expected {like.dtype} (n,){like.shape[1:]}")
            d[k] = a
        d["c_ids"] = safestate.dict_from(arrays["c_ids.keys"], arrays["c_ids.values"], "c_ids")
        d["t_ids"] = safestate.dict_from(arrays["t_ids.keys"], arrays["t_ids.values"], "t_ids")
        st = cls.__new__(cls)
        st.__dict__.update(d)
        return st

    def ids(self, values, customers: bool, fit_index: dict) -> np.ndarray:
        """Internal ids of ``values`` (new ones assigned and the arrays grown)."""
        if isinstance(values, list) and all(type(v) is str for v in values):  # pd.factorize's codes, by a dict
            first: dict = {}
            codes = np.array([first.setdefault(v, len(first)) for v in values], dtype=np.int64)
            uniq = list(first)
        else:
            codes, uniq = pd.factorize(values if isinstance(values, pd.Series) else np.asarray(values, dtype=object),
                                       use_na_sentinel=False)  # a missing id is one node 'nan', as astype(str) made it
            uniq = [u if type(u) is str else str(u) for u in uniq.tolist()]
        d = self.c_ids if customers else self.t_ids
        got = [d.get(u, -1) for u in uniq]
        n = self.n_c if customers else self.n_t
        new = [j for j, g in enumerate(got) if g < 0]
        if new:
            fit = np.empty(len(new), np.int64)
            for k, j in enumerate(new):
                d[uniq[j]] = got[j] = n + k
                fit[k] = fit_index.get(uniq[j], -1)
            self._reserve(customers, n + len(new))
            if customers:
                self.c_fit[n:n + len(new)] = fit
                self.n_c = n + len(new)
            else:
                self.t_fit[n:n + len(new)] = fit
                self.n_t = n + len(new)
        return np.asarray(got, dtype=np.int64)[codes] if len(codes) else np.zeros(0, np.int64)

    def _reserve(self, customers: bool, n: int) -> None:
        if customers:
            for k in ("ct_key", "ct_cnt", "ct_ts", "ct_len", "known_c", "mark", "fc", "fc_ok"):
                setattr(self, k, _grow(getattr(self, k), n))
            self.c_fit = _grow(self.c_fit, n, -1)
            self.first_seen = _grow(self.first_seen, n, _UNSET)
        else:
            for k in ("tc_key", "tc_cnt", "tc_ts", "tc_len", "kt_key", "kt_cnt", "kt_len", "ft", "ft_ok", "tz", "tz_n",
                      "tz_d", "tf", "tf_ts"):
                setattr(self, k, _grow(getattr(self, k), n))
            self.t_fit = _grow(self.t_fit, n, -1)

    def reserve_pending(self, extra: int) -> None:
        e, h, t = int(self.meta[3]), int(self.meta[0]), int(self.meta[1])
        if e > 0 and (t + extra > len(self.p_ts) or e > len(self.p_ts) // 2):  # compact
            for k in self.PENDING:
                a = getattr(self, k)
                a[:t - e] = a[e:t]
            self.meta[3], self.meta[0], self.meta[1] = 0, h - e, t - e
        need = int(self.meta[1]) + extra
        for k in self.PENDING:
            setattr(self, k, _grow(getattr(self, k), need))


def _lru_add_py(keys, cnts, tss, lens, row, item, now, lim):
    """Move ``item`` to the most recent end of ``row``'s bounded neighbour list (count + 1; count 1 again
    when its entry was last seen before ``lim``: stale, outside the neighbour window), or append it with
    count 1, evicting the least recent entry when the list is full (capacity = ``keys.shape[1]``).
    The entry's last-seen time becomes ``now``."""
    n = lens[row]
    p = -1
    for j in range(n):
        if keys[row, j] == item:
            p = j
            break
    if p >= 0:
        cnt = cnts[row, p] + 1 if tss[row, p] >= lim else 1
        start = p
    elif n < keys.shape[1]:
        keys[row, n] = item
        cnts[row, n] = 1
        tss[row, n] = now
        lens[row] = n + 1
        return
    else:
        cnt = 1
        start = 0
    for j in range(start, n - 1):
        keys[row, j] = keys[row, j + 1]
        cnts[row, j] = cnts[row, j + 1]
        tss[row, j] = tss[row, j + 1]
    keys[row, n - 1] = item
    cnts[row, n - 1] = cnt
    tss[row, n - 1] = now


def _fresh_start_py(tss, row, n, lim):
    """First index of ``row``'s neighbour list last seen at or after ``lim`` (entries are in recency order,
    so the stale ones are a prefix)."""
    j = 0
    while j < n and tss[row, j] < lim:
        j += 1
    return j


def _embed_py(out, i, own, own_emb, keys, row, n, this, other_fit, other_emb):
    """Row ``i`` of ``out``: the node's fitted embedding (``own`` >= 0), else (inductive, an unseen node) the mean
    of the fitted embeddings of its ``n`` recent neighbours ``keys[row, :n]`` and of this event's counterpart
    ``this`` (counted once); zeros when none of them is known."""
    ndim = out.shape[1]
    if own >= 0:
        for d in range(ndim):
            out[i, d] = own_emb[own, d]
        return
    m = 0
    for j in range(n):
        x = keys[row, j]
        if x != this and other_fit[x] >= 0:
            for d in range(ndim):
                out[i, d] += other_emb[other_fit[x], d]
            m += 1
    if other_fit[this] >= 0:
        for d in range(ndim):
            out[i, d] += other_emb[other_fit[this], d]
        m += 1
    if m > 0:
        for d in range(ndim):
            out[i, d] /= m


def _dot_py(a, i, b, j):
    s = 0.0
    for d in range(a.shape[1]):
        s += a[i, d] * b[j, d]
    return s


def _shift_py(fresh, row, fit, emb, scale):
    """Distance of a node's fresh vector from its fitted one, in units of ``scale`` (0 for nodes unseen at fit)."""
    if fit < 0:
        return 0.0
    s = 0.0
    for d in range(fresh.shape[1]):
        s += (fresh[row, d] - emb[fit, d]) ** 2
    return np.sqrt(s) / scale


def _fresh_py(i, c, t, now, pair, ci, ti, emb_c, emb_t, ec, et, fc, fc_ok, ft, ft_ok, tz, tz_n, tz_d, tf, tf_ts,
              nb_c, nb_t, fmeta, lr, neg, anchor, tau, scale, conv, C, scr):
    """Fresh embeddings and convergence of row ``i`` (features first, then the row is learned).

    ``lr > 0``: the row's vectors ``ec[i]`` / ``et[i]`` become the nodes' fresh copies (set from the fitted or
    inductive vector on first sight); C[i, 0:2] = their shifts from the fitted vectors; after the features one
    skip-gram SGD step on the edge with ``neg`` negatives from the ring of recent edges. ``conv``: C[i, 2:6] =
    the card's distance from the terminal's visitor centroid (/ ``scale``, / the terminal's own mean distance),
    the decayed count of far first visits (relative distance > 2) and the decayed mean relative distance;
    then the visit enters the centroid (a far one with a quarter weight, so a ring does not become the norm)."""
    D = ec.shape[1]
    if lr > 0:
        if fc_ok[c]:
            ec[i, :] = fc[c, :]
        else:
            fc[c, :] = ec[i, :]
            fc_ok[c] = 1
        if ft_ok[t]:
            et[i, :] = ft[t, :]
        else:
            ft[t, :] = et[i, :]
            ft_ok[t] = 1
        C[i, 0] = _shift(fc, c, ci, emb_c, scale)
        C[i, 1] = _shift(ft, t, ti, emb_t, scale)
    if conv:
        n = tz_n[t]
        d2 = 0.0
        for k in range(D):
            d2 += (ec[i, k] - tz[t, k]) ** 2
        dist = np.sqrt(d2)
        rel = dist / (tz_d[t] + 0.1 * scale) if n > 0 else 0.0
        f = np.exp(-(now - tf_ts[t]) / tau) if n > 0 else 0.0
        far = 1.0 if n > 0 and rel > 2.0 and pair == 0 else 0.0
        tf[t, 0] = tf[t, 0] * f + far
        tf[t, 1] = tf[t, 1] * f + (1.0 if n > 0 else 0.0)
        tf[t, 2] = tf[t, 2] * f + rel
        tf_ts[t] = now
        C[i, 2] = dist / scale if n > 0 else 0.0
        C[i, 3] = rel
        C[i, 4] = tf[t, 0]
        C[i, 5] = tf[t, 2] / tf[t, 1] if tf[t, 1] > 0 else 0.0
        if n == 0:  # the spread starts at the graph's (a prior worth one visit), not at 0
            tz[t, :] = ec[i, :]
            tz_d[t] = scale
        else:
            w = 1.0 / min(n + 1, 64) * (0.25 if far > 0 else 1.0)
            for k in range(D):
                tz[t, k] += w * (ec[i, k] - tz[t, k])
            tz_d[t] += w * (dist - tz_d[t])
        tz_n[t] = n + 1
    if lr > 0:  # one skip-gram step: pull c and t together, push each from recent others' counterparts
        g = lr * (1.0 - 1.0 / (1.0 + np.exp(-_dot(fc, c, ft, t))))
        cnt = fmeta[0]
        m = min(cnt, nb_c.shape[0])
        gc = scr[0]
        gt = scr[1]
        for k in range(D):
            gc[k] = g * ft[t, k]
            gt[k] = g * fc[c, k]
        for j in range(neg if m > 0 else 0):
            h = (cnt * 2654435761 + j * 40503) % m
            tn = nb_t[h]
            cn = nb_c[h]
            if tn != t:
                gn = lr / (1.0 + np.exp(-_dot(fc, c, ft, tn)))
                for k in range(D):
                    gc[k] -= gn * ft[tn, k]
            if cn != c:
                gn = lr / (1.0 + np.exp(-_dot(ft, t, fc, cn)))
                for k in range(D):
                    gt[k] -= gn * fc[cn, k]
        for k in range(D):  # and back toward the fitted vectors (restart: a shift stays bounded)
            fc[c, k] += gc[k] - (lr * anchor * (fc[c, k] - emb_c[ci, k]) if ci >= 0 else 0.0)
            ft[t, k] += gt[k] - (lr * anchor * (ft[t, k] - emb_t[ti, k]) if ti >= 0 else 0.0)
        nb_c[cnt % nb_c.shape[0]] = c
        nb_t[cnt % nb_t.shape[0]] = t
        fmeta[0] = cnt + 1


def _release_py(pc, pt, known_c, kt_key, kt_cnt, kt_len):
    """A released fraud of customer ``pc`` at terminal ``pt`` counts: the customer's known frauds + 1, and ``pc``'s
    entry among the terminal's known-fraud customers + 1 (a new entry is the most recent; a full list drops its
    oldest)."""
    known_c[pc] += 1
    L = kt_len[pt]
    for j in range(L):
        if kt_key[pt, j] == pc:
            kt_cnt[pt, j] += 1
            return
    if L < kt_key.shape[1]:
        kt_key[pt, L] = pc
        kt_cnt[pt, L] = 1
        kt_len[pt] = L + 1
        return
    for j in range(L - 1):
        kt_key[pt, j] = kt_key[pt, j + 1]
        kt_cnt[pt, j] = kt_cnt[pt, j + 1]
    kt_key[pt, L - 1] = pc
    kt_cnt[pt, L - 1] = 1


def _expire_py(pc, pt, known_c, kt_key, kt_cnt, kt_len):
    """The inverse of ``_release``: the fraud counts no more (an entry at count 0 is dropped, the others keep their
    release order)."""
    known_c[pc] -= 1
    L = kt_len[pt]
    for j in range(L):
        if kt_key[pt, j] == pc:
            kt_cnt[pt, j] -= 1
            if kt_cnt[pt, j] == 0:
                for jj in range(j, L - 1):
                    kt_key[pt, jj] = kt_key[pt, jj + 1]
                    kt_cnt[pt, jj] = kt_cnt[pt, jj + 1]
                kt_len[pt] = L - 1
            return


def _count_known_py(pcs, pts, add, known_c, kt_key, kt_cnt, kt_len):
    """``_release`` (``add``) or ``_expire`` (not) each fraud (``pcs[i]``, ``pts[i]``), in order: label feedback."""
    for i in range(pcs.shape[0]):
        if add[i]:
            _release(pcs[i], pts[i], known_c, kt_key, kt_cnt, kt_len)
        else:
            _expire(pcs[i], pts[i], known_c, kt_key, kt_cnt, kt_len)


_release = _release_py
_expire = _expire_py
_count_known = _count_known_py
_dot = _dot_py
_shift = _shift_py
_fresh = _fresh_py
_embed = _embed_py
_fresh_start = _fresh_start_py
_lru_add = _lru_add_py  # replaced by its numba-compiled form when the kernel is compiled


def _kernel_py(cc, tt, ts, lab, c_fit, t_fit, emb_c, emb_t, core_c, core_t, ct_key, ct_cnt, ct_ts, ct_len,
               tc_key, tc_cnt, tc_ts, tc_len, kt_key, kt_cnt, kt_len, known_c, first_seen, p_ts, p_c, p_t, meta, mark,
               max_overlap, delay, new_ns, unset, known_ns, age_cap, nbr_ns, S, ec, et, fc, fc_ok, ft, ft_ok, tz, tz_n,
               tz_d, tf, tf_ts, nb_c, nb_t, fmeta, lr, neg, anchor, tau, scale, conv, C, scr):
    """The per-row state machine (compiled by numba as ``_kernel``); see the module doc for the columns."""
    n = cc.shape[0]
    for i in range(n):
        c = cc[i]
        t = tt[i]
        now = ts[i]
        # release labels older than now - delay
        lim = now - delay
        while meta[0] < meta[1] and p_ts[meta[0]] < lim:
            h = meta[0]
            pc = p_c[h]
            pt = p_t[h]
            meta[0] = h + 1
            _release(pc, pt, known_c, kt_key, kt_cnt, kt_len)
        # expire released labels older than now - delay - known window (known_ns < 0: never)
        lim2 = lim - known_ns
        while known_ns >= 0 and meta[3] < meta[0] and p_ts[meta[3]] < lim2:
            e = meta[3]
            pc = p_c[e]
            pt = p_t[e]
            meta[3] = e + 1
            _expire(pc, pt, known_c, kt_key, kt_cnt, kt_len)
        ci = c_fit[c]
        ti = t_fit[t]
        Lc = ct_len[c]
        Lt = tc_len[t]
        # embeddings (inductive for unseen nodes: mean over known recent neighbours incl. this one)
        _embed(ec, i, ci, emb_c, ct_key, c, Lc, t, t_fit, emb_t)
        _embed(et, i, ti, emb_t, tc_key, t, Lt, c, c_fit, emb_c)
        # neighbour window (nbr_ns < 0: none): entries last seen before now - nbr_ns do not count below
        nlim = now - nbr_ns if nbr_ns >= 0 else unset
        sc = _fresh_start(ct_ts, c, Lc, nlim)
        st = _fresh_start(tc_ts, t, Lt, nlim)
        pair = 0
        tot_c = 0
        for j in range(sc, Lc):
            tot_c += ct_cnt[c, j]
            if ct_key[c, j] == t:
                pair = ct_cnt[c, j]
        kc = 0
        nw = 0
        young = now - new_ns
        c_in_tc = False
        for j in range(st, Lt):
            u = tc_key[t, j]
            if u == c:
                c_in_tc = True
            else:
                if known_c[u] > 0:
                    kc += 1
                if first_seen[u] > young:
                    nw += 1
        nbr = 0
        for j in range(sc, Lc):
            x = ct_key[c, j]
            if x != t:
                L = kt_len[x]
                if L > 1 or (L == 1 and kt_key[x, 0] != c):
                    nbr += 1
        best = 0
        if Lt > st and Lc > sc:
            stamp = meta[2] + 1
            meta[2] = stamp
            for j in range(st, Lt):
                mark[tc_key[t, j]] = stamp
            jj = 0
            for j in range(Lc - 1, sc - 1, -1):  # the most recent terminals first
                x = ct_key[c, j]
                if x == t:
                    continue
                jj += 1
                if jj > max_overlap:
                    break
                ov = 0
                c_in_x = False
                for k in range(_fresh_start(tc_ts, x, tc_len[x], nlim), tc_len[x]):
                    u = tc_key[x, k]
                    if mark[u] == stamp:
                        ov += 1
                    if u == c:
                        c_in_x = True
                if c_in_tc and c_in_x:
                    ov -= 1
                if ov > best:
                    best = ov
        ndt = Lt - st - (1 if c_in_tc else 0)
        S[i, 0] = 1.0 if ci >= 0 else 0.0
        S[i, 1] = 1.0 if ti >= 0 else 0.0
        S[i, 2] = core_c[ci] if ci >= 0 else 0.0
        S[i, 3] = core_t[ti] if ti >= 0 else 0.0
        S[i, 4] = pair
        S[i, 5] = pair / tot_c if tot_c > 0 else 0.0
        S[i, 6] = Lc - sc
        S[i, 7] = Lt - st
        S[i, 8] = known_c[c]
        S[i, 9] = kc
        S[i, 10] = kc / ndt if ndt > 0 else 0.0
        S[i, 11] = nbr
        S[i, 12] = best
        fs = first_seen[c]
        age = (now - fs) / 86_400_000_000_000.0 if fs != unset else 0.0
        S[i, 13] = age if age_cap < 0 or age < age_cap else age_cap
        S[i, 14] = nw
        S[i, 15] = nw / ndt if ndt > 0 else 0.0
        if fs == unset:
            first_seen[c] = now
        if lr > 0 or conv:
            _fresh(i, c, t, now, pair, ci, ti, emb_c, emb_t, ec, et, fc, fc_ok, ft, ft_ok, tz, tz_n, tz_d, tf, tf_ts,
                   nb_c, nb_t, fmeta, lr, neg, anchor, tau, scale, conv, C, scr)
        # absorb the row: LRU add t to c's terminals, c to t's customers
        _lru_add(ct_key, ct_cnt, ct_ts, ct_len, c, t, now, nlim)
        _lru_add(tc_key, tc_cnt, tc_ts, tc_len, t, c, now, nlim)
        if lab[i] == 1:
            k = meta[1]
            p_ts[k] = now
            p_c[k] = c
            p_t[k] = t
            meta[1] = k + 1


def _compiled_kernel():
    """The numba-compiled kernel (compiled once per process, cached on disk: ``cache=True``)."""
    global _KERNEL, _lru_add, _fresh_start, _embed, _dot, _shift, _fresh, _release, _expire, _count_known
    if _KERNEL is None:
        try:
            from numba import njit
        except ModuleNotFoundError:  # pragma: no cover - numba comes with pyod; pure Python still works
            _KERNEL = _kernel_py
        else:
            _lru_add = njit(cache=True, nogil=True)(_lru_add_py)
            _fresh_start = njit(cache=True, nogil=True)(_fresh_start_py)
            _embed = njit(cache=True, nogil=True)(_embed_py)
            _dot = njit(cache=True, nogil=True)(_dot_py)
            _shift = njit(cache=True, nogil=True)(_shift_py)
            _fresh = njit(cache=True, nogil=True)(_fresh_py)
            _release = njit(cache=True, nogil=True)(_release_py)
            _expire = njit(cache=True, nogil=True)(_expire_py)
            _count_known = njit(cache=True, nogil=True)(_count_known_py)
            _KERNEL = njit(cache=True, nogil=True)(_kernel_py)
    return _KERNEL


_KERNEL = None


class GraphFeatures(Featurizer):
    # defaults for featurizers pickled before these parameters existed
    refresh_lr, refresh_neg, refresh_anchor, convergence, conv_days, scale_ = 0.0, 2, 1.0, False, 7.0, 1.0

    def __init__(self, embedder: str = "node2vec", dim: int = 32, proj_dim: int = 8, window_days: float | None = None,
                 walk_length: int = 20, walks_per_node: int = 10, p: float = 1.0, q: float = 1.0,
                 gnn_epochs: int = 60, delay_days: float = 7.0, max_terminals: int = 32,
                 max_customers: int = 64, max_known: int = 64, overlap_terminals: int = 8, new_days: float = 14.0, columns: str = "all",
                 seed: int = 0, known_days: float | None = 28.0, age_cap_days: float | None = 28.0,
                 nbr_days: float | None = None, drop_columns: tuple = ("g_t_ndist", "g_overlap"),
                 refresh_lr: float = 0.0, refresh_neg: int = 2, refresh_anchor: float = 1.0, convergence: bool = False,
                 conv_days: float = 7.0):
        self.embedder = embedder
        self.dim = dim
        self.proj_dim = proj_dim
        self.window_days = window_days
        self.walk_length = walk_length
        self.walks_per_node = walks_per_node
        self.p = p
        self.q = q
        self.gnn_epochs = gnn_epochs
        self.delay_days = delay_days
        self.max_terminals = max_terminals
        self.max_customers = max_customers
        self.max_known = max_known
        self.overlap_terminals = overlap_terminals
        self.new_days = new_days
        self.columns = columns
        self.seed = seed
        self.known_days = known_days
        self.age_cap_days = age_cap_days
        self.nbr_days = nbr_days
        self.drop_columns = drop_columns
        self.refresh_lr = refresh_lr
        self.refresh_neg = refresh_neg
        self.refresh_anchor = refresh_anchor
        self.convergence = convergence
        self.conv_days = conv_days

    # ------------------------------------------------------------------ fit
    def fit(self, df: pd.DataFrame, y=None) -> "GraphFeatures":
        from fraud.graph import build_graph

        if self.columns not in ("all", "online"):
            raise ConfigError(f"GraphFeatures: columns={self.columns!r} must be 'all' or 'online'")
        if self.embedder not in ("node2vec", "gnn"):
            raise ConfigError(f"GraphFeatures: embedder={self.embedder!r} must be 'node2vec' or 'gnn'")
        if len(df) == 0:
            raise ConfigError("GraphFeatures.fit: history is empty")
        if not (float(self.refresh_lr) >= 0 and int(self.refresh_neg) >= 0 and float(self.refresh_anchor) >= 0
                and float(self.conv_days) > 0):
            raise ConfigError(f"GraphFeatures: refresh_lr={self.refresh_lr!r}, refresh_neg={self.refresh_neg!r} and "
                              f"refresh_anchor={self.refresh_anchor!r} must be >= 0, conv_days={self.conv_days!r} > 0")
        cutoff = df["timestamp"].max() + pd.Timedelta(microseconds=1)
        g = build_graph(df, cutoff, self.window_days)
        nc, nt = g.n_customers, g.n_terminals
        if self.embedder == "node2vec":
            import torch

            from models.node2vec import Node2Vec

            w = torch.as_tensor(np.log1p(np.concatenate([g.count, g.count])), dtype=torch.float64)
            n2v = Node2Vec(dim=self.dim, walk_length=self.walk_length, walks_per_node=self.walks_per_node,
                           p=self.p, q=self.q, seed=self.seed).fit(g.homogeneous_edge_index(), nc + nt, edge_weight=w)
            emb = n2v.embedding_
            emb_c, emb_t = emb[:nc], emb[nc:]
        else:
            from models.gnn import HeteroSAGE

            gnn = HeteroSAGE(hidden=self.dim, out=self.dim, epochs=self.gnn_epochs, seed=self.seed)
            gnn.fit(g.to_heterodata(), edge_time=g.first_time)
            emb_c, emb_t = gnn.embed(g.to_heterodata())
        allemb = np.concatenate([emb_c, emb_t]).astype(np.float64)
        self.mean_ = allemb.mean(0)
        k = min(self.proj_dim, allemb.shape[1], max(len(allemb) - 1, 1))
        _, _, vt = np.linalg.svd(allemb - self.mean_, full_matrices=False)
        comps = np.zeros((self.proj_dim, allemb.shape[1]))
        comps[:k] = vt[:k]
        self.components_ = comps
        spread = float(np.linalg.norm(allemb - self.mean_, axis=1).mean())
        self.scale_ = spread if spread > 0 else 1.0  # unit of the shift and convergence distances
        self.emb_c_ = emb_c.astype(np.float64)
        self.emb_t_ = emb_t.astype(np.float64)
        self.c_index_ = g.customer_index
        self.t_index_ = g.terminal_index
        self.core_c_, self.core_t_ = self._cores(g)
        self.graph_summary_ = {"customers": nc, "terminals": nt, "edges": g.n_edges, "transactions": g.n_transactions,
                               "cutoff": str(g.cutoff)}
        self.all_names_ = ([f"g_c{i}" for i in range(self.proj_dim)] + [f"g_t{i}" for i in range(self.proj_dim)]
                               + ["g_cos", "g_c_seen", "g_t_seen", "g_c_core", "g_t_core", "g_pair_prior",
                                  "g_pair_share", "g_c_ndist", "g_t_ndist", "g_c_known", "g_t_known_cust",
                                  "g_t_known_cust_share", "g_c_nbr_risk", "g_overlap", "g_c_age_days",
                                  "g_t_new_cust", "g_overlap_share", "g_t_new_cust_share"]
                           + (["g_c_shift", "g_t_shift"] if self.refresh_lr > 0 else [])
                           + (["g_conv_dist", "g_conv_rel", "g_conv_far", "g_conv_disp"] if self.convergence else []))
        static = set(self.all_names_[:2 * self.proj_dim]) | {"g_c_seen", "g_t_seen", "g_c_core", "g_t_core"}
        drop = set(self.drop_columns or ())
        if drop - set(self.all_names_):
            raise ConfigError(f"GraphFeatures: drop_columns={sorted(drop - set(self.all_names_))} are not graph columns "
                              f"({', '.join(self.all_names_)})")
        self.feature_names_ = [c for c in self.all_names_ if (self.columns == "all" or c not in static) and c not in drop]
        return self

    @staticmethod
    def _cores(g):
        import networkx as nx

        h = nx.Graph()
        nc = g.n_customers
        h.add_nodes_from(range(nc + g.n_terminals))
        h.add_edges_from(zip(g.src.tolist(), (g.dst + nc).tolist()))
        core = nx.core_number(h)
        arr = np.array([core[i] for i in range(nc + g.n_terminals)], dtype=np.float64)
        return arr[:nc], arr[nc:]

    # --------------------------------------------------------------- online
    def _state_dim(self) -> int:
        if not (self.refresh_lr > 0 or self.convergence):
            return 0
        self._check_fitted()
        return self.emb_c_.shape[1]

    def new_state(self) -> GraphState:
        return GraphState(self.max_terminals, self.max_customers, self.max_known, self._state_dim())

    def transform(self, df: pd.DataFrame) -> pd.DataFrame:
        self._check_fitted()
        return self.update(self.new_state(), df)

    def update(self, state: GraphState, rows: pd.DataFrame) -> pd.DataFrame:
        self._check_fitted()
        return self.output_frame(self._finish(*self._absorb(state, rows)), rows.index)

    def update_many(self, pairs) -> pd.DataFrame:
        """``update`` for several independent states: the kernel runs per state, the projections and the frame
        once for all of them."""
        out = self.update_many_matrix(pairs)
        return self.output_frame(out, pd.RangeIndex(len(out)))

    def update_many_matrix(self, pairs) -> np.ndarray:
        """:meth:`update_many`'s values as a float64 matrix (columns ``feature_names_``): what the scoring bundle
        reads, without a frame."""
        self._check_fitted()
        parts = [self._absorb(st, rows) for st, rows in pairs]
        if not parts:
            return self._finish(np.zeros((0, 16)), np.zeros((0, self.emb_c_.shape[1])),
                                np.zeros((0, self.emb_c_.shape[1])), np.zeros((0, 6)))
        return self._finish(*(np.concatenate(x) if len(parts) > 1 else x[0] for x in zip(*parts)))

    def add_labels(self, state: GraphState, rows: pd.DataFrame) -> int:
        """Label feedback (``Featurizer.add_labels``). The state keeps its frauds (time, customer, terminal,
        transaction key), not its transactions: a fraud label (both nodes seen, at or before the last absorbed row)
        joins them as ``update`` would have queued it, counted at once when older than the delay, ignored when it
        would have expired; label 0 withdraws that transaction's fraud, from the queue or from the counts. Returns
        the number of frauds added or withdrawn (a repeat changes nothing and returns 0)."""
        self._check_fitted()
        rows, lab = label_rows(rows, "GraphFeatures.add_labels")
        if state.last_time is None or not len(rows):
            return 0
        c, t = _known_ids(state.c_ids, rows["customer_id"]), _known_ids(state.t_ids, rows["terminal_id"])
        ts, tx = timestamps_ns(rows["timestamp"]), tx_keys(rows)
        lim = state.last_time - int(round(float(self.delay_days) * _NS_DAY))
        ok = (c >= 0) & (t >= 0) & (ts <= state.last_time)
        if self.known_days is not None:
            ok &= ts >= lim - int(round(float(self.known_days) * _NS_DAY))
        e, h, q = (int(state.meta[k]) for k in (3, 0, 1))
        held = state.p_ts[e:q], state.p_c[e:q], state.p_t[e:q], state.p_tx[e:q]
        pos = np.full(len(ts), -1, dtype=np.int64)
        pos[ok] = find_events(held[0], {"c": held[1], "t": held[2], "tx": held[3]}, ts[ok],
                              {"c": c[ok], "t": t[ok], "tx": tx[ok]}, bool(np.all(held[0][1:] >= held[0][:-1])))
        add, drop = ok & (lab == 1) & (pos < 0), ok & (lab == 0) & (pos >= 0)
        if not (add.any() or drop.any()):
            return 0
        now = add & (ts < lim)  # released by the last absorbed row already
        out = np.flatnonzero(drop & (pos < h - e))  # released ones: their counts go
        new = np.flatnonzero(now)[np.argsort(ts[now], kind="stable")]
        _compiled_kernel()
        which = np.concatenate([out, new])
        _count_known(c[which].astype(np.int32), t[which].astype(np.int32), np.arange(len(which)) >= len(out),
                     state.known_c, state.kt_key, state.kt_cnt, state.kt_len)
        keep = np.ones(q - e, dtype=bool)
        keep[pos[drop]] = False
        _set_frauds(state, [a[:h - e][keep[:h - e]] for a in held], [x[now] for x in (ts, c, t, tx)],
                    [a[h - e:][keep[h - e:]] for a in held], [x[add & ~now] for x in (ts, c, t, tx)])
        return int(add.sum() + drop.sum())

    def _absorb(self, state: GraphState, rows: pd.DataFrame) -> tuple:
        """The kernel's (S, customer embedding, terminal embedding, C: fresh/convergence columns) of ``rows``,
        absorbed into ``state``."""
        n = len(rows)
        if (state.max_terminals, state.max_customers, state.max_known, state.dim) != (
                self.max_terminals, self.max_customers, self.max_known, self._state_dim()):
            raise ConfigError(f"GraphFeatures.update: the state was made for max_terminals/customers/known/dim="
                              f"{state.max_terminals}/{state.max_customers}/{state.max_known}/{state.dim}, this "
                              f"featurizer has {self.max_terminals}/{self.max_customers}/{self.max_known}/"
                              f"{self._state_dim()} (dim > 0: fresh embeddings or convergence on)")
        cc = state.ids(_id_values(rows, "customer_id"), True, self.c_index_)
        tt = state.ids(_id_values(rows, "terminal_id"), False, self.t_index_)
        t_ns = np.ascontiguousarray(column(rows, "timestamp").to_numpy(dtype="datetime64[ns]").astype(np.int64))
        lab = (np.ascontiguousarray(column(rows, "label").to_numpy(dtype=np.int64)) if "label" in rows.columns
               else np.zeros(n, np.int64))
        state.reserve_pending(int((lab == 1).sum()))
        q0 = int(state.meta[1])  # the kernel queues this call's frauds from here, in row order
        ndim = self.emb_c_.shape[1]
        known, cap, nbr = self.known_days, self.age_cap_days, self.nbr_days
        S = np.zeros((n, 16))
        ec = np.zeros((n, ndim))
        et = np.zeros((n, ndim))
        C = np.zeros((n, 6))
        if n:
            _compiled_kernel()(
                cc, tt, t_ns, lab, state.c_fit, state.t_fit, self.emb_c_, self.emb_t_, self.core_c_, self.core_t_,
                state.ct_key, state.ct_cnt, state.ct_ts, state.ct_len, state.tc_key, state.tc_cnt, state.tc_ts,
                state.tc_len, state.kt_key,
                state.kt_cnt, state.kt_len, state.known_c, state.first_seen, state.p_ts, state.p_c, state.p_t,
                state.meta, state.mark, np.int64(self.overlap_terminals),
                np.int64(round(float(self.delay_days) * _NS_DAY)), np.int64(round(float(self.new_days) * _NS_DAY)),
                np.int64(_UNSET), np.int64(-1 if known is None else round(float(known) * _NS_DAY)),
                np.float64(-1.0 if cap is None else float(cap)),
                np.int64(-1 if nbr is None else round(float(nbr) * _NS_DAY)), S, ec, et, state.fc, state.fc_ok,
                state.ft, state.ft_ok, state.tz, state.tz_n, state.tz_d, state.tf, state.tf_ts, state.nb_c,
                state.nb_t, state.fmeta, np.float64(self.refresh_lr), np.int64(self.refresh_neg),
                np.float64(self.refresh_anchor), np.float64(float(self.conv_days) * _NS_DAY), np.float64(self.scale_),
                bool(self.convergence), C, np.zeros((2, ndim)))
            state.p_tx[q0:int(state.meta[1])] = tx_keys(rows)[lab == 1]
            newest = int(t_ns.max())  # the newest absorbed time: a late row must not move it back (add_labels)
            state.last_time = newest if state.last_time is None else max(state.last_time, newest)
        return S, ec, et, C

    def _finish(self, S, ec, et, C) -> np.ndarray:
        """The feature matrix (the kept columns) from the kernel's outputs: projections, cosine, shares."""
        nrm = np.linalg.norm(ec, axis=1) * np.linalg.norm(et, axis=1)
        cos = np.where(nrm > 0, (ec * et).sum(1) / np.where(nrm > 0, nrm, 1.0), 0.0)
        has_c = np.abs(ec).sum(1) > 0
        has_t = np.abs(et).sum(1) > 0
        pc = np.where(has_c[:, None], (ec - self.mean_) @ self.components_.T, 0.0)
        pt = np.where(has_t[:, None], (et - self.mean_) @ self.components_.T, 0.0)
        ov_share = np.where(S[:, 7] > 0, S[:, 12] / np.maximum(S[:, 7], 1), 0.0)
        extra = ([C[:, :2]] if self.refresh_lr > 0 else []) + ([C[:, 2:]] if self.convergence else [])
        out = np.column_stack([pc, pt, cos, S[:, :15], ov_share, S[:, 15]] + extra)
        keep = self._kept()
        return out if keep is None else out[:, keep]  # selected in numpy (a frame's take: ~0.7 ms)

    def _kept(self) -> np.ndarray | None:
        """Positions of ``feature_names_`` in ``all_names_`` (None: all of them), cached per pair of lists."""
        key = (tuple(self.feature_names_), tuple(self.all_names_))
        got = self.__dict__.get("_kept_cache")
        if got is None or got[0] != key:
            pos = {c: i for i, c in enumerate(self.all_names_)}
            got = self._kept_cache = (key, None if key[0] == key[1] else np.asarray([pos[c] for c in key[0]], np.int64))
        return got[1]


def _known_ids(ids: dict, col: pd.Series) -> np.ndarray:
    """Internal ids of ``col``'s values as ``GraphState.ids`` names them, -1 for a node never seen (none assigned)."""
    return np.fromiter((ids.get(v if type(v) is str else str(v), -1) for v in col.tolist()), np.int64, len(col))


def _set_frauds(state: GraphState, released, released_new, pending, pending_new) -> None:
    """Rewrite the state's frauds: the released ones then the pending ones, each part (ts, customer, terminal, tx)
    merged in time order with its new frauds (the kept ones first on equal times)."""
    parts = []
    for old, new in ((released, released_new), (pending, pending_new)):
        o = np.argsort(np.concatenate([old[0], new[0]]), kind="stable")
        parts.append([np.concatenate([a, b])[o] for a, b in zip(old, new)])
    n_rel = len(parts[0][0])
    state.p_ts = np.concatenate([parts[0][0], parts[1][0]]).astype(np.int64)
    state.p_c = np.concatenate([parts[0][1], parts[1][1]]).astype(np.int32)
    state.p_t = np.concatenate([parts[0][2], parts[1][2]]).astype(np.int32)
    state.p_tx = np.concatenate([parts[0][3], parts[1][3]]).astype(np.int64)
    state.meta[3], state.meta[0], state.meta[1] = 0, n_rel, len(state.p_ts)


def _id_values(rows: pd.DataFrame, name: str):
    """What ``GraphState.ids`` factorizes: the shared list of a text column without missing values, else the
    column itself (pd.factorize then names a missing id as it always did)."""
    col = column(rows, name)
    ids = text_ids(rows, name) if isinstance(col.dtype, pd.StringDtype) else None
    return col if ids is None else ids
