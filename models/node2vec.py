"""Node2Vec: second-order biased random walks vectorized in torch, skip-gram with negative sampling.

PyG's ``Node2Vec`` needs ``pyg-lib`` for its walks, which is not installable here, so the walks
are done here: all walkers advance one step at a time as tensors over a CSR adjacency.

Walks (Grover & Leskovec 2016). From ``cur`` having come from ``prev``, the unnormalized
probability of moving to a neighbour ``x`` of ``cur`` is ``w(cur, x) * alpha`` with
``alpha = 1/p`` if ``x == prev``, ``1`` if ``x`` is a neighbour of ``prev``, ``1/q`` otherwise.
Sampling is by rejection, vectorized: every pending walker draws a neighbour proportionally
to the edge weight (``searchsorted`` on per-row cumulative weights), then accepts it with
probability ``alpha / max(1/p, 1, 1/q)``; "is ``x`` a neighbour of ``prev``" is one
``searchsorted`` on the sorted edge keys ``src * n + dst``. Walkers still rejected after
``max_tries`` rounds keep their last draw (a negligible bias, counted in ``n_forced_``).
A walk that reaches a node without edges stops there (padded with -1, trimmed before training).

Skip-gram choice, measured on the same walks (``fraud bench node2vec --compare-sgns``: handbook
graph, 90-day window before 2018-08-01 minus the last 14 days, 14,976 nodes, 4 walks of 20 per
node, dim 32, window 5, 5 negatives, 1 epoch; quality = AUC of cosine scores, customer-terminal
pairs first seen in the 14 held-out days vs random pairs; 2-core machine shared by ~8 jobs,
load average ~17, so times are inflated several-fold, but both ran in the same command):

==================  ========  =================
backend             time (s)  held-out link AUC
==================  ========  =================
gensim Word2Vec        44.6    0.885
torch SGNS (Adam)     240.7    0.994
==================  ========  =================

gensim is the default (``backend="gensim"``) because it is 5.4x faster and the speed budget
(a 15,000-node graph embedded in <= 60 s on this machine) is only reachable with it; the torch
model (``backend="torch"``) embeds better on this held-out link test and is the choice when time
allows (more gensim epochs were not measured). With ``workers=1`` (default) gensim is deterministic
for a seed; the torch model is deterministic for a seed on one thread.

Against the PyPI ``node2vec`` package (``fraud bench node2vec --compare-nodes N``): both run the same
walks (10 per node, length 20, p = q = 1, unweighted) and the same gensim ``Word2Vec`` (dim 32, window 5,
5 negatives, 1 epoch, ``sample=0``, ``workers=1``, ``sg=1``), so only the walk stage differs. On the whole
handbook 90-day graph (14,978 nodes, 292,591 edges), one run at load average ~3 on the shared 2-core
machine: PyPI transition probabilities + walks 68.0 s vs ours 1.0 s (x67), end to end 78.0 s vs 14.1 s
(x5.5); a run at load ~10: 349 s vs 14.4 s (x24), 435 s vs 146 s (x3.0). gensim's skip-gram (over 90%
of our time) is common to both, so it bounds the end-to-end ratio. On a 5,051-node subgraph it was
5-6x. An end-to-end x20 would need a skip-gram about 20x faster than gensim at equal quality; not done.
"""
from __future__ import annotations

import numpy as np
import torch


class Node2Vec:
    """Node embeddings of a graph given as an undirected ``edge_index`` (both directions present,
    or ``symmetric=False`` to add the reverse edges).

    Parameters are stored only (scikit-learn contract); ``fit`` sets ``embedding_`` (np.ndarray
    ``[num_nodes, dim]``, zeros for nodes never visited), ``walks_`` (LongTensor, kept only when
    ``keep_walks``), ``n_forced_`` and ``timings_``.
    """

    def __init__(self, dim: int = 32, walk_length: int = 20, walks_per_node: int = 10, context_size: int = 5,
                 p: float = 1.0, q: float = 1.0, epochs: int = 1, negative: int = 5, seed: int = 0,
                 backend: str = "gensim", workers: int = 1, max_tries: int = 20, keep_walks: bool = False,
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

    def _sample(self, nodes, deg, rowptr, cumw, dst, gen):
        """One weighted neighbour per node (all must have deg > 0)."""
        start, end = rowptr[nodes], rowptr[nodes + 1]
        base = torch.where(start > 0, cumw[(start - 1).clamp(min=0)], torch.zeros_like(cumw[start]))
        total = cumw[end - 1] - base
        u = base + torch.rand(len(nodes), generator=gen, dtype=torch.float64) * total
        pos = torch.searchsorted(cumw, u, right=True)
        pos = torch.minimum(torch.maximum(pos, start), end - 1)
        return dst[pos]

    def random_walks(self, edge_index, num_nodes: int, edge_weight=None, start_nodes=None) -> torch.Tensor:
        """Walks [n_walks, walk_length] (LongTensor, -1 after a dead end). Deterministic per seed."""
        key, dst, deg, rowptr, cumw = self._csr(edge_index, num_nodes, edge_weight)
        gen = torch.Generator().manual_seed(int(self.seed))
        if start_nodes is None:
            start_nodes = torch.arange(num_nodes).repeat(self.walks_per_node)
        start_nodes = torch.as_tensor(start_nodes, dtype=torch.long)
        L = int(self.walk_length)
        walks = torch.full((len(start_nodes), L), -1, dtype=torch.long)
        walks[:, 0] = start_nodes
        inv_p, inv_q = 1.0 / float(self.p), 1.0 / float(self.q)
        amax = max(inv_p, 1.0, inv_q)
        forced = 0
        for step in range(1, L):
            cur = walks[:, step - 1]
            alive = torch.nonzero((cur >= 0) & (deg[cur.clamp(min=0)] > 0)).flatten()
            if len(alive) == 0:
                break
            if step == 1:
                walks[alive, 1] = self._sample(cur[alive], deg, rowptr, cumw, dst, gen)
                continue
            pending = alive
            for attempt in range(self.max_tries):
                c = walks[pending, step - 1]
                prev = walks[pending, step - 2]
                cand = self._sample(c, deg, rowptr, cumw, dst, gen)
                k = prev * num_nodes + cand
                pos = torch.searchsorted(key, k).clamp(max=len(key) - 1)
                is_nb = key[pos] == k
                alpha = torch.where(cand == prev, torch.full_like(k, 0, dtype=torch.float64) + inv_p,
                                    torch.where(is_nb, torch.ones(len(k), dtype=torch.float64),
                                                torch.full((len(k),), inv_q, dtype=torch.float64)))
                acc = torch.rand(len(k), generator=gen, dtype=torch.float64) * amax < alpha
                if attempt == self.max_tries - 1:
                    forced += int((~acc).sum())
                    acc[:] = True
                walks[pending[acc], step] = cand[acc]
                pending = pending[~acc]
                if len(pending) == 0:
                    break
        self.n_forced_ = forced
        return walks

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

        if self.backend not in ("gensim", "torch"):
            raise ValueError(f"Node2Vec: backend={self.backend!r} must be 'gensim' or 'torch'")
        if self.p <= 0 or self.q <= 0:
            raise ValueError(f"Node2Vec: p={self.p!r} and q={self.q!r} must be > 0")
        t0 = time.perf_counter()
        walks = self.random_walks(edge_index, int(num_nodes), edge_weight)
        t1 = time.perf_counter()
        emb = self._train_gensim(walks, int(num_nodes)) if self.backend == "gensim" else self._train_torch(walks, int(num_nodes))
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
