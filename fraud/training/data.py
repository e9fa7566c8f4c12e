"""The data stage: time windows, which labels are known when, analyst labels, the scorer's archive.

Windows (half-open, UTC; ``delay`` = feedback delay): training examples ``[train_from, train_until)``,
earlier rows are history; labels newer than ``train_until - delay`` are hidden (0 = "not reported");
the evaluation window ``[label_cutoff, train_until - delay)`` holds labels the supervised head never saw.
A label of :data:`UNKNOWN` (-1) is neither: the head, the baseline guard and the evaluation skip the row,
the featurizers read it as not fraud (e.g. a closed loop's events no analyst reviewed).
"""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from fraud import schema
from fraud.errors import ConfigError, SchemaError
from fraud.training.config import FraudTrainingWarning, TrainConfig

DAY = pd.Timedelta(days=1)
UNKNOWN = -1  # a label value: not reported and not known genuine either (skipped wherever labels are learnt)
#: what an event no analyst decided and nobody reported counts as (``fraud retrain --unreviewed``)
UNREVIEWED = ("genuine", "unknown")


def known_labels(labels) -> np.ndarray:
    """``labels`` as floats with NaN where unknown (:data:`UNKNOWN`, NaN, anything but 0 or 1)."""
    y = pd.to_numeric(pd.Series(np.asarray(labels).ravel()), errors="coerce").to_numpy(dtype=np.float64)
    return np.where(np.isin(y, (0.0, 1.0)), y, np.nan)


def to_utc(value, option: str) -> pd.Timestamp | None:
    if value is None or value == "":
        return None
    return schema.utc_timestamp(value, option)


def windows_for(df: pd.DataFrame, cfg: TrainConfig, train_from=None, train_until=None) -> dict:
    """The windows of a run. ``train_until`` defaults to midnight after the last transaction, ``train_from``
    to the first one plus ``warmup_days`` when the data spans more than 3x that."""
    ts = df[schema.TIMESTAMP]
    if len(df) == 0:
        raise ConfigError("no transactions to train on (empty data after filtering)")
    until = train_until if train_until is not None else ts.iloc[-1].floor("D") + DAY
    start = ts.iloc[0]
    if train_from is None:
        warm = cfg.warmup_days * DAY
        train_from = start + warm if (until - start) > 3 * warm else start
    if train_from >= until:
        raise ConfigError(f"--train-from {train_from} is not before --train-until {until}")
    known_before = until - cfg.feedback_delay_days * DAY
    label_cutoff = known_before - cfg.eval_days * DAY
    return {"train_from": train_from, "train_until": until, "labels_known_before": known_before,
            "label_cutoff": label_cutoff, "eval_from": label_cutoff, "eval_until": known_before}


def check_and_sort(df: pd.DataFrame, train_until) -> pd.DataFrame:
    """``df`` in time order, after checking its fields and that nothing is at or after ``train_until``."""
    missing = [c for c in schema.REQUIRED if c not in df.columns]
    if missing:
        raise SchemaError(f"training data lacks field(s) {', '.join(repr(m) for m in missing)} that the model needs; "
                          f"columns present: {', '.join(repr(c) for c in df.columns)}")
    if train_until is not None and len(df) and (df[schema.TIMESTAMP] >= train_until).any():
        raise ConfigError(f"training data holds transactions at/after --train-until {train_until}: "
                          "filter them right after reading (nothing at or after train-until may be read)")
    if not df[schema.TIMESTAMP].is_monotonic_increasing:
        return df.sort_values(schema.TIMESTAMP, kind="stable").reset_index(drop=True)
    return df.reset_index(drop=True)


def prepare(df: pd.DataFrame, cfg: TrainConfig, train_from=None, train_until=None, labels=None,
            unsupervised: bool = False) -> tuple[pd.DataFrame, dict]:
    """(the training frame with only the labels known at train-until, its windows). ``unsupervised``
    drops every label; else analyst ``labels`` override the file's."""
    train_from = to_utc(train_from, "--train-from")
    train_until = to_utc(train_until, "--train-until")
    df = check_and_sort(df, train_until)
    if unsupervised:
        df = df.drop(columns=[c for c in ("label",) if c in df.columns])
    else:
        df = apply_labels(df, labels)
    w = windows_for(df, cfg, train_from, train_until)
    return hide_recent_labels(df, w["labels_known_before"]), w


