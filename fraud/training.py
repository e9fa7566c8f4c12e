"""Training pipeline: canonical transactions -> a fitted :class:`fraud.bundle.ScoringBundle`.

Time windows (all half-open, UTC); ``delay`` = feedback delay (default 7 days), ``eval_days`` = the
evaluation window length (default 7 days):

* ``train_until``: nothing at or after it is used (callers filter right after reading; :func:`train`
  refuses rows at or after it). Default: just after the last transaction.
* ``train_from``: training examples are the transactions in ``[train_from, train_until)``; earlier rows are
  history (warm-up of the window / graph / sequence state, unlabelled data for the featurizers' fit).
  Default: the first transaction plus ``warmup_days`` (7) when the data spans more than 3x that, else
  the first transaction.
* Labels known at ``train_until`` are those of transactions older than ``train_until - delay``; any newer
  label is hidden (set to 0 = "not reported") before anything sees the data.
* **Evaluation window** (the most recent labelled window): ``[label_cutoff, train_until - delay)`` with
  ``label_cutoff = train_until - delay - eval_days``. The supervised head only learns from labels of
  transactions in ``[train_from, label_cutoff)``, so the registered model is evaluated on labels it never
  trained on (its unsupervised parts, like production ones, see the unlabelled traffic of that window).
  Metrics: AP and ROC AUC (scikit-learn), CP@100 (``fraud.evaluate.card_precision_at_k``, the book's
  card precision), on the window's transactions, with the features of a replay over all history.
* **Supervised rows**: at most ``max_supervised_rows`` (400k) labelled rows: every labelled fraud plus a
  seeded sample of labelled genuine ones (bounds the fit time on large data).
* **Threshold**: from the daily alert budget (``alert_budget_per_day``) over the scores of the most recent
  transactions ``[label_cutoff, train_until)`` (never the supervised head's own training rows, whose scores
  are optimistic).

``unsupervised=True`` drops every label (the featurizers' label-based features see none either).
No labelled fraud among the supervised rows -> a warning and the unsupervised fallback.

The retraining gate (:func:`promotion_decision`, :func:`compare_on_window`) compares champion and
challenger on the most recent labelled window whose labels neither trained on.
"""
from __future__ import annotations

import importlib
import inspect
import time
import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from fraud import schema
from fraud.errors import ConfigError, ModelError, SchemaError

#: name -> "module:Class" of the featurizers a bundle may use (imported lazily)
FEATURIZERS = {
    "tabular": "fraud.features.tabular:BaselineFeatures",
    "graph": "fraud.features.graph:GraphFeatures",
    "sequence": "fraud.features.sequence:SequenceFeatures",
    "behaviour": "fraud.features.behaviour:BehaviourFeatures",
    "collusion": "fraud.features.collusion:CollusionFeatures",
}
DEFAULT_FEATURIZERS = ("tabular", "behaviour", "graph", "sequence", "collusion")
DEFAULT_UNSUPERVISED = ("iforest", "ecod", "copod", "hbos", "autoencoder")
DAY = pd.Timedelta(days=1)


class FraudTrainingWarning(UserWarning):
    """Training went on in a degraded mode (e.g. no labelled fraud -> unsupervised)."""


@dataclass
class TrainConfig:
    featurizers: tuple = DEFAULT_FEATURIZERS
    featurizer_params: dict = field(default_factory=dict)  # name -> kwargs
    unsupervised: tuple = DEFAULT_UNSUPERVISED
    supervised: str | None = "lightgbm"
    ensemble_params: dict = field(default_factory=dict)
    feedback_delay_days: int = 7
    alert_budget_per_day: int = 100
    eval_days: int = 7
    warmup_days: int = 7
    max_supervised_rows: int | None = 400_000  # labelled rows for the head: all frauds + sampled genuine
    #: compare with the book-feature random forest on the evaluation week; register the better or a blend
    #: (``fraud.baseline``; needs the tabular featurizer and labelled fraud in both windows)
    baseline_guard: bool = True
    #: days of history (before train-until) replayed through the online path to give the bundle a warm
    #: initial state (``bundle.initial_state_``): a stream scorer starting without a checkpoint then sees
    #: customer/terminal windows and sequence states as of the training cutoff, not empty ones. 0 = off.
    warm_state_days: int = 37
    seed: int = 0
    explain: str = "alerts"
    top_reasons: int = 3
    name: str = "fraud-detector"

    def params(self) -> dict:
        return {
            "featurizers": ",".join(self.featurizers), "unsupervised_detectors": ",".join(self.unsupervised),
            "supervised_head": self.supervised or "none", "feedback_delay_days": self.feedback_delay_days,
            "alert_budget_per_day": self.alert_budget_per_day, "eval_days": self.eval_days,
            "warmup_days": self.warmup_days, "seed": self.seed, "max_supervised_rows": self.max_supervised_rows,
            **{f"featurizer.{k}": v for k, v in self.featurizer_params.items()},
            **{f"ensemble.{k}": v for k, v in self.ensemble_params.items()},
        }


