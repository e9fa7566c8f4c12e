import numpy as np
import pytest
import torch

from models.node2vec import Node2Vec


def _bipartite(n_left=60, n_right=60, deg=4, seed=0):
    """Random bipartite graph (no triangles), both directions present."""
    rng = np.random.default_rng(seed)
    s = np.repeat(np.arange(n_left), deg)
    d = n_left + rng.integers(0, n_right, len(s))
    pairs = np.unique(np.stack([s, d], 1), axis=0)
    ei = np.concatenate([pairs, pairs[:, ::-1]]).T
    return torch.as_tensor(ei, dtype=torch.long), n_left + n_right


def test_walks_follow_edges_only_and_stop_at_dead_ends():
    ei, n = _bipartite()
    n_total = n + 1  # one isolated node
    walks = Node2Vec(walk_length=15, walks_per_node=3, p=0.5, q=2.0, seed=1).random_walks(ei, n_total)
    edges = set(zip(ei[0].tolist(), ei[1].tolist()))
    w = walks.numpy()
    a, b = w[:, :-1].ravel(), w[:, 1:].ravel()
    ok = (a >= 0) & (b >= 0)
    assert ok.sum() > 1000
    assert all((x, y) in edges for x, y in zip(a[ok], b[ok]))
    iso = w[w[:, 0] == n]
    assert len(iso) == 3 and (iso[:, 1:] == -1).all()


def _return_rate(walks):
    w = walks.numpy()
    return float((w[:, 2:] == w[:, :-2]).mean())


def test_p_q_bias_matches_theory():
    ei, n = _bipartite(deg=4, seed=2)
    deg = np.bincount(ei[0].numpy(), minlength=n)
    rates = {}
    for p in (0.25, 4.0):
        walks = Node2Vec(walk_length=20, walks_per_node=10, p=p, q=1.0, seed=3).random_walks(ei, n)
        rates[p] = _return_rate(walks)
        # bipartite: no triangles, so P(return | at node of degree d) = (1/p) / (1/p + (d - 1) / q)
        cur = walks.numpy()[:, 1:-1].ravel()
        expected = float(np.mean((1 / p) / (1 / p + (deg[cur] - 1))))
        assert rates[p] == pytest.approx(expected, abs=0.03)
    assert rates[0.25] > 3 * rates[4.0]


def test_weights_bias_first_order_choice():
    ei = torch.tensor([[0, 1, 0, 2], [1, 0, 2, 0]])
    w = torch.tensor([9.0, 9.0, 1.0, 1.0])
    walks = Node2Vec(walk_length=2, walks_per_node=4000, seed=0).random_walks(ei, 3, edge_weight=w)
    first = walks[walks[:, 0] == 0, 1].numpy()
    assert np.mean(first == 1) == pytest.approx(0.9, abs=0.03)


def test_same_seed_same_embeddings_and_contract():
    ei, n = _bipartite(seed=4)
    m = Node2Vec(dim=8, walk_length=10, walks_per_node=4, seed=7)
    with pytest.raises(AttributeError):
        m.embedding_
    assert m.fit(ei, n) is m
    a = m.embedding_
    b = Node2Vec(dim=8, walk_length=10, walks_per_node=4, seed=7).fit(ei, n).embedding_
    c = Node2Vec(dim=8, walk_length=10, walks_per_node=4, seed=8).fit(ei, n).embedding_
    assert a.shape == (n, 8)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)
    learned = [k for k in vars(m) if k not in m.get_params()]
    assert learned and all(k.endswith("_") for k in learned)


@pytest.mark.parametrize("backend,workers", [("numba", 1), ("numba", 2), ("gensim", 1), ("torch", 1)])
def test_backends_embed_neighbours_closer(backend, workers):
    # two disconnected cliques: nodes of the same clique end up more similar (numba with 2 threads: Hogwild)
    blocks = [(i, j) for b in (0, 10) for i in range(b, b + 10) for j in range(b, b + 10) if i != j]
    ei = torch.tensor(blocks).T
    emb = Node2Vec(dim=8, walk_length=10, walks_per_node=20, epochs=2, backend=backend, workers=workers,
                   seed=0).fit(ei, 20).embedding_
    e = emb - emb.mean(0)
    e = e / np.linalg.norm(e, axis=1, keepdims=True)
    sim = e @ e.T
    grp = np.arange(20) // 10
    same = grp[:, None] == grp[None, :]
    assert sim[same & ~np.eye(20, dtype=bool)].mean() > sim[~same].mean() + 0.5


