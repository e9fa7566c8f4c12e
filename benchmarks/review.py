"""``fraud bench review``: clustering quality on a simulated world scored by a real detector.

Steps: simulate a world (``fraud.simulate``); train on the first ``days - test_days`` days;
score the whole world as a replay (features of a transaction use only earlier events, labels
only past the feedback delay) and keep the alerts of the last ``test_days`` days (the threshold
comes from the alert budget per day); write them to a temporary alert store; read them back,
cluster them, and measure against the simulation's ground truth:

* purity: alerts in their cluster's majority scenario (0 = false alarm) / all alerts;
* ring share: scenario-4 (fraud ring) alerts inside the 10 highest-risk clusters / all
  scenario-4 alerts (clustering and ranking quality, independent of the detector), and the same
  count / every ring transaction of the test window (what the fraud team sees, detector recall
  included); the detector's ring recall (ring alerts / ring transactions) separately;
* top-10 load: the share of all alerts inside those 10 clusters, and the lift = ring share /
  load (1 = no better than picking alerts at random): a ring share is only worth its load.

The analysts' budget is applied by default (``cap_budget``): at most ``alerts_per_day`` alerts a
day, the highest scores first, as analysts would receive them when the model's threshold lets more
through on a drifting test window. ``run_bench_seeds`` runs several seeds (mean and worst);
``cache_dir`` keeps each seed's scored alerts so clustering options are compared on the same alerts.

``context=True`` passes the test window's transactions of the simulated world (all of them, alerted
or not: what the stream scorer's archive holds) to ``cluster_alerts(context=...)``, and also
clusters the same alerts without it, so each run reports both (``without_context``).

Detectors: ``pipeline`` = ``fraud.training.train`` (the registered model's code path: tabular,
graph and sequence features, PyOD ensemble, supervised head) and ``ScoringBundle.score_batch``;
``iforest`` = PyOD IForest over ``fraud.features.tabular.BaselineFeatures`` (threshold from the
same budget); ``auto`` = pipeline, or iforest when the pipeline cannot be imported.
"""
from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from fraud.errors import ConfigError


def _pipeline_scores(world: pd.DataFrame, train_until: pd.Timestamp, alerts_per_day: int, seed: int, say):
    from fraud.training import TrainConfig, train

    hist = world[world["timestamp"] < train_until].reset_index(drop=True)
    cfg = TrainConfig(alert_budget_per_day=alerts_per_day, seed=seed)
    res = train(hist, cfg, train_until=train_until, progress=say)
    say("scoring the world (replay)")
    # the ground-truth scenario never reaches the model; labels reach features only past the delay
    scored = res.bundle.score_batch(world.drop(columns=["scenario"]))
    return scored, {"detector": "pipeline", "threshold": float(res.bundle.threshold),
                    "train_metrics": {k: v for k, v in res.metrics.items() if not k.startswith("seconds.")}}


def _iforest_scores(world: pd.DataFrame, train_until: pd.Timestamp, alerts_per_day: int, seed: int, say):
    from pyod.models.iforest import IForest

    from fraud.features.tabular import BaselineFeatures

    say("tabular features")
    f = BaselineFeatures().fit(world[world["timestamp"] < train_until])
    X = f.transform(world).to_numpy(dtype=float)
    tr = (world["timestamp"] < train_until).to_numpy()
    say("fitting IForest")
    det = IForest(n_estimators=200, random_state=seed).fit(X[tr])
    raw = det.decision_function(X)
    ref = np.sort(raw[tr])
    s = np.searchsorted(ref, raw, side="right") / len(ref)   # rank-normalised to [0, 1] on training scores
    # threshold: the budget's share of the last training week
    last = tr & (world["timestamp"] >= train_until - pd.Timedelta(days=7)).to_numpy()
    share = min(1.0, alerts_per_day * 7 / max(int(last.sum()), 1))
    thr = float(np.quantile(s[last], 1 - share))
    mu, sd = X[tr].mean(axis=0), X[tr].std(axis=0) + 1e-9
    z = (X - mu) / sd
    names = list(f.feature_names_)
    reasons = [[names[j] for j in np.argsort(-z[i])[:3]] for i in range(len(X))]
    out = pd.DataFrame({"tx_id": world["tx_id"].astype(str).to_numpy(), "score": s, "is_alert": s >= thr,
                        "reasons": reasons})
    return out, {"detector": "iforest(tabular)", "threshold": thr}


