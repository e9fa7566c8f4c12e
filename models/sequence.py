"""Sequence encoder of customer transaction histories (pure torch + numpy; never imports ``fraud``).

Per customer, each transaction becomes an input vector: standardized log amount, log time since
the customer's previous transaction, hour and weekday (cyclic), how new the terminal is for this
customer (first visit to the terminal's bucket, log time since the last visit, number of distinct
terminal buckets so far), and a terminal descriptor (any fixed vector per terminal: by default a
co-occurrence SVD fitted by the caller, later possibly the graph embedding) with the distance of
that descriptor from the customer's running mean of the terminals used so far ("far").

A GRU reads the sequence. Trained self-supervised (no labels), its heads predict the next
transaction from the hidden state *before* it: time gap and hour (Gaussian / categorical), whether
the terminal is new (Bernoulli), the terminal descriptor (Gaussian) and the amount (Gaussian given
the history and the transaction's context). Per transaction the encoder yields the hidden state
before it (behaviour embedding) and the negative log-likelihood of each attribute (surprise).

One code path for batch and stream: :meth:`SequenceEncoder.process` takes a batch of events and a
:class:`SequenceState`, computes the inputs with the state (earlier rows of the same batch count as
history), runs the GRU over all customers at once (events packed time-major by per-customer step
index as in a ``PackedSequence``: one vectorized numpy GRU step per step index across all customers),
scores, and absorbs the events into the state. ``transform`` is ``process`` on a fresh state; the stream calls it on micro-batches.

State per customer is O(1): hidden vector, last timestamp, counters, running descriptor sum, and a
fixed table of ``novelty_buckets`` last-visit times (terminals hashed into buckets; collisions make
"new terminal" a slight under-estimate).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

LOG2PI = math.log(2 * math.pi)
SECONDS_PER_DAY = 86400.0

#: columns of the per-event output, in order (after the embedding columns emb_0..emb_{H-1})
SCORE_NAMES = (
    "nll_amount", "nll_gap", "nll_hour", "nll_novel", "nll_terminal", "nll_total",
    "amount_z", "gap_z", "novel", "since_z", "n_distinct", "term_dist",
)


# ----------------------------------------------------------------------------------------------
# state
@dataclass
class SequenceState:
    """Online state of many customers (slot arrays). Picklable; memory per customer is fixed.

    ``slots`` maps a customer key to a row of the arrays. River-style single-event access:
    :meth:`SequenceEncoder.score_one` / :meth:`SequenceEncoder.learn_one`.
    """

    hidden: int
    novelty_buckets: int
    term_dim: int
    slots: dict = field(default_factory=dict)
    h: np.ndarray = None  # (n, H) float32, hidden state after the customer's last event
    last_ts: np.ndarray = None  # (n,) float64 seconds, NaN = no event yet
    n_events: np.ndarray = None  # (n,) int64
    n_distinct: np.ndarray = None  # (n,) int64 distinct novelty buckets visited
    term_last: np.ndarray = None  # (n, B) float64 last visit time per terminal bucket, NaN = never
    term_sum: np.ndarray = None  # (n, K) float64 sum of terminal descriptors used
    n_known: np.ndarray = None  # (n,) int64 events whose terminal had a descriptor

    def __post_init__(self):
        if self.h is None:
            self.h = np.zeros((0, self.hidden), np.float32)
            self.last_ts = np.zeros(0)
            self.n_events = np.zeros(0, np.int64)
            self.n_distinct = np.zeros(0, np.int64)
            self.term_last = np.zeros((0, self.novelty_buckets))
            self.term_sum = np.zeros((0, self.term_dim))
            self.n_known = np.zeros(0, np.int64)

    def __len__(self) -> int:
        return len(self.slots)

    #: the per-slot arrays, with their dtypes
    ARRAYS = {"h": np.float32, "last_ts": np.float64, "n_events": np.int64, "n_distinct": np.int64,
              "term_last": np.float64, "term_sum": np.float64, "n_known": np.int64}

    def to_arrays(self) -> tuple[dict, dict, list]:
        """Checkpoint form (``fraud.safestate``): sizes, the slot keys (str) and values, the slot arrays."""
        arrays = {k: getattr(self, k) for k in self.ARRAYS}
        arrays["slots.keys"] = list(self.slots.keys())
        arrays["slots.values"] = np.fromiter(self.slots.values(), dtype=np.int64, count=len(self.slots))
        return {"hidden": int(self.hidden), "novelty_buckets": int(self.novelty_buckets),
                "term_dim": int(self.term_dim)}, arrays, []

    @classmethod
    def from_arrays(cls, meta: dict, arrays: dict, children: list) -> "SequenceState":
        keys, values = arrays["slots.keys"], arrays["slots.values"]
        if len(keys) != len(values):
            raise ValueError(f"SequenceState slots: {len(keys)} keys but {len(values)} values")
        st = cls(int(meta["hidden"]), int(meta["novelty_buckets"]), int(meta["term_dim"]),
                 slots=dict(zip(keys, values.tolist())))
        cols = {"h": st.hidden, "term_last": st.novelty_buckets, "term_sum": st.term_dim}
        n = len(arrays["h"])
        if len(values) and (values.min() < 0 or values.max() >= n):
            raise ValueError(f"SequenceState slots: values outside the {n} rows")
        for k, dt in cls.ARRAYS.items():
            a = arrays[k]
            shape = (n, cols[k]) if k in cols else (n,)
            if a.dtype != np.dtype(dt) or a.shape != shape:
                raise ValueError(f"SequenceState.{k}: {a.dtype} {a.shape}, expected {np.dtype(dt)} {shape}")
            setattr(st, k, a)
        return st

    def slot_of(self, keys, prior: np.ndarray) -> np.ndarray:
        """Slots for ``keys`` (new customers get a slot initialised from the population prior)."""
        slots = self.slots
        got = list(map(slots.get, keys))  # C-level lookups; new customers (rare) get slots in order
        if None in got:
            for i, s in enumerate(got):
                if s is None:
                    k = keys[i]
                    s = slots.get(k)
                    if s is None:
                        s = slots[k] = len(slots)
                    got[i] = s
            self._grow(len(slots), prior)
        return np.array(got, dtype=np.int64)

    def _grow(self, n: int, prior: np.ndarray) -> None:
        old = len(self.h)
        if n <= old:
            return
        add = max(n - old, old // 2, 16)  # capacity grows geometrically: amortized O(1) per customer
        self.h = np.concatenate([self.h, np.repeat(prior[None, :].astype(np.float32), add, 0)])
        self.last_ts = np.concatenate([self.last_ts, np.full(add, np.nan)])
        self.n_events = np.concatenate([self.n_events, np.zeros(add, np.int64)])
        self.n_distinct = np.concatenate([self.n_distinct, np.zeros(add, np.int64)])
        self.term_last = np.concatenate([self.term_last, np.full((add, self.novelty_buckets), np.nan)])
        self.term_sum = np.concatenate([self.term_sum, np.zeros((add, self.term_dim))])
        self.n_known = np.concatenate([self.n_known, np.zeros(add, np.int64)])

    def nbytes_per_customer(self) -> int:
        return int(self.hidden * 4 + 8 * 4 + 8 * self.novelty_buckets + 8 * self.term_dim)


# ----------------------------------------------------------------------------------------------
# input features
@dataclass
class Inputs:
    x: np.ndarray  # (n, D) GRU input (float32)
    ctx: np.ndarray  # (n, C) context of the event without its amount (float32)
    amount_z: np.ndarray  # standardized log amount
    gap_z: np.ndarray  # standardized log gap (0 for a first event)
    first: np.ndarray  # bool: customer's first event ever
    hour: np.ndarray  # int hour of day
    novel: np.ndarray  # float 0/1
    since_z: np.ndarray
    n_distinct: np.ndarray  # log1p(distinct buckets before)
    term_vec: np.ndarray  # (n, K) float32 descriptor
    known: np.ndarray  # float 0/1: descriptor present
    term_dist: np.ndarray  # distance of the descriptor from the customer's running mean


def _group_prev(key: np.ndarray):
    """For each row: index of the previous row with the same key (in row order), or -1."""
    order = np.argsort(key, kind="stable")
    ks = key[order]
    prev_sorted = np.empty(len(order), np.int64)
    prev_sorted[0:1] = -1
    if len(order) > 1:
        same = ks[1:] == ks[:-1]
        prev_sorted[1:] = np.where(same, order[:-1], -1)
    prev = np.empty(len(order), np.int64)
    prev[order] = prev_sorted
    return prev, order


def _cum_within(order: np.ndarray, key: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Inclusive cumulative sum of ``values`` (rows, ...) per key, in row order (float64)."""
    v = values[order].astype(np.float64)
    ks = key[order]
    cs = np.cumsum(v, axis=0)
    start = np.ones(len(ks), bool)
    start[1:] = ks[1:] != ks[:-1]
    idx = np.flatnonzero(start)
    base = np.zeros_like(cs)
    # subtract the cumulative sum just before each group's start
    before = np.concatenate([np.zeros((1,) + cs.shape[1:]), cs[:-1]])[idx]
    grp = np.cumsum(start) - 1
    base = before[grp]
    out = np.empty_like(cs)
    out[order] = cs - base
    return out