@dataclass
class TrainResult:
    bundle: object
    metrics: dict
    params: dict
    eval_frame: pd.DataFrame  # tx_id, timestamp, customer_id, label, score (+ scenario) of the eval window
    warnings: list
    timings: dict
    windows: dict
    tags: dict = field(default_factory=dict)  # MLflow tags (the baseline comparison)


# -- helpers ---------------------------------------------------------------------------------------
def to_utc(value, option: str) -> pd.Timestamp | None:
    if value is None or value == "":
        return None
    try:
        ts = pd.Timestamp(value)
    except (ValueError, TypeError):
        raise ConfigError(f"{option}: {value!r} is not a date/time (e.g. 2018-08-01 or 2018-08-01T12:00Z)") from None
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


def featurizer_class(name: str):
    if name not in FEATURIZERS:
        raise ConfigError(f"featurizer {name!r} is unknown; known: {', '.join(FEATURIZERS)}")
    mod, cls = FEATURIZERS[name].split(":")
    try:
        return getattr(importlib.import_module(mod), cls)
    except (ImportError, AttributeError) as e:
        raise ModelError(f"featurizer {name!r} ({FEATURIZERS[name]}) is not available: {e}") from e


def available_featurizers(names=DEFAULT_FEATURIZERS) -> tuple[list[str], dict]:
    """(names that import, {name: why not} for the others)."""
    ok, missing = [], {}
    for n in names:
        try:
            featurizer_class(n)
            ok.append(n)
        except ModelError as e:
            missing[n] = str(e)
    return ok, missing


def make_featurizer(name: str, cfg: TrainConfig):
    cls = featurizer_class(name)
    kw = dict(cfg.featurizer_params.get(name, {}))
    sig = inspect.signature(cls.__init__).parameters
    for key, val in (("delay_days", cfg.feedback_delay_days), ("feedback_delay_days", cfg.feedback_delay_days),
                     ("seed", cfg.seed), ("random_state", cfg.seed)):
        if key in sig and key not in kw:
            kw[key] = val
    return cls(**kw)


def make_detector(cfg: TrainConfig, supervised: bool):
    try:
        from fraud.detectors import Ensemble
    except ImportError as e:
        raise ModelError(f"the detector ensemble (fraud.detectors.Ensemble) is not available: {e}") from e
    kw = dict(unsupervised=tuple(cfg.unsupervised), supervised=cfg.supervised if supervised else None, seed=cfg.seed)
    kw.update(cfg.ensemble_params)
    return Ensemble(**kw)


def threshold_for_budget(scores, timestamps, alerts_per_day: int) -> float:
    from fraud.detectors.threshold import threshold_for_budget as tfb

    return float(tfb(np.asarray(scores, dtype=float), pd.Series(timestamps).reset_index(drop=True), alerts_per_day))


def apply_labels(df: pd.DataFrame, labels: pd.DataFrame | None, source: str = "--labels") -> pd.DataFrame:
    """Override ``df.label`` with analyst labels (``tx_id``, ``label``); rows without any label get 0
    ("not reported as fraud"). Returns a new frame."""
    if labels is None:
        return df
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
    base = out["label"].to_numpy(dtype=np.int8) if "label" in out else np.zeros(len(out), dtype=np.int8)
    new = out["tx_id"].astype(str).map(m)
    has = new.notna().to_numpy()
    base = base.copy()
    base[has] = new.to_numpy()[has].astype(np.int8)
    out["label"] = base
    return out


