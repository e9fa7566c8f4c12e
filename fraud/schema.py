"""The canonical transaction record and its validation.

Canonical frame (what every reader returns and every component consumes):

=============  ==============================  ===========================================
column         dtype                           rule
=============  ==============================  ===========================================
tx_id          str                             non-empty, unique
timestamp      datetime64[ns, UTC]             parseable; naive values are taken as UTC
customer_id    str                             non-empty
terminal_id    str                             non-empty
amount         float64                         finite, >= 0
label          int8 (optional)                 0 or 1
scenario       int16 (optional)                integer (0 = genuine)
...            kept as is                      any other column is an attribute
=============  ==============================  ===========================================

Rows are returned sorted by (timestamp, original order): one record, one clock.

Validation never drops silently: every bad row is reported with its source, its line
(CSV: physical line, header = line 1; Parquet/records: 1-based row number), field, value
and reason, and the bad rows can be written to a rejects file.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field, replace
from typing import Iterable, Sequence

import numpy as np
import pandas as pd

from fraud.errors import ConfigError, SchemaError

TX_ID = "tx_id"
TIMESTAMP = "timestamp"
CUSTOMER_ID = "customer_id"
TERMINAL_ID = "terminal_id"
AMOUNT = "amount"
LABEL = "label"
SCENARIO = "scenario"

REQUIRED: tuple[str, ...] = (TX_ID, TIMESTAMP, CUSTOMER_ID, TERMINAL_ID, AMOUNT)
OPTIONAL: tuple[str, ...] = (LABEL, SCENARIO)
CANONICAL: tuple[str, ...] = REQUIRED + OPTIONAL

#: scenario ids used by the simulator and reports (0 = genuine)
SCENARIOS = {
    0: "genuine",
    1: "amount above 220",
    2: "compromised terminal",
    3: "compromised card",
    4: "fraud ring",
    5: "card testing",
    6: "account takeover",
}

PROBLEM_COLUMNS = ["source", "line", "field", "value", "reason"]


@dataclass
class ValidationReport:
    """Outcome of validating a table of transactions."""

    source: str
    n_rows: int
    valid: pd.DataFrame
    problems: pd.DataFrame  # columns PROBLEM_COLUMNS, one row per problem
    rejects: pd.DataFrame  # the original bad rows, with _line and _reason columns
    line_kind: str = "line"

    @property
    def n_valid(self) -> int:
        return len(self.valid)

    @property
    def n_rejected(self) -> int:
        return len(self.rejects)

    @property
    def ok(self) -> bool:
        return self.n_rejected == 0

    def messages(self, limit: int | None = None) -> list[str]:
        rows = self.problems if limit is None else self.problems.head(limit)
        return [
            f"{r.source}:{self.line_kind} {r.line}: field {r.field!r} value {r.value!r}: {r.reason}"
            for r in rows.itertuples(index=False)
        ]


@dataclass
class _Problems:
    source: str
    lines: np.ndarray  # line number per input row
    items: list = field(default_factory=list)

    def add(self, mask: np.ndarray, fld: str, values: Sequence, reason: str) -> None:
        idx = np.flatnonzero(mask)
        if len(idx) == 0:
            return
        vals = np.asarray(values, dtype=object)[idx]
        self.items.append(
            pd.DataFrame(
                {
                    "row": idx,
                    "source": self.source,
                    "line": self.lines[idx],
                    "field": fld,
                    "value": [_show(v) for v in vals],
                    "reason": reason,
                }
            )
        )

    def frame(self) -> pd.DataFrame:
        if not self.items:
            return pd.DataFrame({"row": pd.Series([], dtype=np.int64), **{c: [] for c in PROBLEM_COLUMNS}})
        return pd.concat(self.items, ignore_index=True).sort_values(["row", "field"], kind="stable")


def _show(v) -> str:
    if v is None or (isinstance(v, float) and np.isnan(v)) or v is pd.NaT:
        return ""
    s = str(v)
    return s if len(s) <= 200 else s[:197] + "..."


def _is_blank(s: pd.Series) -> np.ndarray:
    out = np.array(s.isna().to_numpy(), dtype=bool)
    if s.dtype == object or pd.api.types.is_string_dtype(s.dtype):
        out |= s.astype(str).str.strip().eq("").to_numpy(dtype=bool, na_value=False) & ~out
    return out


def _ids(s: pd.Series) -> pd.Series:
    """Ids as strings; integral floats (from CSV NaN promotion) lose their '.0'."""
    if pd.api.types.is_float_dtype(s.dtype):
        vals = s.to_numpy()
        integral = np.isfinite(vals) & (vals == np.round(vals))
        out = s.astype(object).where(~integral, pd.Series(vals, index=s.index).round().astype("Int64").astype(str))
        return out.astype(str)
    if pd.api.types.is_integer_dtype(s.dtype):
        return s.astype(str)
    return s.astype(str).str.strip()


#: datetime64[ns] bounds; TS_RANGE names the whole days inside them
TS_MIN = pd.Timestamp.min.tz_localize("UTC")
TS_MAX = pd.Timestamp.max.tz_localize("UTC")
TS_RANGE = "1677-09-22..2262-04-11"
#: largest amount a float64 holds exactly (2**53); larger ones lose digits
AMOUNT_MAX = float(2**53)
_YEAR = re.compile(r"^\s*([+-]?\d{4,})-")


def utc_timestamp(value, where: str) -> pd.Timestamp:
    """One timestamp (anything ``pd.Timestamp`` accepts) in UTC: naive values are taken as UTC, aware ones
    converted. ConfigError naming ``where`` and the value when it is not a date/time. (Columns: parse_timestamps.)"""
    try:
        ts = pd.Timestamp(value)
    except (ValueError, TypeError, OverflowError):
        ts = pd.NaT
    if ts is pd.NaT:
        raise ConfigError(f"{where}: {value!r} is not a date/time (e.g. 2018-08-01 or 2018-08-01T12:00Z)")
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


def parse_timestamps(s: pd.Series) -> pd.Series:
    """Parse to UTC; naive values are taken as UTC; unparseable or out-of-range values become NaT."""
    return _parse_timestamps(s)[0]


def _parse_timestamps(s: pd.Series) -> tuple[pd.Series, np.ndarray]:
    """(timestamps as datetime64[ns, UTC], mask of values outside the datetime64[ns] range)."""
    if isinstance(s.dtype, pd.DatetimeTZDtype):
        out = s.dt.tz_convert("UTC")
    elif pd.api.types.is_datetime64_any_dtype(s.dtype):
        out = s.dt.tz_localize("UTC")
    elif pd.api.types.is_numeric_dtype(s.dtype):  # epoch seconds
        secs = s.to_numpy(dtype=np.float64, na_value=np.nan)
        oob = np.isfinite(secs) & ((secs < TS_MIN.value / 1e9) | (secs > TS_MAX.value / 1e9))
        out = pd.to_datetime(pd.Series(np.where(oob, np.nan, secs), index=s.index), unit="s", utc=True,
                             errors="coerce")
        return out.astype("datetime64[ns, UTC]"), oob
    else:
        try:
            out = pd.to_datetime(s, utc=True, errors="coerce", format="ISO8601")
        except (ValueError, TypeError):
            out = pd.to_datetime(s, utc=True, errors="coerce", format="mixed")
    oob = np.array(out.notna() & ((out < TS_MIN) | (out > TS_MAX)), dtype=bool)
    if not pd.api.types.is_datetime64_any_dtype(s.dtype):
        oob |= _year_out_of_range(s, out.isna().to_numpy(dtype=bool))
    return out.where(~oob).astype("datetime64[ns, UTC]"), oob


def _year_out_of_range(s: pd.Series, nat: np.ndarray) -> np.ndarray:
    """Of the unparsed text values, those whose year is outside TS_RANGE (pandas < 3 parses them as NaT)."""
    out = np.zeros(len(s), dtype=bool)
    for i in np.flatnonzero(nat):
        m = _YEAR.match(str(s.iat[i]))
        out[i] = bool(m) and not 1677 <= int(m.group(1)) <= 2262
    return out


def _amounts(raw: pd.Series) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(float64 amounts, not-a-number mask, missing mask, literal inf/nan mask); never raises."""
    n = len(raw)
    if pd.api.types.is_numeric_dtype(raw.dtype) and not pd.api.types.is_bool_dtype(raw.dtype):
        a = raw.to_numpy(dtype=np.float64, na_value=np.nan)
        return a, np.zeros(n, dtype=bool), np.zeros(n, dtype=bool), ~np.isfinite(a)
    try:
        num = pd.to_numeric(raw, errors="coerce")
    except OverflowError:  # a Python int beyond float64 (parsed JSON): infinite, reported as too large
        num = pd.to_numeric(raw.map(_clip_int), errors="coerce")
    a = num.to_numpy(dtype=np.float64, na_value=np.nan)
    missing = _is_blank(raw)
    literal = raw.astype(str).str.strip().str.lower().str.lstrip("+-").isin(["nan", "inf", "infinity"])
    literal = literal.to_numpy(dtype=bool, na_value=False)
    nonnum = np.isnan(a) & ~missing & ~literal
    return a, nonnum, missing, literal