def _scored_test_window(customers, terminals, days, seed, detector, alerts_per_day, test_days, say, cache_dir):
    """Simulate and score one world; returns (model alerts of the test window, facts, info, timings).
    With ``cache_dir`` the result is stored there (Parquet + JSON, keyed by every argument) and
    reused, so that clustering variants are compared on the very same alerts."""
    import json

    from fraud.simulate import simulate

    key = f"c{customers}_t{terminals}_d{days}_s{seed}_{detector}_b{alerts_per_day}_w{test_days}"
    if cache_dir is not None:
        path = Path(cache_dir)
        pq, js = path / f"{key}.parquet", path / f"{key}.json"
        if pq.exists() and js.exists():
            say(f"seed {seed}: scored alerts from the cache {pq}")
            meta = json.loads(js.read_text())
            alerts = pd.read_parquet(pq)
            alerts["reasons"] = alerts["reasons"].map(lambda r: [str(x) for x in r] if r is not None else [])
            return alerts, meta["facts"], meta["info"], {"simulate": 0.0, "train_and_score": 0.0}
    timings = {}
    t0 = time.perf_counter()
    say(f"simulating {customers} customers, {terminals} terminals, {days} days (seed {seed})")
    world = simulate(customers=customers, terminals=terminals, days=days, seed=seed)
    timings["simulate"] = time.perf_counter() - t0
    start = world["timestamp"].min().floor("D")
    train_until = start + pd.Timedelta(days=days - test_days)

    t0 = time.perf_counter()
    info: dict
    if detector in ("auto", "pipeline"):
        try:
            scored, info = _pipeline_scores(world, train_until, alerts_per_day, seed, say)
        except ImportError as e:
            if detector == "pipeline":
                raise ConfigError(f"--detector pipeline: the training pipeline is not importable ({e})") from e
            say(f"pipeline not importable ({e}); using IForest over tabular features")
            scored, info = _iforest_scores(world, train_until, alerts_per_day, seed, say)
    elif detector == "iforest":
        scored, info = _iforest_scores(world, train_until, alerts_per_day, seed, say)
    else:
        raise ConfigError(f"--detector {detector!r}: not one of auto, pipeline, iforest")
    timings["train_and_score"] = time.perf_counter() - t0

    test = (world["timestamp"] >= train_until).to_numpy()
    flagged = test & scored["is_alert"].to_numpy(dtype=bool)
    alerts = world.loc[flagged, ["tx_id", "timestamp", "customer_id", "terminal_id", "amount", "scenario"]].copy()
    alerts["score"] = scored["score"].to_numpy()[flagged]
    alerts["reasons"] = [[str(x) for x in r] for r in scored["reasons"].to_numpy()[flagged]]
    alerts = alerts.reset_index(drop=True)
    facts = {"transactions": int(len(world)), "test_transactions": int(test.sum()),
             "test_frauds": int(((world["label"] == 1).to_numpy() & test).sum()),
             "test_ring_transactions": int(((world["scenario"] == 4).to_numpy() & test).sum())}
    info = json.loads(json.dumps(info, default=float))
    if cache_dir is not None:
        path.mkdir(parents=True, exist_ok=True)
        alerts.to_parquet(pq, index=False)
        js.write_text(json.dumps({"facts": facts, "info": info}))
    return alerts, facts, info, timings


def _test_window_context(customers, terminals, days, seed, test_days) -> pd.DataFrame:
    """The test window's transactions of the simulated world (canonical columns, no ground
    truth): the context an archive would hold. ``simulate`` is deterministic, so this is the very
    world whose alerts were scored (and cached)."""
    from fraud.simulate import simulate

    world = simulate(customers=customers, terminals=terminals, days=days, seed=seed)
    start = world["timestamp"].min().floor("D")
    test = world["timestamp"] >= start + pd.Timedelta(days=days - test_days)
    return world.loc[test, ["tx_id", "timestamp", "customer_id", "terminal_id", "amount"]].reset_index(drop=True)


