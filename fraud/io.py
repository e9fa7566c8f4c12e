"""Readers for transaction files (CSV, Parquet) with column mappings and presets.

``read_transactions`` is the one entry point every command uses: it maps source column
names to canonical ones, validates every row (``fraud.schema``), optionally writes the
bad rows to a rejects file, and returns the report. Nothing is silently dropped.
"""
from __future__ import annotations

from pathlib import Path
from typing import Mapping

import numpy as np
import pandas as pd

from fraud import schema
from fraud.errors import ConfigError, SchemaError

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


def _read_raw(path: Path, mapping: Mapping[str, str]) -> tuple[pd.DataFrame, np.ndarray, str]:
    suffix = path.suffix.lower()
    if suffix in (".parquet", ".pq"):
        df = pd.read_parquet(path)
        return df, np.arange(1, len(df) + 1, dtype=np.int64), "row"
    if suffix in (".csv", ".txt", ".gz") or path.name.endswith(".csv.gz"):
        header = pd.read_csv(path, nrows=0).columns
        as_text = {c for c in header if c in set(mapping.values()) or c in schema.CANONICAL}
        df = pd.read_csv(
            path,
            dtype={c: str for c in as_text},
            keep_default_na=False,
            na_values={c: [""] for c in header},
            skip_blank_lines=False,
        )
        return df, np.arange(2, len(df) + 2, dtype=np.int64), "line"
    raise ConfigError(f"--data: {str(path)!r} has unknown file type {suffix!r}; use .csv or .parquet")


def read_transactions(
    path: str | Path,
    columns: Mapping[str, str] | str | None = None,
    preset: str | None = None,
    rejects: str | Path | None = None,
) -> schema.ValidationReport:
    """Read, map and validate a transaction file. Returns the validation report.

    Raises SchemaError when a required column is missing (naming it and the columns present).
    Bad rows do not raise: they are in ``report.problems`` / ``report.rejects`` (and written to
    ``rejects`` when given). Callers decide whether any bad row is fatal.
    """
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"--data: file {str(path)!r} does not exist")
    mapping = resolve_mapping(columns, preset)
    raw, lines, kind = _read_raw(path, mapping)
    df = _apply_mapping(raw, mapping, str(path), preset)
    report = schema.validate_frame(df, source=str(path), lines=lines, line_kind=kind)
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


def read_parquet_parts(root: str | Path, pattern: str = "date=*/*.parquet") -> list[pd.DataFrame]:
    """The visible Parquet files of a day-partitioned folder (the stream scorer's archive), in name order.

    Hidden files (temporary names of files being written) are skipped, and so is a file that vanishes between
    listing and reading: a live scorer removes output it had not checkpointed when it restarts, and writes
    those events again.
    """
    frames = []
    for f in sorted(Path(root).glob(pattern)):
        if f.name.startswith("."):
            continue
        try:
            frames.append(pd.read_parquet(f))
        except FileNotFoundError:
            continue
    return frames
