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
from fraud.features.tabular import timestamps_ns

#: columns of :func:`exposed_cards`
COLUMNS = ["customer_id", "terminal_id", "first_seen", "visits", "confirmed_nearby", "exposed_terminals", "top_score"]
NEEDED = ("timestamp", "customer_id", "terminal_id")


def _empty() -> pd.DataFrame:
    return pd.DataFrame({c: [] for c in COLUMNS})


def exposed_cards(events: pd.DataFrame, confirmed: pd.DataFrame, window: pd.Timedelta = pd.Timedelta(hours=24),
                  exclude=()) -> pd.DataFrame:
    """The cards of ``events`` used at a terminal of a ``confirmed`` fraud within ``window`` before or after it,
    except the confirmed frauds' own cards and those in ``exclude`` (e.g. the case's, or the day's alerts).

    ``events``: transactions with timestamp, customer_id, terminal_id (``tx_id`` and ``score`` when present);
    ``confirmed``: the confirmed frauds, with the same three columns. One row per card, at its most exposed
    terminal: first visit there, its visits there, ``confirmed_nearby`` (the most confirmed frauds at that terminal
    within ``window`` of one of its visits), ``exposed_terminals`` (how many such terminals it used) and its highest
    score there (NaN without scores); most confirmed frauds first, then the highest score, then the earliest."""
    for name, f in (("events", events), ("confirmed frauds", confirmed)):
        missing = [c for c in NEEDED if c not in f.columns]
        if missing:
            raise ConfigError(f"exposed cards: the {name} lack column(s) {missing}; present: {list(f.columns)}")
    if not len(events) or not len(confirmed):
        return _empty()
    conf_t, conf_ns = confirmed["terminal_id"].astype(str).to_numpy(), timestamps_ns(confirmed["timestamp"])
    tcol = events["terminal_id"]
    ev = events[(tcol if tcol.dtype == object else tcol.astype(str)).isin(set(conf_t)).to_numpy()]  # large contexts
    if not len(ev):
        return _empty()
    ev_t, ev_ns, w = ev["terminal_id"].astype(str).to_numpy(), timestamps_ns(ev["timestamp"]), int(window.value)
    near = np.zeros(len(ev), np.int64)
    for term in np.unique(conf_t):                       # a case's or a day's few terminals
        times = np.sort(conf_ns[conf_t == term])
        at = np.flatnonzero(ev_t == term)
        near[at] = np.searchsorted(times, ev_ns[at] + w, "right") - np.searchsorted(times, ev_ns[at] - w, "left")
    skip = set(map(str, exclude)) | set(confirmed["customer_id"].astype(str))
    cards = ev["customer_id"].astype(str).to_numpy()
    keep = (near > 0) & ~pd.Series(cards).isin(skip).to_numpy()
    if not keep.any():
        return _empty()
    tx = ev["tx_id"].astype(str).to_numpy()[keep] if "tx_id" in ev.columns else np.arange(keep.sum())
    v = pd.DataFrame({"customer_id": cards[keep], "terminal_id": ev_t[keep], "ns": ev_ns[keep], "near": near[keep],
                      "tx": tx, "score": ev["score"].to_numpy(float)[keep] if "score" in ev.columns else np.nan})
    per = v.drop_duplicates("tx").groupby(["customer_id", "terminal_id"], sort=False).agg(
        first_seen=("ns", "min"), visits=("tx", "size"), confirmed_nearby=("near", "max"),
        top_score=("score", "max")).reset_index()
    per["exposed_terminals"] = per.groupby("customer_id")["terminal_id"].transform("size")
    per = per.sort_values(["confirmed_nearby", "top_score", "first_seen", "customer_id"],
                          ascending=[False, False, True, True], kind="stable", na_position="last")
    out = per.drop_duplicates("customer_id").reset_index(drop=True)
    out["first_seen"] = pd.to_datetime(out["first_seen"].to_numpy(np.int64), utc=True)
    return out[COLUMNS]
