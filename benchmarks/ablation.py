"""Feature-set ablation (``fraud bench ablation``): the same supervised detector on feature sets built from
named featurizers.

Protocol (``time_split``, obeying the information rule): the test period is the last ``test_days``
whole days; featurizers are fitted on the history before the split with labels newer than
``split - delay_days`` hidden; the detector (``HistGradientBoostingClassifier``, ``DETECTOR_PARAMS``, the
same for every set) trains on rows whose labels are known at the split. Metrics on the test rows: AP,
ROC AUC and, per scenario, the recall at a daily budget of alerted cards (``recall_at_budget``).
Results: docs/benchmarks.md ("Feature-set ablation").
"""
from __future__ import annotations

import time

import numpy as np
import pandas as pd

from fraud.errors import ConfigError
from fraud.training.featurizers import available_featurizers, featurizer_class

FEATURE_SETS = {
    "tabular": ["tabular"],
    "tabular+graph": ["tabular", "graph"],
    "tabular+sequence": ["tabular", "sequence"],
    "all": ["tabular", "graph", "sequence"],
}
DETECTOR_PARAMS = dict(max_iter=200, learning_rate=0.05, max_leaf_nodes=31, min_samples_leaf=40,
                       l2_regularization=1.0, early_stopping=False)
DAY = pd.Timedelta(days=1)



def time_split(df: pd.DataFrame, test_days: int = 21, train_days: int = 28, delay_days: float = 7) -> dict:
    """The split timestamps (see module doc)."""
    if len(df) == 0:
        raise ConfigError("ablation: the data is empty")
    end = df["timestamp"].max()
    split = end.normalize() + DAY - test_days * DAY
    label_cut = split - pd.Timedelta(days=float(delay_days))
    train_start = label_cut - train_days * DAY
    if train_start < df["timestamp"].min():
        raise ConfigError(f"ablation: the data spans {df['timestamp'].min()} .. {end}: too short for "
                          f"test_days={test_days}, delay_days={delay_days}, train_days={train_days}")
    return {"split": split, "label_cut": label_cut, "train_start": train_start, "end": end}


def recall_at_budget(df: pd.DataFrame, scores, budget: int = 100) -> dict:
    """Per-scenario recall at a daily card budget: ``fraud.evaluate.recall_at_budget`` on ``df`` with
    ``scores`` (definition in the module doc). Returns {"all": r, scenario id (str): r, ...}."""
    from fraud.evaluate import recall_at_budget as _recall

    return _recall(df.assign(score=np.asarray(scores, dtype=float)), budget=int(budget))


def _hide_recent_labels(hist: pd.DataFrame, label_cut) -> pd.DataFrame:
    if "label" not in hist.columns:
        return hist
    hist = hist.copy()
    hist["label"] = np.where(hist["timestamp"] >= label_cut, 0, hist["label"]).astype(np.int8)
    return hist