def read_labels(path) -> pd.DataFrame:
    from pathlib import Path

    p = Path(path)
    if not p.exists():
        raise ConfigError(f"--labels: file {str(p)!r} does not exist")
    if p.suffix.lower() in (".parquet", ".pq"):
        lab = pd.read_parquet(p)
    elif p.suffix.lower() in (".csv", ".txt"):
        lab = pd.read_csv(p, dtype={"tx_id": str})
    else:
        raise ConfigError(f"--labels: {str(p)!r} has unknown file type; use .csv or .parquet")
    return lab


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


def windows_for(df: pd.DataFrame, cfg: TrainConfig, train_from=None, train_until=None) -> dict:
    ts = df[schema.TIMESTAMP]
    if len(df) == 0:
        raise ConfigError("no transactions to train on (empty data after filtering)")
    # default: midnight after the last transaction (day-aligned windows)
    until = train_until if train_until is not None else ts.iloc[-1].floor("D") + DAY
    start = ts.iloc[0]
    if train_from is None:
        warm = cfg.warmup_days * DAY
        train_from = start + warm if (until - start) > 3 * warm else start
    if train_from >= until:
        raise ConfigError(f"--train-from {train_from} is not before --train-until {until}")
    delay = cfg.feedback_delay_days * DAY
    known_before = until - delay
    label_cutoff = known_before - cfg.eval_days * DAY
    return {"train_from": train_from, "train_until": until, "labels_known_before": known_before,
            "label_cutoff": label_cutoff, "eval_from": label_cutoff, "eval_until": known_before}


def window_metrics(frame: pd.DataFrame, k: int = 100) -> dict:
    """AP, AUC, CP@k of ``frame`` (timestamp, customer_id, label, score); NaN where undefined."""
    from sklearn.metrics import average_precision_score, roc_auc_score

    out = {"n": int(len(frame)), "n_fraud": int(frame["label"].sum()) if len(frame) else 0}
    y = frame["label"].to_numpy() if len(frame) else np.array([])
    if len(frame) == 0 or y.min() == y.max():
        out.update({"ap": float("nan"), "auc": float("nan"), f"cp@{k}": float("nan")})
        return out
    s = frame["score"].to_numpy(dtype=float)
    out["ap"] = float(average_precision_score(y, s))
    out["auc"] = float(roc_auc_score(y, s))
    try:
        from fraud.evaluate import card_precision_at_k

        out[f"cp@{k}"] = float(card_precision_at_k(frame, k=k))
    except ImportError:  # the evaluation module is another part of the product
        out[f"cp@{k}"] = float("nan")
    return out


def curve_figures(frame: pd.DataFrame, title: str = "") -> dict:
    """PR and ROC curves (matplotlib figures) of the evaluation window; none without labels (label-free
    training) or without both classes."""
    if "label" not in frame or len(frame) == 0 or frame["label"].min() == frame["label"].max():
        return {}
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import precision_recall_curve, roc_curve

    y = frame["label"].to_numpy()
    s = frame["score"].to_numpy(dtype=float)
    figs = {}
    p, r, _ = precision_recall_curve(y, s)
    fig, ax = plt.subplots(figsize=(5, 4))
    ax.plot(r, p)
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_title(f"PR curve {title}".strip())
    ax.grid(alpha=0.3)
    figs["pr_curve.png"] = fig
    fpr, tpr, _ = roc_curve(y, s)
    fig, ax = plt.subplots(figsize=(5, 4))
    ax.plot(fpr, tpr)
    ax.plot([0, 1], [0, 1], "--", color="grey")
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.set_title(f"ROC curve {title}".strip())
    ax.grid(alpha=0.3)
    figs["roc_curve.png"] = fig
    return figs


