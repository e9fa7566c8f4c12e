"""Adaptive fraudsters: tactics that know what the model looks at (``fraud bench evasion``).

``inject(df, start, days, tactics, seed, scale)`` adds fraud rows to a canonical frame (as
``fraud.simulate`` / ``fraud.worlds.generate`` produce) from ``start`` on, for ``days`` days. Each
tactic profiles the cards and terminals from the frame's history before ``start`` (what an attacker
who has watched the cards learns) and hides from one family of features: amounts under the card's own
usual (amount ratios), slow card testing (velocity windows), aged accounts as mules (account age, new
pairs), briefly used compromised terminals (delayed terminal risk), a ring spread thin (convergence at
a merchant). Parameters are drawn per seed (:func:`draw_params`); genuine rows are never changed, the
new rows get new ``tx_id`` values, label 1 and the tactic's scenario id (:data:`TACTICS`). Definitions:
docs/simulator.md, "Evasion tactics".
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from fraud.errors import ConfigError
from fraud.simulate import DAY_S

#: scenario id -> tactic name
TACTICS = {21: "under_usual", 22: "slow_testing", 23: "aged_mules", 24: "rotated_terminals", 25: "spread_ring"}
_IDS = {v: k for k, v in TACTICS.items()}
_HOUR = 3600


def _rngs(seed) -> dict:
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or seed < 0:
        raise ConfigError(f"evasion: seed={seed!r} must be a non-negative integer")
    kids = np.random.SeedSequence([int(seed), 21]).spawn(len(TACTICS) + 1)
    return dict(zip(("params",) + tuple(TACTICS.values()), (np.random.default_rng(k) for k in kids)))


def draw_params(seed: int) -> dict:
    """Each tactic's parameters for this seed: name -> dict (rates are per week at ``scale`` 1)."""
    r = _rngs(seed)["params"]
    return {
        "under_usual": {"per_week": float(r.uniform(2, 4)), "days": (2, 7), "per_day": float(r.uniform(1, 3)),
                        "amount_frac": (float(r.uniform(0.3, 0.6)), float(r.uniform(0.85, 0.98))),
                        "new_share": float(r.uniform(0.1, 0.35)), "new_terminals": (1, 3)},
        "slow_testing": {"per_week": float(r.uniform(1.5, 3)), "tests": (3, 7),
                         "gap_hours": (float(r.uniform(3, 8)), float(r.uniform(24, 60))),
                         "test_amount": (0.5, 3.0), "own_share": float(r.uniform(0.3, 0.8)),
                         "cashout_x": (1.0, float(r.uniform(1.3, 2.0)))},
        "aged_mules": {"rings_per_week": float(r.uniform(0.4, 0.8)), "members": (6, 16), "merchants": (2, 5),
                       "min_age_days": float(r.uniform(28, 42)), "min_history": 8,
                       "related_share": float(r.uniform(0.3, 0.7)),
                       "visits": (2, 5), "life": (7, 15)},
        "rotated_terminals": {"chains": int(r.integers(1, 3)), "max_days": int(r.integers(1, 3)),
                              "per_day": float(r.uniform(2, 5)), "min_visitors": 3},
        "spread_ring": {"rings_per_week": float(r.uniform(0.4, 0.8)), "members": (10, 26), "visits": (2, 5),
                        "cap": int(r.integers(2, 4)), "life": (8, 15)},
    }