def run_bench(customers: int = 2000, terminals: int = 4000, days: int = 60, seed: int = 7, detector: str = "auto",
              alerts_per_day: int = 100, test_days: int = 30, settings=None, progress: bool = True,
              top_k: int = 10, keep_db: str | None = None, cap_budget: bool = True, cache_dir: str | None = None,
              cluster_kw: dict | None = None, context: bool = False, cases: bool = False) -> dict:
    """One seed: simulate, score, store the alerts (at most ``alerts_per_day`` a day when
    ``cap_budget``), cluster them (``cluster_kw`` go to ``cluster_alerts``) and measure. With
    ``context`` the clustering gets the test window's transactions as context, and the figures
    without context are reported too under ``without_context``."""
    from fraud.review.clusters import cluster_alerts, quality
    from fraud.store import AlertStore

    if days <= test_days + 14:
        raise ConfigError(f"--days {days}: must exceed the {test_days}-day test window by at least 14 days")
    t_all = time.perf_counter()

    def say(msg):
        if progress:
            from rich.console import Console

            Console(stderr=True).log(msg)

    model_alerts, facts, info, timings = _scored_test_window(customers, terminals, days, seed, detector,
                                                             alerts_per_day, test_days, say, cache_dir)
    alerts = model_alerts
    if cap_budget and len(alerts):
        # the analysts' budget: at most alerts_per_day alerts a day, the highest scores first
        day = alerts["timestamp"].dt.floor("D")
        keep = alerts.assign(_day=day).sort_values("score", ascending=False, kind="stable") \
            .groupby("_day").head(alerts_per_day).index
        alerts = alerts.loc[sorted(keep)]
    tmp = tempfile.TemporaryDirectory(prefix="review_bench_")
    url = keep_db or f"sqlite:///{Path(tmp.name) / 'alerts.db'}"
    store = AlertStore(url)
    store.write_alerts(alerts.reset_index(drop=True), model_version=info["detector"])

    stored = store.read_alerts()
    ring_test = facts["test_ring_transactions"]
    without = None
    ctx = None
    if context:
        ctx = _test_window_context(customers, terminals, days, seed, test_days)
        t0 = time.perf_counter()
        say(f"seed {seed}: clustering {len(alerts)} alerts without context")
        base = cluster_alerts(stored, seed=seed, map_coords=False, **(cluster_kw or {}))
        timings["cluster_without_context"] = time.perf_counter() - t0
        qb = quality(base, top_k=top_k, ring_total=ring_test)
        without = {k: qb.get(k) for k in ("ring_in_top_k", "ring_share_top_k", "ring_share_top_k_of_all", "purity",
                                          "top_k_load", "top_k_lift", "n_clusters", "top_k_dominant",
                                          "largest_cluster")}
    t0 = time.perf_counter()
    say(f"seed {seed}: clustering {len(alerts)} alerts" + (f" with {len(ctx)} context transactions" if context else ""))
    res = cluster_alerts(stored, seed=seed, context=ctx, **(cluster_kw or {}))
    timings["cluster"] = time.perf_counter() - t0
    q = quality(res, top_k=top_k, ring_total=ring_test)
    stability = None
    if cases:
        t0 = time.perf_counter()
        stability = case_stability(stored, ctx, seed=seed, top_k=top_k, cluster_kw=cluster_kw,
                                   say=lambda m: say(f"seed {seed} cases: {m}"))
        timings["cases"] = time.perf_counter() - t0
    out = {
        "world": {"customers": customers, "terminals": terminals, "days": days, "seed": seed, "test_days": test_days,
                  **facts},
        **info,
        "model_alerts": int(len(model_alerts)), "cap_budget": cap_budget,
        "alerts": int(len(alerts)), "alerts_per_day": alerts_per_day,
        "alert_precision": round(float((alerts["scenario"] > 0).mean()), 4) if len(alerts) else None,
        "ring_recall_of_detector": round(q["ring_alerts"] / ring_test, 4) if ring_test else None,
        **{k: v for k, v in q.items() if k not in ("n_alerts",)},
        "cluster_meta": {k: res.meta.get(k) for k in ("n_entities", "n_components", "n_refined_components", "refine",
                                                       "resolution", "embedder", "risk", "context",
                                                       "context_links")},
        "context": bool(context), "without_context": without, "cases": stability,
        "seconds": {k: round(v, 1) for k, v in {**timings, "total": time.perf_counter() - t_all}.items()},
    }
    tmp.cleanup()
    return out


