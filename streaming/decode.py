"""Stream events -> canonical rows, one event at a time, strictly.

Each consumed message becomes a good event or a dead letter with its reason. Whether an event is valid never
depends on the other events of its poll, and no exception from one event escapes (an unforeseen failure is a
dead letter of kind ``decode_error``). Types are strict: ids are non-empty JSON texts, ``amount`` a
finite non-negative JSON number (never a bool or a text), ``timestamp`` an ISO-8601 text inside a window
around the message's broker time (``EventRules``). Fields other than the canonical ones are kept together as
one JSON text, column ``attributes``, so an attribute whose type changes between events cannot break a sink.
"""
from __future__ import annotations

import json
import math
import re
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

import numpy as np
import pandas as pd

from fraud import schema

ATTRIBUTES = "attributes"
MAX_ID_CHARS = 128  # the alert store's id columns
UNKNOWN = -1  # label / scenario of an event that has none ("not reported"; featurizers count only label 1)

_Z_RE = re.compile(r"^(\d{4})-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?Z$")
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_CANON = frozenset(schema.CANONICAL)
_REQUIRED = frozenset(schema.REQUIRED)
_DAY_NS = 86_400 * 10**9
_NS_MIN, _NS_MAX = -(2**63) + 1, 2**63 - 1  # pandas' datetime64[ns] range (NaT is -2**63)
_US = timedelta(microseconds=1)


@dataclass(frozen=True)
class EventRules:
    """What a stream event must satisfy beyond its fields' types: its size, and how far its timestamp may lie
    from the broker's time of the message (older than ``max_age_days`` or more than ``max_lead_hours`` ahead:
    a typo or a broken clock that would move the online state's clock)."""

    max_bytes: int = 256 * 1024
    max_age_days: float = 3650.0
    max_lead_hours: float = 24.0


class Reject(Exception):
    """One event is bad: ``kind`` (the dead letter's error.kind) and a reason naming the field and value."""

    def __init__(self, kind: str, reason: str):
        super().__init__(reason)
        self.kind = kind
        self.reason = reason


@dataclass
class Letter:
    msg: object
    kind: str
    reason: str


@dataclass
class Decoded:
    """The good events of a poll, column by column, in arrival order."""

    msgs: list = field(default_factory=list)
    tx: list = field(default_factory=list)
    ts: list = field(default_factory=list)  # int ns (UTC)
    cust: list = field(default_factory=list)
    term: list = field(default_factory=list)
    amount: list = field(default_factory=list)
    label: list = field(default_factory=list)
    scenario: list = field(default_factory=list)
    attrs: list = field(default_factory=list)  # JSON text or None
    key: list = field(default_factory=list)  # 64-bit hash of tx_id
    content: list = field(default_factory=list)  # 64-bit hash of everything else

    def __len__(self) -> int:
        return len(self.tx)

    def take(self, idx) -> "Decoded":
        return Decoded(**{k: [v[i] for i in idx] for k, v in self.__dict__.items()})


def _reject_constant(name: str):
    raise ValueError(f"{name} is not JSON (not finite)")


_JSON = json.JSONDecoder(parse_constant=_reject_constant)


def _parse(text: str):
    """``_JSON.decode(text)``: the C scanner alone when the text is one JSON value end to end (the common case),
    else ``decode`` itself (surrounding space, extra data and their error messages)."""
    try:
        rec, end = _JSON.scan_once(text, 0)
    except StopIteration:
        return _JSON.decode(text)
    return rec if end == len(text) else _JSON.decode(text)


def _id(rec: dict, name: str) -> str:
    v = rec.get(name)
    if type(v) is str and v.isascii() and 0 < len(v) <= MAX_ID_CHARS and v.strip() is v:
        return v  # the common case (str.strip returns the same object when there is nothing to strip)
    if type(v) is not str:  # a numeric id loses digits past 2**53 in many JSON producers: ids travel as text
        raise Reject("invalid", f"field {name!r} value {v!r}: an id must be a JSON text, not "
                                f"{'null' if v is None else type(v).__name__}")
    v = v.strip()
    try:
        v.encode("utf-8")
    except UnicodeEncodeError:  # JSON can escape a lone surrogate ("\ud800"): no sink could store it
        raise Reject("invalid", f"field {name!r} value {v[:40]!r}: not valid Unicode (a lone surrogate)") from None
    if not v:
        raise Reject("invalid", f"field {name!r} value {rec.get(name)!r}: empty id")
    if len(v) > MAX_ID_CHARS:
        raise Reject("invalid", f"field {name!r} value {v[:40]!r}...: id longer than {MAX_ID_CHARS} characters")
    return v