# -- what the attacker learns from the history ------------------------------------------------------
class _History:
    """Per card: its amounts, times of day, terminals; per terminal: its visitors (all before ``start``)."""

    def __init__(self, hist: pd.DataFrame, start: pd.Timestamp):
        secs = ((hist["timestamp"] - start).dt.total_seconds()).to_numpy(np.int64)
        self.tod = np.mod(secs, DAY_S)
        self.amount = hist["amount"].to_numpy(float)
        self.term = hist["terminal_id"].astype(str).to_numpy()
        self.by_card = hist.groupby(hist["customer_id"].astype(str), sort=True).indices
        self.by_term = hist.groupby(self.term, sort=True).indices
        self.cust = hist["customer_id"].astype(str).to_numpy()
        first = pd.Series(secs).groupby(self.cust).min()
        self.age_days = (-first / DAY_S).to_dict()  # card -> days of history before start

    def cards(self, min_tx: int = 5, min_age: float = 0.0) -> np.ndarray:
        return np.array(sorted(c for c, i in self.by_card.items() if len(i) >= min_tx and self.age_days[c] >= min_age))

    def median(self, c: str) -> float:
        return float(np.median(self.amount[self.by_card[c]]))

    def own_terms(self, c: str) -> tuple[np.ndarray, np.ndarray]:
        t, n = np.unique(self.term[self.by_card[c]], return_counts=True)
        return t, n / n.sum()

    def nearby_terms(self, c: str) -> np.ndarray:
        """Terminals of the cards sharing a terminal with ``c`` that ``c`` never used (its graph neighbourhood)."""
        own = set(self.own_terms(c)[0])
        peers = {self.cust[i] for t in own for i in self.by_term[t]}
        near = {self.term[i] for p in peers for i in self.by_card[p]} - own
        return np.array(sorted(near))

    def visitors(self, t: str) -> np.ndarray:
        return np.unique(self.cust[self.by_term[t]])

    def usual_times(self, rng, c: str, k: int) -> np.ndarray:
        """``k`` times of day drawn from the card's own (+- 20 minutes)."""
        tod = self.tod[self.by_card[c]]
        return np.mod(rng.choice(tod, k) + rng.integers(-1200, 1201, k), DAY_S)

    def usual_amounts(self, rng, c: str, k: int, lo: float = 0.8, hi: float = 1.2) -> np.ndarray:
        return np.round(np.maximum(self.median(c) * rng.uniform(lo, hi, k), 0.5), 2)


def _count(rng, per_week: float, days: int, scale: float) -> int:
    return max(1, int(rng.poisson(per_week * days / 7 * scale)))


def _pick(rng, pool: np.ndarray, k: int, used: set) -> np.ndarray:
    """Up to ``k`` of ``pool`` not in ``used`` (falls back to reuse when too few are left)."""
    free = np.array([x for x in pool if x not in used])
    src = free if len(free) >= k else pool
    out = rng.choice(src, size=min(k, len(src)), replace=False) if len(src) else src[:0]
    used.update(out.tolist())
    return out


def _rows(c, terms, secs, amts) -> tuple:
    return (np.full(len(secs), c, dtype=object), np.asarray(terms, dtype=object), np.asarray(secs, np.int64),
            np.asarray(amts, float))


# -- tactics ---------------------------------------------------------------------------------------
def _under_usual(h: _History, rng, p: dict, days: int, scale: float) -> list:
    """Stolen cards spending below their own median, at their hours, mostly at their own terminals."""
    out, used = [], set()
    for c in _pick(rng, h.cards(5), _count(rng, p["per_week"], days, scale), used):
        own, w = h.own_terms(c)
        near = h.nearby_terms(c)
        k = min(len(near), int(rng.integers(*p["new_terminals"]))) if len(near) else 0
        new = rng.choice(near, k, replace=False) if k else own
        d0 = int(rng.integers(0, days))
        for d in range(d0, min(days, d0 + int(rng.integers(*p["days"])))):
            k = int(rng.poisson(p["per_day"]))
            if k:
                term = np.where(rng.random(k) < p["new_share"], rng.choice(new, k), rng.choice(own, k, p=w))
                amt = np.round(h.median(c) * rng.uniform(*p["amount_frac"], k), 2)
                out.append(_rows(c, term, d * DAY_S + h.usual_times(rng, c, k), np.maximum(amt, 0.01)))
    return out


def _next_at(t: int, tod: int) -> int:
    """The first time at or after ``t`` whose time of day is ``tod``."""
    return int(t + np.mod(tod - t, DAY_S))


