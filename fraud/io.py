"""Readers for transaction files (CSV, Parquet) with column mappings and presets.

``read_transactions`` is the one entry point every command uses: it maps source column
names to canonical ones, validates every row (``fraud.schema``), optionally writes the
bad rows to a rejects file, and returns the report. Nothing is silently dropped: a CSV row
with the wrong number of fields is a bad row too; a file that cannot be read at all is one
InputError naming the file, the line or byte where known, and what to do.
"""
from __future__ import annotations

import csv
import datetime as dt
import re
from pathlib import Path
from typing import Mapping, NamedTuple

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv

from fraud import schema
from fraud.errors import ConfigError, InputError, SchemaError

PRESETS: dict[str, dict[str, str]] = {
    # canonical name -> source column name
    "handbook": {
        "tx_id": "TRANSACTION_ID",
        "timestamp": "TX_DATETIME",
        "customer_id": "CUSTOMER_ID",
        "terminal_id": "TERMINAL_ID",
        "amount": "TX_AMOUNT",
        "label": "TX_FRAUD",
        "scenario": "TX_FRAUD_SCENARIO",
    },
    "canonical": {c: c for c in schema.CANONICAL},
}


def parse_column_map(spec: str | None, option: str = "--columns") -> dict[str, str]:
    """Parse ``canonical=SOURCE,canonical=SOURCE`` into a dict."""
    if not spec:
        return {}
    out: dict[str, str] = {}
    for part in spec.split(","):
        part = part.strip()
        if not part:
            continue
        if "=" not in part:
            raise ConfigError(f"{option}: {part!r} is not of the form canonical=SOURCE (in {spec!r})")
        k, v = (x.strip() for x in part.split("=", 1))
        if k not in schema.CANONICAL:
            raise ConfigError(
                f"{option}: {k!r} is not a canonical field (in {spec!r}); "
                f"canonical fields: {', '.join(schema.CANONICAL)}"
            )
        if not v:
            raise ConfigError(f"{option}: empty source column for {k!r} (in {spec!r})")
        out[k] = v
    return out


def resolve_mapping(columns: Mapping[str, str] | str | None, preset: str | None) -> dict[str, str]:
    """Preset first, then explicit columns override it."""
    mapping: dict[str, str] = {}
    if preset:
        if preset not in PRESETS:
            raise ConfigError(f"--preset: unknown preset {preset!r}; known: {', '.join(sorted(PRESETS))}")
        mapping.update(PRESETS[preset])
    if isinstance(columns, str):
        columns = parse_column_map(columns)
    mapping.update(columns or {})
    return mapping


def _apply_mapping(df: pd.DataFrame, mapping: Mapping[str, str], source: str, preset: str | None) -> pd.DataFrame:
    if not mapping:
        return df
    present = list(df.columns)
    rename: dict[str, str] = {}
    for canon, src in mapping.items():
        if src in df.columns:
            rename[src] = canon
        elif canon in schema.REQUIRED and not (src == canon):
            raise SchemaError(
                f"{source}: column {src!r} (mapped to {canon!r}"
                f"{' by preset ' + repr(preset) if preset else ''}) is absent; columns present: "
                f"{', '.join(repr(c) for c in present)}"
            )
    # a source column that clashes with a canonical name it is not mapped to is kept as attribute
    clash = [c for c in df.columns if c in schema.CANONICAL and c not in rename and c in rename.values()]
    df = df.rename(columns={c: f"src_{c}" for c in clash})
    return df.rename(columns=rename)


class _Ragged(NamedTuple):
    """CSV rows whose field count differs from the header's: rejected whole, with their line and reason."""

    lines: np.ndarray  # record number, header = line 1
    counts: np.ndarray  # fields in that row
    n_header: int
    texts: list

    def reasons(self) -> list[str]:
        return [f"row has {k} field(s), the header has {self.n_header}" for k in self.counts]


_NO_RAGGED = _Ragged(np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64), 0, [])


def _read_raw(path: Path, mapping: Mapping[str, str]) -> tuple[pd.DataFrame, np.ndarray, str, _Ragged]:
    suffix = path.suffix.lower()
    if suffix in (".parquet", ".pq"):
        df = _read_parquet(path)
        return df, np.arange(1, len(df) + 1, dtype=np.int64), "row", _NO_RAGGED
    if suffix in (".csv", ".txt", ".gz") or path.name.endswith(".csv.gz"):
        return _read_csv(path, mapping)
    raise ConfigError(f"--data: {str(path)!r} has unknown file type {suffix!r}; use .csv or .parquet")


def _empty_file(path: Path) -> InputError:
    return InputError(f"{path}: the file is empty: it needs a header row with the columns "
                      f"{','.join(schema.REQUIRED)} (or map yours with --columns / --preset)")


