"""The message corpus of ``fraud bench faults``: good events (a world's transactions encoded as the replay does)
interleaved with a fixed set of poison events, odd-but-valid events, exact replays and conflicting duplicates.

Each :class:`Msg` says what the scorer should do with it (``expect``): ``scored``, ``dead-lettered`` or
``skipped-duplicate``; the harness records where it landed (broker epoch, partition, offset).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from streaming.replay import encode_events

SCORED, DEAD, SKIPPED = "scored", "dead-lettered", "skipped-duplicate"


@dataclass
class Msg:
    value: bytes | None
    key: bytes | None
    category: str
    expect: str
    tx_id: str | None = None
    amount: float | None = None  # the conflict's changed amount
    epoch: int | None = None  # broker epoch (0, then 1 after the restart) once sent
    partition: int | None = None
    offset: int | None = None
    send_error: str | None = None
    dead_letters: list = field(default_factory=list)


def _sub(ok: dict, tx: str, literal: str, name: str = "amount") -> bytes:
    """``ok`` with tx_id ``tx`` and field ``name`` written as the raw JSON text ``literal``."""
    return json.dumps(ok | {"tx_id": tx, name: "__X__"}).replace('"__X__"', literal).encode()


def _with(ok: dict, tx: str | None, **over) -> bytes:
    d = dict(ok) if tx is None else ok | {"tx_id": tx}
    d.update(over)
    return json.dumps(d).encode()


def _without(ok: dict, tx: str, name: str) -> bytes:
    return json.dumps({k: v for k, v in (ok | {"tx_id": tx}).items() if k != name}).encode()


def _shapes(ok: dict, max_bytes: int) -> list[tuple[str, object]]:
    """(category, builder(tx_id) -> value) for every poison event; several of each kind."""
    ts = pd.Timestamp(ok["timestamp"])
    old = (ts - pd.DateOffset(years=20)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    pad = "x" * (max_bytes + 1000)
    return [
        ("not_json", lambda t: f'{{"tx_id": "{t}", "amount": '.encode()),
        ("not_json", lambda t: f"not json at all {t}".encode()),
        ("not_json", lambda t: b"\xff\xfe{" + t.encode()),
        ("not_object", lambda t: json.dumps([1, 2, t]).encode()),
        ("not_object", lambda t: b"42"),
        ("not_object", lambda t: json.dumps(t).encode()),
        ("empty", lambda t: b""),
        ("empty", lambda t: b""),
        ("empty", lambda t: None),
        ("oversized", lambda t: _with(ok, t, pad=pad)),
        ("oversized", lambda t: _with(ok, t, pad=pad + "y")),
        ("missing_field", lambda t: _without(ok, t, "amount")),
        ("missing_field", lambda t: _without(ok, t, "customer_id")),
        ("missing_field", lambda t: _without(ok, t, "timestamp")),
        ("empty_id", lambda t: _with(ok, "", note=t)),
        ("empty_id", lambda t: _with(ok, t, customer_id="")),
        ("empty_id", lambda t: _with(ok, t, terminal_id="")),
        ("id_wrong_type", lambda t: _with(ok, None, tx_id={"id": t})),
        ("id_wrong_type", lambda t: _with(ok, None, tx_id=10**12 + int(t.rsplit("-", 1)[1]))),
        ("id_wrong_type", lambda t: _with(ok, None, tx_id=True, note=t)),
        ("id_wrong_type", lambda t: _with(ok, t, customer_id={"id": 7})),
        ("amount_negative", lambda t: _with(ok, t, amount=-5.0)),
        ("amount_negative", lambda t: _with(ok, t, amount=-0.01)),
        ("amount_nan", lambda t: _sub(ok, t, "NaN")),
        ("amount_nan", lambda t: _with(ok, t, amount="NaN")),
        ("amount_nan", lambda t: _with(ok, t, amount="nan")),
        ("amount_bool", lambda t: _with(ok, t, amount=True)),
        ("amount_bool", lambda t: _with(ok, t, amount=False)),
        ("amount_string", lambda t: _with(ok, t, amount="twelve")),
        ("amount_string", lambda t: _with(ok, t, amount="12,50 EUR")),
        ("amount_huge_int", lambda t: _sub(ok, t, "1" + "0" * 400)),
        ("amount_huge_int", lambda t: _sub(ok, t, "-1" + "0" * 400)),
        ("amount_inf", lambda t: _sub(ok, t, "1e400")),
        ("amount_inf", lambda t: _sub(ok, t, "-1e400")),
        ("ts_unparseable", lambda t: _with(ok, t, timestamp="not-a-date")),
        ("ts_unparseable", lambda t: _with(ok, t, timestamp="2018-13-45T25:61:00Z")),
        ("ts_year_9999", lambda t: _with(ok, t, timestamp="9999-12-31T00:00:00Z")),
        ("ts_year_9999", lambda t: _with(ok, t, timestamp="9999-12-31T23:59:59.999999Z")),
        ("ts_year_0001", lambda t: _with(ok, t, timestamp="0001-01-01T00:00:00Z")),
        ("ts_year_0001", lambda t: _with(ok, t, timestamp="0001-01-01T00:00:00.000000Z")),
        ("ts_year_2200", lambda t: _with(ok, t, timestamp="2200-06-01T12:00:00Z")),
        ("ts_year_2200", lambda t: _with(ok, t, timestamp="2200-01-01T00:00:00.000000Z")),
        ("ts_20_years_old", lambda t: _with(ok, t, timestamp=old)),
        ("ts_20_years_old", lambda t: _with(ok, t, timestamp=old.replace("T", " "))),
        ("deep_nesting", lambda t: b"[" * 100_000),
        ("deep_nesting", lambda t: b"[" * 200_000),
        ("deep_nesting", lambda t: b'{"a":' * 40_000 + b"1" + b"}" * 40_000),
    ]


def poison(ok: dict, max_bytes: int) -> list[Msg]:
    """The fixed poison corpus (every message dead-lettered), each with a unique key ``bad-N`` and, where it
    has a string tx_id, a unique one ``bad-<category>-N``."""
    out = []
    for i, (cat, build) in enumerate(_shapes(ok, max_bytes)):
        tx = f"bad-{cat}-{i}"
        out.append(Msg(build(tx), f"bad-{i}".encode(), cat, DEAD, tx))
    return out


def _odd_attr(rows: pd.DataFrame) -> list[Msg]:
    """Valid events with an extra attribute whose type changes between events (object, string, list, ...)."""
    kinds = [{"k": 1, "nested": {"z": [1, 2]}}, "a string", [1, "two", None], 3.5, None, True]
    values, keys = encode_events(rows)
    out = []
    for i, (v, k) in enumerate(zip(values, keys)):
        tx = f"odd-attr-{i}"
        out.append(Msg(_with(json.loads(v), tx, meta=kinds[i % len(kinds)]), k, "extra_attr_type_change",
                       SCORED, tx))
    return out


def _no_label(rows: pd.DataFrame) -> list[Msg]:
    """Valid events without ``label``/``scenario`` (sent as one batch next to events that have them)."""
    values, keys = encode_events(rows, labels=False)
    return [Msg(_with(json.loads(v), f"odd-nolabel-{i}"), k, "no_label", SCORED, f"odd-nolabel-{i}")
            for i, (v, k) in enumerate(zip(values, keys))]


def _carriers(live: pd.DataFrame, n_good: int, n: int, anchors: np.ndarray) -> pd.DataFrame:
    """``n`` events after the good ones, re-dated to the good events they are inserted after."""
    rows = live.iloc[n_good:n_good + n].copy()
    rows["timestamp"] = live["timestamp"].iloc[anchors].to_numpy()
    return rows.reset_index(drop=True)


def build(live: pd.DataFrame, n_good: int, seed: int, max_bytes: int, n_attr: int = 9, n_nolabel: int = 6,
          n_replay: int = 4, n_conflict: int = 3) -> list[Msg]:
    """The whole corpus in send order: ``n_good`` good events of ``live`` (time order) with the odd ones
    inserted at random places (the no-label events together, replays and conflicts a few events after their
    original)."""
    if len(live) < n_good + n_attr + n_nolabel:
        raise ValueError(f"the world has {len(live)} live events: fewer than the {n_good + n_attr + n_nolabel} needed")
    rng = np.random.default_rng(seed)
    values, keys = encode_events(live.iloc[:n_good])
    good = [Msg(v, k, "good", SCORED, t) for v, k, t in zip(values, keys, live["tx_id"].iloc[:n_good])]
    bad = poison(json.loads(values[0]), max_bytes)
    pos = lambda n: np.sort(rng.integers(1, n_good, n))  # noqa: E731
    at: dict[int, list[Msg]] = {}
    for p, m in zip(pos(len(bad)), rng.permutation(np.array(bad, dtype=object))):
        at.setdefault(int(p), []).append(m)
    a_pos = pos(n_attr)
    for p, m in zip(a_pos, _odd_attr(_carriers(live, n_good, n_attr, a_pos))):
        at.setdefault(int(p), []).append(m)
    p = int(rng.integers(1, n_good))
    at.setdefault(p, []).extend(_no_label(_carriers(live, n_good + n_attr, n_nolabel, np.full(n_nolabel, p))))
    for j, p in enumerate(pos(n_replay + n_conflict)):
        orig = good[max(0, int(p) - int(rng.integers(3, 40)))]
        at.setdefault(int(p), []).append(_replay(orig) if j < n_replay else _conflict(orig))
    out = []
    for i, g in enumerate(good):
        out.append(g)
        out.extend(at.get(i, []))
    return out


def _replay(orig: Msg) -> Msg:
    return Msg(orig.value, orig.key, "replayed_duplicate", SKIPPED, orig.tx_id)


def _conflict(orig: Msg) -> Msg:
    d = json.loads(orig.value)
    d["amount"] = round(float(d["amount"]) + 1.25, 2)
    return Msg(json.dumps(d).encode(), orig.key, "conflicting_duplicate", DEAD, orig.tx_id, amount=d["amount"])