# ----------------------------------------------------------------------------------------------
# the model
class SequenceNet(nn.Module):
    """GRU + prediction heads. ``h0`` is the learned population prior (cold start)."""

    N_SCALAR = 11  # amount_z, gap_z, first, hs, hc, ws, wc, novel, since_z, n_distinct, known

    def __init__(self, term_dim: int, hidden: int = 16, amount_hidden: int = 32):
        super().__init__()
        self.term_dim = term_dim
        self.hidden = hidden
        d_in = self.N_SCALAR + 1 + term_dim  # + term_dist
        self.gru = nn.GRU(d_in, hidden)
        self.h0 = nn.Parameter(torch.zeros(hidden))
        ctx = d_in - 1  # everything but amount_z
        self.gap_head = nn.Linear(hidden, 2)
        self.hour_head = nn.Linear(hidden, 24)
        self.novel_head = nn.Linear(hidden + 2, 1)  # + gap_z, first
        self.term_head = nn.Linear(hidden + 1, 2 * term_dim)  # + novel
        self.amount_head = nn.Sequential(nn.Linear(hidden + ctx, amount_hidden), nn.Tanh(),
                                         nn.Linear(amount_hidden, 2))

    @staticmethod
    def _gauss(x, mu, logvar):
        logvar = logvar.clamp(-7.0, 7.0)
        return 0.5 * (LOG2PI + logvar + (x - mu) ** 2 * torch.exp(-logvar))

    def heads(self, hb: torch.Tensor, x: torch.Tensor, hour: torch.Tensor):
        """Per-attribute NLL of events given the hidden state before them.

        x: the events' own inputs (column 0 amount_z, 1 gap_z, 2 first, 7 novel, 10 known, 11.. descriptor).
        Returns dict of (n,) tensors and the amount z-score.
        """
        amount = x[:, 0]
        gap = x[:, 1]
        first = x[:, 2]
        novel = x[:, 7]
        known = x[:, 10]
        tv = x[:, self.N_SCALAR + 1:]
        g = self.gap_head(hb)
        nll_gap = self._gauss(gap, g[:, 0], g[:, 1]) * (1.0 - first)
        nll_hour = nn.functional.cross_entropy(self.hour_head(hb), hour, reduction="none")
        nl = self.novel_head(torch.cat([hb, x[:, 1:3]], 1))[:, 0]
        nll_novel = nn.functional.binary_cross_entropy_with_logits(nl, novel, reduction="none")
        t = self.term_head(torch.cat([hb, x[:, 7:8]], 1))
        k = self.term_dim
        nll_term = self._gauss(tv, t[:, :k], t[:, k:]).sum(1) * known
        a = self.amount_head(torch.cat([hb, x[:, 1:]], 1))
        nll_amount = self._gauss(amount, a[:, 0], a[:, 1])
        amount_z = (amount - a[:, 0]) * torch.exp(-0.5 * a[:, 1].clamp(-7.0, 7.0))
        total = nll_amount + nll_gap + nll_hour + nll_novel + nll_term
        return dict(nll_amount=nll_amount, nll_gap=nll_gap, nll_hour=nll_hour, nll_novel=nll_novel,
                    nll_terminal=nll_term, nll_total=total, amount_z=amount_z)


