"""Simulated worlds of labelled card transactions (the product's built-in default data).

``simulate(customers, terminals, days, seed)`` returns the canonical frame (``fraud.schema``) with
``label`` and ``scenario``; ``simulate_world(customers, terminals, seed)`` returns the geography and
profiles behind it (the same draws). Genuine traffic and fraud scenarios 1-3 follow the Fraud Detection
Handbook generator (at handbook size about 1.75M transactions, 0.84 % fraud, as the book's data);
scenarios 4-6 (fraud rings, card testing, account takeover) are ours, with ordinary-looking amounts so
that the book's window features barely see them. One ``numpy.random.SeedSequence(seed)`` spawns a stream
per part: the same arguments give an identical frame. Every rule and constant: docs/simulator.md.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from fraud.errors import ConfigError
from fraud.schema import utc_timestamp

GRID = 100.0
RADIUS = 5.0
DAY_S = 86400
HANDBOOK_CUSTOMERS = 5000
HANDBOOK_TERMINALS = 10000
RING_WINDOW = 10  # days each colluding terminal of a ring is used
RATE = 0.001  # target share of genuine-generator transactions for each of scenarios 4, 5, 6
AMOUNT_RULE = 220.0

_STREAMS = ("world", "genuine", "s2", "s3", "s4", "s5", "s6")


@dataclass
class World:
    """Geography and profiles. ``customers``: customer_id, x, y, mean_amount, std_amount,
    mean_tx_per_day, n_terminals. ``terminals``: terminal_id, x, y.
    ``offsets``/``neighbors``: CSR lists of each customer's available terminal indices."""

    customers: pd.DataFrame
    terminals: pd.DataFrame
    offsets: np.ndarray
    neighbors: np.ndarray


def _check(customers: int, terminals: int, days: int, start: str) -> pd.Timestamp:
    for name, v in (("customers", customers), ("terminals", terminals), ("days", days)):
        if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < 1:
            raise ConfigError(f"simulate: {name}={v!r} must be a positive integer")
    return utc_timestamp(start, "simulate: start")


def _rngs(seed: int) -> dict[str, np.random.Generator]:
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or seed < 0:
        raise ConfigError(f"simulate: seed={seed!r} must be a non-negative integer")
    kids = np.random.SeedSequence(int(seed)).spawn(len(_STREAMS))
    return {k: np.random.default_rng(s) for k, s in zip(_STREAMS, kids)}