def _subsample_genuine(y: np.ndarray, max_rows: int | None, seed: int) -> np.ndarray:
    """Keep every labelled fraud and a seeded sample of labelled genuine rows so that at most
    ``max_rows`` rows are labelled (the others become unknown, NaN): bounds the head's fit time."""
    known = np.flatnonzero(np.isfinite(y))
    if max_rows is None or len(known) <= max_rows:
        return y
    fraud = known[y[known] == 1]
    genuine = known[y[known] == 0]
    keep = max(max_rows - len(fraud), 0)
    rng = np.random.default_rng(seed)
    drop = rng.choice(genuine, size=len(genuine) - min(keep, len(genuine)), replace=False)
    out = y.copy()
    out[drop] = np.nan
    return out


# -- training --------------------------------------------------------------------------------------
def train(df: pd.DataFrame, cfg: TrainConfig | None = None, train_from=None, train_until=None,
          labels: pd.DataFrame | None = None, unsupervised: bool = False, progress=None) -> TrainResult:
    """Fit featurizers and detectors on ``df`` (canonical, time-ordered) and return the bundle and its
    evaluation. ``progress``: optional callable(message) for stage reporting."""
    from fraud.bundle import ScoringBundle

    cfg = cfg or TrainConfig()
    say = progress or (lambda msg: None)
    t_all = time.perf_counter()
    timings: dict[str, float] = {}
    warns: list[str] = []

    def warn(msg):
        warns.append(msg)
        warnings.warn(msg, FraudTrainingWarning, stacklevel=3)

    missing = [c for c in schema.REQUIRED if c not in df.columns]
    if missing:
        raise SchemaError(f"training data lacks field(s) {', '.join(repr(m) for m in missing)} that the model needs; "
                          f"columns present: {', '.join(repr(c) for c in df.columns)}")
    train_from = to_utc(train_from, "--train-from")
    train_until = to_utc(train_until, "--train-until")
    if train_until is not None and len(df) and (df[schema.TIMESTAMP] >= train_until).any():
        raise ConfigError(f"training data holds transactions at/after --train-until {train_until}: "
                          "filter them right after reading (nothing at or after train-until may be read)")
    if not df[schema.TIMESTAMP].is_monotonic_increasing:
        df = df.sort_values(schema.TIMESTAMP, kind="stable").reset_index(drop=True)
    else:
        df = df.reset_index(drop=True)

    if unsupervised:
        df = df.drop(columns=[c for c in ("label",) if c in df.columns])
    else:
        df = apply_labels(df, labels)
    w = windows_for(df, cfg, train_from, train_until)
    df = hide_recent_labels(df, w["labels_known_before"])
    has_labels = "label" in df.columns

    # featurizers ----------------------------------------------------------------------------
    names = list(cfg.featurizers)
    if not names:
        raise ConfigError("no featurizer selected")
    featurizers, parts = [], []
    for n in names:
        t0 = time.perf_counter()
        say(f"fitting featurizer {n} on {len(df):,} transactions")
        f = make_featurizer(n, cfg)
        # the featurizers' own fit never sees labels of the evaluation window (or newer)
        fit_df = hide_recent_labels(df, w["label_cutoff"])
        f.fit(fit_df)
        say(f"computing {n} features")
        parts.append(f.transform(df))
        featurizers.append(f)
        timings[f"features.{n}"] = time.perf_counter() - t0
    X = pd.concat(parts, axis=1) if len(parts) > 1 else parts[0]
    dup = X.columns[X.columns.duplicated()].tolist()
    if dup:
        raise ModelError(f"featurizers {names} produce duplicate feature names {dup[:10]}")
    feature_names = list(X.columns)
    X = X.reset_index(drop=True).astype(np.float64)
    if not np.isfinite(X.to_numpy()).all():
        bad = [c for c in feature_names if not np.isfinite(X[c].to_numpy()).all()]
        warn(f"non-finite feature values in {bad[:10]}: replaced by 0")
        X = X.replace([np.inf, -np.inf], np.nan).fillna(0.0)

    # detectors ------------------------------------------------------------------------------
    ts = df[schema.TIMESTAMP]
    in_train = ((ts >= w["train_from"]) & (ts < w["train_until"])).to_numpy()
    if not in_train.any():
        raise ConfigError(f"no transactions in the training window [{w['train_from']}, {w['train_until']})")
    Xtr = X.loc[in_train].reset_index(drop=True)
    y = None
    supervised = False
    if has_labels and not unsupervised and cfg.supervised:
        lab_ok = in_train & (ts < w["label_cutoff"]).to_numpy()
        yy = np.where(lab_ok, df["label"].to_numpy(dtype=float), np.nan)[in_train]
        if np.nansum(yy) > 0:
            yy = _subsample_genuine(yy, cfg.max_supervised_rows, cfg.seed)
            y, supervised = yy, True
        else:
            warn(f"no labelled fraud among training transactions before {w['label_cutoff']} "
                 "(label cutoff = train-until - delay - eval window): training unsupervised only")
    elif not unsupervised and not has_labels:
        warn("the data has no 'label' column and no --labels were given: training unsupervised only")
    t0 = time.perf_counter()
    say(f"fitting detectors on {len(Xtr):,} transactions x {len(feature_names)} features"
        f"{' (supervised head on ' + str(int(np.isfinite(y).sum())) + ' labelled)' if supervised else ''}")
    det = make_detector(cfg, supervised)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        if "progress" in inspect.signature(det.fit).parameters:
            det.fit(Xtr, y, progress=lambda m: say(f"  detectors: {m}"))
        else:
            det.fit(Xtr, y)
    timings["detectors.fit"] = time.perf_counter() - t0

    # threshold and evaluation ----------------------------------------------------------------
    t0 = time.perf_counter()
    recent = (ts >= w["label_cutoff"]).to_numpy() & in_train
    if recent.sum() == 0:
        recent = in_train
    # the ensemble's training scores (decision_scores_, PyOD contract) are decision_function of the
    # training rows: reuse them instead of scoring those rows again
    known = np.full(len(X), np.nan)
    ds = getattr(det, "decision_scores_", None)
    if ds is not None and len(ds) == int(in_train.sum()):
        known[in_train] = np.asarray(ds, dtype=float)

    def scores_of(mask):
        out = known[mask]
        if not np.isfinite(out).all():
            out = np.asarray(det.decision_function(X.loc[mask]), dtype=float)
        return np.clip(out, 0, 1)

    ev = ((ts >= w["eval_from"]) & (ts < w["eval_until"])).to_numpy()
    decision_scores_of = det
    det, tags, ev_scores = _baseline_step(cfg, det, X, df, w, in_train, ev, supervised and "tabular" in names, say)
    if "collusion" in names:
        det = _collusion_step(det, Xtr)
        ev_scores = None
    if det is not decision_scores_of:
        known[:] = np.nan  # the registered detector changed: score the rows again
    s_recent = scores_of(recent)
    thr = threshold_for_budget(s_recent, ts[recent], cfg.alert_budget_per_day)
    cols = [c for c in (schema.TX_ID, schema.TIMESTAMP, schema.CUSTOMER_ID, "label", "scenario") if c in df]
    eval_frame = df.loc[ev, cols].reset_index(drop=True)
    if ev_scores is not None:
        eval_frame["score"] = np.clip(ev_scores, 0, 1)
    elif ev.any():
        eval_frame["score"] = scores_of(ev)
    else:
        eval_frame["score"] = np.array([], dtype=float)
    timings["evaluate"] = time.perf_counter() - t0
    if has_labels and ev.any():
        metrics = window_metrics(eval_frame)
        if not np.isfinite(metrics["ap"]):
            warn(f"evaluation window [{w['eval_from']}, {w['eval_until']}) has no labelled fraud: metrics undefined")
    else:
        metrics = {"n": int(ev.sum()), "n_fraud": 0, "ap": float("nan"), "auc": float("nan"), "cp@100": float("nan")}
        warn("no labelled evaluation window (no labels, or the data is shorter than delay + eval window)")
    metrics["alerts_per_day_recent"] = float((s_recent >= thr).sum() / max(
        1.0, (ts[recent].iloc[-1] - ts[recent].iloc[0]) / DAY)) if recent.any() else 0.0
    timings["total"] = time.perf_counter() - t_all

    config = {
        "name": cfg.name, "featurizers": names, "supervised": supervised,
        "feedback_delay_days": cfg.feedback_delay_days, "alert_budget_per_day": cfg.alert_budget_per_day,
        "eval_days": cfg.eval_days, "seed": cfg.seed, "unsupervised_flag": bool(unsupervised),
        **{k: str(v) for k, v in w.items()},
        "n_train": int(in_train.sum()), "n_history": int(len(df)),
    }
    bundle = ScoringBundle(featurizers, det, thr, feature_names, config=config, explain=cfg.explain,
                           top_reasons=cfg.top_reasons)
    if cfg.warm_state_days > 0 and len(df):
        t0 = time.perf_counter()
        say(f"warm state: replaying the last {cfg.warm_state_days} days of history through the online path")
        bundle.initial_state_ = warm_state(bundle, df, cfg.warm_state_days)
        timings["warm_state"] = time.perf_counter() - t0
    params = {**cfg.params(), **{f"window.{k}": str(v) for k, v in w.items()}, "supervised_used": supervised,
              "n_train": int(in_train.sum()), "n_history": int(len(df)), "n_features": len(feature_names),
              "unsupervised_flag": bool(unsupervised)}
    metrics_out = {**{k: v for k, v in metrics.items()}, "threshold": thr,
                   **{f"seconds.{k}": v for k, v in timings.items()}}
    return TrainResult(bundle, metrics_out, params, eval_frame, warns, timings, w, tags)


