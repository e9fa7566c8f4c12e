"""A family of simulated worlds with randomised fraud patterns (``fraud bench worlds``).

``draw_spec(seed, ...)`` draws a world's genuine-traffic parameters and which fraud patterns it holds
(with their parameters); ``generate(spec)`` returns the canonical frame (as ``fraud.simulate``) with
``scenario`` ids from :data:`PATTERNS`. Built so that a detector tuned to ``fraud.simulate``'s six
scenarios meets patterns it was not built for; the pattern definitions are in docs/detection.md.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd

from fraud.errors import ConfigError
from fraud.simulate import DAY_S, _build_world, _handbook_frauds

#: scenario id -> pattern name (0 = genuine; 1-3: fraud.simulate's handbook scenarios when drawn)
PATTERNS = {11: "mimic", 12: "aged_ring", 13: "duplicate", 14: "slow_testing", 15: "night_burst"}
RING = 12
_STREAMS = ("spec", "world", "genuine", "handbook2", "handbook3", "mimic", "aged_ring", "duplicate",
            "slow_testing", "night_burst")


@dataclass
class WorldSpec:
    """Everything ``generate`` needs; ``patterns``: name -> parameters (absent = not in this world)."""

    seed: int
    customers: int
    terminals: int
    days: int
    late_from: int  # aged-account rings start on or after this day (after the training window)
    tx_per_day: tuple = (0.3, 3.0)
    amount_cv: float = 0.4
    hour_sd: tuple = (1.0, 4.0)
    skew: float = 2.0  # preference for a customer's first terminals (1 = uniform)
    handbook: bool = False  # fraud.simulate's scenarios 1-3 on genuine rows
    patterns: dict = field(default_factory=dict)  # mimic, slow_testing, night_burst: optional "from_day" onset
    start: str = "2019-01-01"

    def to_dict(self) -> dict:
        return asdict(self)


def _rngs(seed: int) -> dict:
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or seed < 0:
        raise ConfigError(f"worlds: seed={seed!r} must be a non-negative integer")
    kids = np.random.SeedSequence([int(seed), 14]).spawn(len(_STREAMS))
    return {k: np.random.default_rng(s) for k, s in zip(_STREAMS, kids)}


def draw_spec(seed: int, customers: int = 500, terminals: int = 1000, days: int = 70,
              late_from: int | None = None) -> WorldSpec:
    """A world with randomised traffic and a random subset (possibly none of simulate's) of patterns;
    every world holds at least one aged-account ring starting on or after ``late_from``."""
    for name, v in (("customers", customers), ("terminals", terminals), ("days", days)):
        if not isinstance(v, (int, np.integer)) or v < 10:
            raise ConfigError(f"worlds: {name}={v!r} must be an integer >= 10")
    r = _rngs(seed)["spec"]
    late = int(days - 14) if late_from is None else int(late_from)
    if not 0 < late < days - 2:
        raise ConfigError(f"worlds: late_from={late!r} must lie in (0, days - 2) for days={days}")
    pats = {"aged_ring": {"rings": int(r.integers(1, 4)), "merchants": (2, 4), "members": (8, 25),
                          "visits": (1, 3), "life": (4, 10)}}
    if r.random() < 0.8:
        pats["mimic"] = {"rate": float(r.uniform(0.5e-3, 2e-3)), "own_share": float(r.uniform(0.0, 0.7)),
                         "extra_per_day": float(r.uniform(1.0, 4.0)), "days": (2, 7)}
    if r.random() < 0.7:
        pats["duplicate"] = {"merchants_per_month": int(r.integers(1, 4)), "share": float(r.uniform(0.2, 0.8)),
                             "minutes": (2, 40), "days": (3, 15)}
    if r.random() < 0.7:
        pats["slow_testing"] = {"rate": float(r.uniform(0.3e-3, 1e-3)), "tests": (3, 8), "days": (3, 10),
                                "cashout_x": (3.0, 6.0)}
    if r.random() < 0.7:
        pats["night_burst"] = {"rate": float(r.uniform(0.3e-3, 1e-3)), "n": (3, 8), "amount_x": (1.0, 3.0)}
    lo, hi = sorted(r.uniform(0.2, 3.5, 2))
    return WorldSpec(seed=int(seed), customers=int(customers), terminals=int(terminals), days=int(days),
                     late_from=late, tx_per_day=(float(lo), float(max(hi, lo + 0.3))),
                     amount_cv=float(r.uniform(0.15, 0.6)), hour_sd=(1.0, float(r.uniform(2.0, 5.0))),
                     skew=float(r.uniform(1.0, 3.0)), handbook=bool(r.random() < 0.4), patterns=pats)


# -- genuine traffic -------------------------------------------------------------------------------
@dataclass
class _Traffic:
    world: object
    mean: np.ndarray  # per customer
    sd: np.ndarray
    hour: np.ndarray  # centre of the customer's hours (s)
    hour_sd: np.ndarray
    lam: np.ndarray


def _amount(rng, mean, sd) -> np.ndarray:
    a = rng.normal(mean, sd)
    return np.round(np.where(a < 0.5, rng.uniform(0.5, np.maximum(2 * mean, 1.0)), a), 2)


def _tod(rng, centre, sd) -> np.ndarray:
    return np.mod(rng.normal(centre, sd), DAY_S).astype(np.int64).clip(0, DAY_S - 1)


def _genuine(spec: WorldSpec, rng, world):
    n = spec.customers
    tr = _Traffic(world, rng.uniform(5, 100, n), None, rng.uniform(8, 20, n) * 3600,
                  rng.uniform(*spec.hour_sd, n) * 3600, rng.uniform(*spec.tx_per_day, n))
    tr.sd = tr.mean * spec.amount_cv
    counts = rng.poisson(tr.lam[:, None], size=(n, spec.days))
    cust = np.repeat(np.repeat(np.arange(n), spec.days), counts.ravel())
    day = np.repeat(np.tile(np.arange(spec.days), n), counts.ravel())
    nterm = np.diff(world.offsets)
    keep = nterm[cust] > 0
    cust, day = cust[keep], day[keep]
    k = np.minimum((rng.random(len(cust)) ** spec.skew * nterm[cust]).astype(np.int64), nterm[cust] - 1)
    term = world.neighbors[world.offsets[cust] + k]
    secs = day * DAY_S + _tod(rng, tr.hour[cust], tr.hour_sd[cust])
    return tr, cust, term, day, secs, _amount(rng, tr.mean[cust], tr.sd[cust])


# -- patterns --------------------------------------------------------------------------------------
def _ring_terms(world, cust_idx, rng, lo: float, hi: float) -> np.ndarray:
    """One terminal per entry at distance in [lo, hi) from the customer (the nearest beyond lo when none)."""
    c, t = world.customers, world.terminals
    cx, cy = c["x"].to_numpy()[cust_idx], c["y"].to_numpy()[cust_idx]
    tx, ty = t["x"].to_numpy(), t["y"].to_numpy()
    out = np.empty(len(cust_idx), np.int64)
    for i in range(len(cust_idx)):
        d = np.hypot(tx - cx[i], ty - cy[i])
        ok = np.flatnonzero((d >= lo) & (d < hi))
        out[i] = ok[rng.integers(len(ok))] if len(ok) else int(np.argmin(np.where(d >= lo, d, np.inf)))
    return out


def _events(rng, tr, n0, rate, days, day_lo=0):
    """(cards, start days) of ``max(1, round(rate * n0 / 5))`` events on cards with terminals."""
    ok = np.flatnonzero(np.diff(tr.world.offsets) > 0)
    n = max(1, int(round(rate * n0 / 5)))
    return rng.choice(ok, n), rng.integers(day_lo, days, n)


def _mimic(spec, tr, rng, n0, p):
    """Stolen card used like its owner: own amounts and hours, more often, partly outside its area."""
    cards, start = _events(rng, tr, n0, p["rate"], spec.days, day_lo=p.get("from_day", 7))
    out = []
    for c, s in zip(cards, start):
        for d in range(s, min(s + int(rng.integers(*p["days"])), spec.days)):
            k = int(rng.poisson(p["extra_per_day"]))
            if k == 0:
                continue
            own = rng.random(k) < p["own_share"]
            lo = tr.world.offsets[c]
            nt = tr.world.offsets[c + 1] - lo
            term = np.where(own, tr.world.neighbors[lo + rng.integers(0, nt, k)],
                            _ring_terms(tr.world, np.full(k, c), rng, 5.0, 12.0))
            secs = d * DAY_S + _tod(rng, np.full(k, tr.hour[c]), np.full(k, tr.hour_sd[c]))
            out.append((np.full(k, c), term, secs, _amount(rng, np.full(k, tr.mean[c]), np.full(k, tr.sd[c]))))
    return out


def _aged_ring(spec, tr, rng, n0, p, traffic):
    """Established cards from all over the grid converge on a few low-traffic merchants, at their usual
    amounts and hours, starting on or after ``late_from``."""
    out = []
    hist = np.bincount(traffic[1], minlength=spec.terminals)
    quiet = np.flatnonzero(hist <= np.quantile(hist[hist > 0], 0.3)) if (hist > 0).any() else np.arange(spec.terminals)
    quiet = quiet[hist[quiet] > 0] if (hist[quiet] > 0).any() else quiet
    seen = np.bincount(traffic[0][traffic[2] < 30], minlength=spec.customers)
    aged = np.flatnonzero(seen >= 3)
    for _ in range(p["rings"]):
        k = int(rng.integers(p["merchants"][0], p["merchants"][1] + 1))
        merch = rng.choice(quiet, size=min(k, len(quiet)), replace=False)
        m = int(rng.integers(p["members"][0], p["members"][1] + 1))
        members = rng.choice(aged, size=min(m, len(aged)), replace=False)
        s = int(rng.integers(spec.late_from, max(spec.late_from + 1, spec.days - 3)))
        life = int(rng.integers(*p["life"]))
        for c in members:
            v = int(rng.integers(p["visits"][0], p["visits"][1] + 1))
            day = np.minimum(s + rng.integers(0, life, v), spec.days - 1)
            secs = day * DAY_S + _tod(rng, np.full(v, tr.hour[c]), np.full(v, tr.hour_sd[c]))
            out.append((np.full(v, c), rng.choice(merch, v), secs,
                        _amount(rng, np.full(v, tr.mean[c]), np.full(v, tr.sd[c]))))
    return out


def _duplicate(spec, tr, rng, n0, p, traffic):
    """A merchant repeating genuine charges (same card, same amount) minutes later."""
    cust, term, day, secs, amt = traffic
    out = []
    months = max(1, spec.days // 30)
    busy = np.bincount(term, minlength=spec.terminals).astype(float)
    k = min(p["merchants_per_month"] * months, int((busy > 0).sum()))
    for merch in rng.choice(spec.terminals, size=k, replace=False, p=busy / busy.sum()):
        s = int(rng.integers(7, spec.days))
        e = s + int(rng.integers(*p["days"]))
        rows = np.flatnonzero((term == merch) & (day >= s) & (day < e))
        rows = rows[rng.random(len(rows)) < p["share"]]
        if len(rows):
            gap = rng.integers(p["minutes"][0] * 60, p["minutes"][1] * 60, len(rows))
            out.append((cust[rows], term[rows], np.minimum(secs[rows] + gap, spec.days * DAY_S - 1), amt[rows]))
    return out


def _slow_testing(spec, tr, rng, n0, p):
    """Small tests spread over days at far merchants, then a cash-out at a multiple of the card's mean."""
    cards, start = _events(rng, tr, n0, p["rate"], spec.days, day_lo=p.get("from_day", 3))
    out = []
    for c, s in zip(cards, start):
        nt = int(rng.integers(*p["tests"]))
        span = int(rng.integers(*p["days"]))
        day = np.sort(np.minimum(s + rng.integers(0, span, nt + 1), spec.days - 1))
        day[-1] = min(day[-1] + 1, spec.days - 1)
        secs = day * DAY_S + _tod(rng, np.full(nt + 1, tr.hour[c]), np.full(nt + 1, tr.hour_sd[c]))
        amt = np.round(rng.uniform(0.5, 3.0, nt + 1), 2)
        amt[-1] = np.round(tr.mean[c] * rng.uniform(*p["cashout_x"]), 2)
        out.append((np.full(nt + 1, c), _ring_terms(tr.world, np.full(nt + 1, c), rng, 12.0, 200.0), secs, amt))
    return out


def _night_burst(spec, tr, rng, n0, p):
    """A night burst at the card's second neighbourhood (5-12 away), amounts a multiple of its own."""
    cards, start = _events(rng, tr, n0, p["rate"], spec.days, day_lo=p.get("from_day", 0))
    out = []
    for c, d in zip(cards, start):
        k = int(rng.integers(*p["n"]))
        secs = d * DAY_S + np.sort(rng.integers(0, 5 * 3600, k))
        amt = _amount(rng, np.full(k, tr.mean[c] * rng.uniform(*p["amount_x"])), np.full(k, tr.sd[c]))
        out.append((np.full(k, c), _ring_terms(tr.world, np.full(k, c), rng, 5.0, 12.0), secs, amt))
    return out


_MAKERS = {"mimic": (11, _mimic, False), "aged_ring": (12, _aged_ring, True), "duplicate": (13, _duplicate, True),
           "slow_testing": (14, _slow_testing, False), "night_burst": (15, _night_burst, False)}


def generate(spec: WorldSpec) -> pd.DataFrame:
    """The world's canonical frame (tx_id, timestamp, customer_id, terminal_id, amount, label, scenario)."""
    rngs = _rngs(spec.seed)
    world = _build_world(spec.customers, spec.terminals, rngs["world"])
    tr, cust, term, day, secs, amt = _genuine(spec, rngs["genuine"], world)
    scen = (_handbook_frauds(cust, term, day, amt, spec.customers, spec.terminals, spec.days, rngs["handbook2"],
                             rngs["handbook3"]) if spec.handbook else np.zeros(len(cust), np.int16))
    traffic = (cust, term, day, secs, amt)
    parts = [(cust, term, secs, amt, scen)]
    for name, (sid, make, needs_traffic) in _MAKERS.items():
        if name not in spec.patterns:
            continue
        args = (spec, tr, rngs[name], len(cust), spec.patterns[name]) + ((traffic,) if needs_traffic else ())
        for c, t, s, a in make(*args):
            parts.append((c, t, s, a, np.full(len(c), sid, np.int16)))
    cat = [np.concatenate([p[i] for p in parts]) for i in range(5)]
    order = np.lexsort((np.arange(len(cat[2])), cat[2]))
    start = pd.Timestamp(spec.start, tz="UTC")
    n = len(order)
    return pd.DataFrame({
        "tx_id": pd.Series(np.arange(n)).astype(str),
        "timestamp": start + pd.to_timedelta(cat[2][order], unit="s"),
        "customer_id": pd.Series(cat[0][order]).astype(str),
        "terminal_id": pd.Series(cat[1][order]).astype(str),
        "amount": cat[3][order].astype(np.float64),
        "label": (cat[4][order] > 0).astype(np.int8),
        "scenario": cat[4][order].astype(np.int16),
    })