def _build_world(customers: int, terminals: int, rng: np.random.Generator) -> World:
    cx = rng.uniform(0, GRID, customers)
    cy = rng.uniform(0, GRID, customers)
    mean_amount = rng.uniform(5, 100, customers)
    mean_tx = rng.uniform(0, 4, customers)
    tx = rng.uniform(0, GRID, terminals)
    ty = rng.uniform(0, GRID, terminals)
    # available terminals: distance < RADIUS, CSR by customer (chunked brute force, exact)
    rows, cols = [], []
    chunk = max(1, 4_000_000 // max(terminals, 1))
    r2 = RADIUS * RADIUS
    for a in range(0, customers, chunk):
        b = min(customers, a + chunk)
        d2 = (cx[a:b, None] - tx[None, :]) ** 2 + (cy[a:b, None] - ty[None, :]) ** 2
        rr, cc = np.nonzero(d2 < r2)
        rows.append(rr + a)
        cols.append(cc)
    rows = np.concatenate(rows) if rows else np.zeros(0, np.int64)
    neighbors = (np.concatenate(cols) if cols else np.zeros(0, np.int64)).astype(np.int64)
    counts = np.bincount(rows, minlength=customers)
    offsets = np.zeros(customers + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    cust = pd.DataFrame({
        "customer_id": pd.Series(np.arange(customers)).astype(str),
        "x": cx, "y": cy,
        "mean_amount": mean_amount, "std_amount": mean_amount / 2,
        "mean_tx_per_day": mean_tx, "n_terminals": counts.astype(np.int64),
    })
    term = pd.DataFrame({"terminal_id": pd.Series(np.arange(terminals)).astype(str), "x": tx, "y": ty})
    return World(cust, term, offsets, neighbors)


def simulate_world(customers: int = 5000, terminals: int = 10000, seed: int = 0) -> World:
    """The customer and terminal tables (with x, y and profiles) that ``simulate`` uses for the
    same ``customers``, ``terminals`` and ``seed``."""
    _check(customers, terminals, 1, "2018-04-01")
    return _build_world(customers, terminals, _rngs(seed)["world"])


def _amounts(rng: np.random.Generator, mean: np.ndarray, cap: float | None = None) -> np.ndarray:
    """N(mean, mean/2); negative -> U(0, 2*mean); with ``cap``, >= cap -> U(0, 2*mean) too."""
    amt = rng.normal(mean, mean / 2)
    bad = amt < 0
    if cap is not None:
        bad |= amt >= cap
    if bad.any():
        amt[bad] = rng.uniform(0, 2 * mean[bad])
    return np.round(amt, 2)


def _day_times(rng: np.random.Generator, n: int) -> np.ndarray:
    """int(N(43200, 20000)) seconds redrawn until inside (0, 86400) (for added scenarios)."""
    t = rng.normal(DAY_S / 2, 20000, n).astype(np.int64)
    for _ in range(20):
        bad = (t <= 0) | (t >= DAY_S)
        if not bad.any():
            break
        t[bad] = rng.normal(DAY_S / 2, 20000, int(bad.sum())).astype(np.int64)
    return np.clip(t, 1, DAY_S - 1)


def _genuine(world: World, days: int, rng: np.random.Generator):
    c = world.customers
    lam = c["mean_tx_per_day"].to_numpy()
    mean = c["mean_amount"].to_numpy()
    ncust = len(c)
    counts = rng.poisson(lam[:, None], size=(ncust, days))  # customer-major
    flat = counts.ravel()
    cust = np.repeat(np.repeat(np.arange(ncust, dtype=np.int64), days), flat)
    day = np.repeat(np.tile(np.arange(days, dtype=np.int64), ncust), flat)
    n = len(cust)
    tod = rng.normal(DAY_S / 2, 20000, n).astype(np.int64)  # int() truncation as in the book
    amt = _amounts(rng, mean[cust])
    u = rng.random(n)
    nterm = np.diff(world.offsets)
    keep = (tod > 0) & (tod < DAY_S) & (nterm[cust] > 0)
    cust, day, tod, amt, u = cust[keep], day[keep], tod[keep], amt[keep], u[keep]
    k = np.minimum((u * nterm[cust]).astype(np.int64), nterm[cust] - 1)
    term = world.neighbors[world.offsets[cust] + k]
    return cust, term, day, day * DAY_S + tod, amt


def _handbook_frauds(cust, term, day, amt, ncust, nterm, days, rng2, rng3):
    """Scenarios 1-3 in the book's order. Rows are customer-major, day-sorted."""
    n = len(cust)
    scen = np.zeros(n, dtype=np.int16)
    scen[amt > AMOUNT_RULE] = 1
    # scenario 2: rows grouped by terminal then day
    k2 = max(1, round(2 * nterm / HANDBOOK_TERMINALS))
    order = np.lexsort((day, term))
    key = term[order] * days + day[order]
    for d in range(days):
        for t in rng2.choice(nterm, size=min(k2, nterm), replace=False):
            lo = np.searchsorted(key, t * days + d, side="left")
            hi = np.searchsorted(key, t * days + min(d + 28, days), side="left")
            scen[order[lo:hi]] = 2
    # scenario 3: rows are already customer-major, day-sorted
    k3 = max(1, round(3 * ncust / HANDBOOK_CUSTOMERS))
    key = cust * days + day
    for d in range(days):
        picked = rng3.choice(ncust, size=min(k3, ncust), replace=False)
        idx = [np.arange(np.searchsorted(key, c * days + d), np.searchsorted(key, c * days + min(d + 14, days)))
               for c in picked]
        idx = np.concatenate(idx) if idx else np.zeros(0, np.int64)
        m = int(len(idx) / 3)
        if m:
            sel = rng3.choice(idx, size=m, replace=False)
            amt[sel] = amt[sel] * 5
            scen[sel] = 3
    return scen


def _far_terminals(world: World, cust_idx: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One terminal per entry, uniform on the grid at distance >= RADIUS from the customer."""
    c = world.customers
    cx, cy = c["x"].to_numpy()[cust_idx], c["y"].to_numpy()[cust_idx]
    tx, ty = world.terminals["x"].to_numpy(), world.terminals["y"].to_numpy()
    nt = len(tx)
    t = rng.integers(0, nt, len(cust_idx))
    for _ in range(50):
        bad = (tx[t] - cx) ** 2 + (ty[t] - cy) ** 2 < RADIUS * RADIUS
        if not bad.any():
            break
        t[bad] = rng.integers(0, nt, int(bad.sum()))
    else:  # tiny worlds: fall back to the farthest terminal
        bad = (tx[t] - cx) ** 2 + (ty[t] - cy) ** 2 < RADIUS * RADIUS
        for i in np.flatnonzero(bad):
            t[i] = int(np.argmax((tx - cx[i]) ** 2 + (ty - cy[i]) ** 2))
    return t


def _empty4():
    z = np.zeros(0, np.int64)
    return z, z, z, np.zeros(0, np.float64)


def _rings(world: World, days: int, n0: int, rng: np.random.Generator, next_customer: int):
    """Scenario 4. Returns (cust, term, secs, amt, n_new_accounts, extra_means)."""
    c = world.customers
    cx, cy = c["x"].to_numpy(), c["y"].to_numpy()
    mean = c["mean_amount"].to_numpy()
    has_term = np.diff(world.offsets) > 0
    tx, ty = world.terminals["x"].to_numpy(), world.terminals["y"].to_numpy()
    nt = len(tx)
    if n0 == 0:
        return (*_empty4(), next_customer)
    slots = math.ceil(days / 30)
    per_slot = max(1, round(RATE * n0 / (slots * 220)))
    n_rings = slots * per_slot
    target_per_ring = RATE * n0 / n_rings
    used_terms: set[int] = set()
    out_c, out_t, out_s, out_a = [], [], [], []
    new_id = next_customer
    for s in range(slots):
        for _ in range(per_slot):
            start = int(rng.integers(30 * s, min(30 * s + 30, days)))
            # colluding terminals: a random one and its nearest free neighbours; terminal j is
            # used in days [start + j * step, start + j * step + RING_WINDOW)
            k_t = int(min(rng.integers(3, 6), nt))
            step = int(rng.integers(5, 9))
            life = (k_t - 1) * step + RING_WINDOW
            centre = int(rng.integers(0, nt))
            d2 = (tx - tx[centre]) ** 2 + (ty - ty[centre]) ** 2
            by_dist = np.argsort(d2, kind="stable")
            cand = by_dist[~np.isin(by_dist, np.fromiter(used_terms, np.int64, len(used_terms)))]
            rterms = cand[:k_t] if len(cand) >= k_t else by_dist[:k_t]
            used_terms.update(int(i) for i in rterms)
            rx, ry = tx[rterms].mean(), ty[rterms].mean()
            # mules: existing customers near the ring and new accounts
            m = int(rng.integers(10, 31))
            n_new = int(round(m * rng.uniform(0.2, 0.5)))
            n_old = m - n_new
            dc = (cx - rx) ** 2 + (cy - ry) ** 2
            dc = np.where(has_term, dc, np.inf)
            pool = np.argsort(dc, kind="stable")[: max(3 * n_old, 1)]
            pool = pool[np.isfinite(dc[pool])]
            n_old = min(n_old, len(pool))
            old = rng.choice(pool, size=n_old, replace=False) if n_old else np.zeros(0, np.int64)
            new_means = rng.uniform(5, 100, n_new)
            mule_ids = np.concatenate([old, np.arange(new_id, new_id + n_new)]).astype(np.int64)
            mule_means = np.concatenate([mean[old], new_means])
            new_id += n_new
            m = len(mule_ids)
            rate = float(np.clip(target_per_ring / max(m * life, 1), 0.05, 1.5))
            per_mule = np.maximum(min(3, k_t), rng.poisson(rate * life, m))
            tot = int(per_mule.sum())
            owner = np.repeat(np.arange(m), per_mule)
            rank = np.arange(tot) - np.repeat(np.cumsum(per_mule) - per_mule, per_mule)
            # first min(k_t, n) transactions of each mule go to distinct ring terminals
            perms = np.argsort(rng.random((m, k_t)), axis=1)
            tsel = rng.integers(0, k_t, tot)
            distinct = rank < k_t
            tsel[distinct] = perms[owner[distinct], rank[distinct]]
            dday = start + tsel * step + rng.integers(0, RING_WINDOW, tot)
            secs = dday * DAY_S + _day_times(rng, tot)
            amts = _amounts(rng, mule_means[owner], cap=AMOUNT_RULE)
            inside = dday < days  # rings running past the period are cut
            out_c.append(mule_ids[owner][inside])
            out_t.append(rterms[tsel][inside])
            out_s.append(secs[inside])
            out_a.append(amts[inside])
    cat = lambda xs, dt: np.concatenate(xs).astype(dt) if xs else np.zeros(0, dt)  # noqa: E731
    return (cat(out_c, np.int64), cat(out_t, np.int64), cat(out_s, np.int64), cat(out_a, np.float64),
            new_id)


def _card_testing(world: World, days: int, n0: int, rng: np.random.Generator):
    """Scenario 5."""
    c = world.customers
    eligible = np.flatnonzero(np.diff(world.offsets) > 0)
    if len(eligible) == 0 or n0 == 0:
        return _empty4()[:4]
    n_ev = max(1, round(RATE * n0 / 9))
    card = rng.choice(eligible, size=n_ev, replace=True)
    day = rng.integers(0, days, n_ev)
    t0 = rng.integers(0, 23 * 3600, n_ev)
    k = rng.integers(4, 13, n_ev)
    per = k + 1
    tot = int(per.sum())
    ev = np.repeat(np.arange(n_ev), per)
    rank = np.arange(tot) - np.repeat(np.cumsum(per) - per, per)
    last = rank == np.repeat(k, per)
    gaps = np.where(last, rng.integers(60, 601, tot), rng.integers(10, 91, tot))
    gaps[rank == 0] = 0
    # cumulative gaps within each event
    cs = np.cumsum(gaps)
    cs = cs - np.repeat(cs[np.cumsum(per) - per], per)
    secs = day[ev] * DAY_S + t0[ev] + cs
    mean = c["mean_amount"].to_numpy()[card]
    lo = np.minimum(np.maximum(3 * mean, 30.0), 180.0)
    small = np.round(rng.uniform(0.5, 5.0, tot), 2)
    big = np.round(rng.uniform(lo[ev], 219.99), 2)
    amt = np.where(last, big, small)
    term = _far_terminals(world, card[ev], rng)
    return card[ev].astype(np.int64), term.astype(np.int64), secs.astype(np.int64), amt


def _takeover(world: World, days: int, n0: int, rng: np.random.Generator):
    """Scenario 6."""
    c = world.customers
    cx, cy = c["x"].to_numpy(), c["y"].to_numpy()
    mean_all = c["mean_amount"].to_numpy()
    tx, ty = world.terminals["x"].to_numpy(), world.terminals["y"].to_numpy()
    eligible = np.flatnonzero((np.diff(world.offsets) > 0) & (c["mean_tx_per_day"].to_numpy() >= 0.5))
    if len(eligible) == 0:
        eligible = np.flatnonzero(np.diff(world.offsets) > 0)
    if len(eligible) == 0 or n0 == 0:
        return _empty4()[:4]
    n_ev = max(1, round(RATE * n0 / 10.5))
    who = rng.choice(eligible, size=n_ev, replace=True)
    start = rng.integers(0, days, n_ev)
    dur = np.minimum(rng.integers(2, 6, n_ev), days - start)
    # the taker's location: a point >= 30 away from home
    px, py = rng.uniform(0, GRID, n_ev), rng.uniform(0, GRID, n_ev)
    for _ in range(100):
        bad = (px - cx[who]) ** 2 + (py - cy[who]) ** 2 < 900
        if not bad.any():
            break
        px[bad], py[bad] = rng.uniform(0, GRID, int(bad.sum())), rng.uniform(0, GRID, int(bad.sum()))
    # transactions per (event, day)
    ev_day_ev = np.repeat(np.arange(n_ev), dur)
    ev_day_day = start[ev_day_ev] + (np.arange(len(ev_day_ev)) - np.repeat(np.cumsum(dur) - dur, dur))
    n_per = 1 + rng.poisson(2.0, len(ev_day_ev))
    ev = np.repeat(ev_day_ev, n_per)
    dday = np.repeat(ev_day_day, n_per)
    tot = len(ev)
    u = rng.uniform(0, 7 * 3600, tot)
    tod = np.where(u < 5 * 3600, u, u + 17 * 3600).astype(np.int64)
    secs = dday * DAY_S + tod
    amt = _amounts(rng, mean_all[who[ev]], cap=AMOUNT_RULE)
    term = np.empty(tot, dtype=np.int64)
    bounds = np.searchsorted(ev, np.arange(n_ev + 1))  # ev is sorted
    for e in range(n_ev):  # per event (tens to hundreds), not per transaction
        rows = np.arange(bounds[e], bounds[e + 1])
        d2 = (tx - px[e]) ** 2 + (ty - py[e]) ** 2
        near = np.flatnonzero(d2 < RADIUS * RADIUS)
        if len(near) == 0:
            near = np.argsort(d2, kind="stable")[:5]
        term[rows] = near[rng.integers(0, len(near), len(rows))]
    return who[ev].astype(np.int64), term, secs.astype(np.int64), amt


def simulate(
    customers: int = 5000,
    terminals: int = 10000,
    days: int = 183,
    seed: int = 0,
    start: str = "2018-04-01",
    progress: bool = False,
) -> pd.DataFrame:
    """Simulate a labelled world; see the module docstring for the exact generator.

    Returns the canonical frame sorted by timestamp with index 0..n-1 and columns tx_id,
    timestamp, customer_id, terminal_id, amount, label (int8), scenario (int16: 0 genuine, 1-6).
    """
    t_start = _check(customers, terminals, days, start)
    rngs = _rngs(seed)
    steps = ["world", "genuine traffic", "scenarios 1-3", "fraud rings", "card testing",
             "account takeover", "frame"]
    bar = _Progress(steps, progress)
    with bar:
        world = _build_world(customers, terminals, rngs["world"])
        bar.advance()
        cust, term, day, secs, amt = _genuine(world, days, rngs["genuine"])
        bar.advance()
        scen = _handbook_frauds(cust, term, day, amt, customers, terminals, days, rngs["s2"], rngs["s3"])
        del day
        n0 = len(cust)
        bar.advance()
        c4, t4, s4, a4, _next = _rings(world, days, n0, rngs["s4"], customers)
        bar.advance()
        c5, t5, s5, a5 = _card_testing(world, days, n0, rngs["s5"])
        bar.advance()
        c6, t6, s6, a6 = _takeover(world, days, n0, rngs["s6"])
        bar.advance()
        cust = np.concatenate([cust, c4, c5, c6])
        term = np.concatenate([term, t4, t5, t6])
        secs = np.concatenate([secs, s4, s5, s6])
        amt = np.concatenate([amt, a4, a5, a6])
        scen = np.concatenate([scen, np.full(len(c4), 4, np.int16), np.full(len(c5), 5, np.int16),
                               np.full(len(c6), 6, np.int16)])
        order = np.argsort(secs, kind="stable")
        n = len(order)
        ts_ns = t_start.value + secs[order] * 1_000_000_000
        df = pd.DataFrame({
            "tx_id": pd.Series(np.arange(n, dtype=np.int64)).astype(str),
            "timestamp": pd.Series(ts_ns.view("datetime64[ns]")).dt.tz_localize("UTC"),
            "customer_id": pd.Series(cust[order]).astype(str),
            "terminal_id": pd.Series(term[order]).astype(str),
            "amount": amt[order].astype(np.float64),
            "label": (scen[order] > 0).astype(np.int8),
            "scenario": scen[order].astype(np.int16),
        })
        bar.advance()
    return df


class _Progress:
    """A rich progress bar over named steps (no-op when disabled)."""

    def __init__(self, steps: list[str], enabled: bool):
        self.steps, self.enabled, self.i = steps, enabled, 0
        self._p = None

    def __enter__(self):
        if self.enabled:
            from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

            self._p = Progress(TextColumn("simulate: {task.description}"), BarColumn(),
                               TextColumn("{task.completed}/{task.total}"), TimeElapsedColumn(),
                               transient=True)
            self._p.__enter__()
            self._task = self._p.add_task(self.steps[0], total=len(self.steps))
        return self

    def advance(self) -> None:
        self.i += 1
        if self._p is not None:
            desc = self.steps[self.i] if self.i < len(self.steps) else "done"
            self._p.update(self._task, advance=1, description=desc)

    def __exit__(self, *exc):
        if self._p is not None:
            self._p.__exit__(*exc)
        return False