def build_packed(group: np.ndarray):
    """Pack events of many sequences, given each event's sequence id (0..S-1) in time order.

    Returns (packed_index per event, batch_sizes, rank per sequence, step per event). The GRU's
    step k processes, in rank order, every sequence that has more than k events.
    """
    n = len(group)
    S = int(group.max()) + 1 if n else 0
    counts = np.bincount(group, minlength=S)
    order = np.argsort(group, kind="stable")
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    step = np.empty(n, np.int64)
    step[order] = np.arange(n) - np.repeat(starts, counts)
    rank_order = np.argsort(-counts, kind="stable")
    rank = np.empty(S, np.int64)
    rank[rank_order] = np.arange(S)
    maxc = int(counts.max()) if S else 0
    hist = np.bincount(counts, minlength=maxc + 1)
    # batch_sizes[k] = #sequences with count > k
    batch_sizes = (S - np.cumsum(hist))[:maxc]
    offsets = np.concatenate([[0], np.cumsum(batch_sizes)[:-1]])
    packed = offsets[step] + rank[group]
    return packed, batch_sizes, rank, step, offsets


class SequenceEncoder:
    """Input featurization + :class:`SequenceNet` + self-supervised trainer + online processing.

    Parameters are stored by ``__init__``; ``fit`` learns ``net_`` and the input scalers.
    Event arrays: ``keys`` (customer keys, hashable), ``ts`` (float64 seconds), ``term_hash``
    (uint64 per terminal, for novelty), ``term_vec`` ((n, K) float32 descriptor; rows of zeros with
    ``known`` = 0 where absent), ``amount`` (float64 >= 0).
    """

    def __init__(self, hidden: int = 16, novelty_buckets: int = 256, epochs: int = 4, window: int = 32,
                 batch_customers: int = 64, lr: float = 3e-3, max_train_events: int = 300_000,
                 random_state: int = 0, threads: int | None = 1, verbose: bool = False):
        self.hidden = hidden
        self.novelty_buckets = novelty_buckets
        self.epochs = epochs
        self.window = window
        self.batch_customers = batch_customers
        self.lr = lr
        self.max_train_events = max_train_events
        self.random_state = random_state
        self.threads = threads
        self.verbose = verbose
        self.fast_single = True  # single events take the numpy path (set False to compare)

    # ---------------- inputs
    def new_state(self) -> SequenceState:
        self._check()
        return SequenceState(self.hidden, self.novelty_buckets, self.term_dim_)

    def _check(self):
        if not hasattr(self, "net_"):  # models/ never imports fraud.errors; the featurizer raises NotFittedError
            raise AttributeError("SequenceEncoder is not fitted; call fit first")

    def _inputs(self, state: SequenceState, slots, ts, term_hash, term_vec, known, amount, scal=None):
        """Input vectors of a batch of events given ``state`` (earlier rows in the batch count)."""
        scal = self.scalers_ if scal is None else scal
        B = self.novelty_buckets
        prev, order = _group_prev(slots)
        has_prev = prev >= 0
        prev_ts = np.where(has_prev, ts[np.maximum(prev, 0)], state.last_ts[slots])
        first = np.isnan(prev_ts)
        dt = np.where(first, 0.0, np.maximum(ts - np.where(first, 0.0, prev_ts), 0.0))
        gap = np.log1p(dt)
        bucket = (term_hash % np.uint64(B)).astype(np.int64)
        tkey = slots * B + bucket
        tprev, torder = _group_prev(tkey)
        last_visit = np.where(tprev >= 0, ts[np.maximum(tprev, 0)], state.term_last[slots, bucket])
        novel = np.isnan(last_visit)
        since = np.where(novel, 0.0, np.log1p(np.maximum(ts - np.where(novel, 0.0, last_visit), 0.0)))
        # distinct buckets before this event: state + novel events earlier in the batch
        # (one grouped cumulative sum for the three running quantities: column-wise it is the same sum)
        kn = known.astype(np.float64)
        cum = _cum_within(order, slots, np.column_stack([novel.astype(np.float64), kn,
                                                         term_vec.astype(np.float64) * kn[:, None]]))
        nov_cum = cum[:, 0]
        n_distinct = state.n_distinct[slots] + (nov_cum - novel)
        # running mean of descriptors before this event ("far")
        vsum = cum[:, 2:] - term_vec * kn[:, None]
        vsum = vsum + state.term_sum[slots]
        kcount = cum[:, 1] - kn + state.n_known[slots]
        mean = vsum / np.maximum(kcount, 1.0)[:, None]
        dist = np.sqrt(((term_vec - mean) ** 2).sum(1))
        dist = np.where((kcount > 0) & (known > 0), dist, 0.0)
        sec_day = np.mod(ts, SECONDS_PER_DAY)
        hour_f = sec_day / 3600.0
        day = np.floor(ts / SECONDS_PER_DAY)
        wd = np.mod(day + 3.0, 7.0)  # 1970-01-01 was a Thursday; Monday = 0
        amount_z = (np.log1p(amount) - scal["a_mu"]) / scal["a_sd"]
        gap_z = np.where(first, 0.0, (gap - scal["g_mu"]) / scal["g_sd"])
        since_z = np.where(novel, 0.0, (since - scal["g_mu"]) / scal["g_sd"])
        nd = np.log1p(n_distinct)
        dist_z = dist / scal["d_sc"]
        cols = [amount_z, gap_z, first.astype(np.float64),
                np.sin(2 * np.pi * hour_f / 24), np.cos(2 * np.pi * hour_f / 24),
                np.sin(2 * np.pi * wd / 7), np.cos(2 * np.pi * wd / 7),
                novel.astype(np.float64), since_z, nd, known.astype(np.float64), dist_z]
        x = np.concatenate([np.stack(cols, 1), term_vec * known[:, None]], 1).astype(np.float32)
        hour = np.minimum(np.floor(hour_f).astype(np.int64), 23)
        extra = dict(bucket=bucket, tkey=tkey, torder=torder, order=order, n_distinct_after=n_distinct + novel,
                     vsum_after=vsum + term_vec * kn[:, None], kcount_after=kcount + kn)
        return x, hour, first, extra, dict(gap_z=gap_z, novel=novel.astype(np.float64), since_z=since_z,
                                           n_distinct=nd, term_dist=dist_z)

    # ---------------- fit
    def fit(self, keys, ts, term_hash, term_vec, known, amount):
        """Self-supervised training on unlabelled history (events in time order).

        Trains with ``threads`` torch threads (default 1: tiny recurrent steps gain nothing from more,
        and lose much on a shared machine); None leaves torch's setting alone.
        """
        old = torch.get_num_threads()
        if self.threads:
            torch.set_num_threads(self.threads)
        try:
            return self._fit(keys, ts, term_hash, term_vec, known, amount)
        finally:
            torch.set_num_threads(old)

    def _fit(self, keys, ts, term_hash, term_vec, known, amount):
        rng = np.random.default_rng(self.random_state)
        torch.manual_seed(self.random_state)
        term_vec = np.asarray(term_vec, np.float32)
        known = np.asarray(known, np.float64)
        self.term_dim_ = term_vec.shape[1]
        codes, _ = _factorize(keys)
        la = np.log1p(np.asarray(amount, np.float64))
        # scalers from the data (gap/dist need a first pass on a fresh state)
        scal = dict(a_mu=float(la.mean()), a_sd=float(la.std() + 1e-6), g_mu=0.0, g_sd=1.0, d_sc=1.0)
        self.net_ = SequenceNet(self.term_dim_, self.hidden)
        st = SequenceState(self.hidden, self.novelty_buckets, self.term_dim_)
        st._grow(int(codes.max()) + 1 if len(codes) else 0, np.zeros(self.hidden, np.float32))
        x, hour, first, _, raw = self._inputs(st, codes, ts, term_hash, term_vec, known, amount, scal)
        gap = np.asarray(x[:, 1], np.float64)[~first]
        scal["g_mu"] = float(gap.mean()) if len(gap) else 0.0
        scal["g_sd"] = float(gap.std() + 1e-6) if len(gap) else 1.0
        d = raw["term_dist"][raw["term_dist"] > 0]
        scal["d_sc"] = float(np.median(d)) if len(d) else 1.0
        self.scalers_ = scal
        x, hour, first, _, _ = self._inputs(st, codes, ts, term_hash, term_vec, known, amount, scal)
        self._train(codes, x, hour, rng)
        self.net_.eval()
        return self

    def _train(self, codes, x, hour, rng):
        net = self.net_
        S = int(codes.max()) + 1 if len(codes) else 0
        counts = np.bincount(codes, minlength=S)
        custs = rng.permutation(S)
        # subsample customers to the training budget
        keep = custs[np.cumsum(counts[custs]) <= self.max_train_events]
        if len(keep) == 0:
            keep = custs[:1]
        order = np.argsort(codes, kind="stable")
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
        X = torch.from_numpy(x)
        Hr = torch.from_numpy(hour)
        opt = _Adam(list(net.parameters()), lr=self.lr)
        L = self.window
        self.train_loss_ = []
        for ep in range(self.epochs):
            perm = rng.permutation(keep)
            tot, cnt = 0.0, 0
            for b0 in range(0, len(perm), self.batch_customers):
                grp = perm[b0:b0 + self.batch_customers]
                grp = grp[np.argsort(-counts[grp], kind="stable")]
                lens = counts[grp]
                T = int(lens.max())
                # padded (B, T) index into events; -1 = pad
                idx = np.full((len(grp), T), -1, np.int64)
                for j, c in enumerate(grp):
                    idx[j, :lens[j]] = order[starts[c]:starts[c] + lens[j]]
                h = net.h0[None, None, :].expand(1, len(grp), -1).contiguous()
                for w0 in range(0, T, L):
                    active = int((lens > w0).sum())
                    sub = idx[:active, w0:w0 + L]
                    mask = torch.from_numpy(sub >= 0)
                    si = torch.from_numpy(np.maximum(sub, 0))
                    xb = X[si]  # (A, l, D)
                    hb_in = h[:, :active]
                    out, hn = net.gru(xb.transpose(0, 1), hb_in)  # (l, A, H)
                    out = out.transpose(0, 1)
                    before = torch.cat([hb_in.transpose(0, 1), out[:, :-1]], 1)  # (A, l, H)
                    m = mask.reshape(-1)
                    res = net.heads(before.reshape(-1, net.hidden)[m], xb.reshape(-1, xb.shape[-1])[m],
                                    Hr[si].reshape(-1)[m])
                    loss = res["nll_total"].mean()
                    opt.zero_grad()
                    loss.backward()
                    nn.utils.clip_grad_norm_(net.parameters(), 5.0)
                    opt.step()
                    tot += float(loss.detach()) * int(m.sum())
                    cnt += int(m.sum())
                    # carry the detached state after each sequence's last real step in this window
                    # (hn would hold the state after padded steps for sequences ending here)
                    last = (mask.sum(1) - 1).clamp(min=0)
                    h_real = out.detach()[torch.arange(active), last][None]
                    h = h_real
                    if active < h.shape[1]:
                        h = h[:, :active]
            self.train_loss_.append(tot / max(cnt, 1))
            if self.verbose:
                print(f"epoch {ep + 1}/{self.epochs}: mean NLL {self.train_loss_[-1]:.4f}")

    # ---------------- online / batch processing (one path: numpy only, no torch call)
    def process(self, state: SequenceState, keys, ts, term_hash, term_vec, known, amount,
                commit: bool = True) -> np.ndarray:
        """Features of a batch of events (time order) given ``state``; absorb them when ``commit``.

        Returns (n, H + len(SCORE_NAMES)) float32: embedding before the event, then SCORE_NAMES.
        """
        self._check()
        n = len(ts)
        if n == 0:
            return np.zeros((0, self.hidden + len(SCORE_NAMES)), np.float32)
        if n == 1 and self.fast_single:
            return self._process_one(state, keys[0], float(ts[0]), term_hash[0], np.asarray(term_vec[0], np.float32),
                                     float(known[0]), float(amount[0]), commit)[None]
        slots = state.slot_of(keys, self._np()["prior"])
        uslots, group = np.unique(slots, return_inverse=True)  # local sequence ids for the GRU
        return self._process_slots(state, slots, uslots, group, ts, term_hash, term_vec, known, amount, commit)

    def _process_slots(self, state: SequenceState, slots, uslots, group, ts, term_hash, term_vec, known, amount,
                       commit: bool = True) -> np.ndarray:
        """:meth:`process` of 2+ events whose slots are known: ``slots`` per event, ``uslots`` the distinct ones
        (sorted) and ``group`` each event's position in ``uslots``."""
        n = len(ts)
        H = self.hidden
        term_vec = np.asarray(term_vec, np.float32)
        known = np.asarray(known, np.float64)
        ts = np.asarray(ts, np.float64)
        x, hour, first, extra, raw = self._inputs(state, slots, ts, term_hash, term_vec, known,
                                                  np.asarray(amount, np.float64))
        packed, batch_sizes, rank, step, offsets = build_packed(group)
        data = np.empty_like(x)
        data[packed] = x
        h0 = np.empty((len(uslots), H), np.float32)
        h0[rank] = state.h[uslots]
        od, hn = self._gru_packed(data, batch_sizes, h0)
        prev_packed = np.where(step > 0, offsets[np.maximum(step - 1, 0)] + rank[group], -1)
        hb = np.where((step > 0)[:, None], od[np.maximum(prev_packed, 0)], state.h[slots])
        hb = np.ascontiguousarray(hb, np.float32)
        chunk = 200_000
        heads = np.concatenate([self._heads_np(hb[i:i + chunk], x[i:i + chunk], hour[i:i + chunk])
                                for i in range(0, n, chunk)])
        cols = [raw[k] for k in ("gap_z", "novel", "since_z", "n_distinct", "term_dist")]
        feats = np.concatenate([hb, heads, np.stack(cols, 1).astype(np.float32)], 1)
        if commit:
            state.h[uslots] = hn[rank]
            # last event per slot in this batch
            gorder = np.argsort(group, kind="stable")
            ends = np.cumsum(np.bincount(group, minlength=len(uslots))) - 1
            last_idx = gorder[ends]  # each slot's last event in this batch
            ls = uslots
            state.last_ts[ls] = ts[last_idx]
            state.n_distinct[ls] = extra["n_distinct_after"][last_idx].astype(np.int64)
            state.term_sum[ls] = extra["vsum_after"][last_idx]
            state.n_known[ls] = extra["kcount_after"][last_idx].astype(np.int64)
            np.add.at(state.n_events, slots, 1)
            np.fmax.at(state.term_last, (slots, extra["bucket"]), ts)  # rows are in time order
        return feats

    #: the per-customer (slot) arrays of a SequenceState
    SLOT_ARRAYS = ("h", "last_ts", "n_events", "n_distinct", "term_last", "term_sum", "n_known")

    def process_many(self, states, batches) -> list:
        """``process`` (with commit) for several independent states at once, e.g. one per Kafka partition:
        ``batches[i]`` = the ``(keys, ts, term_hash, term_vec, known, amount)`` of ``states[i]``. The slots the
        batches touch are gathered into one temporary state, processed in one pass and written back: every
        quantity is per customer, so this equals one ``process`` per state (up to float32 rounding of the
        batched GRU/head products). Returns one feature array per state."""
        if len(states) == 1:
            return [self.process(states[0], *batches[0])]
        return np.split(self.process_stacked(states, batches), np.cumsum([len(b[1]) for b in batches])[:-1])

    def process_stacked(self, states, batches) -> np.ndarray:
        """:meth:`process_many`'s feature arrays stacked in state order (one array: no split to undo)."""
        if len(states) == 1:
            return self.process(states[0], *batches[0])
        self._check()
        prior = self._np()["prior"]
        touched, local, off = [], [], 0
        for st, b in zip(states, batches):
            u, inv = np.unique(st.slot_of(b[0], prior), return_inverse=True)
            touched.append(u)
            local.append(inv.reshape(-1) + off)
            off += len(u)
        st0 = states[0]
        tmp = SequenceState(st0.hidden, st0.novelty_buckets, st0.term_dim, slots={i: i for i in range(off)},
                            **{a: np.concatenate([getattr(st, a)[u] for st, u in zip(states, touched)])
                               for a in self.SLOT_ARRAYS})
        cols = [np.concatenate([np.asarray(x) for x in c]) for c in list(zip(*batches))[1:]]
        local = np.concatenate(local)
        if len(local) > 1:  # the temporary state's slots are 0..off-1, each used: no lookup, no np.unique
            feats = self._process_slots(tmp, local, np.arange(off), local, *cols)
        else:
            feats = self.process(tmp, local.tolist(), *cols)
        i = 0
        for st, u in zip(states, touched):
            for a in self.SLOT_ARRAYS:
                getattr(st, a)[u] = getattr(tmp, a)[i:i + len(u)]
            i += len(u)
        return feats

    # ---------------- single event fast path (numpy; same arithmetic as process)
    def _np(self):
        c = getattr(self, "_np_cache", None)
        if c is None:
            sd = {k: v.detach().numpy().astype(np.float32) for k, v in self.net_.state_dict().items()}
            c = dict(W_ih=sd["gru.weight_ih_l0"], W_hh=sd["gru.weight_hh_l0"], b_ih=sd["gru.bias_ih_l0"],
                     b_hh=sd["gru.bias_hh_l0"], Wg=sd["gap_head.weight"], bg=sd["gap_head.bias"],
                     Wh=sd["hour_head.weight"], bh=sd["hour_head.bias"], Wn=sd["novel_head.weight"],
                     bn=sd["novel_head.bias"], Wt=sd["term_head.weight"], bt=sd["term_head.bias"],
                     W1=sd["amount_head.0.weight"], b1=sd["amount_head.0.bias"], W2=sd["amount_head.2.weight"],
                     b2=sd["amount_head.2.bias"], prior=sd["h0"])
            self._np_cache = c
        return c

    @staticmethod
    def _gauss_np(x, mu, logvar):
        logvar = np.clip(logvar, np.float32(-7.0), np.float32(7.0))
        return np.float32(0.5) * (np.float32(LOG2PI) + logvar + (x - mu) ** 2 * np.exp(-logvar))

    def _heads_np(self, hb: np.ndarray, x: np.ndarray, hour: np.ndarray) -> np.ndarray:
        """SequenceNet.heads in numpy float32 (inference): (n, 7) nll_amount, nll_gap, nll_hour,
        nll_novel, nll_terminal, nll_total, amount_z."""
        c = self._np()
        f32 = np.float32
        g = hb @ c["Wg"].T + c["bg"]
        nll_gap = self._gauss_np(x[:, 1], g[:, 0], g[:, 1]) * (f32(1.0) - x[:, 2])
        hl = hb @ c["Wh"].T + c["bh"]
        m = hl.max(1, keepdims=True)
        nll_hour = (m[:, 0] + np.log(np.exp(hl - m).sum(1))) - hl[np.arange(len(hl)), hour]
        nl = (np.concatenate([hb, x[:, 1:3]], 1) @ c["Wn"].T + c["bn"])[:, 0]
        y = x[:, 7]
        nll_novel = np.maximum(nl, f32(0.0)) - nl * y + np.log1p(np.exp(-np.abs(nl)))
        t = np.concatenate([hb, x[:, 7:8]], 1) @ c["Wt"].T + c["bt"]
        k = self.term_dim_
        nll_term = self._gauss_np(x[:, SequenceNet.N_SCALAR + 1:], t[:, :k], t[:, k:]).sum(1) * x[:, 10]
        a = np.tanh(np.concatenate([hb, x[:, 1:]], 1) @ c["W1"].T + c["b1"]) @ c["W2"].T + c["b2"]
        nll_amount = self._gauss_np(x[:, 0], a[:, 0], a[:, 1])
        amount_z = (x[:, 0] - a[:, 0]) * np.exp(f32(-0.5) * np.clip(a[:, 1], f32(-7.0), f32(7.0)))
        total = nll_amount + nll_gap + nll_hour + nll_novel + nll_term
        return np.stack([nll_amount, nll_gap, nll_hour, nll_novel, nll_term, total, amount_z], 1).astype(np.float32)

    def _gru_packed(self, data: np.ndarray, batch_sizes: np.ndarray, h0: np.ndarray):
        """GRU over packed events (numpy float32): one step per step index, all sequences at once."""
        c = self._np()
        H = self.hidden
        gi_all = data @ c["W_ih"].T + c["b_ih"]
        W_hhT = np.ascontiguousarray(c["W_hh"].T)
        b_hh = c["b_hh"]
        out = np.empty((len(data), H), np.float32)
        h = h0.copy()
        off = 0
        for bs in batch_sizes.tolist():
            hh = h[:bs]
            gi = gi_all[off:off + bs]
            gh = hh @ W_hhT + b_hh
            hnew = _gru_gate(gi, gh, hh, H)
            out[off:off + bs] = hnew
            h[:bs] = hnew
            off += bs
        return out, h

    def _process_one(self, state: SequenceState, key, ts: float, th, tv: np.ndarray, kn: float, amount: float,
                     commit: bool) -> np.ndarray:
        c = self._np()
        scal = self.scalers_
        s = state.slots.get(key)
        if s is None:
            s = int(state.slot_of([key], c["prior"])[0])
        B = self.novelty_buckets
        prev_ts = state.last_ts[s]
        first = bool(np.isnan(prev_ts))
        gap = 0.0 if first else float(np.log1p(max(ts - prev_ts, 0.0)))
        b = int(np.uint64(th) % np.uint64(B))
        lv = state.term_last[s, b]
        novel = bool(np.isnan(lv))
        since = 0.0 if novel else float(np.log1p(max(ts - lv, 0.0)))
        n_distinct = int(state.n_distinct[s])
        kcount = float(state.n_known[s])
        tv64 = tv.astype(np.float64)
        if kcount > 0 and kn > 0:
            mean = state.term_sum[s] / max(kcount, 1.0)
            dist = float(np.sqrt(((tv64 - mean) ** 2).sum()))
        else:
            dist = 0.0
        hour_f = float(np.mod(ts, SECONDS_PER_DAY)) / 3600.0
        wd = float(np.mod(np.floor(ts / SECONDS_PER_DAY) + 3.0, 7.0))
        amount_z = (float(np.log1p(amount)) - scal["a_mu"]) / scal["a_sd"]
        gap_z = 0.0 if first else (gap - scal["g_mu"]) / scal["g_sd"]
        since_z = 0.0 if novel else (since - scal["g_mu"]) / scal["g_sd"]
        nd = float(np.log1p(n_distinct))
        dist_z = dist / scal["d_sc"]
        scal_cols = np.array([amount_z, gap_z, float(first), np.sin(2 * np.pi * hour_f / 24),
                              np.cos(2 * np.pi * hour_f / 24), np.sin(2 * np.pi * wd / 7), np.cos(2 * np.pi * wd / 7),
                              float(novel), since_z, nd, kn, dist_z])
        x = np.concatenate([scal_cols, tv * kn]).astype(np.float32)
        hour = min(int(np.floor(hour_f)), 23)
        hb = state.h[s]
        out = np.empty(self.hidden + len(SCORE_NAMES), np.float32)
        H = self.hidden
        out[:H] = hb
        out[H:H + 7] = self._heads_np(hb[None], x[None], np.array([hour]))[0]
        out[H + 7:] = (gap_z, float(novel), since_z, nd, dist_z)
        if commit:
            gi = c["W_ih"] @ x + c["b_ih"]
            gh = c["W_hh"] @ hb + c["b_hh"]
            state.h[s] = _gru_gate(gi[None], gh[None], hb[None], H)[0]
            state.last_ts[s] = ts
            state.n_distinct[s] = n_distinct + int(novel)
            state.term_sum[s] += tv64 * kn
            state.n_known[s] += int(kn > 0)
            state.n_events[s] += 1
            state.term_last[s, b] = ts if novel else max(lv, ts)
        return out

    def score_one(self, state: SequenceState, key, ts: float, term_hash: int, term_vec, known: bool,
                  amount: float) -> dict:
        """River-style: features of one event given the state, without learning it."""
        f = self.process(state, [key], np.array([ts]), np.array([term_hash], np.uint64),
                         np.asarray(term_vec, np.float32)[None], np.array([float(known)]), np.array([amount]),
                         commit=False)[0]
        return dict(zip(self.feature_names(), f.tolist()))

    def learn_one(self, state: SequenceState, key, ts: float, term_hash: int, term_vec, known: bool,
                  amount: float) -> None:
        """River-style: absorb one event into the customer's state (O(1))."""
        self.process(state, [key], np.array([ts]), np.array([term_hash], np.uint64),
                     np.asarray(term_vec, np.float32)[None], np.array([float(known)]), np.array([amount]))

    def feature_names(self) -> list[str]:
        return [f"emb_{i}" for i in range(self.hidden)] + list(SCORE_NAMES)

    # ---------------- persistence
    def get_state(self) -> dict:
        self._check()
        return dict(params=dict(hidden=self.hidden, novelty_buckets=self.novelty_buckets, epochs=self.epochs,
                                window=self.window, batch_customers=self.batch_customers, lr=self.lr,
                                max_train_events=self.max_train_events, random_state=self.random_state,
                                threads=self.threads),
                    term_dim=self.term_dim_, scalers=self.scalers_,
                    weights={k: v.clone() for k, v in self.net_.state_dict().items()})

    @classmethod
    def from_state(cls, d: dict) -> "SequenceEncoder":
        enc = cls(**d["params"])
        enc.term_dim_ = d["term_dim"]
        enc.scalers_ = dict(d["scalers"])
        enc.net_ = SequenceNet(enc.term_dim_, enc.hidden)
        enc.net_.load_state_dict(d["weights"])
        enc.net_.eval()
        return enc