SUMMARY_KEYS = ("ring_share_top_k", "ring_share_top_k_of_all", "ring_recall_of_detector", "purity", "top_k_load",
                "top_k_lift")


def run_bench_seeds(seeds, progress: bool = True, **kw) -> dict:
    """``run_bench`` for each seed; ``summary`` holds the mean and the worst (min) of each figure
    over the seeds where it is defined (a seed whose test window has no ring alert has no share)."""
    seeds = [int(s) for s in seeds]
    if not seeds:
        raise ConfigError("--seeds: give at least one seed")
    runs = []
    for s in seeds:
        runs.append(run_bench(seed=s, progress=progress, **kw))
    summary = {}

    def stat(vals):
        return {"mean": round(float(np.mean(vals)), 4) if vals else None,
                "min": round(float(np.min(vals)), 4) if vals else None, "n": len(vals)}

    for k in SUMMARY_KEYS:
        summary[k] = stat([r[k] for r in runs if r.get(k) is not None])
    sizes = [r["largest_cluster"] for r in runs if r.get("largest_cluster") is not None]
    summary["largest_cluster"] = {"mean": round(float(np.mean(sizes)), 1) if sizes else None,
                                  "max": int(max(sizes)) if sizes else None, "n": len(sizes)}
    if runs and all(r.get("without_context") for r in runs):
        summary["without_context"] = {k: stat([r["without_context"][k] for r in runs
                                               if r["without_context"].get(k) is not None])
                                      for k in ("ring_share_top_k", "ring_share_top_k_of_all", "purity", "top_k_load",
                                                "top_k_lift")}
    if runs and all(r.get("cases") for r in runs):
        summary["cases"] = {k: stat([r["cases"][k] for r in runs if r["cases"].get(k) is not None])
                            for k in ("case_stability", "later_in_case", "later_in_case_or_linked",
                                      "ring_share_top_open_cases", "ring_share_top_open_rows", "ring_live_cases",
                                      "opaque_top_reason_share")}
    summary["seeds"] = seeds
    return {"runs": runs, "summary": summary}