def _read_parquet(path: Path) -> pd.DataFrame:
    if path.stat().st_size == 0:
        raise _empty_file(path)
    try:
        return pd.read_parquet(path)
    except (pa.ArrowException, OSError) as e:
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise InputError(f"{path}: the Parquet file is truncated or not Parquet ({reason}): re-export it") from None


def _read_csv(path: Path, mapping: Mapping[str, str]) -> tuple[pd.DataFrame, np.ndarray, str, _Ragged]:
    header = _csv_header(path)
    ragged = _ragged_rows(path, len(header))
    as_text = {c for c in header if c in set(mapping.values()) or c in schema.CANONICAL}
    try:
        df = pd.read_csv(
            path,
            dtype={c: str for c in as_text},
            keep_default_na=False,
            na_values={c: [""] for c in header},
            skip_blank_lines=False,
            on_bad_lines="skip" if len(ragged.lines) else "error",
        )
    except UnicodeDecodeError:
        raise _not_utf8(path) from None
    except pd.errors.ParserError as e:
        raise _unparseable(path, e) from None
    return _drop_ragged(path, df, ragged)


def _csv_header(path: Path) -> pd.Index:
    if path.stat().st_size == 0:
        raise _empty_file(path)
    try:
        return pd.read_csv(path, nrows=0).columns
    except pd.errors.EmptyDataError:
        raise _empty_file(path) from None
    except UnicodeDecodeError:
        raise _not_utf8(path) from None
    except pd.errors.ParserError as e:
        raise _unparseable(path, e) from None


def _ragged_rows(path: Path, n_header: int) -> _Ragged:
    """Rows with more or fewer fields than the header, from one tokenising pass (pyarrow, no conversion).

    pandas pads short rows silently and stops at the first long one; this pass finds both kinds.
    Line numbers count records, header = line 1, as the reader's do. A file pyarrow cannot tokenise
    yields no rows here; pandas' own error then says what is wrong.
    """
    found: list = []

    def keep(row) -> str:
        found.append((row.number, row.actual_columns, row.text))
        return "skip"

    try:
        pacsv.read_csv(
            path,
            read_options=pacsv.ReadOptions(use_threads=False, autogenerate_column_names=True),
            parse_options=pacsv.ParseOptions(invalid_row_handler=keep, newlines_in_values=True,
                                             ignore_empty_lines=False),
            convert_options=pacsv.ConvertOptions(include_columns=["f0"], column_types={"f0": pa.binary()},
                                                 check_utf8=False),
        )
    except (pa.ArrowException, OSError):
        return _NO_RAGGED
    if not found or any(n is None or n < 2 for n, _, _ in found):
        return _NO_RAGGED
    lines, counts, texts = zip(*found)
    return _Ragged(np.array(lines, dtype=np.int64), np.array(counts, dtype=np.int64), n_header, list(texts))


def _drop_ragged(path: Path, df: pd.DataFrame, ragged: _Ragged) -> tuple[pd.DataFrame, np.ndarray, str, _Ragged]:
    """Line numbers for the rows pandas returned, less the ragged rows (it skipped long ones, padded short ones)."""
    if not len(ragged.lines):
        return df, np.arange(2, len(df) + 2, dtype=np.int64), "line", ragged
    long_ = ragged.lines[ragged.counts > ragged.n_header]
    every = np.arange(2, len(df) + len(long_) + 2, dtype=np.int64)
    lines = every[~np.isin(every, long_)]
    if len(lines) != len(df) or not np.isin(ragged.lines, every).all():  # the two tokenisers disagree
        raise InputError(f"{path}: {_first_ragged(ragged)}; fix those rows or re-export the file")
    keep = ~np.isin(lines, ragged.lines)
    return df.loc[keep].reset_index(drop=True), lines[keep], "line", ragged


def _first_ragged(ragged: _Ragged, limit: int = 5) -> str:
    shown = [f"line {n}: {r}" for n, r in zip(ragged.lines[:limit], ragged.reasons()[:limit])]
    more = f" (and {len(ragged.lines) - limit} more)" if len(ragged.lines) > limit else ""
    return "; ".join(shown) + more


def _not_utf8(path: Path) -> InputError:
    """Name the first byte that is not UTF-8: its line and byte offset (only run once reading has failed)."""
    offset = 0
    with _open_bytes(path) as f:
        for n, raw in enumerate(f, start=1):
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError as e:
                return InputError(
                    f"{path}: line {n} (byte offset {offset + e.start}) has byte 0x{raw[e.start]:02x}, "
                    "which is not UTF-8: save the file as UTF-8")
            offset += len(raw)
    return InputError(f"{path}: the file is not UTF-8 text: save the file as UTF-8")


def _open_bytes(path: Path):
    if path.suffix.lower() == ".gz":
        import gzip

        return gzip.open(path, "rb")
    return open(path, "rb")