def _amount(v) -> float:
    if type(v) not in (int, float):
        raise Reject("invalid", f"field 'amount' value {v!r}: must be a JSON number, not "
                                f"{'null' if v is None else type(v).__name__}")
    try:
        a = float(v)
    except OverflowError:
        raise Reject("invalid", f"field 'amount' value {str(v)[:40]}...: too large") from None
    if not math.isfinite(a):
        raise Reject("invalid", f"field 'amount' value {v!r}: not finite")
    if a < 0:
        raise Reject("invalid", f"field 'amount' value {v!r}: negative amount")
    if a > schema.AMOUNT_MAX:
        raise Reject("invalid", f"field 'amount' value {v!r}: too large (above {schema.AMOUNT_MAX:.0f}, not exact as "
                                f"a 64-bit float)")
    return a


def _small_int(rec: dict, name: str, allowed) -> int:
    v = rec.get(name)
    if v is None:
        return UNKNOWN
    if type(v) is not int or v not in allowed:
        raise Reject("invalid", f"field {name!r} value {v!r}: must be one of {allowed.start}..{allowed.stop - 1}")
    return v


def _timestamp_ns(v: str) -> int:
    """ISO-8601 text -> int ns since 1970 (UTC; a text without offset is UTC). Python int: any year."""
    m = _Z_RE.match(v)
    if m is not None and 1700 <= int(m.group(1)) <= 2200:
        try:
            return int(np.datetime64(v[:-1], "ns").astype(np.int64))
        except ValueError:
            pass  # e.g. month 13: the general parser names the problem
    try:
        dt = datetime.fromisoformat(v.strip())
    except ValueError as e:
        raise Reject("invalid", f"field 'timestamp' value {v[:60]!r}: not an ISO-8601 time ({e})") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return (dt - _EPOCH) // _US * 1000


def _attributes(rec: dict) -> str | None:
    extra = {k: v for k, v in rec.items() if k not in _CANON}
    if not extra:
        return None
    return json.dumps(extra, sort_keys=True, separators=(",", ":"), allow_nan=False)


def _check_window(ts: int, msg, rules: EventRules) -> None:
    broker_ms = msg.timestamp if isinstance(msg.timestamp, int) and msg.timestamp > 0 else time.time() * 1000
    ref = int(broker_ms) * 10**6
    if ts < ref - int(rules.max_age_days * _DAY_NS):
        raise Reject("out_of_window", f"field 'timestamp' value {_fmt(ts)}: more than {rules.max_age_days:g} days "
                                      f"older than the broker time {_fmt(ref)}")
    if ts > ref + int(rules.max_lead_hours * 3600 * 10**9):
        raise Reject("out_of_window", f"field 'timestamp' value {_fmt(ts)}: more than {rules.max_lead_hours:g} "
                                      f"hours ahead of the broker time {_fmt(ref)}")
    if not _NS_MIN <= ts <= _NS_MAX:  # a frame cannot hold it (it would fail the whole poll)
        raise Reject("out_of_window", f"field 'timestamp' value {_fmt(ts)}: outside the times the scorer can hold "
                                      f"(years 1678-2261)")


def _all_in_window(stamps: list, msgs: list, rules: EventRules) -> bool:
    """True when :func:`_check_window` would pass every event (int64 times, broker times set): one numpy test
    for the poll. False sends the poll through the per-event check."""
    broker = [m.timestamp for m in msgs]
    age, lead = int(rules.max_age_days * _DAY_NS), int(rules.max_lead_hours * 3600 * 10**9)
    if not (0 <= age < 2**62 and 0 <= lead < 2**62 and all(type(b) is int and 0 < b < 4 * 10**12 for b in broker)
            and all(type(t) is int and -2**62 < t < 2**62 for t in stamps)):  # no int64 overflow below
        return False
    ts, ref = np.array(stamps, dtype=np.int64), np.array(broker, dtype=np.int64) * 10**6
    return bool(((ts >= ref - age) & (ts <= ref + lead)).all())


