"""``fraud bench worlds``: the training pipeline against the book-feature random forest on random worlds.

Each world comes from ``fraud.worlds`` (randomised traffic and patterns, aged-account rings starting
after the training window). Split: the last ``test_days`` whole days are the test period; the pipeline
is ``fraud.training.train`` on everything before it (as ``fraud train`` would), the baseline is the
book's random forest on the book's 15 features trained on every label known at the split. Reported per
world: AP of both, their ratio, ring recall at the daily card budget; then worst and mean. Seeds
:data:`DEV_SEEDS` were used while developing; :data:`REPORT_SEEDS` were not looked at before reporting.
"""
from __future__ import annotations

import time
import warnings
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd

from fraud.errors import ConfigError

DAY = pd.Timedelta(days=1)
DEV_SEEDS = tuple(range(1000, 1010))
REPORT_SEEDS = tuple(range(2000, 2020))
CANONICAL = ("tx_id", "timestamp", "customer_id", "terminal_id", "amount", "label")


@dataclass
class WorldsConfig:
    seeds: tuple = REPORT_SEEDS
    customers: int = 500
    terminals: int = 1000
    days: int = 70
    test_days: int = 14
    delay_days: int = 7
    budget: int | None = None  # cards alerted a day; default: 1 % of the customers, at least 5
    train: dict = field(default_factory=dict)  # fraud.training.TrainConfig overrides
    reach_back: bool = False  # also recall at budget with card-days ranked by benchmarks.compromise (AP unchanged)

    def card_budget(self) -> int:
        return int(self.budget) if self.budget else max(5, self.customers // 100)


def train_overrides(items, where: str = "bench worlds") -> dict:
    """TrainConfig overrides from ``KEY=VALUE`` strings (``--set``): ``NAME.PARAM=V`` sets featurizer ``NAME``'s
    parameter, a plain ``FIELD=V`` a TrainConfig field; values are JSON (``0.05``, ``true``, ``[1,2]``) or text."""
    import json

    from fraud.training import TrainConfig

    out: dict = {}
    for item in items or ():
        key, sep, raw = str(item).partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"{where}: --set {item!r} is not KEY=VALUE")
        try:
            val = json.loads(raw)
        except ValueError:
            val = raw
        name, dot, param = key.strip().partition(".")
        if dot:
            out.setdefault("featurizer_params", {}).setdefault(name, {})[param] = val
        elif name in TrainConfig.__dataclass_fields__:
            out[name] = val
        else:
            raise ConfigError(f"{where}: --set {item!r}: {name!r} is neither a TrainConfig field nor "
                              f"FEATURIZER.PARAM")
    return out


def _recall(frame: pd.DataFrame, scores, budget: int) -> dict:
    from fraud.evaluate import recall_at_budget

    return recall_at_budget(frame.assign(score=np.asarray(scores, dtype=float)), budget=budget)


def baseline_scores(df: pd.DataFrame, split: pd.Timestamp, delay_days: int) -> np.ndarray:
    """The book's random forest (``benchmarks.handbook.random_forest``) on the book's features, trained on
    the rows before the split whose labels are known there (after a 7-day warm-up); scores of every row."""
    from benchmarks.handbook import FEATURES, random_forest
    from fraud.features.tabular import BaselineFeatures

    ts = df["timestamp"]
    hist = df[ts < split].copy()
    hist["label"] = np.where(hist["timestamp"] >= split - delay_days * DAY, 0, hist["label"]).astype(np.int8)
    feats = BaselineFeatures(delay_days=delay_days).fit(hist).transform(df[list(CANONICAL)])
    data = pd.concat([df[["label"]], feats[FEATURES]], axis=1)
    tr = ((ts >= ts.iloc[0] + 7 * DAY) & (ts < split - delay_days * DAY)).to_numpy()
    return random_forest(data[tr], data)


