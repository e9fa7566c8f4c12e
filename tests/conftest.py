"""Shared fixtures. Tests that need the handbook benchmark data skip when it is absent."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

try:  # one intra-op thread: the suite runs on 2 cores, and torch's thread pool thrashes under contention
    import torch

    torch.set_num_threads(1)
except ImportError:  # pragma: no cover
    pass

ROOT = Path(__file__).resolve().parents[1]
HANDBOOK = ROOT.parent / "shared" / "data" / "handbook" / "transactions.parquet"


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return ROOT


@pytest.fixture(scope="session")
def handbook_path() -> Path:
    if not HANDBOOK.exists():
        pytest.skip(f"handbook benchmark data absent at {HANDBOOK} (it is not part of the product)")
    return HANDBOOK


@pytest.fixture(scope="session")
def small_world() -> pd.DataFrame:
    """A small simulated world with all six scenarios (session-scoped: built once)."""
    from fraud.simulate import simulate

    return simulate(customers=400, terminals=800, days=60, seed=11)


@pytest.fixture()
def tiny_frame() -> pd.DataFrame:
    """A hand-built canonical frame: 2 customers, 2 terminals, 8 transactions over 10 days."""
    ts = pd.to_datetime([
        "2024-01-01 10:00", "2024-01-01 12:00", "2024-01-02 09:00", "2024-01-03 23:30",
        "2024-01-05 08:00", "2024-01-06 13:00", "2024-01-09 10:00", "2024-01-10 11:00",
    ], utc=True)
    return pd.DataFrame({
        "tx_id": [f"t{i}" for i in range(8)],
        "timestamp": ts,
        "customer_id": ["A", "B", "A", "A", "B", "A", "B", "A"],
        "terminal_id": ["X", "X", "Y", "X", "Y", "X", "X", "Y"],
        "amount": np.array([10.0, 20.0, 30.0, 40.0, 50.0, 60.0, 70.0, 80.0]),
        "label": np.array([0, 1, 0, 0, 0, 1, 0, 0], dtype=np.int8),
    })
