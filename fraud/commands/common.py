"""Options shared by commands: the transaction inputs (--data, --columns, --preset, --rejects) and the log set-up
(--log-level / --log-format text|json) of the long-running ones."""
from __future__ import annotations

import functools
import json
import logging
import re
import sys
import warnings
from datetime import datetime, timezone
from pathlib import Path

import click

from fraud.errors import ConfigError


def parse_seeds(text: str | None, default: tuple) -> tuple:
    """``--seeds`` of the bench commands: a comma-separated list of integers, ``default`` when not given."""
    if not text:
        return tuple(default)
    try:
        return tuple(int(s) for s in text.split(",") if s.strip())
    except ValueError:
        raise click.BadParameter(f"{text!r} is not a comma-separated list of integers", param_hint="--seeds") from None


def data_options(required: bool = True, rejects: bool = True):
    """--data, --columns, --preset (and --rejects) on a command."""

    def deco(f):
        opts = [
            click.option("--data", "data", type=click.Path(dir_okay=False), required=required,
                         help="Transactions file (.csv or .parquet)."),
            click.option("--columns", "columns", default=None, metavar="MAP",
                         help="Column mapping canonical=SOURCE,... e.g. tx_id=TRANSACTION_ID,timestamp=TX_DATETIME"),
            click.option("--preset", "preset", default=None, type=click.Choice(["handbook", "canonical"]),
                         help="Named column mapping (handbook = the Fraud Detection Handbook's columns)."),
        ]
        if rejects:
            opts.append(click.option("--rejects", "rejects", type=click.Path(dir_okay=False), default=None,
                                     help="Write bad rows (with line and reason) to this .csv/.parquet."))
        for o in reversed(opts):
            f = o(f)
        return functools.wraps(f)(f)

    return deco


def _source_columns(path: str) -> list[str]:
    p = Path(path)
    if not p.exists():
        return []
    if p.suffix.lower() in (".parquet", ".pq"):
        import pyarrow.parquet as pq

        return list(pq.read_schema(p).names)
    import pandas as pd

    return list(pd.read_csv(p, nrows=0).columns)


def auto_preset(data, columns, preset):
    """--preset handbook when no mapping is given and the file has the handbook's column names (the bench commands'
    ``--data HANDBOOK``)."""
    if preset or columns:
        return preset
    from fraud.io import PRESETS

    cols = set(_source_columns(data))
    required = {PRESETS["handbook"][c] for c in ("tx_id", "timestamp", "customer_id", "terminal_id", "amount")}
    return "handbook" if required <= cols else None


def load_or_fail(data, columns, preset, rejects=None, allow_bad: bool = True):
    """Read and validate; print a summary of problems to stderr; return the valid frame."""
    from fraud.io import read_transactions

    report = read_transactions(data, columns=columns, preset=preset, rejects=rejects)
    if not report.ok:
        click.echo(f"{report.n_rejected} bad row(s) of {report.n_rows} in {data} were rejected"
                   f"{' (written to ' + str(rejects) + ')' if rejects else ''}:", err=True)
        for m in report.messages(limit=20):
            click.echo(f"  {m}", err=True)
        if len(report.problems) > 20:
            click.echo(f"  ... and {len(report.problems) - 20} more problem(s)", err=True)
        if not allow_bad:
            raise click.ClickException("input has bad rows")
    return report.valid


LOG_FORMATS = ("text", "json")
_KV = re.compile(r"(?<!\S)([A-Za-z_][A-Za-z0-9_.-]*)=(\"[^\"]*\"|'[^']*'|\S+)")


class JsonLogFormatter(logging.Formatter):
    """One JSON object per line: time (UTC ISO 8601), level, logger, message, the message's ``key=value`` fields
    (``model loaded uri=... version=3`` -> ``"uri": "...", "version": "3"``) and ``exc`` when an exception is
    attached."""

    def format(self, record: logging.LogRecord) -> str:
        msg = record.getMessage()
        out = {"time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
               "level": record.levelname, "logger": record.name, "message": msg}
        for k, v in _KV.findall(msg):
            if k not in out:
                out[k] = v[1:-1] if v[:1] in "\"'" and v[-1:] == v[:1] and len(v) > 1 else v
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


def log_format_option(f):
    """--log-format text|json on a long-running command."""
    return click.option("--log-format", "log_format", default="text", show_default=True,
                        type=click.Choice(LOG_FORMATS),
                        help="text: key=value lines; json: one JSON object per line (log shippers).")(f)


def setup_logging(level: str = "INFO", fmt: str = "text", stream=None) -> None:
    """Root logging on stderr: ``text`` (``TIME level=.. logger=.. message``) or ``json`` (JsonLogFormatter);
    kafka-python and MLflow kept quiet."""
    if fmt not in LOG_FORMATS:
        raise ConfigError(f"--log-format: {fmt!r} is not one of {', '.join(LOG_FORMATS)}")
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonLogFormatter() if fmt == "json" else
                         logging.Formatter("%(asctime)s level=%(levelname)s logger=%(name)s %(message)s"))
    logging.basicConfig(level=getattr(logging, level.upper(), logging.INFO), handlers=[handler], force=True)
    warnings.filterwarnings("ignore", module=r"mlflow(\..*)?$")
    for n in ("kafka", "mlflow", "alembic", "urllib3"):
        logging.getLogger(n).setLevel(logging.ERROR if n != "kafka" else logging.CRITICAL)
