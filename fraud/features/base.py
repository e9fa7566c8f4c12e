"""The featurizer contract shared by tabular, graph and sequence features.

A featurizer turns canonical transactions (``fraud.schema``) into numeric features, one row
per transaction, obeying the information rule: the features of a transaction at time t use
attributes of events before t (and the transaction itself), and a fraud ``label`` only of
transactions older than ``t - feedback_delay``.

Two ways to compute, one answer:

* ``transform(df)``: one vectorized pass over ``df`` as if it were replayed in time order from
  an empty state (rows early in ``df`` act as warm-up history for later ones). Fast path used
  by training and benchmarks.
* ``new_state()`` / ``update(state, rows)``: the online path. ``update`` returns the features of
  ``rows`` (each row sees the state plus earlier rows of the same batch, never later ones) and
  absorbs ``rows`` into ``state``. Memory per customer/terminal is bounded. The stream scorer and
  ``fraud score`` replay use this path. A test per featurizer proves that replaying ``df`` in
  micro-batches through ``update`` equals ``transform(df)``.
* ``update_many([(state, rows), ...])``: several independent states at once (a stream scorer keeps one
  state per Kafka partition), equal to one ``update`` per pair with the results stacked. Featurizers whose
  per-call cost dominates small micro-batches compute all pairs in one pass.
* ``add_labels(state, rows)``: label feedback. A live stream's rows carry no label (analyst decisions and
  chargebacks come days later); the labels of rows ``state`` already absorbed are set in it afterwards, so that
  later ``update`` calls compute as if the rows had carried them.

Learned attributes end in ``_``; ``__init__`` only stores parameters (scikit-learn contract).
States are plain picklable objects (they travel in checkpoints).

``shared_columns()``: while a scoring call runs every featurizer over the same frames, ``column`` and ``id_list``
read each frame's column once for all of them (a small poll's cost is per call, not per row).
"""
from __future__ import annotations

import contextlib
import contextvars
from abc import ABC, abstractmethod

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator

from fraud.errors import ModelError, NotFittedError, SchemaError, ValidationError

#: the columns ``add_labels`` reads (the ``tx_id``'s key finds the transaction; labelled twice, its last label counts)
LABEL_COLUMNS = ("tx_id", "timestamp", "customer_id", "terminal_id", "label")


class Featurizer(BaseEstimator, ABC):
    #: set by fit: the output column names, in order
    feature_names_: list[str]

    def output_frame(self, X: np.ndarray, index=None) -> pd.DataFrame:
        """``X`` as a frame with the ``feature_names_`` columns (no copy). The names' Index is built once and kept:
        a frame built from a list of names costs ~120 us more, on every featurizer of every poll."""
        ci = self.__dict__.get("_columns_index")
        if ci is None or list(ci) != list(self.feature_names_):
            ci = self.__dict__["_columns_index"] = pd.Index(list(self.feature_names_))
        return pd.DataFrame(X, index=index, columns=ci, copy=False)

    @abstractmethod
    def fit(self, df: pd.DataFrame, y=None) -> "Featurizer":
        """Learn from history ``df`` (canonical, time-ordered). Returns self."""

    @abstractmethod
    def transform(self, df: pd.DataFrame) -> pd.DataFrame:
        """Features for every row of ``df`` (same order, index = df.index)."""

    @abstractmethod
    def new_state(self):
        """A fresh online state (scores safely before any warm-up)."""

    @abstractmethod
    def update(self, state, rows: pd.DataFrame) -> pd.DataFrame:
        """Features for ``rows`` given ``state``; then absorb ``rows`` into ``state``."""

    def update_many(self, pairs) -> pd.DataFrame:
        """``update`` for each ``(state, rows)`` of ``pairs`` (independent states, e.g. one per Kafka partition),
        the results stacked in order, index 0..n-1. This default calls ``update`` per pair."""
        parts = [self.update(st, rows) for st, rows in pairs]
        if not parts:
            return pd.DataFrame(np.empty((0, len(self.feature_names_))), columns=list(self.feature_names_))
        return pd.concat(parts, ignore_index=True) if len(parts) > 1 else parts[0].reset_index(drop=True)

    def update_many_matrix(self, pairs) -> np.ndarray:
        """``update_many``'s values as a float64 matrix whose columns are ``feature_names_``, in order: what the
        scoring bundle reads (no frame to build and read back). This default converts ``update_many``'s frame;
        the built-in featurizers compute the matrix directly (and build their frames from it)."""
        out = self.update_many(pairs)
        if list(out.columns) != list(self.feature_names_):
            raise ModelError(f"{type(self).__name__}.update_many returned columns {list(out.columns)[:10]}, not its "
                             f"feature_names_ {list(self.feature_names_)[:10]}")
        return out.to_numpy(dtype=np.float64, na_value=np.nan)

    def add_labels(self, state, rows: pd.DataFrame) -> int:
        """Set the labels (``rows``: canonical rows with ``label`` 0/1 that ``state`` already absorbed, usually
        unlabelled) in ``state``, so that later ``update`` calls compute as if the rows had carried them. Returns
        how many labels were applied (each featurizer says what it counts); rows the state no longer keeps or
        never saw are ignored. This default, for featurizers that read no label, applies none."""
        return 0

    def fit_transform(self, df: pd.DataFrame, y=None) -> pd.DataFrame:
        return self.fit(df, y).transform(df)

    def _check_fitted(self) -> None:
        if not hasattr(self, "feature_names_"):
            raise NotFittedError(f"{type(self).__name__} is not fitted; call fit(history) first")


