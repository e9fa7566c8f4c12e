"""The scoring bundle: the one registered unit that scores transactions.

A :class:`ScoringBundle` holds everything needed to score a canonical transaction:

* ``featurizers``: fitted :class:`fraud.features.base.Featurizer` objects (tabular, graph,
  sequence ... the list is configurable at training time);
* ``detector``: the fitted detector (``Ensemble``, an alarm over it, or the baseline guard's ``Blend``):
  ``decision_function(X)`` in [0, 1], ``explain(X, top)``, ``explains_rows`` (True: ``rows=`` reuses the decision);
* ``threshold``: scores ``>= threshold`` are alerts (chosen at training from the alert budget);
* ``feature_names``: the detector's input columns, in order;
* ``config``: a plain dict describing how it was trained (delay, budget, windows, featurizer names,
  train_from / train_until / label_cutoff ...), and ``schema`` (the canonical columns it reads).

One scoring path, so that the stream, a file replay and training score alike: :meth:`score` takes a
micro-batch of canonical rows (in time order) and an online state from :meth:`new_state`, returns one
result row per input row in row order and absorbs the rows into the state. The stream scorer calls it per
poll; :meth:`score_frame` replays a whole file through it in micro-batches. :meth:`score_batch` is the
vectorized equivalent (featurizer ``transform`` instead of ``update``), proven equal to the replay by a
test; training and evaluation use it for speed.

Reasons: by default (``explain="alerts"``) reason codes are computed for alerted rows only (the
detector's ``explain`` is the costly part of scoring); ``explain="all"`` explains every row,
``explain="none"`` none. Rows without reasons share one empty list: treat ``reasons`` as read-only.

Drift: ``drift_profile`` is the training window's reference (``fraud.drift``, recorded by training); the stream
scorer sets ``observer`` to count each scored micro-batch's features and scores against it (not pickled).

Labels in the rows go to the featurizers, which use one only once its transaction is older than the feedback
delay; labels that arrive after their rows were scored (a live stream's carry none) go through :meth:`add_labels`.
"""
from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from fraud import schema
from fraud._blas import single_threaded_blas
from fraud.errors import ModelError, SchemaError
from fraud.features.base import LABEL_COLUMNS, label_rows, shared_columns

RESULT_COLUMNS = ["tx_id", "score", "is_alert", "reasons"]
#: the bundle format: raise it when a pickled bundle of the previous code can no longer score as it did
BUNDLE_FORMAT = 6  # 2: CollusionState holds flat arrays (was dicts of lists); 3: BehaviourFeatures' activity group;
#                     4: BH_T_CARDS_SURPRISE_1D (a column, and a per-event flag in BehaviourState);
#                     5: the featurizers' event logs are fraud.features.eventlog.EventLog (was tabular._Log);
#                     6: the tabular and behaviour event logs keep each transaction's key (label feedback)
EXPLAIN_MODES = ("alerts", "all", "none")
_NO_REASONS: list = []  # the reasons of every row without reasons (shared: never mutate a result's reasons)


def _part(rows: pd.DataFrame, a: int, b: int) -> pd.DataFrame:
    """``rows.iloc[a:b].reset_index(drop=True)``, with the new index set on the slice (~12 us less a group)."""
    part = rows.iloc[a:b]
    part.index = pd.RangeIndex(b - a)
    return part


@dataclass
class BundleState:
    """Online state of a bundle: one sub-state per featurizer (picklable, travels in checkpoints)."""

    featurizer_states: list
    n_scored: int = 0
    last_timestamp: pd.Timestamp | None = None  # the newest event absorbed (a late batch does not move it back)
    extra: dict = field(default_factory=dict)  # free room for the caller (JSON values, e.g. consumer offsets)

    def absorbed(self, n: int, newest) -> None:
        """``n`` more events absorbed, the newest of them dated ``newest``."""
        self.n_scored += n
        if self.last_timestamp is None or newest > self.last_timestamp:
            self.last_timestamp = newest

    def to_arrays(self) -> tuple[dict, dict, list]:
        """Checkpoint form (:mod:`fraud.safestate`): the featurizer states are the children."""
        ts = self.last_timestamp
        last = None if ts is None else {"ns": int(ts.value), "unit": ts.unit,
                                        "tz": None if ts.tz is None else str(ts.tz)}
        return {"n_scored": int(self.n_scored), "last_timestamp": last, "extra": dict(self.extra)}, {}, \
            list(self.featurizer_states)

    @classmethod
    def from_arrays(cls, meta: dict, arrays: dict, children: list) -> "BundleState":
        last = meta["last_timestamp"]
        ts = None if last is None else pd.Timestamp(int(last["ns"]), unit="ns", tz=last["tz"]).as_unit(last["unit"])
        return cls(list(children), int(meta["n_scored"]), ts, dict(meta["extra"]))


