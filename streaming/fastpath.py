"""Cheap validation of well-formed JSON events: the same rules and results as
:func:`fraud.schema.validate_records`, without its general (dtype-inferring, text-parsing) machinery.

:func:`validate_events` first checks, in plain Python, that every record of the micro-batch is *plainly*
valid: the id fields are non-empty strings without surrounding blanks, ``timestamp`` is an ISO-8601 UTC text
of the form ``YYYY-MM-DDTHH:MM:SS[.fffffffff]Z`` (the replay format) within 1900..2200, ``amount`` is a finite,
non-negative int/float (not bool), ``label`` (when present) the int 0 or 1, ``scenario`` (when present) a
non-negative int, every record has the same fields, and the tx_ids are unique in the batch. Such a batch
cannot have a problem under the reference rules, so the valid frame is built column-wise (timestamps by
numpy's ISO parser) and sorted by time, as the reference does. Any other batch (one odd record is enough)
goes through :func:`fraud.schema.validate_records` unchanged, so problems, rejects and error texts are the
reference's. A test checks the two give identical reports on good and bad batches.
"""
from __future__ import annotations

import math
import re

import numpy as np
import pandas as pd

from fraud import schema

_TS_RE = re.compile(r"^(19\d\d|2[01]\d\d|2200)-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?Z$")
_IDS = (schema.TX_ID, schema.CUSTOMER_ID, schema.TERMINAL_ID)
_EMPTY_PROBLEMS = pd.DataFrame({c: pd.Series([], dtype=object) for c in schema.PROBLEM_COLUMNS})


def _plain(records: list[dict]) -> bool:
    """True when every record is plainly valid (see the module doc)."""
    keys = records[0].keys()
    has_label = schema.LABEL in keys
    has_scn = schema.SCENARIO in keys
    for c in schema.REQUIRED:
        if c not in keys:
            return False
    match = _TS_RE.match
    isfinite = math.isfinite
    for r in records:
        if r.keys() != keys:
            return False
        for c in _IDS:
            v = r[c]
            if type(v) is not str or not v or v.strip() != v:
                return False
        ts = r[schema.TIMESTAMP]
        if type(ts) is not str or match(ts) is None:
            return False
        a = r[schema.AMOUNT]
        ta = type(a)
        if ta is float:
            if not isfinite(a) or a < 0:
                return False
        elif ta is int:
            if a < 0 or a > 2 ** 53:
                return False
        else:
            return False
        if has_label:
            lab = r[schema.LABEL]
            if type(lab) is not int or (lab != 0 and lab != 1):
                return False
        if has_scn:
            sc = r[schema.SCENARIO]
            if type(sc) is not int or sc < 0 or sc > 32767:
                return False
    return True


def _parse_ts(texts: list[str]) -> np.ndarray | None:
    """ISO 'Z' texts -> datetime64[ns] (UTC), or None when numpy rejects one (bad month/day/hour ...)."""
    try:
        return np.array([t[:-1] for t in texts], dtype="datetime64[ns]")
    except ValueError:
        return None


def plain_frame(records: list[dict]) -> tuple[pd.DataFrame, np.ndarray] | None:
    """For a plainly valid batch (module doc): ``(valid, order)``, the valid frame exactly as
    :func:`fraud.schema.validate_records` builds it (sorted by time, stable) and ``order``, the index in
    ``records`` of each of its rows. None when the batch is not plainly valid (use the reference)."""
    if not records or not _plain(records):
        return None
    n = len(records)
    keys = list(records[0].keys())
    ts = _parse_ts([r[schema.TIMESTAMP] for r in records])
    if ts is None:
        return None
    tx = [r[schema.TX_ID] for r in records]
    if len(set(tx)) != n:
        return None
    order = np.arange(n)
    if n > 1 and not (ts[1:] >= ts[:-1]).all():
        order = np.argsort(ts, kind="stable")
        records = [records[i] for i in order]
        ts = ts[order]
        tx = [r[schema.TX_ID] for r in records]
    cols = {}
    for k in keys:
        if k == schema.TIMESTAMP:
            cols[k] = pd.DatetimeIndex(ts).tz_localize("UTC").astype("datetime64[ns, UTC]")
        elif k == schema.TX_ID:
            cols[k] = pd.array(tx, dtype="str")
        elif k in (schema.CUSTOMER_ID, schema.TERMINAL_ID):
            cols[k] = pd.array([r[k] for r in records], dtype="str")
        elif k == schema.AMOUNT:
            cols[k] = np.array([r[k] for r in records], dtype=np.float64)
        elif k == schema.LABEL:
            cols[k] = np.array([r[k] for r in records], dtype=np.int8)
        elif k == schema.SCENARIO:
            cols[k] = np.array([r[k] for r in records], dtype=np.int16)
        else:  # other attributes: dtype inferred as DataFrame.from_records would
            cols[k] = pd.Series([r[k] for r in records])
    # the reference adds missing REQUIRED columns at the end; here all are present, in the records' order
    return pd.DataFrame(cols), order


def validate_events(records: list[dict], source: str = "<records>", lines=None) -> schema.ValidationReport:
    """Same contract and results as :func:`fraud.schema.validate_records`, fast for plainly valid batches."""
    got = plain_frame(records)
    if got is None:
        return schema.validate_records(records, source=source, lines=lines)
    valid, _ = got
    n = len(records)
    line_kind = "offset" if lines is not None else "row"
    if lines is None:
        lines = np.arange(1, n + 1, dtype=np.int64)
    problems = _EMPTY_PROBLEMS.copy()
    rejects = valid.iloc[:0].copy()
    rejects.insert(0, "_line", np.asarray(lines)[:0])
    rejects["_reason"] = pd.Series([], dtype=object)
    return schema.ValidationReport(source=source, n_rows=n, valid=valid, problems=problems, rejects=rejects,
                                   line_kind=line_kind)