def pipeline_scores(df: pd.DataFrame, split: pd.Timestamp, train_kw: dict) -> tuple[np.ndarray, dict]:
    """Scores of every row from ``fraud.training.train`` on the rows before ``split``; and its tags."""
    from fraud.training import TrainConfig, train

    kw = {"warm_state_days": 0, **train_kw}
    past = df.loc[df["timestamp"] < split, list(CANONICAL)].reset_index(drop=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = train(past, TrainConfig(**kw), train_until=split)
    scored = res.bundle.score_batch(df[list(CANONICAL)].reset_index(drop=True), explain="none")
    return scored["score"].to_numpy(dtype=float), dict(res.tags)


def reach_recall(df: pd.DataFrame, ours: np.ndarray, split: pd.Timestamp, test: np.ndarray, budget: int) -> dict:
    """Recall at budget of the test days with card-days ranked by ``benchmarks.compromise`` case scores (fitted on
    the training rows' scores and surprise column, no label): the queue changes, the row scores (AP) do not."""
    from benchmarks.compromise import CompromiseCases, surprise_column
    from fraud.worlds import PATTERNS, RING

    z = surprise_column(df)
    train = (df["timestamp"] < split).to_numpy()
    case = CompromiseCases().fit(ours[train], z[train]).case_scores(df[test], ours[test], z[test])
    r = _recall(df[test], case, budget)
    return {"ring_recall_reach": r.get(str(RING), float("nan")),
            "recall_reach": {PATTERNS.get(int(k), k) if k != "all" else "all": v for k, v in r.items()}}


def run_world(seed: int, cfg: WorldsConfig) -> dict:
    from sklearn.metrics import average_precision_score

    from fraud.worlds import PATTERNS, RING, draw_spec, generate

    t0 = time.perf_counter()
    spec = draw_spec(seed, cfg.customers, cfg.terminals, cfg.days, late_from=cfg.days - cfg.test_days)
    df = generate(spec)
    split = df["timestamp"].iloc[0].floor("D") + (cfg.days - cfg.test_days) * DAY
    test = (df["timestamp"] >= split).to_numpy()
    ours, tags = pipeline_scores(df, split, cfg.train)
    base = baseline_scores(df, split, cfg.delay_days)
    y = df["label"].to_numpy()[test]
    if not 0 < y.sum() < len(y):
        raise ConfigError(f"bench worlds: world {seed} has {int(y.sum())} frauds in its {len(y)} test rows")
    budget = cfg.card_budget()
    r_ours, r_base = _recall(df[test], ours[test], budget), _recall(df[test], base[test], budget)
    ap_o, ap_b = float(average_precision_score(y, ours[test])), float(average_precision_score(y, base[test]))
    extra = reach_recall(df, ours, split, test, budget) if cfg.reach_back else {}
    return {**extra, "seed": int(seed), "n": int(len(df)), "n_test": int(test.sum()), "n_test_fraud": int(y.sum()),
            "patterns": sorted(spec.patterns) + (["handbook"] if spec.handbook else []),
            "ap": ap_o, "baseline_ap": ap_b, "ratio": ap_o / ap_b if ap_b > 0 else float("inf"),
            "ring_recall": r_ours.get(str(RING), float("nan")), "baseline_ring_recall": r_base.get(str(RING), float("nan")),
            "recall": {PATTERNS.get(int(k), k) if k != "all" else "all": v for k, v in r_ours.items()},
            "baseline_recall": {PATTERNS.get(int(k), k) if k != "all" else "all": v for k, v in r_base.items()},
            "choice": tags.get("baseline.choice"), "seconds": round(time.perf_counter() - t0, 1)}


def summary(worlds: list) -> dict:
    ap = np.array([w["ap"] for w in worlds])
    base = np.array([w["baseline_ap"] for w in worlds])
    ratio = np.array([w["ratio"] for w in worlds])
    ring = np.array([w["ring_recall"] for w in worlds])
    out = {"n_worlds": len(worlds), "ap_mean": float(ap.mean()), "baseline_ap_mean": float(base.mean()),
           "ratio_worst": float(ratio.min()), "ratio_mean": float(ratio.mean()),
           "mean_ap_over_mean_baseline": float(ap.mean() / base.mean()),
           "ap_worst": float(ap.min()), "worst_seed": int(worlds[int(np.argmin(ratio))]["seed"]),
           "ring_recall_mean": float(np.nanmean(ring)), "ring_recall_worst": float(np.nanmin(ring)),
           "baseline_ring_recall_mean": float(np.nanmean([w["baseline_ring_recall"] for w in worlds]))}
    if "recall_reach" in worlds[0]:  # --reach-back: the card-day queue's recall beside the model's own
        out |= {"recall_all_mean": float(np.mean([w["recall"]["all"] for w in worlds])),
                "recall_all_reach_mean": float(np.mean([w["recall_reach"]["all"] for w in worlds])),
                "ring_recall_reach_mean": float(np.nanmean([w["ring_recall_reach"] for w in worlds]))}
    out["goals"] = {"ap_ge_baseline_every_world": bool((ap >= base).all()),
                    "mean_ap_ge_1.5x_baseline": bool(ap.mean() >= 1.5 * base.mean()),
                    "ring_recall_mean_ge_0.5": bool(out["ring_recall_mean"] >= 0.5)}
    return out


def run_worlds(cfg: WorldsConfig, say=lambda s: None) -> dict:
    if len(cfg.seeds) == 0:
        raise ConfigError("bench worlds: no seeds")
    worlds = []
    for s in cfg.seeds:
        w = run_world(int(s), cfg)
        say(f"world {s}: AP {w['ap']:.3f} vs baseline {w['baseline_ap']:.3f} (x{w['ratio']:.2f}), ring recall "
            f"{w['ring_recall']:.2f} vs {w['baseline_ring_recall']:.2f}, {w['choice']}, {w['seconds']} s")
        worlds.append(w)
    return {"config": {**asdict(cfg), "seeds": [int(s) for s in cfg.seeds], "budget": cfg.card_budget()},
            "dev_seeds": list(DEV_SEEDS), "worlds": worlds, "summary": summary(worlds)}


def table(res: dict) -> str:
    lines = [f"{'seed':>6} {'AP':>7} {'base':>7} {'ratio':>6} {'ring':>5} {'bring':>5}  choice"]
    for w in res["worlds"]:
        lines.append(f"{w['seed']:>6} {w['ap']:7.3f} {w['baseline_ap']:7.3f} {w['ratio']:6.2f} "
                     f"{w['ring_recall']:5.2f} {w['baseline_ring_recall']:5.2f}  {w['choice']}")
    s = res["summary"]
    lines.append(f"mean AP {s['ap_mean']:.3f} vs {s['baseline_ap_mean']:.3f}; ratio worst {s['ratio_worst']:.2f} "
                 f"mean {s['ratio_mean']:.2f}; ring recall mean {s['ring_recall_mean']:.2f} worst "
                 f"{s['ring_recall_worst']:.2f}; goals {s['goals']}")
    return "\n".join(lines)