def label_rows(rows: pd.DataFrame, where: str) -> tuple[pd.DataFrame, np.ndarray]:
    """``add_labels``' input checked: (``rows``, the last of each ``tx_id``; their labels as int8). SchemaError for a
    missing column, ValidationError for a label that is not 0 or 1 (each names the value and its transaction)."""
    missing = [c for c in LABEL_COLUMNS if c not in rows.columns]
    if missing:
        raise SchemaError(f"{where}: missing column(s) {missing}; columns present: {list(rows.columns)}")
    lab = pd.to_numeric(rows["label"], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    bad = np.flatnonzero(~np.isin(lab, (0.0, 1.0)))
    if len(bad):
        tx = rows["tx_id"].iloc[bad].tolist()
        values = rows["label"].iloc[bad].tolist()
        problems = pd.DataFrame({"source": where, "line": bad + 1, "field": "label", "value": values,
                                 "reason": "not 0 or 1"})
        raise ValidationError(f"{where}: label {values[0]!r} of transaction {tx[0]!r} is not 0 or 1 "
                              f"({len(bad)} such row(s))", problems)
    last = ~rows["tx_id"].astype(str).duplicated(keep="last").to_numpy()
    if not last.all():
        rows, lab = rows.loc[last], lab[last]
    return rows, lab.astype(np.int8)


def replay(featurizer: Featurizer, df: pd.DataFrame, batch_size: int = 1000, state=None) -> pd.DataFrame:
    """Run ``df`` through the online path in micro-batches; returns features aligned to df."""
    state = featurizer.new_state() if state is None else state
    parts = [featurizer.update(state, df.iloc[i:i + batch_size]) for i in range(0, len(df), batch_size)]
    if not parts:
        return featurizer.transform(df)
    return pd.concat(parts).reindex(df.index)


_SHARED: contextvars.ContextVar = contextvars.ContextVar("fraud_shared_columns", default=None)


@contextlib.contextmanager
def shared_columns():
    """Within: :func:`column` and :func:`id_list` compute once per frame and column (the frames are held until
    the context ends, so an id is never reused; they must not change while it is open)."""
    token = _SHARED.set({})
    try:
        yield
    finally:
        _SHARED.reset(token)


def _shared(rows: pd.DataFrame, key: str, make):
    memo = _SHARED.get()
    if memo is None:
        return make()
    hit = memo.get((id(rows), key))
    if hit is None:
        hit = memo[(id(rows), key)] = (rows, make())
    return hit[1]


def column(rows: pd.DataFrame, name: str) -> pd.Series:
    """``rows[name]`` (shared inside :func:`shared_columns`)."""
    return _shared(rows, name, lambda: rows[name])


def id_list(rows: pd.DataFrame, name: str) -> list:
    """The values of id column ``name`` as a list of str (no astype copy when it already holds strings; a missing
    value stays as the column gives it). Shared inside :func:`shared_columns`: read it, never change it."""
    def make():
        col = column(rows, name)
        return col.tolist() if isinstance(col.dtype, pd.StringDtype) else col.astype(str).tolist()

    return _shared(rows, "list:" + name, make)


def tx_keys(rows: pd.DataFrame) -> np.ndarray:
    """A 64-bit key per row from its ``tx_id`` (pandas' fixed-key SipHash: the same in every process; 0 without
    the column): how an event log finds the transaction a late label names. Shared inside :func:`shared_columns`."""
    def make():
        if "tx_id" not in rows.columns:
            return np.zeros(len(rows), dtype=np.int64)
        return pd.util.hash_array(np.asarray(id_list(rows, "tx_id"), dtype=object), categorize=False).view(np.int64)

    return _shared(rows, "__tx_keys__", make)


def text_ids(rows: pd.DataFrame, name: str) -> list | None:
    """:func:`id_list` when every value is a str (no missing id), else None: checked once per frame and column
    inside :func:`shared_columns`, for the readers that need whole text."""
    def make():
        ids = id_list(rows, name)
        return ids if all(type(v) is str for v in ids) else None

    return _shared(rows, "text:" + name, make)
