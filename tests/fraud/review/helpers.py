"""Hand-built alert sets for the review tests."""
from __future__ import annotations

import numpy as np
import pandas as pd


def hand_built_alerts() -> pd.DataFrame:
    """A ring (8 mule customers x 3 colluding terminals, every pair used twice), a compromised
    terminal T9 with 10 victims, joined to the ring by ONE stray alert (so both sit in one
    connected component), and 5 unrelated one-off alerts."""
    rows = []
    t0 = pd.Timestamp("2024-03-01", tz="UTC")
    k = 0

    def add(c, t, amount, score, scen, reasons, hours):
        nonlocal k
        rows.append({"tx_id": f"tx{k:03d}", "timestamp": t0 + pd.Timedelta(hours=hours), "customer_id": c,
                     "terminal_id": t, "amount": amount, "score": score, "reasons": reasons,
                     "model_version": "3", "scenario": scen})
        k += 1

    for rep in range(2):
        for i in range(8):
            for j in range(3):
                add(f"M{i}", f"R{j}", 60.0 + i + j, 0.8, 4, ["graph_density", "shared_terminal"], 24 * (i + 3 * rep) + j)
    for i in range(10):
        add(f"V{i}", "T9", 40.0 + 5 * i, 0.6, 2, ["terminal_risk"], 100 + 3 * i)
        add(f"V{i}", "T9", 45.0, 0.55, 2, ["terminal_risk"], 101 + 3 * i)
    add("M0", "T9", 30.0, 0.3, 0, ["amount"], 150)           # the stray bridge
    for i in range(5):
        add(f"S{i}", f"U{i}", 500.0 + i, 0.9, 1, ["amount"], 200 + i)
    return pd.DataFrame(rows)