def _collusion_step(det, Xtr):
    """``det`` under the label-free collusion alarm (``fraud.detectors.collusion``), fitted on the training rows."""
    from fraud.detectors.collusion import CollusionAlarm

    return CollusionAlarm(det).fit(Xtr)


def _baseline_step(cfg, det, X, df, w, in_train, ev, applicable: bool, say):
    """(detector to register, MLflow tags, its evaluation-week scores or None): ``fraud.baseline``'s guard."""
    if not cfg.baseline_guard:
        return det, {"baseline.choice": "pipeline (guard off)"}, None
    if not applicable:
        return det, {"baseline.choice": "pipeline (no supervised head or no tabular features)"}, None
    from fraud.baseline import training_guard

    say("comparing with the book-feature random forest on the evaluation week")
    det, info = training_guard(det, X, df, w, in_train, ev, seed=cfg.seed, max_rows=cfg.max_supervised_rows)
    scores = info.pop("eval_scores", None)
    return det, info, scores


def warm_state(bundle, df: pd.DataFrame, days: float, batch_size: int = 10_000):
    """The bundle's online state after replaying the last ``days`` days of ``df`` (the training history,
    labels already limited to those known at train-until) through the featurizers' online path."""
    ts = df[schema.TIMESTAMP]
    hist = df.loc[(ts >= ts.iloc[-1] - pd.Timedelta(days=days)).to_numpy()]
    state = bundle.new_state()
    for i in range(0, len(hist), batch_size):
        bundle.features_online(hist.iloc[i:i + batch_size], state)
    state.last_timestamp = hist[schema.TIMESTAMP].iloc[-1] if len(hist) else None
    state.extra["warm_until"] = str(state.last_timestamp)
    return state


