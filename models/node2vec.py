"""Node2Vec: second-order biased random walks and skip-gram with negative sampling, both in numba.

PyG's ``Node2Vec`` needs ``pyg-lib`` for its walks, which is not installable here, so the walks are
ours (``_walks_kernel``): Grover & Leskovec's biased walks by rejection sampling over a CSR adjacency, in
parallel threads, each walk with its own random stream (the same walks for a seed at any thread count).
The skip-gram is ours too (``backend="numba"``, gensim's ``sg=1, hs=0, sample=0`` with an alias table for
the negatives) because gensim's Word2Vec took over 90 % of the time; ``workers=1`` is deterministic for a
seed, ``workers=k`` is lock-free Hogwild. ``backend="gensim"`` and ``"torch"`` are kept for comparison.
Details: docs/detection.md; figures (``fraud bench node2vec``): docs/benchmarks.md.
"""
from __future__ import annotations

import contextlib

import numba
import numpy as np
import torch

# --------------------------------------------------------------------- numba kernels
_MAX_EXP = 6.0
_EXP_N = 1024
_SIGMOID = (1.0 / (1.0 + np.exp(-((np.arange(_EXP_N + 1) / _EXP_N) * 2 - 1) * _MAX_EXP))).astype(np.float32)
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


@numba.njit(cache=True, nogil=True, fastmath=True)
def _sgns_range(tokens, offsets, s_lo, s_hi, syn0, syn1, aprob, alias, window, negative, lr0, done, total, seed,
                neu1e):
    """Skip-gram with negative sampling over sentences ``s_lo..s_hi-1`` of the flat corpus (word2vec's
    scheme, as gensim's ``sg=1, hs=0``): for each position a window reduced uniformly to ``1..window``;
    each context word's input vector ``syn0`` learns to predict the centre word against ``negative``
    draws from unigram^0.75 (Walker's alias table ``aprob``/``alias``: exact, 8 bytes a node, so it stays in
    cache where word2vec's 10^8-slot table would not) through the output vectors ``syn1``; the
    learning rate decays linearly from ``lr0`` (to ``lr0 * 1e-4``) as ``done`` goes to ``total`` tokens;
    sigmoid from a 1,025-entry table on [-6, 6], saturated outside. Random numbers: the word2vec linear
    congruential generator from ``seed``. Returns the tokens done."""
    dim = syn0.shape[1]
    rng = np.uint64(seed)
    mul = np.uint64(25214903917)
    inc = np.uint64(11)
    sh = np.uint64(16)
    nn = np.uint64(aprob.shape[0])
    m24 = np.uint64(0xFFFFFF)
    s24 = np.uint64(24)
    s40 = np.uint64(40)
    inv24 = np.float32(1.0 / 16777216.0)
    uwin = np.uint64(window)
    m16 = np.uint64(0xFFFF)
    min_lr = lr0 * 1e-4
    scale = _EXP_N / (2.0 * _MAX_EXP)
    for s in range(s_lo, s_hi):
        a = offsets[s]
        b = offsets[s + 1]
        lr = lr0 * (1.0 - done / total)
        if lr < min_lr:
            lr = min_lr
        lr32 = np.float32(lr)
        for i in range(a, b):
            w = tokens[i]
            rng = rng * mul + inc
            red = np.int64((((rng >> sh) & m16) * uwin) >> sh)  # uniform in 0..window-1
            lo = max(i - window + red, a)
            hi = min(i + window + 1 - red, b)
            for j in range(lo, hi):
                if j == i:
                    continue
                l1 = syn0[tokens[j]]
                neu1e[:] = 0.0
                for d in range(negative + 1):
                    if d == 0:
                        target = w
                        label = np.float32(1.0)
                    else:
                        rng = rng * mul + inc
                        slot = np.int64(((rng >> s40) * nn) >> s24)  # top 24 bits: a uniform slot
                        if np.float32((rng >> sh) & m24) * inv24 < aprob[slot]:  # next 24 bits: accept
                            target = slot
                        else:
                            target = alias[slot]
                        if target == w:
                            continue
                        label = np.float32(0.0)
                    r = syn1[target]
                    f = np.float32(0.0)
                    for k in range(dim):
                        f += l1[k] * r[k]
                    if f >= _MAX_EXP:
                        sig = np.float32(1.0)
                    elif f <= -_MAX_EXP:
                        sig = np.float32(0.0)
                    else:
                        sig = _SIGMOID[int((f + _MAX_EXP) * scale)]
                    g = (label - sig) * lr32
                    for k in range(dim):
                        rk = r[k]
                        neu1e[k] += g * rk
                        r[k] = rk + g * l1[k]
                for k in range(dim):
                    l1[k] += neu1e[k]
        done += b - a
    return done