def hide_recent_labels(df: pd.DataFrame, known_before: pd.Timestamp) -> pd.DataFrame:
    """Labels of transactions at or after ``known_before`` are not known yet: set them to 0."""
    if "label" not in df:
        return df
    recent = (df[schema.TIMESTAMP] >= known_before).to_numpy()
    if not recent.any() or not df["label"].to_numpy()[recent].any():
        return df
    out = df.copy()
    lab = out["label"].to_numpy(dtype=np.int8).copy()
    lab[recent] = 0
    out["label"] = lab
    return out


def apply_labels(df: pd.DataFrame, labels: pd.DataFrame | None, source: str = "--labels",
                 unreviewed: str = "genuine") -> pd.DataFrame:
    """Override ``df.label`` with analyst labels (``tx_id``, ``label``); rows without any label get 0
    ("not reported as fraud"), or with ``unreviewed="unknown"`` every row no analyst decided and not reported
    as fraud gets :data:`UNKNOWN`. Returns a new frame."""
    if unreviewed not in UNREVIEWED:
        raise ConfigError(f"unreviewed={unreviewed!r}: must be one of {', '.join(UNREVIEWED)}")
    if labels is None:
        return df if unreviewed == "genuine" else _unknown_unless(df, np.zeros(len(df), bool))
    if "tx_id" not in labels.columns or "label" not in labels.columns:
        raise SchemaError(f"{source}: labels need columns 'tx_id' and 'label'; present: {list(labels.columns)}")
    lab = pd.to_numeric(labels["label"], errors="coerce")
    bad = ~lab.isin([0, 1])
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        raise SchemaError(f"{source}: row {i + 1}: label {labels['label'].iloc[i]!r} must be 0 or 1")
    m = pd.Series(lab.astype(np.int8).to_numpy(), index=labels["tx_id"].astype(str).to_numpy())
    m = m[~m.index.duplicated(keep="last")]
    out = df.copy()
    base = out["label"].to_numpy(dtype=np.int8).copy() if "label" in out else np.zeros(len(out), dtype=np.int8)
    new = out["tx_id"].astype(str).map(m)
    has = new.notna().to_numpy()
    base[has] = new.to_numpy()[has].astype(np.int8)
    out["label"] = base
    return out if unreviewed == "genuine" else _unknown_unless(out, has)


def _unknown_unless(df: pd.DataFrame, decided: np.ndarray) -> pd.DataFrame:
    """``df`` with :data:`UNKNOWN` on the rows neither ``decided`` nor labelled fraud."""
    lab = df["label"].to_numpy(dtype=np.int8).copy() if "label" in df else np.zeros(len(df), dtype=np.int8)
    lab[~decided & (lab != 1)] = UNKNOWN
    return df.assign(label=lab)


def read_labels(path) -> pd.DataFrame:
    """Analyst labels (``tx_id``, ``label``) from a CSV or Parquet file."""
    p = Path(path)
    if not p.exists():
        raise ConfigError(f"--labels: file {str(p)!r} does not exist")
    if p.suffix.lower() in (".parquet", ".pq"):
        return pd.read_parquet(p)
    if p.suffix.lower() in (".csv", ".txt"):
        return pd.read_csv(p, dtype={"tx_id": str})
    raise ConfigError(f"--labels: {str(p)!r} has unknown file type; use .csv or .parquet")


def labels_from(labels_path=None, alerts_db=None) -> pd.DataFrame | None:
    """Analyst labels from a file (``--labels``) or an alert store (``--alerts-db``), or None."""
    if labels_path and alerts_db:
        raise ConfigError(f"give --labels ({labels_path}) or --alerts-db ({alerts_db}), not both")
    if labels_path:
        return read_labels(labels_path)
    if alerts_db:
        from fraud.store import AlertStore

        return AlertStore(alerts_db, must_exist=True).labels()[["tx_id", "label"]]
    return None


def read_archive(path) -> pd.DataFrame:
    """The stream scorer's archive (``fraud.archive``) as a canonical frame, validated with the same rules as
    files (bad rows are reported and skipped)."""
    from fraud import archive

    raw = archive.events(path)
    rep = schema.validate_frame(raw, source=str(path))
    if not rep.ok:
        warnings.warn(f"--archive {path}: {rep.n_rejected} invalid row(s) skipped: "
                      + "; ".join(rep.messages(limit=3)), FraudTrainingWarning)
    return rep.valid