def _slow_testing(h: _History, rng, p: dict, days: int, scale: float) -> list:
    """Tiny tests hours to days apart at the card's usual hours, near home, then a cash-out near its usual."""
    out, used = [], set()
    for c in _pick(rng, h.cards(5), _count(rng, p["per_week"], days, scale), used):
        n = int(rng.integers(*p["tests"])) + 1
        own, w = h.own_terms(c)
        near = h.nearby_terms(c)
        near = near if len(near) else own
        t, secs = int(rng.integers(0, max(1, days - 3)) * DAY_S), []
        for tod in h.usual_times(rng, c, n):
            t = _next_at(t + int(rng.uniform(*p["gap_hours"]) * _HOUR) if secs else t, int(tod))
            secs.append(t)
        term = np.where(rng.random(n) < p["own_share"], rng.choice(own, n, p=w), rng.choice(near, n))
        amt = np.round(rng.uniform(*p["test_amount"], n), 2)
        amt[-1] = round(max(h.median(c) * rng.uniform(*p["cashout_x"]), p["test_amount"][1] + 1), 2)
        keep = np.asarray(secs) < days * DAY_S
        out.append(_rows(c, term[keep], np.asarray(secs)[keep], amt[keep]))
    return out


def _ring_visits(h: _History, rng, members, merchants, p: dict, days: int, cap: int | None = None) -> list:
    """Each member visits ``visits`` ring merchants (distinct where possible) during the ring's life at its
    usual hours and amounts; with ``cap``, the least-visited merchants first and at most ``cap`` visits each."""
    s = int(rng.integers(0, max(1, days - 2)))
    life = int(rng.integers(*p["life"]))
    load = dict.fromkeys(merchants.tolist(), 0)
    out = []
    for c in members:
        v = min(int(rng.integers(*p["visits"])), len(merchants))
        if cap is None:
            term = rng.choice(merchants, v, replace=False)
        else:
            free = [m for m in sorted(load, key=lambda m: (load[m], rng.random())) if load[m] < cap][:v]
            term = np.array(free, dtype=object)
        for m in term:
            load[m] += 1
        day = np.minimum(s + rng.integers(0, life, len(term)), days - 1)
        out.append(_rows(c, term, day * DAY_S + h.usual_times(rng, c, len(term)), h.usual_amounts(rng, c, len(term))))
    return out


def _aged_mules(h: _History, rng, p: dict, days: int, scale: float) -> list:
    """Rings of accounts with months of normal history at a few merchants, partly their own regulars (the
    minimum age is cut to 3/4 of the history when the history is shorter)."""
    aged = h.cards(p["min_history"], min(p["min_age_days"], 0.75 * max(h.age_days.values())))
    busy = np.array([t for t, i in h.by_term.items() if len(i) >= 3])
    out, used = [], set()
    for _ in range(_count(rng, p["rings_per_week"], days, scale)):
        if len(aged) == 0 or len(busy) == 0:
            break
        merch = rng.choice(busy, min(len(busy), int(rng.integers(*p["merchants"]))), replace=False)
        m = int(rng.integers(*p["members"]))
        regulars = np.intersect1d(np.concatenate([h.visitors(t) for t in merch]), aged)
        k = min(len(regulars), int(round(m * p["related_share"])))
        members = np.concatenate([_pick(rng, regulars, k, used), _pick(rng, aged, m - k, used)])
        out += _ring_visits(h, rng, members, merch, p, days)
    return out


def _rotated_terminals(h: _History, rng, p: dict, days: int, scale: float) -> list:
    """Compromised terminals each used for fraud on at most ``max_days`` days, then the next one: charges on
    the terminal's own regular cards at their usual amounts and hours."""
    pool = np.array([t for t, i in h.by_term.items() if len(np.unique(h.cust[i])) >= p["min_visitors"]])
    out, used = [], set()
    for _ in range(max(1, int(round(p["chains"] * scale)))):
        d = int(rng.integers(0, 2))
        while d < days and len(pool):
            t = _pick(rng, pool, 1, used)[0]
            regs = h.visitors(t)
            for day in range(d, min(days, d + int(rng.integers(1, p["max_days"] + 1)))):
                for c in rng.choice(regs, min(len(regs), 1 + int(rng.poisson(p["per_day"] - 1))), replace=False):
                    out.append(_rows(c, [t], day * DAY_S + h.usual_times(rng, c, 1), h.usual_amounts(rng, c, 1)))
                d = day + 1
    return out