def run_ablation(df: pd.DataFrame, sets=None, budget: int = 100, test_days: int = 21, train_days: int = 28,
                 delay_days: float = 7, seed: int = 0, featurizer_params: dict | None = None,
                 dataset: str = "<frame>", extra_budgets=(), log=print) -> dict:
    """Train the detector on each feature set; returns the JSON-ready result (see module doc).

    ``extra_budgets``: more daily budgets whose per-scenario recalls go to ``recall_at_budgets``.
    """
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.metrics import average_precision_score, roc_auc_score

    if "label" not in df.columns:
        raise ConfigError(f"ablation: {dataset} has no label column (map one with --columns label=...)")
    sets = list(FEATURE_SETS) if sets is None else list(sets)
    for s in sets:
        if s not in FEATURE_SETS:
            raise ConfigError(f"--sets: unknown feature set {s!r}; known: {', '.join(FEATURE_SETS)}")
    df = df.reset_index(drop=True)
    sp = time_split(df, test_days, train_days, delay_days)
    ts = df["timestamp"]
    hist = _hide_recent_labels(df.loc[ts < sp["split"]], sp["label_cut"])
    train = ((ts >= sp["train_start"]) & (ts < sp["label_cut"])).to_numpy()
    test = (ts >= sp["split"]).to_numpy()
    y = df["label"].to_numpy(dtype=np.int64)
    params = featurizer_params or {}
    feats: dict = {}
    skipped: dict = {}
    timings: dict = {}
    result = {"dataset": dataset, "budget": int(budget),
              "split": {k: str(v) for k, v in sp.items()},
              "n_train": int(train.sum()), "n_test": int(test.sum()),
              "test_frauds": {str(int(k)): int(v) for k, v in
                              df.loc[test & (y == 1)].groupby("scenario").size().items()} if "scenario" in df else {},
              "featurizer_params": params, "feature_sets": {}, "skipped": skipped, "timings_s": timings}
    for s in sets:
        names = FEATURE_SETS[s]
        _, missing = available_featurizers([n for n in names if n not in feats])
        if missing:
            skipped[s] = "; ".join(missing.values())
            log(f"note: skipping feature set {s!r}: {skipped[s]}")
            continue
        for n in names:
            if n not in feats:
                cls = featurizer_class(n)
                t0 = time.perf_counter()
                f = cls(**params.get(n, {})).fit(hist)
                t1 = time.perf_counter()
                X = f.transform(df)
                feats[n] = X.add_prefix(f"{n}:")
                timings[n] = {"fit": round(t1 - t0, 2), "transform": round(time.perf_counter() - t1, 2)}
                log(f"featurizer {n}: fit {t1 - t0:.1f} s, transform {time.perf_counter() - t1:.1f} s, "
                    f"{X.shape[1]} columns")
        X = pd.concat([feats[n] for n in names], axis=1).to_numpy(dtype=np.float64)
        clf = HistGradientBoostingClassifier(random_state=seed, **DETECTOR_PARAMS)
        clf.fit(X[train], y[train])
        sc = clf.predict_proba(X[test])[:, 1]
        yt = y[test]
        res = {"ap": float(average_precision_score(yt, sc)) if yt.any() else float("nan"),
               "auc": float(roc_auc_score(yt, sc)) if 0 < yt.sum() < len(yt) else float("nan"),
               "recall_at_budget": recall_at_budget(df.loc[test], sc, budget),
               "n_features": int(X.shape[1])}
        if extra_budgets:
            res["recall_at_budgets"] = {str(int(b)): recall_at_budget(df.loc[test], sc, int(b)) for b in extra_budgets}
        result["feature_sets"][s] = res
        log(f"{s}: AP {res['ap']:.4f}  AUC {res['auc']:.4f}  recall@{budget} "
            + "  ".join(f"{k}={v:.3f}" for k, v in res["recall_at_budget"].items()))
    return result


def run(df: pd.DataFrame, *, last_days: int | None = None, embedder: str = "node2vec", graph_columns: str = "online",
        delay_days: float = 7, seed: int = 0, **kw) -> dict:
    """``fraud bench ablation``: the last ``last_days`` of ``df`` (all when None), the graph featurizer with
    ``embedder`` and ``graph_columns``; ``kw`` goes to :func:`run_ablation`."""
    if last_days:
        df = df.loc[df["timestamp"] >= df["timestamp"].max().normalize() + pd.Timedelta(days=1 - last_days)]
    params = {"graph": {"embedder": embedder, "delay_days": delay_days, "seed": seed, "columns": graph_columns},
              "tabular": {"delay_days": delay_days}}
    return run_ablation(df, delay_days=delay_days, seed=seed, featurizer_params=params, **kw)


def table(res: dict, budget: int) -> str:
    """The result as text: AP, AUC and recall at ``budget`` per scenario, one line per feature set."""
    scen = sorted({k for r in res["feature_sets"].values() for k in r["recall_at_budget"]},
                  key=lambda k: (k == "all", k))
    lines = [f"dataset {res['dataset']}  split {res['split']['split']}  train rows {res['n_train']}  "
             f"test rows {res['n_test']}  test frauds per scenario {res['test_frauds']}",
             f"{'feature set':18s} {'AP':>7s} {'AUC':>7s}  " + " ".join(f"R@{budget}[{s}]".rjust(11) for s in scen)]
    for name, r in res["feature_sets"].items():
        lines.append(f"{name:18s} {r['ap']:7.4f} {r['auc']:7.4f}  "
                     + " ".join(f"{r['recall_at_budget'].get(s, float('nan')):11.3f}" for s in scen))
        for b, rb in r.get("recall_at_budgets", {}).items():
            lines.append(f"{'  @' + b:18s} {'':7s} {'':7s}  "
                         + " ".join(f"{rb.get(s, float('nan')):11.3f}" for s in scen))
    lines += [f"skipped {name}: {why}" for name, why in res["skipped"].items()]
    return "\n".join(lines)