def _fmt(ns: int) -> str:
    try:
        return (_EPOCH + timedelta(microseconds=ns // 1000)).isoformat()
    except OverflowError:
        return f"{ns} ns since 1970"


def _plain_id(v) -> bool:
    """``v`` is an id :func:`_id` returns as it is (the common case)."""
    return type(v) is str and v.isascii() and 0 < len(v) <= MAX_ID_CHARS and v.strip() is v


def _plain_event(rec: dict) -> tuple | None:
    """:func:`decode_one`'s result for the common event, with the same checks in one pass (~2x fewer calls):
    text ids as they are, a float amount in range, label / scenario absent or in range, a text timestamp.
    None for anything else: the full checks then accept it or name the problem."""
    tx, ts, cu, te, am = rec[schema.TX_ID], rec[schema.TIMESTAMP], rec[schema.CUSTOMER_ID], \
        rec[schema.TERMINAL_ID], rec[schema.AMOUNT]
    lab, sc = rec.get(schema.LABEL), rec.get(schema.SCENARIO)
    if (type(ts) is str and type(am) is float and 0.0 <= am <= schema.AMOUNT_MAX and _plain_id(tx)
            and _plain_id(cu) and _plain_id(te) and (lab is None or (type(lab) is int and 0 <= lab <= 1))
            and (sc is None or (type(sc) is int and 0 <= sc < 32768))):
        return (tx, ts, cu, te, am, UNKNOWN if lab is None else lab, UNKNOWN if sc is None else sc,
                None if rec.keys() <= _CANON else _attributes(rec))
    return None


def decode_one(value, rules: EventRules) -> tuple:
    """One message's value -> (tx, timestamp text, customer, terminal, amount, label, scenario, attributes);
    raises :class:`Reject`. The timestamp is parsed and windowed by :func:`decode`, for a whole poll at once."""
    if not value:
        raise Reject("malformed_json", "empty message")
    if len(value) > rules.max_bytes:
        raise Reject("oversized", f"message of {len(value)} bytes exceeds the limit of {rules.max_bytes} bytes")
    try:
        rec = _parse(value.decode("utf-8") if isinstance(value, (bytes, bytearray)) else value)
    except RecursionError:
        raise Reject("malformed_json", "JSON nested too deeply") from None
    except (ValueError, UnicodeDecodeError) as e:
        raise Reject("malformed_json", f"malformed JSON: {str(e)[:200]}") from None
    if type(rec) is dict and rec.keys() >= _REQUIRED:
        got = _plain_event(rec)
        if got is not None:
            return got
    if not isinstance(rec, dict):
        raise Reject("not_an_object", f"JSON value is a {type(rec).__name__}, not an object")
    missing = [c for c in schema.REQUIRED if c not in rec]
    if missing:
        raise Reject("invalid", f"missing field(s) {', '.join(map(repr, missing))}")
    ts = rec[schema.TIMESTAMP]
    if type(ts) is not str:
        raise Reject("invalid", f"field 'timestamp' value {ts!r}: must be an ISO-8601 text, not "
                                f"{'null' if ts is None else type(ts).__name__}")
    return (_id(rec, schema.TX_ID), ts, _id(rec, schema.CUSTOMER_ID), _id(rec, schema.TERMINAL_ID),
            _amount(rec[schema.AMOUNT]), _small_int(rec, schema.LABEL, range(0, 2)),
            _small_int(rec, schema.SCENARIO, range(0, 32768)), _attributes(rec))


def _timestamps(texts: list[str]) -> list:
    """ISO-8601 texts -> int ns (UTC) or a :class:`Reject` each. The replay's ``...Z`` form is parsed for the
    whole poll at once; any other text (or a poll numpy refuses) one by one."""
    plain = all((m := _Z_RE.match(t)) is not None and 1700 <= int(m.group(1)) <= 2200 for t in texts)
    if plain:
        try:
            return np.array([t[:-1] for t in texts], dtype="datetime64[ns]").astype(np.int64).tolist()
        except ValueError:
            pass
    out = []
    for t in texts:
        try:
            out.append(_timestamp_ns(t))
        except Reject as e:
            out.append(e)
    return out


def decode(msgs, rules: EventRules) -> tuple[Decoded, list[Letter]]:
    """Every message of a poll -> the good events (arrival order) and the dead letters."""
    ok, letters = [], []
    for m in msgs:
        try:
            ok.append((m, *decode_one(m.value, rules)))
        except Reject as e:
            letters.append(Letter(m, e.kind, e.reason))
        except Exception as e:  # noqa: BLE001 - one event must never stop the scorer
            letters.append(Letter(m, "decode_error", f"{e.__class__.__name__}: {str(e)[:300]}"))
    stamps = _timestamps([r[2] for r in ok])
    if ok and _all_in_window(stamps, [r[0] for r in ok], rules):  # the common poll: columns in one transpose
        cols = list(map(list, zip(*ok)))
        cols[2] = stamps
        good = Decoded(*cols)
    else:
        rows = []
        for r, ts in zip(ok, stamps):
            try:
                if isinstance(ts, Reject):
                    raise ts
                _check_window(ts, r[0], rules)
            except Reject as e:
                letters.append(Letter(r[0], e.kind, e.reason))
                continue
            rows.append((r[0], r[1], ts, *r[3:]))
        good = Decoded(*map(list, zip(*rows))) if rows else Decoded()
    good.key, good.content = _hashes(good)
    return good, letters


def _hashes(d: Decoded) -> tuple[list[int], list[int]]:
    """Stable 64-bit hashes of each event's tx_id and of the rest of its content (pandas' SipHash with its fixed
    key: the same in every process, as the checkpointed memory of scored tx_ids needs)."""
    if not len(d):
        return [], []
    text = [f"{ts}|{cu}|{te}|{am!r}|{lab}|{sc}|{at}" for ts, cu, te, am, lab, sc, at in
            zip(d.ts, d.cust, d.term, d.amount, d.label, d.scenario, d.attrs)]
    # one call, each value hashed on its own: categorize=False skips a factorize and an Index (~85 us of ~95 per
    # poll) and gives the same hashes for texts (categorize only hashes each distinct value once)
    h = pd.util.hash_array(np.array(d.tx + text, dtype=object), categorize=False).view(np.int64)
    return h[:len(d)].tolist(), h[len(d):].tolist()


def to_frame(d: Decoded, has_label: bool | None = None) -> tuple[pd.DataFrame, np.ndarray]:
    """Canonical rows of ``d`` by partition (ascending), sorted by time inside each (stable), and ``order``, the
    index in ``d`` of each row: the grouping the model call needs (a poll arrives grouped by partition, each in
    time order, so usually nothing moves). ``label`` and ``scenario`` columns are there when an event has one
    (the others: -1, unknown); ``attributes`` when an event has extra fields."""
    n = len(d)
    ts = np.array(d.ts, dtype=np.int64)
    part = np.fromiter((m.partition for m in d.msgs), dtype=np.int64, count=n)
    order = np.arange(n)
    if n > 1 and not ((part[1:] > part[:-1]) | ((part[1:] == part[:-1]) & (ts[1:] >= ts[:-1]))).all():
        order = np.lexsort((ts, part))  # stable
        d = d.take(order)
        ts = ts[order]
    cols = {
        schema.TX_ID: pd.array(d.tx, dtype="str"),
        schema.TIMESTAMP: pd.DatetimeIndex(ts.view("datetime64[ns]")).tz_localize("UTC"),
        schema.CUSTOMER_ID: pd.array(d.cust, dtype="str"),
        schema.TERMINAL_ID: pd.array(d.term, dtype="str"),
        schema.AMOUNT: np.array(d.amount, dtype=np.float64),
    }
    if any(v != UNKNOWN for v in d.label):
        cols[schema.LABEL] = np.array(d.label, dtype=np.int8)
    if any(v != UNKNOWN for v in d.scenario):
        cols[schema.SCENARIO] = np.array(d.scenario, dtype=np.int16)
    if any(a is not None for a in d.attrs):
        cols[ATTRIBUTES] = pd.array(d.attrs, dtype="str")
    return pd.DataFrame(cols, copy=False), order  # the arrays are this frame's own: no copy (~40 us a poll)