def _spread_ring(h: _History, rng, p: dict, days: int, scale: float) -> list:
    """A ring spread over many terminals: each member visits a few, each terminal gets at most ``cap`` visits."""
    cards = h.cards(3)
    terms = np.array(sorted(h.by_term))
    out, used, taken = [], set(), set()
    for _ in range(_count(rng, p["rings_per_week"], days, scale)):
        m = int(rng.integers(*p["members"]))
        members = _pick(rng, cards, m, used)
        merch = _pick(rng, terms, int(np.ceil(m * (p["visits"][1] - 1) / p["cap"])) + 1, taken)
        out += _ring_visits(h, rng, members, merch, p, days, cap=p["cap"])
    return out


_MAKERS = {"under_usual": _under_usual, "slow_testing": _slow_testing, "aged_mules": _aged_mules,
           "rotated_terminals": _rotated_terminals, "spread_ring": _spread_ring}


def _check(df: pd.DataFrame, start, days, tactics, scale) -> tuple[pd.Timestamp, list]:
    miss = [c for c in ("tx_id", "timestamp", "customer_id", "terminal_id", "amount") if c not in df.columns]
    if miss:
        raise ConfigError(f"evasion: the frame lacks columns {miss}")
    try:
        t0 = pd.Timestamp(start)
    except (TypeError, ValueError):
        raise ConfigError(f"evasion: start={start!r} is not a date") from None
    t0 = t0.tz_localize("UTC") if t0.tzinfo is None else t0.tz_convert("UTC")
    names = [TACTICS.get(t, t) for t in tactics]
    bad = [t for t in names if t not in _IDS]
    if bad:
        raise ConfigError(f"evasion: tactics {bad} unknown; known: {TACTICS}")
    if not isinstance(days, (int, np.integer)) or days < 1 or not scale > 0:
        raise ConfigError(f"evasion: days={days!r} must be a positive integer and scale={scale!r} > 0")
    if not (df["timestamp"] < t0).any():
        raise ConfigError(f"evasion: no history before start={t0} to learn the cards from")
    return t0, names


def inject(df: pd.DataFrame, start, days: int, tactics=tuple(TACTICS), seed: int = 0,
           scale: float = 1.0) -> pd.DataFrame:
    """``df`` plus the tactics' fraud rows in ``[start, start + days)``, sorted by timestamp (stable)."""
    t0, names = _check(df, start, days, tactics, scale)
    rngs, params = _rngs(seed), draw_params(seed)
    h = _History(df[df["timestamp"] < t0], t0)
    parts = []
    for name in names:
        for c, t, s, a in _MAKERS[name](h, rngs[name], params[name], int(days), float(scale)):
            parts.append((c, t, s, a, np.full(len(s), _IDS[name], np.int16)))
    if not parts:
        return df.copy()
    c, t, s, a, sc = (np.concatenate([p[i] for p in parts]) for i in range(5))
    new = pd.DataFrame({"tx_id": [f"ev{seed}-{i}" for i in range(len(s))],
                        "timestamp": t0 + pd.to_timedelta(s, unit="s"), "customer_id": c.astype(str),
                        "terminal_id": t.astype(str), "amount": a, "label": np.ones(len(s), np.int8), "scenario": sc})
    if new["tx_id"].isin(df["tx_id"]).any():
        raise ConfigError(f"evasion: tx_id prefix 'ev{seed}-' already used in the frame")
    out = pd.concat([df, new], ignore_index=True)
    out["label"] = out["label"].fillna(0).astype(np.int8)
    out["scenario"] = out["scenario"].fillna(0).astype(np.int16)
    return out.sort_values("timestamp", kind="stable").reset_index(drop=True)