class ScoringBundle:
    """Featurizers + detector + threshold: ``new_state()``, ``score(rows, state)``, ``score_frame(df)``."""

    drift_profile: dict | None = None  # class defaults: bundles pickled before drift monitoring have neither
    observer = None

    def __init__(self, featurizers, detector, threshold: float, feature_names, config: dict | None = None,
                 schema_columns=schema.REQUIRED, explain: str = "alerts", top_reasons: int = 3,
                 version: str | None = None):
        if explain not in EXPLAIN_MODES:
            raise ModelError(f"ScoringBundle explain={explain!r}: must be one of {', '.join(EXPLAIN_MODES)}")
        self.featurizers = list(featurizers)
        self.detector = detector
        self.threshold = float(threshold)
        self.feature_names = list(feature_names)
        self.config = dict(config or {})
        self.schema = tuple(schema_columns)
        self.explain = explain
        self.top_reasons = int(top_reasons)
        self.version = version  # registry version string, set by fraud.registry on load
        self.format_version = BUNDLE_FORMAT  # what fraud.registry checks on load
        self.timings: dict[str, float] = {}  # cumulative seconds per stage (profiling aid, not persisted logic)
        # the training window's reference profile (fraud.drift.reference: plain arrays), None when not recorded
        self.drift_profile: dict | None = None
        # observer(X, scores, last_timestamp) after each micro-batch score()/score_many() scores (the stream
        # scorer's drift window, fraud.drift.DriftWindow.update); never pickled
        self.observer = None

    # -- contract -------------------------------------------------------------------------------
    @property
    def required_columns(self) -> list[str]:
        """Canonical columns every scored row must have (``label`` is optional)."""
        return list(self.schema)

    def new_state(self) -> BundleState:
        """An empty state (scores safely: every featurizer starts from nothing)."""
        return BundleState([f.new_state() for f in self.featurizers])

    def warm_state(self) -> BundleState:
        """The state as of the training cutoff (``initial_state_``: training replayed its last weeks of history
        through the online path), copied; an empty state when the bundle has none. A stream scorer starting a
        partition without a checkpoint uses it, so customer windows and sequences are not empty on day one."""
        init = getattr(self, "initial_state_", None)
        return copy.deepcopy(init) if init is not None else self.new_state()

    def check_columns(self, rows: pd.DataFrame, source: str = "rows") -> None:
        missing = [c for c in self.required_columns if c not in rows.columns]
        if missing:
            raise SchemaError(
                f"{source}: missing field(s) {', '.join(repr(m) for m in missing)} that the model needs "
                f"(model {self.describe()}); columns present: {', '.join(repr(c) for c in rows.columns)}")

    def describe(self) -> str:
        name = self.config.get("name", "bundle")
        return f"{name} v{self.version}" if self.version else str(name)

    def features_online(self, rows: pd.DataFrame, state: BundleState) -> pd.DataFrame:
        """Detector input for ``rows`` from the online path (absorbs rows into ``state``)."""
        return pd.DataFrame(self._features_matrix(rows, state), index=rows.index, columns=self.feature_names,
                            copy=False)

    def _features_matrix(self, rows: pd.DataFrame, state: BundleState) -> np.ndarray:
        """``features_online`` as a float64 matrix (columns = ``feature_names``): the scoring path, without the
        DataFrame concatenation and column selection (~0.6 ms per micro-batch)."""
        return self._features_matrix_many([(rows, state)])

    def _features_matrix_many(self, groups) -> np.ndarray:
        """The matrix of several ``(rows, state)`` groups (independent states), rows stacked in group order: each
        featurizer computes all groups in one ``update_many_matrix`` call (its per-call cost dominates small
        batches), a float64 matrix whose columns are its ``feature_names_``: no frame to build and read back."""
        parts, names = [], []
        n = sum(len(rows) for rows, _ in groups)
        with single_threaded_blas(), shared_columns():  # each frame's columns read once for all featurizers
            for j, f in enumerate(self.featurizers):
                t0 = time.perf_counter()
                parts.append(f.update_many_matrix([(st.featurizer_states[j], rows) for rows, st in groups]))
                names.append(tuple(f.feature_names_))
                self._tick(f"features.{type(f).__name__}", t0)
        t0 = time.perf_counter()
        cols = self._column_map(tuple(names))
        if cols is None:  # duplicate or missing names: the DataFrame path (raises on missing features)
            frames = [pd.DataFrame(p, columns=list(k)) for p, k in zip(parts, names)]
            X = self._assemble(frames, pd.RangeIndex(n)).to_numpy(dtype=np.float64, na_value=np.nan)
        elif len(cols) == sum(p.shape[1] for p in parts) and (cols == np.arange(len(cols))).all():
            # the featurizers' columns are the detector's, in order: one copy into the matrix
            X = np.empty((n, len(cols)), dtype=np.float64)
            j = 0
            for p in parts:
                X[:, j:j + p.shape[1]] = p
                j += p.shape[1]
        else:
            X = (np.hstack(parts) if len(parts) > 1 else parts[0])[:, cols]
        self._tick("assemble", t0)
        return X

    def _column_map(self, key: tuple) -> np.ndarray | None:
        """Positions of ``feature_names`` in the featurizers' concatenated columns (``key``: each featurizer's
        column names, a tuple per featurizer; cached per layout)."""
        cache = self.__dict__.setdefault("_colmap", {})
        if key not in cache:
            names = [c for k in key for c in k]
            pos = {c: i for i, c in enumerate(names)}
            ok = len(pos) == len(names) and all(c in pos for c in self.feature_names)
            cache[key] = np.asarray([pos[c] for c in self.feature_names], dtype=np.int64) if ok else None
        return cache[key]

    def features_batch(self, df: pd.DataFrame) -> pd.DataFrame:
        """Detector input for ``df`` from the vectorized path (as a replay from a fresh state)."""
        parts = []
        for f in self.featurizers:
            t0 = time.perf_counter()
            parts.append(f.transform(df))
            self._tick(f"features.{type(f).__name__}", t0)
        return self._assemble(parts, df.index)

    def score(self, rows: pd.DataFrame, state: BundleState) -> pd.DataFrame:
        """Score a micro-batch of canonical rows (time order) and absorb them into ``state``.

        Returns DataFrame[tx_id, score (float in [0, 1]), is_alert (bool), reasons (list[str])] in
        row order (index 0..n-1).
        """
        self.check_columns(rows)
        if len(rows) == 0:
            return self._empty()
        with single_threaded_blas():  # once for the features and the detector (~30 us per entry)
            X = self._features_matrix(rows, state)
            out = self._decide(rows, X)
        last = rows[schema.TIMESTAMP].iloc[-1]  # rows in time order: the last is the batch's newest
        state.absorbed(len(rows), last)
        self._observe(X, out["score"].to_numpy(), last)  # drift counts the batch for its own day
        return out

    def add_labels(self, state: BundleState, rows: pd.DataFrame, source: str = "labels") -> dict[str, int]:
        """Label feedback: ``rows`` (canonical, ``label`` 0/1) were scored into ``state`` earlier, usually without a
        label; each featurizer sets their labels in its part of ``state``, so later scores count them as if the
        rows had carried them. ``source`` names the rows in error messages. Returns, per featurizer class name,
        the labels it applied (``Featurizer.add_labels``: rows matched, or frauds added/withdrawn; 0 for
        featurizers that read no label): a transaction labelled twice takes its last label."""
        missing = [c for c in LABEL_COLUMNS if c not in rows.columns]
        if missing:
            raise SchemaError(
                f"{source}: missing field(s) {', '.join(repr(m) for m in missing)} that label feedback needs "
                f"(model {self.describe()}); columns present: {', '.join(repr(c) for c in rows.columns)}")
        if len(state.featurizer_states) != len(self.featurizers):
            raise ModelError(f"{source}: the state holds {len(state.featurizer_states)} featurizer state(s), model "
                             f"{self.describe()} has {len(self.featurizers)} featurizers")
        rows = label_rows(rows, source)[0]
        applied: dict[str, int] = {}
        for f, st in zip(self.featurizers, state.featurizer_states):
            name = type(f).__name__
            applied[name] = applied.get(name, 0) + int(f.add_labels(st, rows))
        return applied

    def score_many(self, groups) -> list:
        """Score several micro-batches, each with its own online state: ``groups`` is a sequence of
        ``(rows, state)`` (e.g. one per Kafka partition). Returns one result frame per group, equal to
        ``[self.score(rows, state) for rows, state in groups]`` (and absorbs each group into its state), through
        :meth:`score_poll`: each featurizer computes all groups in one call and the detector runs once."""
        groups = list(groups)
        if len(groups) == 1:
            rows, st = groups[0]
            return [self.score(rows, st)]
        for rows, _ in groups:
            self.check_columns(rows)
        ends = np.cumsum([len(rows) for rows, _ in groups]).tolist()
        if not ends or ends[-1] == 0:
            return [self._empty() for _ in groups]
        rows = pd.concat([r for r, _ in groups if len(r)], ignore_index=True)
        out = pd.DataFrame(self.score_poll(rows, zip([0, *ends[:-1]], ends), [st for _, st in groups]), copy=False)
        return [out.iloc[a:b].reset_index(drop=True) if b > a else self._empty() for a, b in zip([0, *ends[:-1]], ends)]

    def score_poll(self, rows: pd.DataFrame, bounds, states) -> dict:
        """:meth:`score_many` of the groups ``rows.iloc[a:b]`` for ``(a, b)`` in ``bounds`` (consecutive, covering
        ``rows``), each with its state in ``states``. Returns the result columns (tx_id, score, is_alert, reasons:
        arrays in ``rows``' order): a stream poll (rows grouped by partition) without per-group result frames to
        build and stack again."""
        bounds, states = list(bounds), list(states)
        if [a for a, _ in bounds[1:]] != [b for _, b in bounds[:-1]] or bounds[0][0] != 0 or bounds[-1][1] != len(rows):
            raise ModelError(f"score_poll: bounds {bounds[:5]} do not cover the {len(rows)} rows in order")
        self.check_columns(rows)
        live = [(rows if len(bounds) == 1 else _part(rows, a, b), st) for (a, b), st in zip(bounds, states) if b > a]
        if not live:
            return {c: self._empty()[c].to_numpy() for c in RESULT_COLUMNS}
        with single_threaded_blas():
            X = self._features_matrix_many(live)
            out = self._decide_columns(rows, X)  # reads the tx_ids only: those of the live groups, in order
        ts = rows[schema.TIMESTAMP].array  # each group's last timestamp, read from the poll's column once
        ends = [b for a, b in bounds if b > a]
        for (g, st), b in zip(live, ends):
            st.absorbed(len(g), ts[b - 1])
        self._observe(X, out["score"], max(ts[b - 1] for b in ends))  # drift counts the poll for its own day
        return out

    def _observe(self, X, scores, last_timestamp) -> None:
        obs = self.observer
        if obs is not None:
            t0 = time.perf_counter()
            obs(X, np.asarray(scores), last_timestamp)
            self._tick("drift", t0)

    def score_frame(self, df: pd.DataFrame, batch_size: int = 10_000, state: BundleState | None = None,
                    progress=None) -> pd.DataFrame:
        """Replay ``df`` (canonical, time-ordered) through :meth:`score` in micro-batches.

        From a fresh state unless ``state`` is given (it is then updated). ``progress``: optional
        callable(n_done, n_total) called after each micro-batch.
        """
        self.check_columns(df)
        if batch_size < 1:
            raise ModelError(f"score_frame batch_size={batch_size!r}: must be >= 1")
        state = self.new_state() if state is None else state
        parts = []
        n = len(df)
        for i in range(0, n, batch_size):
            parts.append(self.score(df.iloc[i:i + batch_size], state))
            if progress is not None:
                progress(min(i + batch_size, n), n)
        if not parts:
            return self._empty()
        return pd.concat(parts, ignore_index=True)

    def score_batch(self, df: pd.DataFrame, explain: str | None = None) -> pd.DataFrame:
        """Vectorized equivalent of ``score_frame(df)`` from a fresh state (featurizer ``transform``).

        ``explain`` overrides the bundle's reason mode for this call (e.g. "none" for evaluation)."""
        self.check_columns(df)
        if len(df) == 0:
            return self._empty()
        return self._decide(df, self.features_batch(df), explain)

    def scores(self, X) -> np.ndarray:
        """Detector scores in [0, 1] for an already-featurized frame (or a matrix whose columns are
        ``feature_names``)."""
        s = np.asarray(self.detector.decision_function(self._detector_input(X)), dtype=np.float64)
        return np.clip(np.nan_to_num(s, nan=0.0), 0.0, 1.0)

    def _detector_input(self, X):
        """What the detector is given: a float matrix when its columns are the detector's own feature names in
        order (the ensemble then skips its per-column DataFrame checks, ~2 ms per micro-batch), else a frame."""
        plain = self.__dict__.get("_plain_input")
        if plain is None:
            names = getattr(self.detector, "feature_names_", None)
            plain = self._plain_input = names is not None and list(names) == list(self.feature_names)
        if isinstance(X, pd.DataFrame):
            X = X[self.feature_names]
            return X.to_numpy(dtype=np.float64, na_value=np.nan) if plain else X
        X = np.asarray(X, dtype=np.float64)
        return X if plain else pd.DataFrame(X, columns=self.feature_names)

    # -- internals ------------------------------------------------------------------------------
    def _assemble(self, parts, index) -> pd.DataFrame:
        X = pd.concat(parts, axis=1) if len(parts) > 1 else parts[0]
        missing = [c for c in self.feature_names if c not in X.columns]
        if missing:
            raise ModelError(f"{self.describe()}: featurizers did not produce feature(s) {missing[:10]}")
        X = X[self.feature_names]
        X.index = index
        return X

    def _decide(self, rows: pd.DataFrame, X: pd.DataFrame, explain: str | None = None) -> pd.DataFrame:
        return pd.DataFrame(self._decide_columns(rows, X, explain), copy=False)

    def _decide_columns(self, rows: pd.DataFrame, X, explain: str | None = None) -> dict:
        """The result columns (tx_id, score, is_alert, reasons) of ``rows`` with features ``X``, as arrays."""
        explain = explain or self.explain
        if explain not in EXPLAIN_MODES:
            raise ModelError(f"explain={explain!r}: must be one of {', '.join(EXPLAIN_MODES)}")
        t0 = time.perf_counter()
        A = self._detector_input(X)
        with single_threaded_blas():
            s = np.clip(np.nan_to_num(np.asarray(self.detector.decision_function(A), dtype=np.float64), nan=0.0),
                        0.0, 1.0)
            self._tick("detector", t0)
            alert = s >= self.threshold
            # rows without reasons share ONE empty list (read-only by convention): 10,000 fresh lists per
            # batch, kept alive until the results are written, triggered Python's full garbage collections
            # (~0.4 s each with torch/pandas/sklearn loaded) about every 7 batches
            reasons = np.empty(len(s), dtype=object)
            reasons.fill(_NO_REASONS)
            if explain != "none":
                idx = np.arange(len(s)) if explain == "all" else np.flatnonzero(alert)
                if len(idx):
                    t0 = time.perf_counter()
                    if self.detector.explains_rows:  # reuses the decision's components
                        ex = self.detector.explain(A, top=self.top_reasons, rows=idx)
                    else:
                        ex = self.detector.explain(A[idx] if isinstance(A, np.ndarray) else A.iloc[idx],
                                                   top=self.top_reasons)
                    self._tick("explain", t0)
                    for j, r in zip(idx, ex):
                        reasons[j] = [str(x) for x in r]
        t0 = time.perf_counter()
        tx = rows[schema.TX_ID]
        out = {"tx_id": (tx if isinstance(tx.dtype, pd.StringDtype) else tx.astype(str)).to_numpy(dtype=object),
               "score": s, "is_alert": alert, "reasons": reasons}
        self._tick("result", t0)
        return out

    def _tick(self, key: str, t0: float) -> None:
        self.timings[key] = self.timings.get(key, 0.0) + (time.perf_counter() - t0)

    @staticmethod
    def _empty() -> pd.DataFrame:
        return pd.DataFrame({"tx_id": pd.Series([], dtype=object), "score": pd.Series([], dtype=np.float64),
                             "is_alert": pd.Series([], dtype=bool), "reasons": pd.Series([], dtype=object)})

    def __getstate__(self):
        d = dict(self.__dict__)
        d["timings"] = {}
        d.pop("_colmap", None)  # derived caches, rebuilt on first use
        d.pop("_plain_input", None)
        d.pop("observer", None)
        d["version"] = None  # the registry sets the version on load
        return d

    def __repr__(self) -> str:
        return (f"ScoringBundle(featurizers={[type(f).__name__ for f in self.featurizers]}, "
                f"detector={type(self.detector).__name__}, threshold={self.threshold:.4g}, "
                f"features={len(self.feature_names)}, version={self.version!r})")
