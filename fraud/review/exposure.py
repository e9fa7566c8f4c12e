"""Cards exposed at a confirmed fraud's terminal: the common point of compromise.

A skimmed or taken-over terminal charges several of its own visitors within a day or two, each at the card's
usual amount and hour, so no single charge looks wrong; once an analyst confirms one of them, the other cards
used at that terminal around the same time are the next to check (and the ones a bank reissues). The review's
case page lists them and the closed-loop bench's analyst works them (``benchmarks.loop``, ``expose``).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from fraud.errors import ConfigError

#: columns of :func:`exposed_cards`
COLUMNS = ["customer_id", "terminal_id", "first_seen", "visits", "confirmed_at_terminal", "top_score"]


def exposed_cards(events: pd.DataFrame, confirmed: pd.DataFrame, window: pd.Timedelta = pd.Timedelta(hours=24),
                  exclude=()) -> pd.DataFrame:
    """The cards of ``events`` used at a terminal of a ``confirmed`` fraud within ``window`` before or after it,
    except the cards in ``exclude`` (e.g. those already in the case or the day's alerts).

    ``events``: transactions with timestamp, customer_id, terminal_id (and ``score`` when scored);
    ``confirmed``: the confirmed frauds, with timestamp, customer_id and terminal_id. One row per card: its most
    exposed terminal, first visit there, visits to exposed terminals, confirmed frauds at that terminal and its
    highest score there (NaN without scores); most confirmed frauds first, then the highest score."""
    for name, f in (("events", events), ("confirmed frauds", confirmed)):
        missing = [c for c in ("timestamp", "customer_id", "terminal_id") if c not in f.columns]
        if missing:
            raise ConfigError(f"exposed cards: the {name} lack column(s) {missing}; present: {list(f.columns)}")
    if not len(events) or not len(confirmed):
        return pd.DataFrame({c: [] for c in COLUMNS})
    terms = set(confirmed["terminal_id"].astype(str))
    tcol = events["terminal_id"]
    events = events[(tcol if tcol.dtype == object else tcol.astype(str)).isin(terms).to_numpy()]  # a large context
    ev = pd.DataFrame({"customer_id": events["customer_id"].astype(str).to_numpy(),
                       "terminal_id": events["terminal_id"].astype(str).to_numpy(),
                       "timestamp": pd.to_datetime(events["timestamp"], utc=True).to_numpy(),
                       "score": events["score"].to_numpy(float) if "score" in events.columns else np.nan})
    conf = pd.DataFrame({"terminal_id": confirmed["terminal_id"].astype(str).to_numpy(),
                         "customer_id": confirmed["customer_id"].astype(str).to_numpy(),
                         "t": pd.to_datetime(confirmed["timestamp"], utc=True).to_numpy()})
    near = ev.merge(conf, on="terminal_id", suffixes=("", "_fraud"))
    near = near[(near["timestamp"] - near["t"]).abs() <= window]
    skip = set(map(str, exclude)) | set(conf["customer_id"])
    near = near[~near["customer_id"].isin(skip)]
    if not len(near):
        return pd.DataFrame({c: [] for c in COLUMNS})
    n_conf = conf.groupby("terminal_id")["customer_id"].nunique()
    visits = near.drop_duplicates(["customer_id", "terminal_id", "timestamp"])
    per = visits.groupby(["customer_id", "terminal_id"], sort=False).agg(
        first_seen=("timestamp", "min"), visits=("timestamp", "size"), top_score=("score", "max")).reset_index()
    per["confirmed_at_terminal"] = per["terminal_id"].map(n_conf).to_numpy(int)
    per = per.sort_values(["confirmed_at_terminal", "top_score", "first_seen", "customer_id"],
                          ascending=[False, False, True, True], kind="stable", na_position="last")
    total = per.groupby("customer_id")["visits"].sum()
    out = per.drop_duplicates("customer_id").reset_index(drop=True)
    out["visits"] = out["customer_id"].map(total).to_numpy(int)
    out["first_seen"] = pd.to_datetime(out["first_seen"], utc=True)
    return out[COLUMNS]
