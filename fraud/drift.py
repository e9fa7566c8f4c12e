"""Drift of the scored traffic against the training window: the population stability index (PSI).

At training, :func:`reference` records a *profile* of the training window in the bundle
(``ScoringBundle.drift_profile``): per feature and for the score, the interior quantile edges of ``bins`` bins and
the share of training rows in each bin (plus a last bin for missing values). Plain numpy arrays and lists: the
profile pickles with the bundle and needs no class to read it.

``PSI = sum_i (a_i - e_i) * ln(a_i / e_i)`` over the bins, ``e`` the reference shares and ``a`` the shares of the
sample, both floored at ``EPS`` (an empty bin would be infinite). Rule of thumb: < 0.1 stable, 0.1-0.25 watch,
> 0.25 drifted (:func:`verdict`).

Three users: the stream scorer keeps a :class:`DriftWindow` (bin counts per event day over the last few days,
updated per micro-batch with one ``searchsorted`` per feature and one ``bincount``) whose PSIs the metrics endpoint
exports (``streaming.metrics``); ``fraud monitor`` and ``fraud retrain --if-drift`` compute the features of the
last days of an archive with the bundle, replayed from its training cutoff where they can (:func:`report`).
"""
from __future__ import annotations

import threading

import numpy as np
import pandas as pd

BINS = 10
EPS = 1e-4
WATCH, DRIFTED = 0.1, 0.25
PROFILE_FORMAT = 1
_NS_DAY = 86_400 * 10**9


def edges_of(values, bins: int = BINS) -> np.ndarray:
    """Interior quantile edges of ``bins`` bins of the finite ``values`` (duplicates merged: a feature with few
    distinct values gets fewer bins). Bin ``i`` holds ``edges[i-1] < x <= edges[i]``, so a 0/1 feature keeps
    its two bins even when most values are 0."""
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if not len(v):
        return np.empty(0)
    return np.unique(np.quantile(v, np.arange(1, bins) / bins))


def bin_index(edges: np.ndarray, values) -> np.ndarray:
    """Bin of each value: 0..len(edges) by the edges, len(edges)+1 for a missing value (NaN)."""
    v = np.asarray(values, dtype=np.float64)
    idx = np.searchsorted(edges, v, side="left")
    nan = np.isnan(v)
    if nan.any():
        idx[nan] = len(edges) + 1
    return idx


def shares(edges: np.ndarray, values) -> np.ndarray:
    n = len(values)
    c = np.bincount(bin_index(edges, values), minlength=len(edges) + 2).astype(np.float64)
    return c / max(n, 1)


def psi(expected, actual) -> float:
    """PSI of the shares ``actual`` against ``expected`` (same bins; floored at EPS)."""
    e = np.maximum(np.asarray(expected, dtype=np.float64), EPS)
    a = np.maximum(np.asarray(actual, dtype=np.float64), EPS)
    return float(np.sum((a - e) * np.log(a / e)))


def verdict(value: float) -> str:
    if value != value:
        return "n/a"
    return "drifted" if value > DRIFTED else "watch" if value > WATCH else "stable"


def reference(X, feature_names, scores, bins: int = BINS, window=None) -> dict:
    """The profile of a training sample: feature matrix ``X`` (columns ``feature_names``) and its ``scores``."""
    X = np.asarray(X, dtype=np.float64)
    s = np.asarray(scores, dtype=np.float64)
    fe = [edges_of(X[:, j], bins) for j in range(X.shape[1])]
    se = edges_of(s, bins)
    return {"format": PROFILE_FORMAT, "bins": int(bins), "n": int(len(X)), "features": [str(c) for c in feature_names],
            "edges": fe, "shares": [shares(e, X[:, j]) for j, e in enumerate(fe)],
            "score_edges": se, "score_shares": shares(se, s),
            "window": [str(w) for w in window] if window is not None else None}


def compare(profile: dict, X, scores) -> dict:
    """PSI of a sample (matrix ``X`` in the profile's feature order, ``scores``) against ``profile``:
    ``{"n", "score", "features": {name: psi}}``."""
    X = np.asarray(X, dtype=np.float64)
    feats = {name: psi(profile["shares"][j], shares(profile["edges"][j], X[:, j]))
             for j, name in enumerate(profile["features"])}
    return {"n": int(len(X)), "score": psi(profile["score_shares"], shares(profile["score_edges"], scores)),
            "features": feats}


def summary(result: dict, top: int | None = None) -> list[tuple[str, float, str]]:
    """``(name, psi, verdict)`` rows, the score first, then the features by decreasing PSI."""
    feats = sorted(result["features"].items(), key=lambda kv: (-kv[1], kv[0]))[:top]
    return [("score", result["score"], verdict(result["score"]))] + [(k, v, verdict(v)) for k, v in feats]


