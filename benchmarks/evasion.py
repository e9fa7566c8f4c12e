"""``fraud bench evasion``: recall at the daily card budget per evasion tactic (issue 18).

Per random world (``fraud.worlds``; none of :data:`SEEDS` was looked at while building the tactics):
the pipeline is trained on the days before ``start`` as in ``benchmarks.worlds`` (its helpers and
split), ``fraud.evasion.inject`` adds the five tactics from ``start`` on for two weeks, and every row
is scored online by the bundle. Reported per tactic: recall of the current model over the two weeks
and in week 2, of the book-feature random forest (``benchmarks.worlds.baseline_scores``), of the model
retrained at ``start + 7 d`` with the first week's labels known after one day (the cheap
adaptation; none after; score week 2), and of ``benchmarks.loop``'s full loop in week 2 (unless ``loop=False``).
Beside them the ceilings any ranking can reach at the budget (``benchmarks.oracle.budget_oracle``): ``oracle``
(every fraud first; both weeks and week 2) and ``tactic_first`` (the tactic's own frauds first, per tactic).
``reach_back``: the same arms with the day's card-days ranked by ``benchmarks.compromise`` cases (``*_reach``).
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd

from benchmarks.worlds import DAY, _recall, baseline_scores, pipeline_scores
from fraud.errors import ConfigError

SEEDS = (3000, 3001, 3002)
WEEKS = 2


@dataclass
class EvasionConfig:
    seeds: tuple = SEEDS
    customers: int = 500
    terminals: int = 1000
    train_days: int = 56
    delay_days: int = 7
    budget: int | None = None  # cards alerted a day; default: 1 % of the customers, at least 5
    cases: int | None = None  # cases the loop's analyst decides a day; default: the budget (5 / 5 by default)
    scale: float = 1.0  # fraudsters' activity (fraud.evasion.inject)
    loop: bool = True  # also run benchmarks.loop's full arm (the slow part)
    train: dict = field(default_factory=dict)  # fraud.training.TrainConfig overrides
    activity_alarm: bool = False  # every arm's model under fraud.detectors.activity (TrainConfig.activity_alarm)
    terminal_alarm: bool | None = None  # TrainConfig.terminal_alarm for every arm (None: TrainConfig's default)
    reach_back: bool = False  # also rank card-days by benchmarks.compromise's case scores (arms ``*_reach``)
    expose: int = 0  # the loop's alerts and cases a day kept for cards exposed at confirmed frauds' terminals

    def card_budget(self) -> int:
        return int(self.budget) if self.budget else max(5, self.customers // 100)

    def cases_per_day(self) -> int:
        return int(self.cases) if self.cases else self.card_budget()

    def train_kw(self, default: dict | None = None) -> dict:
        """``default`` updated by ``train`` (``--set``), with the activity and terminal alarm switches."""
        kw = {**(default or {}), **(self.train or {})}
        kw = kw | {"activity_alarm": True} if self.activity_alarm else kw
        return kw if self.terminal_alarm is None else kw | {"terminal_alarm": bool(self.terminal_alarm)}


def _by_tactic(rec: dict) -> dict:
    from fraud.evasion import TACTICS

    return {name: rec.get(str(sid), float("nan")) for sid, name in TACTICS.items()}


def median_rank(frame: pd.DataFrame, scores) -> dict:
    """Per tactic: the median daily rank (1 = first alerted) of the tactic's fraud card-days among all the
    day's cards by the card's highest score: how far from the budget the missed ones are."""
    from fraud.evasion import TACTICS

    d = pd.DataFrame({"day": frame["timestamp"].dt.floor("D").to_numpy(), "card": frame["customer_id"].to_numpy(),
                      "score": np.asarray(scores, float), "sc": frame["scenario"].to_numpy()})
    best = d.groupby(["day", "card"])["score"].max()
    rank = best.groupby(level="day").rank(ascending=False, method="min")
    out = {}
    for sid, name in TACTICS.items():
        keys = d.loc[d["sc"] == sid, ["day", "card"]].drop_duplicates()
        r = rank.reindex(pd.MultiIndex.from_frame(keys)).to_numpy()
        out[name] = float(np.median(r)) if len(r) else float("nan")
    return out


def adapted_scores(df: pd.DataFrame, start: pd.Timestamp, train_kw: dict) -> np.ndarray:
    """Scores from the pipeline retrained at ``start + 7 d`` with the labels before then known after one day
    (the features' shortest feedback delay; no held-back week) and none after (the scored frame hides them)."""
    cut = start + 7 * DAY
    known = df.assign(label=np.where(df["timestamp"] < cut, df["label"], 0).astype(np.int8))
    kw = {**train_kw, "feedback_delay_days": 1, "eval_days": 0}
    return pipeline_scores(known, cut, kw)[0]


def loop_config(cfg: EvasionConfig):
    """The full loop's ``benchmarks.loop.LoopConfig`` for ``cfg`` (budget, cases, training, exposure), checked."""
    from benchmarks.loop import FAST_TRAIN, LoopConfig

    loop = LoopConfig(budget=cfg.card_budget(), cases_per_day=cfg.cases_per_day(), train_kw=cfg.train_kw(FAST_TRAIN),
                      expose=cfg.expose)
    loop.check()
    return loop


def loop_recall(df: pd.DataFrame, start: pd.Timestamp, cfg: EvasionConfig, say, rerank=None) -> tuple[dict, str, float]:
    """Week-2 recall per tactic of ``benchmarks.loop``'s full arm run from ``start``, the note naming it, and its
    week-2 recall over all fraud; ``rerank``: the loop's day ranking (``benchmarks.loop.run_arm``)."""
    from benchmarks.loop import run_arm

    res = run_arm(df, start, WEEKS, "full", loop_config(cfg), say=say, rerank=rerank)
    week = res["weeks"][WEEKS - 1]["by_scenario"]
    return _by_tactic({str(k): float(v) for k, v in week.items()}), "loop: full arm, week 2", \
        float(res["weeks"][WEEKS - 1]["recall"])


def reach_scores(df: pd.DataFrame, scores: np.ndarray, surprise: np.ndarray, fit_rows: np.ndarray) -> np.ndarray:
    """Per row: its card-day's case score of ``benchmarks.compromise.CompromiseCases``, fitted on the model's
    training rows ``fit_rows`` (its scores and the surprise column there; no label)."""
    from benchmarks.compromise import CompromiseCases

    cc = CompromiseCases().fit(scores[fit_rows], surprise[fit_rows])
    return cc.case_scores(df, scores, surprise)


def loop_reranker(df: pd.DataFrame, surprise: np.ndarray, fit_rows: np.ndarray):
    """The loop's day ranking with reach-back: (the day's rows, scores) -> case scores; the surprise threshold
    from the training rows, the placement from the day's own scores (the loop's model changes at each promotion)."""
    from benchmarks.compromise import CompromiseCases

    z_of = pd.Series(surprise, index=df["tx_id"].astype(str).to_numpy())
    fitted = CompromiseCases().fit(surprise[fit_rows], surprise[fit_rows])  # the threshold; the level is the day's

    def rerank(rows: pd.DataFrame, scores: np.ndarray) -> np.ndarray:
        z = z_of.reindex(rows["tx_id"].astype(str).to_numpy()).to_numpy()
        return fitted.placed_on(scores).case_scores(rows, scores, z)

    return rerank


def ceilings(df: pd.DataFrame, test: np.ndarray, week2: np.ndarray, budget: int, seed: int) -> dict:
    """Recall at ``budget`` of ``benchmarks.oracle.budget_oracle`` over both weeks (``test``) and week 2: every
    fraud first (``oracle``), and per tactic its own frauds first (``tactic_first``: no ranking does better on it)."""
    from benchmarks.oracle import budget_oracle
    from fraud.evasion import TACTICS

    out = {}
    for name, m in (("", test), ("_week2", week2)):
        f = df[m].reset_index(drop=True)
        fraud = f["label"].to_numpy() == 1
        out["oracle" + name] = _recall(f, budget_oracle(f, seed=seed), budget)
        out["tactic_first" + name] = {str(sid): _recall(f, budget_oracle(f, fraud & (f["scenario"].to_numpy() == sid),
                                                                          seed=seed), budget)[str(sid)]
                                      for sid in TACTICS}
    return out


def reach_arms(df: pd.DataFrame, start: pd.Timestamp, cfg: EvasionConfig, scores: tuple, masks: tuple,
               say) -> tuple[dict, dict]:
    """Recall of the arms ranked by reach-back card-day cases (``*_reach``): the current model (both weeks, week 2)
    and the retrained one (week 2) as ``_recall`` gives it; and ``{"loop_week2_reach": (per tactic, all)}`` of a
    second full loop whose alerts and analyst use them (week 2; empty without the loop)."""
    from benchmarks.compromise import surprise_column

    (ours, adapted), (test, week2), budget = scores, masks, cfg.card_budget()
    z = surprise_column(df)
    ts = df["timestamp"]
    cur = reach_scores(df, ours, z, (ts < start).to_numpy())
    ret = reach_scores(df, adapted, z, (ts < start + 7 * DAY).to_numpy())
    out = {"current_reach": _recall(df[test], cur[test], budget),
           "current_week2_reach": _recall(df[week2], cur[week2], budget),
           "retrained_week1_labels_reach": _recall(df[week2], ret[week2], budget)}
    if not cfg.loop:
        return out, {}
    loop, _, loop_all = loop_recall(df, start, cfg, say, rerank=loop_reranker(df, z, (ts < start).to_numpy()))
    return out, {"loop_week2_reach": (loop, loop_all)}


def run_world(seed: int, cfg: EvasionConfig, say=lambda s: None) -> dict:
    from fraud.evasion import TACTICS, draw_params, inject
    from fraud.worlds import draw_spec, generate

    t0 = time.perf_counter()
    days = cfg.train_days + 7 * WEEKS
    base = generate(draw_spec(seed, cfg.customers, cfg.terminals, days, late_from=cfg.train_days))
    start = base["timestamp"].iloc[0].floor("D") + cfg.train_days * DAY
    df = inject(base, start, 7 * WEEKS, seed=seed, scale=cfg.scale)
    test, week2 = (df["timestamp"] >= start).to_numpy(), (df["timestamp"] >= start + 7 * DAY).to_numpy()
    n = {name: int(((df["scenario"] == sid) & test).sum()) for sid, name in TACTICS.items()}
    if min(n.values()) == 0:
        raise ConfigError(f"bench evasion: world {seed} has no rows of tactics {[k for k, v in n.items() if not v]}")
    budget = cfg.card_budget()
    ours = pipeline_scores(df, start, cfg.train_kw())[0]
    forest = baseline_scores(df, start, cfg.delay_days)
    adapted = adapted_scores(df, start, cfg.train_kw())
    loop, loop_note, loop_all = loop_recall(df, start, cfg, say) if cfg.loop else (None, "loop: not run (--no-loop)",
                                                                                  None)
    rec = {"current": _recall(df[test], ours[test], budget), "current_week2": _recall(df[week2], ours[week2], budget),
           "forest": _recall(df[test], forest[test], budget),
           "retrained_week1_labels": _recall(df[week2], adapted[week2], budget)}
    reach, loop_reach = reach_arms(df, start, cfg, (ours, adapted), (test, week2), say) if cfg.reach_back else ({}, {})
    rec |= reach
    ceil = ceilings(df, test, week2, budget, seed)
    ranks = {"current": median_rank(df[test], ours[test]), "forest": median_rank(df[test], forest[test]),
             "retrained_week1_labels": median_rank(df[week2], adapted[week2])}
    cards = df[test].groupby(df.loc[test, "timestamp"].dt.floor("D"))["customer_id"].nunique()
    return {"seed": int(seed), "n": int(len(df)), "n_test": int(test.sum()), "tactic_rows": n,
            "median_rank": ranks, "cards_per_day": float(cards.mean()),
            "recall_all": {k: v["all"] for k, v in rec.items()} | {"loop_week2": loop_all}
            | {k: v[1] for k, v in loop_reach.items()} | {k: ceil[k]["all"] for k in ("oracle", "oracle_week2")},
            "recall": {k: _by_tactic(v) for k, v in rec.items()} | {"loop_week2": loop}
            | {k: v[0] for k, v in loop_reach.items()}
            | {k: _by_tactic(v) for k, v in ceil.items()}, "loop": loop_note,
            "params": draw_params(seed), "seconds": round(time.perf_counter() - t0, 1)}


def summary(worlds: list) -> dict:
    from fraud.evasion import TACTICS

    out = {"n_worlds": len(worlds)}
    for arm in worlds[0]["recall"]:
        if any(w["recall"][arm] is None for w in worlds):
            out[arm] = None
            continue
        r = np.array([[w["recall"][arm][t] for t in TACTICS.values()] for w in worlds], dtype=float)
        out[arm] = {"mean": dict(zip(TACTICS.values(), np.nanmean(r, 0).round(3).tolist())),
                    "worst": dict(zip(TACTICS.values(), np.nanmin(r, 0).round(3).tolist()))}
    adapted = out["loop_week2"] or out["retrained_week1_labels"]
    reach = out.get("loop_week2_reach") or out.get("retrained_week1_labels_reach")
    out["goals"] = {"loop_week2_recall_ge_0.5_every_tactic": None if out["loop_week2"] is None else
                    all(v >= 0.5 for v in out["loop_week2"]["mean"].values()),
                    "retrained_week2_recall_ge_0.5_every_tactic":
                    all(v >= 0.5 for v in out["retrained_week1_labels"]["mean"].values()),
                    "below_0.5_after_adaptation": sorted(k for k, v in adapted["mean"].items() if not v >= 0.5),
                    "oracle_week2_ge_0.5_every_tactic": all(v >= 0.5 for v in out["oracle_week2"]["mean"].values()),
                    "oracle_week2_below_0.5": sorted(k for k, v in out["oracle_week2"]["mean"].items() if not v >= 0.5)}
    if reach:  # the same goal with the card-days ranked by reach-back cases (--reach-back)
        out["goals"]["below_0.5_after_adaptation_reach"] = sorted(k for k, v in reach["mean"].items() if not v >= 0.5)
    return out


def run_evasion(cfg: EvasionConfig, say=lambda s: None) -> dict:
    if len(cfg.seeds) == 0:
        raise ConfigError("bench evasion: no seeds")
    if cfg.expose and not cfg.loop:
        raise ConfigError(f"bench evasion: expose={cfg.expose} changes the loop only, and the loop is off (--no-loop)")
    if cfg.loop:
        loop_config(cfg)  # a bad loop setting fails here, not after the first world's trainings
    worlds = []
    for s in cfg.seeds:
        w = run_world(int(s), cfg, say)
        say(f"world {s}: " + "; ".join(f"{arm} " + " ".join(f"{v:.2f}" for v in r.values())
                                        for arm, r in w["recall"].items() if r) + f" ({w['seconds']} s)")
        worlds.append(w)
    return {"config": {**asdict(cfg), "seeds": [int(s) for s in cfg.seeds], "budget": cfg.card_budget()},
            "loop": worlds[0]["loop"], "worlds": worlds, "summary": summary(worlds)}


def table(res: dict) -> str:
    from fraud.evasion import TACTICS

    s = res["summary"]
    head = f"mean recall at budget {res['config']['budget']}"
    lines = [f"{head:<28}" + "".join(f"{t:>18}" for t in TACTICS.values())]
    reach = ("current_reach", "current_week2_reach", "retrained_week1_labels_reach", "loop_week2_reach")
    for arm in ("current", "current_week2", "forest", "retrained_week1_labels", "loop_week2", *reach, "oracle",
                "oracle_week2", "tactic_first", "tactic_first_week2"):
        if arm not in s:
            continue
        row = s[arm]
        lines.append(f"{arm:<28}" + ("".join(f"{row['mean'][t]:>18.2f}" for t in TACTICS.values()) if row
                                     else f"{res['loop']:>18}"))
    lines.append(f"goals {s['goals']}")
    return "\n".join(lines)