# -- case stability ------------------------------------------------------------------------------
def case_stability(alerts: pd.DataFrame, context: pd.DataFrame | None = None, seed: int = 0, top_k: int = 10,
                   cluster_kw: dict | None = None, say=lambda m: None) -> dict:
    """Stream the test window's alerts day by day into a store, re-cluster after each day and sync the cases
    (``fraud.review.cases.CaseBook``), as the review app does when alerts arrive.

    * stability: among cases whose alerts are mostly fraud (ground truth) when first seen and whose fraud
      pattern continues (a later fraud alert of the same scenario on one of its customers or terminals), the
      share whose id survives to the end: most of the alerts it held when first seen still carry its id (the
      bookmarked id still opens a case holding that pattern's alerts; a case merged away, whose id only
      redirects, does not count).
    * later pattern alerts held by the case, or by it or a case linked to it: a case keeping its id by
      refusing new alerts would show here (the pattern going on in unlinked cases, duplicates in the queue).
    * live cases holding ring alerts at the end (fragmentation of the ring over the queue).
    * ring share of the top ``top_k`` open cases at the end: ring alerts in them / ring alerts; the queue's
      first ``top_k`` entries (a case with the related cases listed under it, what a page shows and an analyst
      works together), and, as a check, its first ``top_k`` rows (each related case counted apart).
    * opaque top reasons: alerts whose first shown reason is an embedding dimension or a no-signal reason.
    """
    from fraud.review.cases import CaseBook
    from fraud.review.clusters import cluster_alerts
    from fraud.review.queue import entries, rows, strength
    from fraud.review.reasons import top_reason_is_opaque
    from fraud.store import AlertStore

    a = alerts.sort_values("timestamp").reset_index(drop=True)
    a["tx_id"] = a["tx_id"].astype(str)
    tmp = tempfile.TemporaryDirectory(prefix="case_bench_")
    store = AlertStore(f"sqlite:///{Path(tmp.name) / 'alerts.db'}")
    book = CaseBook(store)
    days = sorted(a["timestamp"].dt.floor("D").unique())
    first: dict = {}                  # case id -> (tx_ids when first seen, day index)
    res = None
    for i, d in enumerate(days):
        end = d + pd.Timedelta(days=1)
        store.write_alerts(a[(a["timestamp"] >= d) & (a["timestamp"] < end)])
        ctx = None if context is None else context[context["timestamp"] < end]
        res = cluster_alerts(store.read_alerts(), seed=seed, context=ctx, map_coords=False, **(cluster_kw or {}))
        book.sync(res)
        m = book.members()
        for cid, part in m.groupby("case_id"):
            if cid not in first:
                first[cid] = (set(part["tx_id"]), i)
        say(f"day {i + 1}/{len(days)}: {len(res.alerts)} alerts, {len(res.clusters)} clusters, {len(first)} cases")
    m = book.members()
    owner = dict(zip(m["tx_id"], m["case_id"]))
    frame = book.frame()
    cont = _continuing(first, a, days, owner, _links(book, frame))
    st = strength(res.alerts, context)
    open_rows = [r for r in rows(book, res, st, 100) if r.status in ("open", "in_progress")]
    top_ids = {r.case_id for g in entries(open_rows)[:top_k] for r in g}
    top_rows = {r.case_id for r in open_rows[:top_k]}
    live = set(frame.loc[frame["status"].isin(["open", "in_progress"]), "case_id"])
    ring = a[a["scenario"] == 4]
    in_top = int(sum(owner.get(t) in top_ids for t in ring["tx_id"]))
    in_top_rows = int(sum(owner.get(t) in top_rows for t in ring["tx_id"]))
    opaque = int(sum(top_reason_is_opaque(r) for r in a["reasons"]))
    tmp.cleanup()
    eligible, survived, later, in_case, in_linked = cont
    return {"days": len(days), "cases": len(first), "cases_fraud_continuing": eligible,
            "cases_surviving": int(survived), "case_stability": round(survived / eligible, 4) if eligible else None,
            "later_pattern_alerts": later,
            "later_in_case": round(in_case / later, 4) if later else None,
            "later_in_case_or_linked": round(in_linked / later, 4) if later else None,
            "ring_alerts": int(len(ring)), "ring_in_top_open_cases": in_top,
            "ring_share_top_open_cases": round(in_top / len(ring), 4) if len(ring) else None,
            "ring_share_top_open_rows": round(in_top_rows / len(ring), 4) if len(ring) else None,
            "ring_live_cases": len({owner[t] for t in ring["tx_id"] if owner.get(t) in live}),
            "live_cases": len(live), "merged": int((frame["status"] == "merged").sum()),
            "related": int((frame["link_kind"] == "related").sum()),
            "split": int((frame["link_kind"] == "split_from").sum()),
            "opaque_top_reasons": opaque, "opaque_top_reason_share": round(opaque / max(len(a), 1), 4)}


def _links(book, frame: pd.DataFrame) -> dict:
    """Case id -> the cases linked to it either way (linked_to of any kind, and "related" history events)."""
    import json

    import sqlalchemy as sa

    from fraud.review.cases import case_events

    out: dict = {}
    pairs = [(r["case_id"], r["linked_to"]) for r in frame.to_dict("records") if r["linked_to"]]
    with book.engine.connect() as conn:
        q = sa.select(case_events.c.case_id, case_events.c.detail).where(case_events.c.action == "related")
        pairs += [(c, json.loads(d)["case"]) for c, d in conn.execute(q)]
    for x, y in pairs:
        out.setdefault(x, set()).add(y)
        out.setdefault(y, set()).add(x)
    return out


def _continuing(first: dict, a: pd.DataFrame, days: list, owner: dict, links: dict) -> tuple:
    """Over the cases mostly fraud when first seen whose fraud pattern continues (a later fraud alert of the
    same scenario on one of their customers or terminals): (cases, cases whose id still holds most of the
    alerts it had when first seen, later pattern alerts, of them held by the case, by the case or a case
    linked to it). The first two give the stability; the last three show whether a case that keeps its id
    also keeps up with its pattern (or whether the pattern went on in unlinked cases)."""
    scen = dict(zip(a["tx_id"], a["scenario"].astype(int)))
    ents = a.set_index("tx_id")[["customer_id", "terminal_id"]]
    frauds = a[a["scenario"] > 0]
    eligible = survived = n_later = in_case = in_linked = 0
    for cid, (txs, day_i) in first.items():
        sc = pd.Series([scen[t] for t in txs])
        if (sc > 0).mean() <= 0.5:
            continue
        main = int(sc[sc > 0].mode().iloc[0])
        cust, term = set(ents.loc[list(txs), "customer_id"]), set(ents.loc[list(txs), "terminal_id"])
        later = frauds[(frauds["timestamp"] >= days[day_i] + pd.Timedelta(days=1)) & (frauds["scenario"] == main)
                       & (frauds["customer_id"].isin(cust) | frauds["terminal_id"].isin(term))]
        if not len(later):
            continue
        eligible += 1
        survived += sum(owner.get(t) == cid for t in txs) > len(txs) / 2
        held = [owner.get(t) for t in later["tx_id"]]
        n_later += len(held)
        in_case += sum(h == cid for h in held)
        in_linked += sum(h == cid or h in links.get(cid, ()) for h in held)
    return eligible, survived, n_later, in_case, in_linked