def embedding_map_files(bundle, df: pd.DataFrame, out_dir, known_before=None) -> list:
    """PNG embedding maps (``fraud.viz.embedding_map``) of featurizers that learned node embeddings
    (``emb_c_``/``c_index_`` customers, ``emb_t_``/``t_index_`` terminals: the graph featurizer), coloured
    by each node's number of frauds known before ``known_before`` (the information rule)."""
    from pathlib import Path

    files = []
    lab = None
    if "label" in df:
        m = df["label"].to_numpy() == 1
        if known_before is not None:
            m &= (df[schema.TIMESTAMP] < known_before).to_numpy()
        lab = df.loc[m]
    for f in bundle.featurizers:
        for kind, emb_attr, idx_attr, col in (("customers", "emb_c_", "c_index_", schema.CUSTOMER_ID),
                                              ("terminals", "emb_t_", "t_index_", schema.TERMINAL_ID)):
            emb, index = getattr(f, emb_attr, None), getattr(f, idx_attr, None)
            if emb is None or index is None:
                continue
            try:
                from fraud.viz import embedding_map

                colour = np.zeros(len(emb))
                if lab is not None and len(lab):
                    counts = lab[col].astype(str).value_counts()
                    ids = pd.Series(index.keys() if isinstance(index, dict) else list(index)).astype(str)
                    pos = pd.Series(list(index.values()) if isinstance(index, dict) else np.arange(len(ids)))
                    c = ids.map(counts).fillna(0).to_numpy()
                    ok = pos.to_numpy() < len(colour)
                    colour[pos.to_numpy()[ok]] = c[ok]
                path = Path(out_dir) / f"embedding_map_{kind}.png"
                got = embedding_map(emb, colour, str(path), title=f"{type(f).__name__} {kind} (colour: known frauds)")
                files.append(Path(got) if got else path)
            except Exception as e:  # a plot must never fail a training run
                warnings.warn(f"embedding map of {type(f).__name__} {kind} failed: {e}", FraudTrainingWarning)
    return [p for p in files if Path(p).exists()]