@numba.njit(cache=True, nogil=True, fastmath=True, parallel=True)
def _sgns_hogwild(tokens, offsets, bounds, syn0, syn1, aprob, alias, window, negative, lr0, dones, totals, seeds):
    """One pass of every chunk ``bounds[c]..bounds[c+1]`` of sentences, the chunks in parallel threads
    sharing ``syn0``/``syn1`` without locks (Hogwild); each chunk decays its learning rate by its own
    progress (``dones[c]`` of ``totals[c]``)."""
    for c in numba.prange(len(bounds) - 1):
        neu1e = np.zeros(syn0.shape[1], np.float32)
        dones[c] = _sgns_range(tokens, offsets, bounds[c], bounds[c + 1], syn0, syn1, aprob, alias, window,
                               negative, lr0, dones[c], totals[c], seeds[c], neu1e)


@numba.njit(cache=True, nogil=True)
def _alias_table(prob):
    """Walker's alias table (Vose's construction) of the distribution ``prob`` (sums to 1): draw a slot k
    uniformly, keep it with probability ``aprob[k]``, else take ``alias[k]``."""
    n = prob.shape[0]
    scaled = prob * n
    aprob = np.ones(n, np.float32)
    alias = np.arange(n).astype(np.int32)
    small = np.empty(n, np.int64)
    large = np.empty(n, np.int64)
    ns = 0
    nl = 0
    for i in range(n):
        if scaled[i] < 1.0:
            small[ns] = i
            ns += 1
        else:
            large[nl] = i
            nl += 1
    while ns > 0 and nl > 0:
        ns -= 1
        sm = small[ns]
        lg = large[nl - 1]
        aprob[sm] = scaled[sm]
        alias[sm] = lg
        scaled[lg] = (scaled[lg] + scaled[sm]) - 1.0
        if scaled[lg] < 1.0:
            nl -= 1
            small[ns] = lg
            ns += 1
    return aprob, alias  # leftovers (rounding) keep probability 1 on themselves


@numba.njit(cache=True, nogil=True)
def _splitmix(x):
    x = x + _GOLDEN
    z = x
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x, z ^ (z >> np.uint64(31))


@numba.njit(cache=True, nogil=True)
def _uniform(state):
    """(new state, uniform float in [0, 1))."""
    state, z = _splitmix(state)
    return state, np.float64(z >> np.uint64(11)) * (1.0 / 9007199254740992.0)


@numba.njit(cache=True, nogil=True)
def _draw(u, node, rowptr, cumw):
    """The neighbour slot of ``node`` chosen with probability proportional to the edge weight (u in [0, 1);
    ``cumw`` empty: all weights equal)."""
    a = rowptr[node]
    b = rowptr[node + 1]
    if cumw.shape[0] == 0:  # unweighted: a uniform slot
        return min(a + np.int64(u * (b - a)), b - 1)
    base = cumw[a - 1] if a > 0 else 0.0
    x = base + u * (cumw[b - 1] - base)
    lo, hi = a, b - 1
    while lo < hi:  # first slot with cumw > x
        mid = (lo + hi) >> 1
        if cumw[mid] > x:
            hi = mid
        else:
            lo = mid + 1
    return lo


@numba.njit(cache=True, nogil=True)
def _is_neighbour(a, x, rowptr, dst):
    lo, hi = rowptr[a], rowptr[a + 1]
    while lo < hi:
        mid = (lo + hi) >> 1
        if dst[mid] < x:
            lo = mid + 1
        else:
            hi = mid
    return lo < rowptr[a + 1] and dst[lo] == x