class _Adam:
    """Plain Adam (Kingma & Ba). torch.optim.Adam works too, but its first use imports
    torch._dynamo, which costs seconds; this keeps a small fit fast."""

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8):
        self.params, self.lr, self.betas, self.eps, self.t = params, lr, betas, eps, 0
        self.m = [torch.zeros_like(p) for p in params]
        self.v = [torch.zeros_like(p) for p in params]

    def zero_grad(self):
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self):
        self.t += 1
        b1, b2 = self.betas
        c1, c2 = 1 - b1 ** self.t, 1 - b2 ** self.t
        for p, m, v in zip(self.params, self.m, self.v):
            if p.grad is None:
                continue
            m.mul_(b1).add_(p.grad, alpha=1 - b1)
            v.mul_(b2).addcmul_(p.grad, p.grad, value=1 - b2)
            p.addcdiv_(m / c1, (v / c2).sqrt_().add_(self.eps), value=-self.lr)


def _gru_gate(gi: np.ndarray, gh: np.ndarray, h: np.ndarray, H: int) -> np.ndarray:
    """torch.nn.GRU's cell: r, z, n gates (rows = sequences)."""
    r = 1.0 / (1.0 + np.exp(-(gi[:, :H] + gh[:, :H])))
    z = 1.0 / (1.0 + np.exp(-(gi[:, H:2 * H] + gh[:, H:2 * H])))
    n = np.tanh(gi[:, 2 * H:] + r * gh[:, 2 * H:])
    return (1.0 - z) * n + z * h


def _factorize(keys):
    keys = np.asarray(keys)
    uniq, codes = np.unique(keys, return_inverse=True)
    return codes.astype(np.int64), uniq