# -- promotion gate --------------------------------------------------------------------------------
def score_window(bundle, df: pd.DataFrame, start, end) -> pd.DataFrame:
    """Scores of ``bundle`` for the transactions of ``df`` in ``[start, end)``, features from a replay of
    all of ``df`` before ``end`` (vectorized path, equal to the replay)."""
    hist = df[df[schema.TIMESTAMP] < end].reset_index(drop=True)
    res = bundle.score_batch(hist, explain="none")
    m = (hist[schema.TIMESTAMP] >= start).to_numpy()
    cols = [c for c in (schema.TX_ID, schema.TIMESTAMP, schema.CUSTOMER_ID, "label", "scenario") if c in hist]
    out = hist.loc[m, cols].reset_index(drop=True)
    out["score"] = res["score"].to_numpy()[m]
    return out


def promotion_decision(champion: dict, challenger: dict, ap_margin: float = 0.01, k: int = 100) -> tuple[bool, str]:
    """Promote iff challenger AP >= champion AP + margin and challenger CP@k >= champion CP@k."""
    cpk = f"cp@{k}"
    ca, ha = challenger.get("ap", float("nan")), champion.get("ap", float("nan"))
    cc, hc = challenger.get(cpk, float("nan")), champion.get(cpk, float("nan"))
    if not np.isfinite(ca):
        return False, "challenger AP undefined on the gate window (no labelled fraud): champion kept"
    if not np.isfinite(ha):
        return True, f"champion AP undefined on the gate window; challenger AP {ca:.4f}: promoted"
    if ca < ha + ap_margin:
        return False, (f"challenger AP {ca:.4f} does not beat champion AP {ha:.4f} by the margin {ap_margin}: "
                       "champion kept")
    if np.isfinite(hc) and np.isfinite(cc) and cc < hc:
        return False, (f"challenger AP {ca:.4f} beats champion {ha:.4f} by >= {ap_margin}, but CP@{k} "
                       f"{cc:.4f} is worse than champion's {hc:.4f}: champion kept")
    return True, (f"challenger AP {ca:.4f} >= champion AP {ha:.4f} + {ap_margin} and CP@{k} {cc:.4f} >= "
                  f"{hc:.4f}: promoted")


def gate_window(champion_cfg: dict, challenger_windows: dict) -> tuple[pd.Timestamp, pd.Timestamp]:
    """The most recent labelled window neither model's supervised head trained on."""
    start = challenger_windows["label_cutoff"]
    end = challenger_windows["labels_known_before"]
    champ_cut = champion_cfg.get("label_cutoff")
    if champ_cut:
        start = max(start, pd.Timestamp(champ_cut))
    return start, end


def compare_on_window(champion, challenger, df: pd.DataFrame, start, end) -> dict:
    ch = window_metrics(score_window(champion, df, start, end))
    cl = window_metrics(score_window(challenger, df, start, end))
    return {"champion": ch, "challenger": cl}


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