def _unparseable(path: Path, e: Exception) -> InputError:
    msg = str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__
    m = re.search(r"Expected (\d+) fields in line (\d+), saw (\d+)", msg)
    if m:
        return InputError(f"{path}: line {m[2]} has {m[3]} field(s), the header has {m[1]}: "
                          "fix that row (a stray or unquoted delimiter?) or re-export the file")
    return InputError(f"{path}: cannot be read as CSV ({msg}): check its quoting, or re-export the file")


def _check_timestamp_type(df: pd.DataFrame, path: Path, source_col: str) -> None:
    """A Parquet timestamp column must hold timestamps, dates, text or epoch seconds (not lists, bools, bytes)."""
    s = df.get(schema.TIMESTAMP)
    if s is None or _timestamp_like(s):
        return
    try:
        import pyarrow.parquet as pq

        kind = str(pq.read_schema(path).field(source_col).type)
    except (pa.ArrowException, OSError, KeyError):
        kind = str(s.dtype)
    named = f"{source_col!r}" + (f" (mapped to {schema.TIMESTAMP!r})" if source_col != schema.TIMESTAMP else "")
    raise SchemaError(f"{path}: column {named} has type {kind}; it needs timestamps, dates, "
                      "ISO-8601 text or epoch seconds: convert the column and re-export the file")


def _timestamp_like(s: pd.Series) -> bool:
    if pd.api.types.is_bool_dtype(s.dtype):
        return False
    if pd.api.types.is_datetime64_any_dtype(s.dtype) or pd.api.types.is_numeric_dtype(s.dtype):
        return True
    if isinstance(s.dtype, pd.CategoricalDtype) or (pd.api.types.is_string_dtype(s.dtype) and s.dtype != object):
        return True
    sample = s.dropna().head(1000)
    return all(isinstance(v, (str, dt.date)) for v in sample)


def _with_ragged(report: schema.ValidationReport, ragged: _Ragged, header: list, mapping, preset):
    """Add the ragged rows to the report: their first fields under the header's columns, line and reason."""
    fields = [(next(csv.reader([t]), []) + [""] * len(header))[: len(header)] for t in ragged.texts]
    rows = _apply_mapping(pd.DataFrame(fields, columns=header, dtype=object), mapping, report.source, preset)
    return schema.reject_rows(report, rows, ragged.lines, ragged.texts, ragged.reasons())


def read_transactions(
    path: str | Path,
    columns: Mapping[str, str] | str | None = None,
    preset: str | None = None,
    rejects: str | Path | None = None,
) -> schema.ValidationReport:
    """Read, map and validate a transaction file. Returns the validation report.

    Raises InputError when the file cannot be read at all (missing, a directory, empty, not UTF-8, a broken
    Parquet file) and SchemaError when a required column is missing (naming it and the columns present).
    Bad rows do not raise, ragged CSV rows included: they are in ``report.problems`` / ``report.rejects``
    (and written to ``rejects`` when given). Callers decide whether any bad row is fatal.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"--data: file {str(path)!r} does not exist")
    if path.is_dir():
        raise InputError(f"--data: {str(path)!r} is a directory; give a .csv or .parquet file")
    mapping = resolve_mapping(columns, preset)
    raw, lines, kind, ragged = _read_raw(path, mapping)
    df = _apply_mapping(raw, mapping, str(path), preset)
    if kind == "row":
        _check_timestamp_type(df, path, mapping.get(schema.TIMESTAMP, schema.TIMESTAMP))
    report = schema.validate_frame(df, source=str(path), lines=lines, line_kind=kind)
    if len(ragged.lines):
        report = _with_ragged(report, ragged, list(raw.columns), mapping, preset)
    if rejects is not None:
        write_rejects(report, rejects)
    return report


def load_transactions(path, columns=None, preset=None, rejects=None, strict: bool = False) -> pd.DataFrame:
    """Convenience: the valid rows of ``read_transactions``; ``strict`` raises on any bad row."""
    from fraud.errors import ValidationError

    report = read_transactions(path, columns=columns, preset=preset, rejects=rejects)
    if strict and not report.ok:
        msgs = "\n".join(report.messages(limit=20))
        raise ValidationError(f"{report.n_rejected} bad row(s) in {path}:\n{msgs}", report.problems)
    return report.valid


def write_rejects(report: schema.ValidationReport, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rej = report.rejects
    if path.suffix.lower() in (".parquet", ".pq"):
        rej = rej.astype({c: str for c in rej.columns if rej[c].dtype == object})
        rej.to_parquet(path, index=False)
    else:
        rej.to_csv(path, index=False)
    return path


def write_transactions(df: pd.DataFrame, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() in (".parquet", ".pq"):
        df.to_parquet(path, index=False)
    elif path.suffix.lower() == ".csv":
        df.to_csv(path, index=False)
    else:
        raise ConfigError(f"--out: {str(path)!r} has unknown file type; use .csv or .parquet")
    return path