def _clip_int(v):
    if isinstance(v, int) and not isinstance(v, bool) and abs(v) > 2**1023:
        return math.inf if v > 0 else -math.inf
    return v


def check_columns(columns: Iterable[str], source: str) -> None:
    cols = list(columns)
    missing = [c for c in REQUIRED if c not in cols]
    if missing:
        raise SchemaError(
            f"{source}: missing required column(s) {', '.join(repr(m) for m in missing)}; "
            f"columns present: {', '.join(repr(c) for c in cols) or '(none)'}. "
            "Map columns with --columns canonical=SOURCE,... or a --preset."
        )


def validate_frame(
    df: pd.DataFrame,
    source: str = "<frame>",
    lines: np.ndarray | None = None,
    line_kind: str = "row",
    seen_tx_ids: set | None = None,
) -> ValidationReport:
    """Validate a table already renamed to canonical column names.

    ``lines`` gives the line number reported for each row (default: 1-based row number).
    ``seen_tx_ids`` (optional) holds tx_ids accepted earlier (e.g. previous chunks); a
    repeat of one is a duplicate.
    """
    check_columns(df.columns, source)
    n = len(df)
    df = df.reset_index(drop=True)
    if lines is None:
        lines = np.arange(1, n + 1, dtype=np.int64)
    p = _Problems(source, np.asarray(lines))
    bad = np.zeros(n, dtype=bool)

    out = df.copy()
    for col in (TX_ID, CUSTOMER_ID, TERMINAL_ID):
        blank = _is_blank(df[col])
        p.add(blank, col, df[col].to_numpy(), "empty id")
        bad |= blank
        out[col] = _ids(df[col])

    dup = out[TX_ID].duplicated(keep="first").to_numpy() & ~bad
    if seen_tx_ids:
        dup |= out[TX_ID].isin(seen_tx_ids).to_numpy() & ~bad
    p.add(dup, TX_ID, out[TX_ID].to_numpy(), "duplicate tx_id")
    bad |= dup

    ts, oob = _parse_timestamps(df[TIMESTAMP])
    bad_ts = ts.isna().to_numpy() & ~oob
    p.add(bad_ts, TIMESTAMP, df[TIMESTAMP].to_numpy(), "unparseable or missing timestamp")
    p.add(oob, TIMESTAMP, df[TIMESTAMP].to_numpy(), f"timestamp outside the supported range {TS_RANGE}")
    bad |= bad_ts | oob
    out[TIMESTAMP] = ts

    raw_amt = df[AMOUNT]
    a, nonnum, missing_amt, nan_text = _amounts(raw_amt)
    nonfinite = ~np.isfinite(a) & ~nonnum & ~missing_amt
    overflow = nonfinite & ~nan_text
    nonfinite &= nan_text
    too_big = np.isfinite(a) & (np.abs(a) > AMOUNT_MAX)
    negative = np.isfinite(a) & (a < 0)
    p.add(nonnum, AMOUNT, raw_amt.to_numpy(), "not a number")
    p.add(missing_amt, AMOUNT, raw_amt.to_numpy(), "missing amount")
    p.add(nonfinite, AMOUNT, raw_amt.to_numpy(), "not finite")
    p.add(overflow, AMOUNT, raw_amt.to_numpy(), "not finite: too large for a 64-bit float")
    p.add(too_big, AMOUNT, raw_amt.to_numpy(), f"too large: above {AMOUNT_MAX:.0f}, not exact as a 64-bit float")
    p.add(negative, AMOUNT, raw_amt.to_numpy(), "negative amount")
    bad |= nonnum | missing_amt | nonfinite | overflow | too_big | negative
    out[AMOUNT] = a

    if LABEL in df.columns:
        lab = pd.to_numeric(df[LABEL], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
        bad_lab = ~np.isin(lab, (0.0, 1.0))
        p.add(bad_lab, LABEL, df[LABEL].to_numpy(), "label must be 0 or 1")
        bad |= bad_lab
        out[LABEL] = np.where(bad_lab, 0, lab).astype(np.int8)
    if SCENARIO in df.columns:
        sc = pd.to_numeric(df[SCENARIO], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
        bad_sc = ~(np.isfinite(sc) & (sc == np.round(sc)) & (sc >= 0))
        p.add(bad_sc, SCENARIO, df[SCENARIO].to_numpy(), "scenario must be a non-negative integer")
        bad |= bad_sc
        out[SCENARIO] = np.where(bad_sc, 0, sc).astype(np.int16)

    problems = p.frame()
    reasons = problems.groupby("row")["reason"].agg("; ".join) if len(problems) else pd.Series(dtype=object)
    rejects = df.loc[bad].copy()
    rejects.insert(0, "_line", np.asarray(lines)[bad])
    rejects["_reason"] = reasons.reindex(np.flatnonzero(bad)).to_numpy()
    valid = out.loc[~bad]
    valid = valid.sort_values(TIMESTAMP, kind="stable").reset_index(drop=True)
    return ValidationReport(
        source=source,
        n_rows=n,
        valid=valid,
        problems=problems.drop(columns="row").reset_index(drop=True),
        rejects=rejects.reset_index(drop=True),
        line_kind=line_kind,
    )


def reject_rows(report: ValidationReport, rows: pd.DataFrame, lines, texts, reasons) -> ValidationReport:
    """``report`` plus rows rejected whole before any field check (CSV rows with the wrong number of fields)."""
    lines = np.asarray(lines, dtype=np.int64)
    found = pd.DataFrame({"source": report.source, "line": lines, "field": "(row)",
                          "value": [_show(t) for t in texts], "reason": list(reasons)})
    rej = rows.reset_index(drop=True)
    rej.insert(0, "_line", lines)
    rej["_reason"] = list(reasons)
    return replace(
        report,
        n_rows=report.n_rows + len(lines),
        problems=_concat_by(report.problems, found, "line"),
        rejects=_concat_by(report.rejects, rej, "_line"),
    )


def _concat_by(a: pd.DataFrame, b: pd.DataFrame, key: str) -> pd.DataFrame:
    parts = [x for x in (a, b) if len(x)]
    out = pd.concat(parts, ignore_index=True) if len(parts) > 1 else (parts[0] if parts else a)
    return out.sort_values(key, kind="stable").reset_index(drop=True)


def validate_records(records: list[dict], source: str = "<records>", lines=None) -> ValidationReport:
    """Validate parsed JSON events (the stream's path uses the same rules as files)."""
    df = pd.DataFrame.from_records(records) if records else pd.DataFrame(columns=list(REQUIRED))
    for c in REQUIRED:
        if c not in df.columns:
            df[c] = None  # reported per row as empty/missing, never a whole-batch failure
    return validate_frame(df, source=source, lines=lines, line_kind="offset" if lines is not None else "row")


def empty_frame(with_label: bool = False) -> pd.DataFrame:
    cols = {
        TX_ID: pd.Series([], dtype=object),
        TIMESTAMP: pd.Series([], dtype="datetime64[ns, UTC]"),
        CUSTOMER_ID: pd.Series([], dtype=object),
        TERMINAL_ID: pd.Series([], dtype=object),
        AMOUNT: pd.Series([], dtype=np.float64),
    }
    if with_label:
        cols[LABEL] = pd.Series([], dtype=np.int8)
    return pd.DataFrame(cols)