@numba.njit(cache=True, nogil=True, parallel=True)
def _walks_kernel(starts, rowptr, dst, cumw, walks, inv_p, inv_q, max_tries, seed, forced):
    """Every walk ``k`` from ``starts[k]`` into ``walks[k]`` (pre-filled with -1), its own random stream
    (splitmix64 of ``seed`` and ``k``, so the result does not depend on the thread count); second-order
    bias by rejection: a weighted draw ``x`` from ``cur`` (having come from ``prev``) is accepted with
    probability ``alpha / max(1/p, 1, 1/q)``, ``alpha = 1/p`` (x == prev), 1 (x adjacent to prev), 1/q
    (else); after ``max_tries`` rejections the last draw is kept (counted in ``forced[k]``)."""
    amax = max(inv_p, 1.0, inv_q)
    L = walks.shape[1]
    for k in numba.prange(starts.shape[0]):
        st = (np.uint64(seed) * _GOLDEN) ^ (np.uint64(k) * np.uint64(0xD1B54A32D192ED03))
        cur = starts[k]
        walks[k, 0] = cur
        prev = -1
        for step in range(1, L):
            if rowptr[cur + 1] == rowptr[cur]:
                break
            if step == 1:
                st, u = _uniform(st)
                nxt = dst[_draw(u, cur, rowptr, cumw)]
            else:
                nxt = -1
                for attempt in range(max_tries):
                    st, u = _uniform(st)
                    nxt = dst[_draw(u, cur, rowptr, cumw)]
                    if nxt == prev:
                        alpha = inv_p
                    elif _is_neighbour(prev, nxt, rowptr, dst):
                        alpha = 1.0
                    else:
                        alpha = inv_q
                    st, u = _uniform(st)
                    if u * amax < alpha:
                        break
                    if attempt == max_tries - 1:
                        forced[k] += 1
            walks[k, step] = nxt
            prev = cur
            cur = nxt


@contextlib.contextmanager
def _threads(n):
    """numba's thread count set to ``n`` (at most the pool size) for the block. numba's OpenMP layer sets the
    OpenMP thread count of the process (torch's and sklearn's too) to its own when its pool starts,
    overriding ``OMP_NUM_THREADS``: the counts found before (before numba's pool starts) are set back after."""
    before = _openmp_counts()
    prev = numba.get_num_threads()
    numba.set_num_threads(max(1, min(int(n), numba.config.NUMBA_NUM_THREADS)))
    try:
        yield
    finally:
        numba.set_num_threads(prev)
        _restore_openmp(before)


def _openmp_libs() -> list:
    """threadpoolctl's controllers of the OpenMP libraries loaded in the process now."""
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController().select(user_api="openmp").lib_controllers


def _openmp_counts() -> tuple:
    """(torch's intra-op threads, {OpenMP library path: its thread count}) of the process now."""
    return torch.get_num_threads(), {lib.filepath: lib.num_threads for lib in _openmp_libs()}


def _restore_openmp(before: tuple) -> None:
    """Set back the OpenMP libraries' thread counts (those loaded before) and torch's, if a kernel changed them."""
    torch_threads, counts = before
    for lib in _openmp_libs():
        n = counts.get(lib.filepath)
        if n is not None and lib.num_threads != n:
            lib.set_num_threads(n)
    if torch.get_num_threads() != torch_threads:
        torch.set_num_threads(torch_threads)


_BACKENDS = ("numba", "gensim", "torch")


