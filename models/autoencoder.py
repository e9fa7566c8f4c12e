"""A small dense autoencoder: trained with torch, scored with numpy.

Pure learnable part (``models`` never imports ``fraud``). Training uses torch (CPU); the fitted
weights are exported to plain numpy arrays so that inference is one vectorized matrix pass per
batch, needs no torch import at scoring time, and pickles small.

The network is an MLP ``d -> h1 -> ... -> bottleneck -> ... -> h1 -> d`` with ``tanh`` hidden
activations and a linear output layer; no batch-norm or dropout, so training-mode and
inference-mode computations are the same function. The anomaly score is the mean squared
reconstruction error over the (standardised) input features.
"""
from __future__ import annotations

import numpy as np


def _layer_sizes(n_features: int, hidden: tuple[int, ...]) -> list[int]:
    hidden = tuple(int(h) for h in hidden)
    return [n_features, *hidden, *reversed(hidden[:-1]), n_features]


def train_autoencoder(X: np.ndarray, hidden=(32, 8), epochs: int = 5, batch_size: int = 256, lr: float = 1e-3,
                      weight_decay: float = 1e-5, seed: int = 0, max_rows: int | None = 200_000,
                      threads: int | None = 1, progress=None) -> list[tuple[np.ndarray, np.ndarray]]:
    """Train on ``X`` (already standardised, float) and return the layers as ``[(W, b), ...]``.

    ``W`` has shape (in, out). Deterministic for a given ``seed`` (single-threaded torch ops on CPU
    give identical results run to run). ``max_rows`` subsamples the training rows (seeded).
    ``threads``: torch intra-op threads during training (restored afterwards); 1 is fastest for
    these small layers and keeps runs reproducible. ``progress``: optional callable(epoch, loss).
    """
    import torch

    old_threads = torch.get_num_threads()
    if threads:
        torch.set_num_threads(int(threads))
    try:
        return _train(X, hidden, epochs, batch_size, lr, weight_decay, seed, max_rows, progress)
    finally:
        torch.set_num_threads(old_threads)


def _train(X, hidden, epochs, batch_size, lr, weight_decay, seed, max_rows, progress):
    import torch
    from torch import nn

    X = np.asarray(X, dtype=np.float32)
    rng = np.random.default_rng(seed)
    if max_rows is not None and len(X) > max_rows:
        X = X[np.sort(rng.choice(len(X), size=max_rows, replace=False))]
    sizes = _layer_sizes(X.shape[1], tuple(hidden))
    gen = torch.Generator().manual_seed(int(seed))
    layers: list[nn.Module] = []
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        linears = [nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:])]
    for i, lin in enumerate(linears):
        layers.append(lin)
        if i < len(linears) - 1:
            layers.append(nn.Tanh())
    net = nn.Sequential(*layers)
    opt = torch.optim.Adam(net.parameters(), lr=lr, weight_decay=weight_decay)
    data = torch.from_numpy(np.ascontiguousarray(X))
    n = len(data)
    net.train()
    for epoch in range(int(epochs)):
        perm = torch.randperm(n, generator=gen)
        total = 0.0
        for start in range(0, n, batch_size):
            xb = data[perm[start:start + batch_size]]
            opt.zero_grad()
            loss = ((net(xb) - xb) ** 2).mean()
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(xb)
        if progress is not None:
            progress(epoch, total / max(n, 1))
    return [(lin.weight.detach().numpy().T.astype(np.float32).copy(), lin.bias.detach().numpy().astype(np.float32).copy())
            for lin in linears]


def reconstruct(weights: list[tuple[np.ndarray, np.ndarray]], X: np.ndarray) -> np.ndarray:
    """Forward pass in numpy (tanh hidden layers, linear output)."""
    h = np.asarray(X, dtype=np.float32)
    last = len(weights) - 1
    for i, (W, b) in enumerate(weights):
        h = h @ W + b
        if i < last:
            np.tanh(h, out=h)
    return h


def reconstruction_error(weights, X: np.ndarray, chunk: int = 65536) -> np.ndarray:
    """Mean squared reconstruction error per row (float64), computed in chunks."""
    X = np.asarray(X, dtype=np.float32)
    out = np.empty(len(X), dtype=np.float64)
    for s in range(0, len(X), chunk):
        xb = X[s:s + chunk]
        r = reconstruct(weights, xb) - xb
        out[s:s + chunk] = np.einsum("ij,ij->i", r, r) / max(X.shape[1], 1)
    return out


def per_feature_error(weights, X: np.ndarray) -> np.ndarray:
    """Squared reconstruction error per row and feature (for explanations)."""
    X = np.asarray(X, dtype=np.float32)
    return ((reconstruct(weights, X) - X) ** 2).astype(np.float64)