def max_psi(result: dict) -> float:
    return max([result["score"], *result["features"].values()])


class DriftWindow:
    """Bin counts of the scored events over the last ``days`` event days (one count array per day: bounded),
    against a profile. ``update(X, scores, last_timestamp)`` per micro-batch (the batch counts for the day of its
    last event); ``psi()`` the PSIs of the window. Thread-safe (updates on the scoring thread, reads on the
    metrics thread)."""

    def __init__(self, profile: dict, feature_names=None, days: int = 7):
        self.profile, self.days = profile, int(days)
        names = list(profile["features"])
        given = list(feature_names) if feature_names is not None else names
        pos = {c: i for i, c in enumerate(given)}
        keep = [j for j, c in enumerate(names) if c in pos]
        self.names = [names[j] for j in keep]
        self.cols = np.asarray([pos[names[j]] for j in keep], dtype=np.int64)
        self.edges = [np.asarray(profile["edges"][j], dtype=np.float64) for j in keep] + [
            np.asarray(profile["score_edges"], dtype=np.float64)]
        ref = [np.asarray(profile["shares"][j], dtype=np.float64) for j in keep] + [
            np.asarray(profile["score_shares"], dtype=np.float64)]
        sizes = np.asarray([len(e) + 2 for e in self.edges], dtype=np.int64)
        width = max([len(e) for e in self.edges[:-1]], default=0)  # the features' edges padded with +inf
        self._padded = np.full((len(keep), width), np.inf)
        for j, e in enumerate(self.edges[:-1]):
            self._padded[j, :len(e)] = e
        self.starts = np.r_[0, np.cumsum(sizes)[:-1]]
        self.nan_bin = (sizes - 1)[:-1]
        self.ref = np.maximum(np.concatenate(ref), EPS)
        self.size = int(sizes.sum())
        self._days: dict[int, np.ndarray] = {}
        self._n: dict[int, int] = {}
        self._lock = threading.Lock()

    def update(self, X, scores, last_timestamp=None) -> None:
        X = np.asarray(X, dtype=np.float64)
        n = len(X)
        if not n:
            return
        f = len(self.cols)
        idx = np.empty((n, f + 1), dtype=np.int64)
        sub = X[:, self.cols] if f != X.shape[1] or (self.cols != np.arange(f)).any() else X
        idx[:, :f] = self._bins(sub)
        nan = np.isnan(sub)
        if nan.any():
            idx[:, :f] = np.where(nan, self.nan_bin, idx[:, :f])
        idx[:, f] = np.searchsorted(self.edges[f], np.asarray(scores, dtype=np.float64), side="left")
        idx += self.starts
        add = np.bincount(idx.ravel(), minlength=self.size)
        day = 0 if last_timestamp is None else int(pd.Timestamp(last_timestamp).value // _NS_DAY)
        with self._lock:
            newest = max(self._days, default=day)
            day = max(day, newest)  # a late batch counts for the newest day
            if day not in self._days:
                self._days[day] = np.zeros(self.size, dtype=np.int64)
                self._n[day] = 0
                for d in [d for d in self._days if d <= day - self.days]:
                    del self._days[d], self._n[d]
            self._days[day] += add
            self._n[day] += n

    def _bins(self, sub: np.ndarray) -> np.ndarray:
        """``searchsorted(edges[j], sub[:, j], side="left")`` per feature j: the number of edges below each value.
        A small batch counts them in one comparison against the padded edges (one call instead of one per
        feature: a stream poll's per-call cost); a large one searches feature by feature."""
        n, f = sub.shape
        if n * self._padded.size <= 200_000:
            return (sub[:, :, None] > self._padded[None, :, :]).sum(axis=2)
        return np.stack([np.searchsorted(self.edges[j], sub[:, j], side="left") for j in range(f)], axis=1) \
            if f else np.empty((n, 0), dtype=np.int64)

    def counts(self) -> tuple[np.ndarray, int]:
        with self._lock:
            n = sum(self._n.values())
            c = sum(self._days.values()) if self._days else np.zeros(self.size, dtype=np.int64)
            return np.array(c, dtype=np.float64), int(n)

    def psi(self) -> dict:
        """``{"n", "score", "features": {name: psi}}`` of the window (NaN PSIs while it is empty)."""
        c, n = self.counts()
        if n == 0:
            return {"n": 0, "score": float("nan"), "features": {k: float("nan") for k in self.names}}
        a = np.maximum(c / n, EPS)
        per = np.add.reduceat((a - self.ref) * np.log(a / self.ref), self.starts)
        return {"n": n, "score": float(per[-1]), "features": dict(zip(self.names, per[:-1].astype(float).tolist()))}


def report(bundle, events: pd.DataFrame, days: float = 7.0, lookback_days: float = 30.0) -> dict:
    """PSI per feature and for the score of ``events``' last ``days`` (canonical rows) against ``bundle``'s
    training profile; the score is the bundle's own. Features as the scorer computed them where the events reach
    back to the training cutoff: the bundle's warm state replays every event after it (:func:`_replayed`); else
    from the vectorized path over the window and ``lookback_days`` before it (windows longer than the lookback
    read short). Clock columns (``clock_columns`` of a featurizer: a card's age grows with the data's span) are
    reported apart, in ``"clock"``, and count for no verdict. Raises ValueError when the bundle has no profile or
    the window has no events."""
    profile = getattr(bundle, "drift_profile", None)
    if not profile:
        raise ValueError(f"model {bundle.describe()} has no drift profile (trained before drift monitoring): "
                         f"retrain it to record one")
    ts = events["timestamp"]
    end = ts.max()
    start = end - pd.Timedelta(days=days)
    Xw, how = _replayed(bundle, events, start)
    if Xw is None:
        hist = events[ts > start - pd.Timedelta(days=lookback_days)].reset_index(drop=True)
        win = (hist["timestamp"] > start).to_numpy()
        Xw, how = bundle.features_batch(hist).loc[win], f"recomputed over a {lookback_days:g}-day lookback"
    if not len(Xw):
        raise ValueError(f"no events in the last {days} days")
    names = list(profile["features"])
    out = compare(profile, Xw[names].to_numpy(dtype=np.float64, na_value=np.nan), bundle.scores(Xw))
    clock = {c for f in bundle.featurizers for c in getattr(f, "clock_columns", ())}
    out["clock"] = {k: out["features"].pop(k) for k in list(out["features"]) if k in clock}
    out["window"] = [str(start), str(end)]
    out["reference_window"] = profile.get("window")
    out["features_from"] = how
    out["max_psi"] = max_psi(out)
    return out


def _replayed(bundle, events: pd.DataFrame, start) -> tuple:
    """(features of the events after ``start``, how), replayed through the online path from the bundle's warm
    state (as of its training cutoff) over every event after the cutoff; (None, "") when the bundle keeps no
    warm state, the events begin more than a day after the cutoff, or the window starts before it."""
    state = bundle.warm_state() if getattr(bundle, "initial_state_", None) is not None else None
    cut = getattr(state, "last_timestamp", None)
    ts = events["timestamp"]
    if cut is None or ts.min() > cut + pd.Timedelta(days=1) or start < cut:
        return None, ""
    after = events[ts > cut].sort_values("timestamp", kind="stable").reset_index(drop=True)
    parts = [bundle.features_online(after.iloc[i:i + 10_000], state) for i in range(0, len(after), 10_000)]
    X = pd.concat(parts, ignore_index=True)
    return X.loc[(after["timestamp"] > start).to_numpy()], "replayed from the model's training cutoff"


def mlflow_fields(result: dict, trigger: str) -> tuple[dict, dict]:
    """(metrics, tags) of a :func:`report` for the retrain run: ``drift.max_psi``, ``drift.score_psi``,
    ``drift.psi.<feature>``; tags ``drift.trigger`` (why the retrain ran), ``drift.window``, ``drift.top``."""
    metrics = {"drift.max_psi": result["max_psi"], "drift.score_psi": result["score"], "drift.n": result["n"],
               **{f"drift.psi.{k}": v for k, v in {**result["features"], **result.get("clock", {})}.items()}}
    top = ", ".join(f"{k}={v:.3f}" for k, v, _ in summary(result, top=5))
    return metrics, {"drift.trigger": trigger, "drift.window": f"({result['window'][0]}, {result['window'][1]}]",
                     "drift.top": top[:4000]}


def table(result: dict, top: int | None = None) -> str:
    """The report as text: one line per row of :func:`summary` (name, PSI, verdict), then the clock columns."""
    rows = summary(result, top)
    clock = result.get("clock") or {}
    width = max(len(r[0]) for r in rows + [(k,) for k in clock])
    lines = [f"{'':{width}}  {'PSI':>8}  verdict"]
    lines += [f"{name:{width}}  {v:8.4f}  {verdict}" for name, v, verdict in rows]
    lines += [f"{name:{width}}  {v:8.4f}  not counted (grows with the data's span)" for name, v in clock.items()]
    return "\n".join(lines)