def test_walks_do_not_depend_on_threads_and_unweighted_is_uniform():
    ei, n = _bipartite(seed=5)
    a = Node2Vec(walk_length=12, walks_per_node=3, p=0.5, q=2.0, seed=3, workers=1).random_walks(ei, n)
    b = Node2Vec(walk_length=12, walks_per_node=3, p=0.5, q=2.0, seed=3, workers=2).random_walks(ei, n)
    torch.testing.assert_close(a, b)
    # one centre with 4 leaves, unweighted: each leaf is the first step a quarter of the time
    star = torch.tensor([[0, 0, 0, 0, 1, 2, 3, 4], [1, 2, 3, 4, 0, 0, 0, 0]])
    first = Node2Vec(walk_length=2, walks_per_node=8000, seed=1).random_walks(star, 5)
    first = first[first[:, 0] == 0, 1].numpy()
    assert np.bincount(first, minlength=5)[1:] / len(first) == pytest.approx([0.25] * 4, abs=0.02)


def test_alias_table_is_exact_and_negatives_follow_unigram_075():
    from models.node2vec import _alias_table

    p = np.random.default_rng(0).random(40) ** 3
    p /= p.sum()
    aprob, alias = _alias_table(p)
    q = aprob.astype(np.float64) / len(p)
    np.add.at(q, alias, (1 - aprob) / len(p))
    np.testing.assert_allclose(q, p, atol=1e-6)


def test_numba_one_thread_is_deterministic_hogwild_is_close():
    ei, n = _bipartite(seed=6)
    kw = dict(dim=8, walk_length=10, walks_per_node=6, seed=2)
    a = Node2Vec(**kw).fit(ei, n).embedding_
    np.testing.assert_array_equal(a, Node2Vec(**kw).fit(ei, n).embedding_)
    h = Node2Vec(**kw, workers=2).fit(ei, n).embedding_  # lock-free: not bit-reproducible, same scale
    assert h.shape == a.shape and np.isfinite(h).all()
    assert np.linalg.norm(h, axis=1).mean() == pytest.approx(np.linalg.norm(a, axis=1).mean(), rel=0.3)


def test_bad_parameters():
    ei, n = _bipartite()
    with pytest.raises(ValueError, match="p="):
        Node2Vec(p=0).fit(ei, n)
    with pytest.raises(ValueError, match="node ids"):
        Node2Vec().fit(ei, 5)
    with pytest.raises(ValueError, match="backend="):
        Node2Vec(backend="word2vec").fit(ei, n)
    with pytest.raises(ValueError, match="workers="):
        Node2Vec(workers=0).fit(ei, n)


def test_fitting_leaves_the_processs_openmp_and_torch_threads_as_they_were():
    """numba's OpenMP layer sets the process's OpenMP thread count (torch's, sklearn's) to its own when its pool
    starts; a fit sets back what ``OMP_NUM_THREADS=1`` gave (in a fresh process: the pool starts there)."""
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    code = """
import json, torch
from threadpoolctl import threadpool_info
from models.node2vec import Node2Vec
def counts():
    return torch.get_num_threads(), sorted(i["num_threads"] for i in threadpool_info() if i["user_api"] == "openmp")
before = counts()
ei = torch.tensor([[0, 1, 2, 3, 4, 5], [1, 2, 3, 4, 5, 0]])
Node2Vec(dim=4, walk_length=5, walks_per_node=2, epochs=1, workers=2).fit(ei, num_nodes=6)
print(json.dumps({"before": before, "after": counts()}))
"""
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(root)}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300, cwd=root)
    assert out.returncode == 0, out.stderr[-2000:]
    res = json.loads(out.stdout.strip().splitlines()[-1])
    assert res["before"][0] == 1 and res["after"][0] == 1               # torch's intra-op threads
    assert set(res["after"][1]) == {1}                                   # every OpenMP library loaded, numba's too