class Node2Vec:
    """Node embeddings of a graph given as an undirected ``edge_index`` (both directions present,
    or ``symmetric=False`` to add the reverse edges).

    Parameters are stored only (scikit-learn contract); ``fit`` sets ``embedding_`` (np.ndarray
    ``[num_nodes, dim]``, zeros for nodes never visited), ``walks_`` (LongTensor, kept only when
    ``keep_walks``), ``n_forced_`` and ``timings_``.
    """

    def __init__(self, dim: int = 32, walk_length: int = 20, walks_per_node: int = 10, context_size: int = 5,
                 p: float = 1.0, q: float = 1.0, epochs: int = 1, negative: int = 5, seed: int = 0,
                 backend: str = "numba", workers: int = 1, max_tries: int = 20, keep_walks: bool = False,
                 symmetric: bool = True, lr: float = 0.025):
        self.dim = dim
        self.walk_length = walk_length
        self.walks_per_node = walks_per_node
        self.context_size = context_size
        self.p = p
        self.q = q
        self.epochs = epochs
        self.negative = negative
        self.seed = seed
        self.backend = backend
        self.workers = workers
        self.max_tries = max_tries
        self.keep_walks = keep_walks
        self.symmetric = symmetric
        self.lr = lr

    # ------------------------------------------------------------------ walks
    def _csr(self, edge_index: torch.Tensor, num_nodes: int, edge_weight):
        ei = torch.as_tensor(edge_index, dtype=torch.long)
        if ei.dim() != 2 or ei.shape[0] != 2:
            raise ValueError(f"Node2Vec.fit: edge_index must have shape [2, E], got {tuple(ei.shape)}")
        w = None if edge_weight is None else torch.as_tensor(edge_weight, dtype=torch.float64)
        if ei.numel() and (int(ei.min()) < 0 or int(ei.max()) >= num_nodes):
            raise ValueError(f"Node2Vec.fit: node ids must be in 0..{num_nodes - 1}, got "
                             f"{int(ei.min())}..{int(ei.max())}")
        if not self.symmetric:
            ei = torch.cat([ei, ei.flip(0)], dim=1)
            w = None if w is None else torch.cat([w, w])
        key = ei[0] * num_nodes + ei[1]
        order = torch.argsort(key)
        key = key[order]
        keep = torch.ones_like(key, dtype=torch.bool)  # drop duplicate (src, dst) entries
        keep[1:] = key[1:] != key[:-1]
        order, key = order[keep], key[keep]
        src, dst = ei[0][order], ei[1][order]
        if w is None:
            w = torch.ones(len(src), dtype=torch.float64)
        else:
            w = w[order]
            if bool((w < 0).any()):
                raise ValueError("Node2Vec.fit: edge_weight must be >= 0")
        deg = torch.bincount(src, minlength=num_nodes)
        rowptr = torch.zeros(num_nodes + 1, dtype=torch.long)
        rowptr[1:] = torch.cumsum(deg, 0)
        cumw = torch.cumsum(w, 0)
        return key, dst, deg, rowptr, cumw

    def random_walks(self, edge_index, num_nodes: int, edge_weight=None, start_nodes=None) -> torch.Tensor:
        """Walks [n_walks, walk_length] (LongTensor, -1 after a dead end). Deterministic per seed, whatever
        the number of threads (each walk has its own random stream)."""
        key, dst, deg, rowptr, cumw = self._csr(edge_index, num_nodes, edge_weight)
        if start_nodes is None:
            start_nodes = np.tile(np.arange(num_nodes, dtype=np.int64), int(self.walks_per_node))
        starts = np.ascontiguousarray(torch.as_tensor(start_nodes, dtype=torch.long).numpy(), dtype=np.int64)
        walks = np.full((len(starts), int(self.walk_length)), -1, dtype=np.int64)
        forced = np.zeros(len(starts), np.int64)
        if len(starts) and self.walk_length > 0:
            cw = cumw.numpy() if edge_weight is not None else np.zeros(0, np.float64)
            with _threads(self.workers):
                _walks_kernel(starts, rowptr.numpy(), dst.numpy().astype(np.int32), cw, walks, 1.0 / float(self.p),
                              1.0 / float(self.q), int(self.max_tries), np.uint64(int(self.seed) & (2 ** 64 - 1)),
                              forced)
        self.n_forced_ = int(forced.sum())
        return torch.from_numpy(walks)

    # -------------------------------------------------------------- skip-gram
    def _train_gensim(self, walks: torch.Tensor, num_nodes: int) -> np.ndarray:
        from gensim.models import Word2Vec

        sentences = [[x for x in w if x >= 0] for w in walks.tolist()]
        model = Word2Vec(sentences=sentences, vector_size=self.dim, window=self.context_size, min_count=1, sg=1,
                         negative=self.negative, hs=0, workers=self.workers, seed=int(self.seed), epochs=self.epochs,
                         alpha=self.lr, sample=0)
        emb = np.zeros((num_nodes, self.dim), dtype=np.float32)
        keys = np.asarray(model.wv.index_to_key, dtype=np.int64)
        emb[keys] = model.wv.vectors
        return emb

    def _train_numba(self, walks: torch.Tensor, num_nodes: int) -> np.ndarray:
        """Skip-gram with negative sampling in numba (``_sgns_range``): one thread (``workers=1``, deterministic
        for a seed) or Hogwild over ``workers`` threads (lock-free shared updates: not bit-reproducible)."""
        w = walks.numpy() if isinstance(walks, torch.Tensor) else np.asarray(walks)
        lens = (w >= 0).sum(1)  # -1 only pads the tail of a walk
        keep = lens >= 2
        w, lens = w[keep], lens[keep]
        tokens = np.ascontiguousarray(w[w >= 0], dtype=np.int32)  # row-major: walk after walk
        offsets = np.zeros(len(lens) + 1, np.int64)
        offsets[1:] = np.cumsum(lens)
        emb = np.zeros((num_nodes, self.dim), np.float32)
        if len(tokens) == 0:
            return emb
        counts = np.bincount(tokens, minlength=num_nodes).astype(np.float64) ** 0.75
        aprob, alias = _alias_table(counts / counts.sum())
        ss = np.random.SeedSequence(int(self.seed))
        rng = np.random.default_rng(ss)
        syn0 = ((rng.random((num_nodes, self.dim), dtype=np.float32) - np.float32(0.5)) / np.float32(self.dim))
        syn1 = np.zeros((num_nodes, self.dim), np.float32)
        nw = max(1, min(int(self.workers), len(lens)))
        # chunks of about equal tokens, one per thread
        bounds = np.searchsorted(offsets, np.linspace(0, offsets[-1], nw + 1)).astype(np.int64)
        bounds[0], bounds[-1] = 0, len(lens)
        chunk_tokens = (offsets[bounds[1:]] - offsets[bounds[:-1]]).astype(np.float64)
        totals = np.maximum(chunk_tokens * self.epochs, 1.0)
        dones = np.zeros(nw, np.float64)
        neu1e = np.zeros(self.dim, np.float32)
        win, neg, lr = int(self.context_size), int(self.negative), float(self.lr)
        for ep in range(int(self.epochs)):
            seeds = ss.spawn(1)[0].generate_state(nw, np.uint64)
            if nw == 1:
                dones[0] = _sgns_range(tokens, offsets, 0, len(lens), syn0, syn1, aprob, alias, win, neg, lr,
                                       dones[0], totals[0], seeds[0], neu1e)
            else:
                with _threads(nw):
                    _sgns_hogwild(tokens, offsets, bounds, syn0, syn1, aprob, alias, win, neg, lr, dones, totals,
                                  seeds)
        seen = np.bincount(tokens, minlength=num_nodes) > 0
        emb[seen] = syn0[seen]
        return emb

    def _train_torch(self, walks: torch.Tensor, num_nodes: int) -> np.ndarray:
        gen = torch.Generator().manual_seed(int(self.seed) + 1)
        torch.manual_seed(int(self.seed))
        L = walks.shape[1]
        centers, contexts = [], []
        for off in range(1, self.context_size + 1):  # symmetric window of pairs
            a, b = walks[:, :L - off].reshape(-1), walks[:, off:].reshape(-1)
            ok = (a >= 0) & (b >= 0)
            centers += [a[ok], b[ok]]
            contexts += [b[ok], a[ok]]
        centers, contexts = torch.cat(centers), torch.cat(contexts)
        emb_in = torch.nn.Embedding(num_nodes, self.dim, sparse=True)
        emb_out = torch.nn.Embedding(num_nodes, self.dim, sparse=True)
        torch.nn.init.uniform_(emb_in.weight, -0.5 / self.dim, 0.5 / self.dim)
        torch.nn.init.zeros_(emb_out.weight)
        opt = torch.optim.SparseAdam(list(emb_in.parameters()) + list(emb_out.parameters()), lr=0.01)
        deg = torch.bincount(centers, minlength=num_nodes).double() ** 0.75
        bs = int(np.clip(len(centers) // 200, 256, 8192))
        for _ in range(self.epochs):
            perm = torch.randperm(len(centers), generator=gen)
            for i in range(0, len(perm), bs):
                idx = perm[i:i + bs]
                c, o = centers[idx], contexts[idx]
                neg = torch.multinomial(deg, len(idx) * self.negative, replacement=True, generator=gen).view(len(idx), -1)
                vc = emb_in(c)
                pos = (vc * emb_out(o)).sum(-1)
                negs = torch.bmm(emb_out(neg), vc.unsqueeze(-1)).squeeze(-1)
                loss = -(torch.nn.functional.logsigmoid(pos).mean() + torch.nn.functional.logsigmoid(-negs).sum(-1).mean())
                opt.zero_grad()
                loss.backward()
                opt.step()
        return emb_in.weight.detach().numpy().astype(np.float32)

    # -------------------------------------------------------------------- fit
    def fit(self, edge_index, num_nodes: int, edge_weight=None) -> "Node2Vec":
        import time

        if self.backend not in _BACKENDS:
            raise ValueError(f"Node2Vec: backend={self.backend!r} must be one of {', '.join(_BACKENDS)}")
        if int(self.workers) < 1:
            raise ValueError(f"Node2Vec: workers={self.workers!r} must be >= 1")
        if self.p <= 0 or self.q <= 0:
            raise ValueError(f"Node2Vec: p={self.p!r} and q={self.q!r} must be > 0")
        t0 = time.perf_counter()
        walks = self.random_walks(edge_index, int(num_nodes), edge_weight)
        t1 = time.perf_counter()
        emb = getattr(self, "_train_" + self.backend)(walks, int(num_nodes))
        t2 = time.perf_counter()
        self.embedding_ = emb
        self.num_nodes_ = int(num_nodes)
        self.timings_ = {"walks_s": t1 - t0, "skipgram_s": t2 - t1}
        if self.keep_walks:
            self.walks_ = walks
        return self

    def get_params(self) -> dict:
        return {k: getattr(self, k) for k in ("dim", "walk_length", "walks_per_node", "context_size", "p", "q", "epochs",
                                              "negative", "seed", "backend", "workers", "max_tries", "keep_walks",
                                              "symmetric", "lr")}