def _seed_columns(context: bool) -> list:
    """(title, getter) of each column of the per-seed table."""
    cols = [("seed", lambda r: r["world"]["seed"]), ("ring tx", lambda r: r["world"]["test_ring_transactions"]),
            ("ring alerted", lambda r: r["ring_alerts"]), ("recall", lambda r: r["ring_recall_of_detector"]),
            ("ring in top 10", lambda r: r["ring_in_top_k"]),
            ("share (alerted)", lambda r: r["ring_share_top_k"]),
            ("share (all ring)", lambda r: r["ring_share_top_k_of_all"]), ("purity", lambda r: r["purity"]),
            ("top-10 load", lambda r: r["top_k_load"]), ("lift", lambda r: r["top_k_lift"]),
            ("alerts", lambda r: r["alerts"]), ("clusters", lambda r: r["n_clusters"])]
    if context:
        cols[4:4] = [("share no ctx", lambda r: r["without_context"]["ring_share_top_k"]),
                     ("purity no ctx", lambda r: r["without_context"]["purity"]),
                     ("load no ctx", lambda r: r["without_context"]["top_k_load"])]
    return cols


def seeds_table(out: dict, *, refine: str, risk: str, context: bool, cap_budget: bool, budget: int):
    """The result of :func:`run_bench_seeds` as a rich table: one row per seed, then the mean and the min."""
    from rich.table import Table

    cols = _seed_columns(context)
    t = Table(title=f"bench review: {refine} refinement, {risk} risk, {'with' if context else 'no'} context, "
                    f"{'capped' if cap_budget else 'uncapped'} budget {budget}/day")
    for name, _ in cols:
        t.add_column(name, justify="right")
    for r in out["runs"]:
        t.add_row(*[str(f(r)) for _, f in cols])
    sm = out["summary"]
    for stat in ("mean", "min"):
        extra = []
        if context:
            wc = sm["without_context"]
            extra = [str(wc["ring_share_top_k"][stat]), str(wc["purity"][stat]), str(wc["top_k_load"][stat])]
        t.add_row(stat, "", "", str(sm["ring_recall_of_detector"][stat]), *extra, "",
                  str(sm["ring_share_top_k"][stat]), str(sm["ring_share_top_k_of_all"][stat]),
                  str(sm["purity"][stat]), str(sm["top_k_load"][stat]), str(sm["top_k_lift"][stat]), "", "")
    return t


def cases_lines(out: dict) -> list[str]:
    """The case-book figures of :func:`run_bench_seeds` (``cases=True``) per seed and summarised; [] without."""
    sm = out["summary"]
    if "cases" not in sm:
        return []
    lines = []
    for r in out["runs"]:
        c = r["cases"]
        lines.append(f"seed {r['world']['seed']}: cases {c['cases']}, fraud cases whose pattern continues "
                     f"{c['cases_fraud_continuing']}, ids kept {c['cases_surviving']} (stability "
                     f"{c['case_stability']}), later pattern alerts {c['later_pattern_alerts']} in the case "
                     f"{c['later_in_case']} or linked {c['later_in_case_or_linked']}, ring share top-10 open cases "
                     f"{c['ring_share_top_open_cases']}, live cases {c['live_cases']} (holding ring alerts "
                     f"{c['ring_live_cases']}), related {c.get('related', 0)}, merged {c['merged']}, split "
                     f"{c['split']}, opaque top reasons {c['opaque_top_reasons']}")
    return lines + [f"{k}: mean {v['mean']} min {v['min']} over {v['n']} seed(s)" for k, v in sm["cases"].items()]