def retrain_flow(settings, df: pd.DataFrame, cfg: TrainConfig, name: str, labels: pd.DataFrame | None = None,
                 ap_margin: float = 0.01, window_days: int | None = None, progress=None, log=None) -> dict:
    """Train a challenger on ``df`` (+ analyst ``labels``), compare it with ``name@champion`` on the most
    recent labelled window neither trained on, register it with the decision as tags, move the alias
    only if it wins. ``log(result, tags) -> version`` registers the challenger (the CLI logs curves
    and plots there); default: :func:`fraud.registry.log_and_register`.

    Returns {"decision": "promote"|"keep", "reason", "window", "champion", "challenger" (metric dicts),
    "champion_version", "challenger_version"}.
    """
    from fraud import registry
    from fraud.errors import RegistryError

    say = progress or (lambda msg: None)
    registry.configure(settings.tracking_uri)
    champion, champ_version = None, None
    try:
        champ_version = registry.resolve_alias(name, registry.CHAMPION)
    except RegistryError:
        say(f"no models:/{name}@{registry.CHAMPION} yet: the challenger becomes champion")
    if champ_version is not None:
        champion = registry.load_bundle(f"models:/{name}/{champ_version}", key=settings.bundle_key)
    df = apply_labels(df, labels)
    if len(df) == 0:
        raise ConfigError("retrain: no transactions")
    until = df[schema.TIMESTAMP].iloc[-1].floor("D") + DAY
    train_from = None if window_days is None else until - window_days * DAY
    say(f"training the challenger on {len(df):,} transactions (until {until})")
    res = train(df, cfg, train_from=train_from, train_until=until, progress=say)
    w = res.windows
    if champion is None:
        start, end = w["eval_from"], w["eval_until"]
        ch = {"ap": float("nan"), "auc": float("nan"), "cp@100": float("nan"), "n": 0, "n_fraud": 0}
        cl = window_metrics(res.eval_frame) if "label" in res.eval_frame else dict(ch)
        promote, reason = True, "no champion yet: the first model becomes champion"
    else:
        start, end = gate_window(champion.config, w)
        if start >= end:
            ch = cl = {"ap": float("nan"), "auc": float("nan"), "cp@100": float("nan"), "n": 0, "n_fraud": 0}
            promote, reason = False, (f"no labelled window that neither model trained on (champion label cutoff "
                                      f"{champion.config.get('label_cutoff')}, challenger's labels known before {end}): "
                                      "champion kept")
        else:
            say(f"comparing champion v{champ_version} and challenger on [{start}, {end})")
            gate_df = hide_recent_labels(df, end)
            cmp = compare_on_window(champion, res.bundle, gate_df, start, end)
            ch, cl = cmp["champion"], cmp["challenger"]
            promote, reason = promotion_decision(ch, cl, ap_margin)
    tags = {"retrain.decision": "promote" if promote else "keep", "retrain.reason": reason,
            "retrain.window": f"[{start}, {end})", "retrain.ap_margin": ap_margin,
            "retrain.champion_version": champ_version or "none"}
    for who, m in (("champion", ch), ("challenger", cl)):
        for k in ("ap", "auc", "cp@100", "n", "n_fraud"):
            tags[f"retrain.{who}.{k}"] = m.get(k)
    res.metrics.update({f"gate.challenger.{k}": v for k, v in cl.items() if k in ("ap", "auc", "cp@100")})
    res.metrics.update({f"gate.champion.{k}": v for k, v in ch.items() if k in ("ap", "auc", "cp@100")})
    if log is None:
        version = registry.log_and_register(res.bundle, name=name, metrics=res.metrics, params=res.params,
                                            tags={**res.tags, **tags},
                                            artifact_root=settings.artifact_root, run_name="retrain-challenger",
                                            key=settings.bundle_key)
    else:
        version = log(res, tags)
    if promote and champion is not None:
        registry.set_alias(name, registry.CHAMPION, version)
    if promote:
        say(f"models:/{name}@{registry.CHAMPION} -> version {version}")
    return {"decision": tags["retrain.decision"], "reason": reason, "window": [str(start), str(end)],
            "champion": ch, "challenger": cl, "champion_version": champ_version, "challenger_version": version}
