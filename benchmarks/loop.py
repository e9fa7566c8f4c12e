"""``fraud bench loop``: the closed loop (scoring, alert budget, analyst, weekly retrain, hot reload) over weeks.

A ``fraud.worlds`` world in which new fraud patterns (an aged-account ring and at least one more) start after the
training window is run day by day, in process: the day's events are scored by ``streaming.batch.score`` with the
online state carried over (the Kafka transport around it is tested in tests/integration/test_stream*.py); the
``budget`` cards with the highest score of the day are alerted; a simulated analyst clusters the day's alerts into
cases (``fraud.review.clusters.cluster_alerts``), works the ``cases_per_day`` riskiest and decides each transaction
by the ground truth; decisions become labels (the latest per tx_id). Every ``retrain_every_days`` a challenger is
trained on everything seen so far (``fraud.training.train``) and goes through ``fraud retrain``'s promotion gate
(``fraud.training.gate``, without the MLflow registry); a promoted bundle scores from the next day on, its state
warmed as the stream scorer warms a swapped model. Arms (:func:`run_arm`): ``frozen`` (never retrained),
``no_labels`` (retrained with the labels of the initial window only; with no labelled window to gate on it is
promoted by schedule), ``full`` (analyst labels, gated). Beside them :func:`oracle_arm`, the ceiling of recall at
the budget (``benchmarks.oracle.budget_oracle``: every fraud first; per new pattern, that pattern first).
``BenchConfig.tactics`` adds adaptive fraudsters (``fraud.evasion.inject``) from the onset to the end of the world:
new patterns built to hide from the initial features, reported and bounded like the world's own.
``LoopConfig.unreviewed``: a loop event no analyst decided is "genuine" (0, not reported), "unknown" (-1, which
the supervised head, the baseline guard and the gate skip) or "reliable" (0 when the model that scored it live put
it below the ``reliable_quantile`` of its own live scores, else -1: positive-unlabelled learning's reliable
negatives); ``LoopConfig.explore``: cases a day the analyst takes from the cards the budget left out, ranked by the
label-free detectors alone; ``LoopConfig.chargebacks``: the share of fraud cards whose holders dispute the charges,
each fraud reaching the retrains ``chargeback_days`` after it happened (labels from outside the alert budget);
``LoopConfig.expose``: alerts and cases a day kept for the cards exposed at the terminals of the analyst's
confirmed frauds that day (``fraud.review.exposure``: a compromised terminal's other visitors).
Figures and definitions: docs/benchmarks.md.
"""
from __future__ import annotations

import copy
import inspect
import time
import warnings
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd

from fraud.errors import ConfigError
from fraud.training.data import UNKNOWN

DAY = pd.Timedelta(days=1)
CANONICAL = ("tx_id", "timestamp", "customer_id", "terminal_id", "amount", "label")
ARMS = ("frozen", "no_labels", "full")
#: label policies for loop events no analyst decided: 0 ("not reported", as fraud retrain reads an archive) or
#: fraud.training.data.UNKNOWN (-1: skipped by the supervised head, the baseline guard and the promotion gate)
UNREVIEWED = {"genuine": 0, "unknown": UNKNOWN}
#: ... and "reliable": 0 below the scoring model's live-score quantile (a reliable negative), UNKNOWN above it
POLICIES = (*UNREVIEWED, "reliable")
FRESH_PARAM = "refresh_lr"  # the graph featurizer's rate of embedding updates from the stream (0 = frozen vectors)
#: a TrainConfig that retrains in seconds on a small world (all featurizers, two fast detectors, a small head)
FAST_TRAIN = {"unsupervised": ("iforest", "hbos"), "ensemble_params": {"supervised_params": {"n_estimators": 100}},
              "feedback_delay_days": 1, "warm_state_days": 37}


@dataclass
class LoopConfig:
    budget: int = 10  # cards alerted a day
    cases_per_day: int = 5  # cases the analyst decides a day
    retrain_every_days: int = 7
    history_days: int | None = 42  # a retrain reads the last days of events (the archive's retention); None = all
    train_kw: dict = field(default_factory=lambda: copy.deepcopy(FAST_TRAIN))  # fraud.training.TrainConfig kwargs
    fresh_embeddings: bool = False
    fresh_lr: float = 0.05  # the graph featurizer's refresh_lr when fresh_embeddings is on
    seed: int = 0
    analyst: str = "cases"  # "cases": the top cases of fraud.review's clustering; "cards": the top alerted cards
    batch_rows: int = 1000  # events per scoring micro-batch
    ap_margin: float = 0.01  # the promotion gate's AP margin (fraud retrain --ap-margin)
    unreviewed: str = "genuine"  # a loop event no analyst decided: "genuine" (0), "unknown" (-1) or "reliable"
    reliable_quantile: float = 0.97  # "reliable": genuine below this quantile of the scoring model's live scores
    explore: int = 0  # of the cases_per_day, those taken from the label-free ranking of the cards not alerted
    chargebacks: float = 0.0  # share of fraud cards whose holders dispute their fraud (0: the analyst's labels only)
    chargeback_days: int = 7  # a disputed fraud is known this many days after it happened (the handbook's delay)
    #: which labels reach the live scorer's features: "events" (every event carries its true label, as a replayed
    #: simulation; used after the features' delay) or "sent" (events carry none; the full arm's analyst decisions
    #: and the disputes are sent back at the end of each day, as fraud send-labels does)
    live_labels: str = "events"
    #: of the budget and of the cases_per_day, the cards a day kept for those exposed at the terminals of the day's
    #: confirmed frauds (fraud.review.exposure); slots no exposed card takes go to the next cards by score
    expose: int = 0

    def check(self) -> None:
        for name in ("budget", "cases_per_day", "retrain_every_days", "batch_rows"):
            v = getattr(self, name)
            if not isinstance(v, (int, np.integer)) or v < 1:
                raise ConfigError(f"bench loop: {name}={v!r} must be an integer >= 1")
        if self.history_days is not None and (not isinstance(self.history_days, (int, np.integer))
                                              or self.history_days < 21):
            raise ConfigError(f"bench loop: history_days={self.history_days!r} must be None or an integer >= 21")
        if self.analyst not in ("cases", "cards"):
            raise ConfigError(f"bench loop: analyst={self.analyst!r} must be 'cases' or 'cards'")
        if not isinstance(self.explore, (int, np.integer)) or not 0 <= self.explore <= self.cases_per_day:
            raise ConfigError(f"bench loop: explore={self.explore!r} must be an integer in [0, cases_per_day="
                              f"{self.cases_per_day}]")
        e = self.expose
        if isinstance(e, bool) or not isinstance(e, (int, np.integer)) or e < 0 or e and not e < min(
                self.budget, self.cases_per_day - self.explore):
            raise ConfigError(f"bench loop: expose={e!r} must be an integer >= 0, below the budget ({self.budget}) "
                              f"and below the cases left after exploration ({self.cases_per_day - self.explore}): "
                              f"exposure starts from the frauds the analyst's other cases confirm")
        if self.live_labels not in ("events", "sent"):
            raise ConfigError(f"bench loop: live_labels={self.live_labels!r} must be 'events' or 'sent'")
        if self.unreviewed not in POLICIES:
            raise ConfigError(f"bench loop: unreviewed={self.unreviewed!r} must be one of {', '.join(POLICIES)}")
        c = self.chargebacks
        if isinstance(c, bool) or not isinstance(c, (int, float, np.floating)) or not 0 <= c <= 1:
            raise ConfigError(f"bench loop: chargebacks={c!r} must be a number in [0, 1]")
        d = self.chargeback_days
        if isinstance(d, bool) or not isinstance(d, (int, np.integer)) or d < 0:
            raise ConfigError(f"bench loop: chargeback_days={d!r} must be an integer >= 0")
        q = self.reliable_quantile
        if isinstance(q, bool) or not isinstance(q, (int, float, np.floating)) or not 0 < q < 1:
            raise ConfigError(f"bench loop: reliable_quantile={q!r} must be a number in (0, 1)")


def fresh_available() -> bool:
    """Whether the graph featurizer has the fresh-embeddings parameter (:data:`FRESH_PARAM`)."""
    from fraud.features.graph import GraphFeatures

    return FRESH_PARAM in inspect.signature(GraphFeatures.__init__).parameters


def train_config(cfg: LoopConfig):
    """The TrainConfig of ``cfg.train_kw`` with the graph featurizer's fresh embeddings on (``fresh_lr``) or off."""
    from fraud.training import TrainConfig

    kw = copy.deepcopy(cfg.train_kw)
    kw.setdefault("seed", cfg.seed)
    if fresh_available():
        params = kw.setdefault("featurizer_params", {})
        params["graph"] = {**params.get("graph", {}), FRESH_PARAM: float(cfg.fresh_lr) if cfg.fresh_embeddings else 0.0}
    elif cfg.fresh_embeddings:
        raise ConfigError(f"bench loop: fresh_embeddings=True but fraud.features.graph.GraphFeatures has no "
                          f"{FRESH_PARAM!r} parameter in this checkout")
    return TrainConfig(**kw)


def _train(df: pd.DataFrame, until: pd.Timestamp, cfg: LoopConfig):
    from fraud.training import train

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return train(df[list(CANONICAL)].reset_index(drop=True), train_config(cfg), train_until=until)


def initial_bundle(df: pd.DataFrame, train_until: pd.Timestamp, cfg: LoopConfig):
    """``fraud train`` on the labelled history before ``train_until``: the bundle every arm starts from."""
    b = _train(df[df["timestamp"] < train_until], train_until, cfg).bundle
    b.version = "1"
    return b


# -- one day ------------------------------------------------------------------------------------------
def score_day(bundle, state, rows: pd.DataFrame, batch_rows: int, label_free: bool = False) -> pd.DataFrame:
    """The day's events scored as the stream scorer scores them (``streaming.batch.score``, one partition, the state
    carried over), in micro-batches of ``batch_rows``; ``label_free``: also the column ``label_free``
    (:func:`label_free_scorer` of the features the scorer computed, read through the bundle's ``observer`` hook)."""
    from streaming.batch import score

    out, free, observer = [], [], bundle.observer
    if label_free:
        scorer = label_free_scorer(bundle)
        bundle.observer = lambda X, s, ts: free.append(scorer(X))
    try:
        for i in range(0, len(rows), batch_rows):
            part = rows.iloc[i:i + batch_rows].reset_index(drop=True)
            n = len(part)
            res, _, _ = score(bundle, str(bundle.version), {0: state}, part, np.zeros(n, np.int32),
                              np.arange(i, i + n, dtype=np.int64), "loop")
            out.append(res)
    finally:
        bundle.observer = observer
    res = pd.concat(out, ignore_index=True) if out else pd.DataFrame()
    return res.assign(label_free=np.concatenate(free)) if label_free and out else res


def label_free_scorer(bundle):
    """X (the bundle's features) -> the mean normalised score of its ensemble's unsupervised detectors: a ranking
    that learnt no label (what exploration reviews; the bundle's score fuses it with the supervised head)."""
    from fraud.detectors.ensemble import Ensemble

    det = bundle.detector
    while not isinstance(det, Ensemble):  # alarms wrap it as ``base``, the baseline guard's blend as ``pipeline``
        inner = getattr(det, "base", None) or getattr(det, "pipeline", None)
        if inner is None:
            raise ConfigError(f"bench loop: explore needs an Ensemble inside the bundle's detector "
                              f"{type(bundle.detector).__name__}; found {type(det).__name__}")
        det = inner
    names = list(bundle.feature_names)

    def score(X) -> np.ndarray:
        comps = det.detector_scores(pd.DataFrame(np.asarray(X, dtype=np.float64), columns=names))
        return comps.drop(columns=["supervised"], errors="ignore").mean(axis=1).to_numpy()

    return score


def ranked_cards(scored: pd.DataFrame) -> pd.Index:
    """The cards of ``scored``, highest score first (ties in card order)."""
    return scored.groupby("customer_id", sort=True)["score"].max().sort_values(ascending=False, kind="stable").index


def budget_alerts(scored: pd.DataFrame, budget: int) -> np.ndarray:
    """Mask of the day's events on the ``budget`` cards with the highest score of the day (an alert is a card-day,
    as ``fraud.evaluate.recall_at_budget`` counts it)."""
    return scored["customer_id"].isin(ranked_cards(scored)[:budget]).to_numpy()


def analyst(alerts: pd.DataFrame, truth: pd.Series, cfg: LoopConfig, explore: pd.DataFrame | None = None
            ) -> pd.DataFrame:
    """The analyst's decisions on the day's alerts (tx_id, label): the ``cases_per_day`` riskiest cases (clusters
    of ``fraud.review.clusters``; or cards with ``analyst="cards"``), every transaction decided by ``truth``.
    With ``cfg.explore`` > 0, that many of the cases come from ``explore`` (:func:`exploration_alerts`, ranked by
    their ``score`` column) instead; ``cfg.expose`` cases are kept for :func:`exposure_review`."""
    k = cfg.explore if explore is not None else 0
    main = _top_cases(alerts, cfg.cases_per_day - k - cfg.expose, cfg)
    extra = _top_cases(explore, k, cfg) if k else []
    tx = pd.Index(pd.Series([*main, *extra], dtype=str))
    return pd.DataFrame({"tx_id": tx.to_numpy(), "label": truth.reindex(tx).to_numpy().astype(np.int8),
                         "explored": np.arange(len(tx)) >= len(main), "exposed": False})


def exposure_review(scored: pd.DataFrame, alert: np.ndarray, dec: pd.DataFrame, truth: pd.Series, cfg: LoopConfig
                    ) -> tuple[np.ndarray, pd.DataFrame]:
    """The day's alerts and decisions once the ``cfg.expose`` kept slots are filled: first the cards exposed at the
    terminals of the day's confirmed frauds (``fraud.review.exposure.exposed_cards`` over the day's events: the
    same day only), each such card's transactions of the day decided by ``truth``; the slots left go to the next
    cards by score, and the analyst works as many more cases among the alerts not decided yet (same work a day)."""
    from fraud.review.exposure import exposed_cards

    by_tx = scored.set_index(scored["tx_id"].astype(str))
    fraud_tx = dec.loc[dec["label"].to_numpy() == 1, "tx_id"].astype(str)
    card = scored["customer_id"].astype(str)
    seen = set(card[alert]) | set(by_tx.loc[by_tx.index.intersection(dec["tx_id"].astype(str)), "customer_id"]
                                  .astype(str))                          # alerted, or decided (explored) already
    ex = exposed_cards(scored, by_tx.loc[by_tx.index.intersection(fraud_tx)], window=DAY, exclude=seen)
    exposed = set(ex["customer_id"][:cfg.expose])
    fill = [c for c in ranked_cards(scored.assign(customer_id=card)) if c not in seen and c not in exposed]
    fill = fill[:cfg.expose - len(exposed)]
    alert = alert | card.isin(exposed | set(fill)).to_numpy()
    is_exposed = card.isin(exposed).to_numpy()
    reviewed = scored.loc[is_exposed, "tx_id"].astype(str)
    undecided = scored.loc[alert & ~is_exposed
                           & ~scored["tx_id"].astype(str).isin(dec["tx_id"].astype(str)).to_numpy()]
    more = pd.Index(pd.Series(_top_cases(undecided, cfg.expose - len(exposed), cfg), dtype=str))
    parts = [pd.DataFrame({"tx_id": tx.to_numpy(), "label": truth.reindex(tx).to_numpy().astype(np.int8),
                           "explored": False, "exposed": flag}) for tx, flag in ((pd.Index(reviewed), True),
                                                                                 (more, False))]
    return alert, pd.concat([dec, *parts], ignore_index=True)


def _top_cases(alerts: pd.DataFrame, n: int, cfg: LoopConfig) -> list:
    """tx_ids of the ``n`` riskiest cases (or cards, ``analyst="cards"``) of ``alerts`` by their ``score``."""
    if not len(alerts) or n < 1:
        return []
    if cfg.analyst == "cards":
        return alerts.loc[alerts["customer_id"].isin(ranked_cards(alerts)[:n]), "tx_id"].tolist()
    from fraud.review.clusters import cluster_alerts

    cols = ["tx_id", "timestamp", "customer_id", "terminal_id", "amount", "score", "reasons"]
    res = cluster_alerts(alerts[cols], refine="louvain", map_coords=False, seed=cfg.seed)
    return [t for c in res.clusters[:n] for t in c.tx_ids]


def exploration_alerts(scored: pd.DataFrame, alert: np.ndarray, budget: int) -> pd.DataFrame:
    """The day's events of the ``budget`` cards the label-free ranking (``label_free``) puts first among those the
    budget alerts (``alert``) left out, with ``label_free`` as their ``score``: where exploration looks."""
    rest = scored.loc[~scored["customer_id"].isin(scored.loc[alert, "customer_id"])]
    ranked = rest.assign(score=rest["label_free"].to_numpy())
    return ranked.loc[budget_alerts(ranked, budget)] if len(ranked) else ranked


# -- retrain and hot reload ---------------------------------------------------------------------------
def retrain(champion, seen: pd.DataFrame, labels: pd.DataFrame | None, until: pd.Timestamp, cfg: LoopConfig,
            gated: bool) -> tuple[object, dict]:
    """A challenger trained on ``seen`` (its labels overridden by ``labels``), through ``fraud retrain``'s promotion
    gate when ``gated`` (``fraud.training.gate``: the most recent labelled window neither trained on). Returns (the
    challenger, or None when the champion is kept; the decision)."""
    from fraud.training.gate import gate_decision

    df = with_labels(seen, labels)
    res = _train(df, until, cfg)
    (start, end), ch, cl, promote, reason = gate_decision(champion, champion.version, res, df, cfg.ap_margin,
                                                          lambda m: None)
    if not gated:
        promote, reason = True, f"promoted by schedule (no analyst labels to gate on; the gate said: {reason})"
    lab = df["label"].to_numpy()
    out = {"until": str(until), "promote": bool(promote), "reason": reason, "window": [str(start), str(end)],
           "champion_ap": ch.get("ap"), "challenger_ap": cl.get("ap"), "gate_n_labelled": ch.get("n"),
           "labels": {"fraud": int((lab == 1).sum()), "genuine": int((lab == 0).sum()),
                      "unknown": int((lab == UNREVIEWED["unknown"]).sum())}}
    if not promote:
        return None, out
    res.bundle.version = str(int(champion.version) + 1)
    return res.bundle, out


def hot_state(bundle, seen: pd.DataFrame):
    """The swapped-in model's state, as ``streaming.partitions.warm_states`` builds it: its warm state as of its
    training cutoff, then the events seen after that cutoff absorbed through the online path."""
    from streaming.partitions import absorb

    st = bundle.warm_state()
    since = st.last_timestamp
    absorb(bundle, st, seen if since is None else seen[seen["timestamp"] > since])
    return st


# -- the arm ------------------------------------------------------------------------------------------
def _check(df: pd.DataFrame, train_until, weeks: int, arm: str) -> pd.DataFrame:
    if arm not in ARMS:
        raise ConfigError(f"bench loop: arm {arm!r} is not one of {', '.join(ARMS)}")
    missing = [c for c in (*CANONICAL, "scenario") if c not in df.columns]
    if missing:
        raise ConfigError(f"bench loop: the frame lacks column(s) {missing}; present: {list(df.columns)}")
    if not isinstance(weeks, (int, np.integer)) or weeks < 1:
        raise ConfigError(f"bench loop: weeks={weeks!r} must be an integer >= 1")
    df = df.sort_values("timestamp", kind="stable").reset_index(drop=True)
    if not (df["timestamp"] < train_until).any():
        raise ConfigError(f"bench loop: no events before train_until {train_until}")
    end = train_until + 7 * weeks * DAY
    if df["timestamp"].iloc[-1] < end - DAY:
        raise ConfigError(f"bench loop: the frame ends {df['timestamp'].iloc[-1]}, before the last loop day "
                          f"{end - DAY} ({weeks} weeks after {train_until})")
    return df[df["timestamp"] < end].reset_index(drop=True)


def run_arm(df: pd.DataFrame, train_until: pd.Timestamp, weeks: int, arm: str, cfg: LoopConfig,
            say=lambda s: None, initial=None, keep_frame: bool = False, rerank=None) -> dict:
    """Run one arm for ``weeks`` weeks from ``train_until`` on the canonical frame ``df`` (with ``scenario``).
    ``initial``: the starting bundle (default: trained here on the rows before ``train_until``; it is not changed);
    ``keep_frame``: add the scored loop events as ``"frame"`` (not JSON); ``rerank``: (the day's rows, their
    scores) -> the scores its card-days are alerted and reviewed by (``benchmarks.compromise``; None: the model's).
    Returns {"arm", "weeks": [{week, recall, ap, precision, by_scenario, model_version}], "patterns": first-alert
    and 50 %-recall days per scenario starting in the loop, "retrains": gate decisions, "days", "seconds"}."""
    cfg.check()
    t0 = time.perf_counter()
    train_until = pd.Timestamp(train_until)
    df = _check(df, train_until, weeks, arm)
    truth = pd.Series(df["label"].to_numpy(np.int8), index=df["tx_id"].astype(str).to_numpy())
    scenario = pd.Series(df["scenario"].to_numpy(), index=truth.index)
    bundle = initial if initial is not None else initial_bundle(df, train_until, cfg)
    hist = df[df["timestamp"] < train_until]
    state = hot_state(bundle, hist)
    decided, retrains, days = [], [], []
    parts = []
    sent = cfg.live_labels == "sent"
    cols = [c for c in CANONICAL if c != "label"] if sent else list(CANONICAL)
    for d in range(7 * weeks):
        lo = train_until + d * DAY
        rows = df[(df["timestamp"] >= lo) & (df["timestamp"] < lo + DAY)].reset_index(drop=True)
        with np.errstate(over="ignore"):  # the head's sigmoid overflows to exactly 0 or 1 on extreme margins
            scored = score_day(bundle, state, rows[cols], cfg.batch_rows, label_free=cfg.explore > 0)
        if rerank is not None and len(scored):
            scored["score"] = rerank(rows, scored["score"].to_numpy(float))
        alert = budget_alerts(scored, cfg.budget - cfg.expose) if len(scored) else np.zeros(0, bool)
        explore = exploration_alerts(scored, alert, cfg.budget) if cfg.explore and len(scored) else None
        dec = analyst(scored.loc[alert], truth, cfg, explore)
        if cfg.expose and len(scored):
            alert, dec = exposure_review(scored, alert, dec, truth, cfg)
        decided.append(dec)
        if sent:  # the day's decisions (full arm) and the disputes due by its end reach the scorer's state
            bundle.add_labels(state, labelled_rows(df, [dec] if arm == "full" else [],
                                                   _due_disputes(df, train_until, lo + DAY, cfg)))
        parts.append(pd.DataFrame({"tx_id": rows["tx_id"].astype(str), "timestamp": rows["timestamp"],
                                   "customer_id": rows["customer_id"].astype(str), "label": rows["label"],
                                   "scenario": rows["scenario"], "score": scored["score"].to_numpy(float),
                                   "alerted": alert, "day": d, "model_version": str(bundle.version)}))
        days.append({"day": d, "n": len(rows), "alerted_cards": int(scored.loc[alert, "customer_id"].nunique()),
                     "decided": len(dec), "fraud_decided": int(dec["label"].sum()),
                     "explored": int(dec["explored"].sum()),
                     "fraud_explored": int(dec.loc[dec["explored"], "label"].sum()),
                     "exposed": int(dec["exposed"].sum()), "fraud_exposed": int(dec.loc[dec["exposed"], "label"].sum()),
                     "fraud_decided_by_scenario": _by_scenario(dec, scenario),
                     "model_version": str(bundle.version)})
        if arm != "frozen" and (d + 1) % cfg.retrain_every_days == 0 and d + 1 < 7 * weeks:
            live = pd.concat(parts, ignore_index=True) if cfg.unreviewed == "reliable" else None
            new, seen, decision = _weekly_retrain(bundle, df, lo + DAY, train_until, decided if arm == "full" else [],
                                                  cfg, gated=arm == "full", live=live)
            retrains.append({**decision, "day": d})
            say(f"  {arm} day {d}: {decision['reason']}")
            if new is not None:
                bundle, state = new, hot_state(new, seen if not sent else known_labels(
                    seen, train_until, decided if arm == "full" else [], chargebacks(seen, train_until, lo + DAY, cfg)))
    frame = pd.concat(parts, ignore_index=True)
    known = set(hist.loc[hist["label"] == 1, "scenario"].astype(int))
    out = {"arm": arm, "weeks": weekly(frame), "patterns": pattern_timing(frame, known), "retrains": retrains,
           "days": days, "final_version": str(bundle.version), "seconds": round(time.perf_counter() - t0, 1)}
    return {**out, "frame": frame} if keep_frame else out


def _by_scenario(dec: pd.DataFrame, scenario: pd.Series) -> dict:
    """The analyst's fraud decisions of a day per scenario id (what the full loop's retrains learn from)."""
    sc = scenario.reindex(dec.loc[dec["label"].to_numpy() == 1, "tx_id"]).to_numpy()
    ids, n = np.unique(sc.astype(int), return_counts=True)
    return {int(i): int(k) for i, k in zip(ids, n)}


def _weekly_retrain(bundle, df: pd.DataFrame, until, train_until, decided: list, cfg: LoopConfig, gated: bool,
                    live: pd.DataFrame | None = None):
    """(the promoted bundle or None, the events it read, the decision) of a retrain at ``until`` on the last
    ``history_days`` of events with the labels ``loop_labels`` gives (``live``: the loop events scored so far, as
    run_arm keeps them, for the "reliable" policy)."""
    seen = df[df["timestamp"] < until]
    if cfg.history_days:
        seen = seen[seen["timestamp"] >= until - cfg.history_days * DAY]
    reliable, cuts = reliable_negatives(live, cfg.reliable_quantile) if cfg.unreviewed == "reliable" else (None, {})
    disputed = chargebacks(seen, train_until, until, cfg)
    labels = loop_labels(seen, train_until, [disputed, *decided], cfg.unreviewed, reliable)
    new, decision = retrain(bundle, seen, labels, until, cfg, gated=gated)
    decision["loop_frauds_labelled"] = int(sum(int(d["label"].sum()) for d in decided))  # the analyst's decisions
    decision["chargebacks"] = len(disputed)
    decision["unreviewed_frauds"] = unreviewed_frauds(seen, labels, train_until)
    if cuts:
        decision["reliable_cuts"] = cuts
    return new, seen, decision


def _due_disputes(df: pd.DataFrame, train_until, end, cfg: LoopConfig) -> pd.DataFrame:
    """The disputes that become known during the day ending at ``end`` (none without chargebacks)."""
    if not cfg.chargebacks:
        return pd.DataFrame({"tx_id": pd.Series([], dtype=str), "label": pd.Series([], dtype=np.int8)})
    day = df[(df["timestamp"] >= end - (cfg.chargeback_days + 1) * DAY) & (df["timestamp"] <= end)]
    now = chargebacks(day, train_until, end, cfg)
    if end - DAY <= train_until:  # the loop's first day: nothing was sent before it
        return now
    return now[~now["tx_id"].isin(chargebacks(day, train_until, end - DAY, cfg)["tx_id"])]


def labelled_rows(df: pd.DataFrame, decided: list, disputed: pd.DataFrame) -> pd.DataFrame:
    """The transactions of ``decided`` (the analyst's, the latest per tx_id) and ``disputed`` with those labels:
    what ``fraud send-labels`` sends to the scorer."""
    lab = _latest(decided, disputed)
    tx = df.loc[df["tx_id"].astype(str).isin(lab.index), [c for c in CANONICAL if c != "label"]]
    return tx.assign(label=tx["tx_id"].astype(str).map(lab).astype(np.int8))


def _latest(decided: list, disputed: pd.DataFrame) -> pd.Series:
    """tx_id -> label of the disputes then the analyst's decisions, the last per tx_id winning."""
    lab = pd.concat([disputed, *decided], ignore_index=True).drop_duplicates("tx_id", keep="last")
    return pd.Series(lab["label"].to_numpy(), index=lab["tx_id"].astype(str).to_numpy())


def known_labels(seen: pd.DataFrame, train_until, decided: list, disputed: pd.DataFrame) -> pd.DataFrame:
    """``seen`` with the labels the scorer knows (``live_labels="sent"``): the initial file's before
    ``train_until``, then the analyst's decisions and the disputes; -1 (unknown) elsewhere."""
    got = seen["tx_id"].astype(str).map(_latest(decided, disputed))
    before = (seen["timestamp"] < train_until).to_numpy()
    out = np.where(before, seen["label"].to_numpy(), got.fillna(UNKNOWN).to_numpy()).astype(np.int8)
    return seen.assign(label=out)


def chargebacks(seen: pd.DataFrame, train_until: pd.Timestamp, until: pd.Timestamp, cfg: LoopConfig) -> pd.DataFrame:
    """The disputes a retrain at ``until`` knows (tx_id, label 1): the loop frauds of ``seen`` at least
    ``cfg.chargeback_days`` old, on the cards whose holders dispute (a ``cfg.chargebacks`` share of cards, drawn
    once per card from its id and the loop's seed, so a card disputes in every arm and week or in none). Read from
    the ground truth, as the analyst's decisions are; none when ``cfg.chargebacks`` is 0."""
    loop = seen[(seen["timestamp"] >= train_until) & (seen["label"].to_numpy() == 1)
                & (seen["timestamp"] <= until - cfg.chargeback_days * DAY)]
    cards = loop["customer_id"].astype(str).to_numpy(object)
    key = f"chargeback{cfg.seed % 10**6:06d}"  # pandas' hash key: 16 characters
    draw = pd.util.hash_array(cards, hash_key=key, categorize=False) / np.float64(2.0 ** 64)
    tx = loop["tx_id"].astype(str).to_numpy()[draw < cfg.chargebacks]
    return pd.DataFrame({"tx_id": tx, "label": np.ones(len(tx), np.int8)})


def unreviewed_frauds(seen: pd.DataFrame, labels: pd.DataFrame, train_until: pd.Timestamp) -> dict:
    """The world's frauds among the loop events of ``seen`` no analyst decided (nor a dispute named), per scenario
    id, by the label ``labels`` (:func:`loop_labels`: the policy's rows, then the disputes and decisions) gave them:
    {"genuine": {id: n}, "unknown": {id: n}}. A measure of the bench (it reads the ground truth): missed frauds
    taught as genuine."""
    n = len(seen)
    given = labels["label"].to_numpy()[:n]
    decided = seen["tx_id"].astype(str).isin(labels["tx_id"].iloc[n:]).to_numpy()
    missed = (seen["timestamp"] >= train_until).to_numpy() & ~decided & (seen["label"].to_numpy() == 1)
    sc = seen["scenario"].to_numpy()
    out = {}
    for name, value in (("genuine", 0), ("unknown", UNKNOWN)):
        ids, k = np.unique(sc[missed & (given == value)].astype(int), return_counts=True)
        out[name] = {int(i): int(c) for i, c in zip(ids, k)}
    return out


def reliable_negatives(live: pd.DataFrame, q: float) -> tuple[pd.Series, dict]:
    """(per loop event scored so far, by tx_id: whether it is a reliable negative, its live score below the ``q``
    quantile of the live scores of the model version that scored it; that cut per version). ``live``: tx_id,
    score, model_version of every loop event scored so far (the scores the loop alerted by; no second pass)."""
    if live is None or not len(live):
        raise ConfigError("bench loop: unreviewed='reliable' needs the loop's live scores; none were kept")
    score = live["score"].to_numpy(np.float64)
    cuts = live.groupby("model_version", sort=True)["score"].quantile(q)
    below = score < live["model_version"].map(cuts).to_numpy(np.float64)
    return pd.Series(below, index=live["tx_id"].astype(str).to_numpy()), {str(k): float(v) for k, v in cuts.items()}


def loop_labels(seen: pd.DataFrame, train_until: pd.Timestamp, decided: list, unreviewed: str = "genuine",
                reliable: pd.Series | None = None) -> pd.DataFrame:
    """Labels a retrain knows: the initial file's (ground truth before ``train_until``), then for later events
    the ``unreviewed`` policy's value (:data:`UNREVIEWED`: 0 not reported, or -1 unknown; "reliable": 0 where
    ``reliable`` (tx_id -> bool, :func:`reliable_negatives`) is true, else -1), then the analyst's decisions (the
    latest per tx_id wins, as ``fraud.training.data.apply_labels``)."""
    if unreviewed not in POLICIES:
        raise ConfigError(f"bench loop: unreviewed={unreviewed!r} must be one of {', '.join(POLICIES)}")
    later = (seen["timestamp"] >= train_until).to_numpy()
    tx = seen["tx_id"].astype(str).to_numpy()
    value = UNREVIEWED.get(unreviewed, UNKNOWN)
    if unreviewed == "reliable":
        value = np.where(_reliable_of(reliable, tx[later]), 0, UNKNOWN)
    lab = seen["label"].to_numpy().astype(np.int8)
    lab[later] = value
    base = pd.DataFrame({"tx_id": tx, "label": lab})
    return pd.concat([base, *decided], ignore_index=True) if decided else base


def _reliable_of(reliable: pd.Series | None, tx: np.ndarray) -> np.ndarray:
    """``reliable`` (tx_id -> bool) at the loop events ``tx``; each must have been scored live."""
    got = (reliable if reliable is not None else pd.Series(dtype=bool)).reindex(tx)
    if got.isna().any():
        raise ConfigError(f"bench loop: unreviewed='reliable': {int(got.isna().sum())} loop event(s) have no live "
                          f"score, e.g. tx_id {tx[got.isna().to_numpy()][0]!r}")
    return got.to_numpy(bool)


def with_labels(seen: pd.DataFrame, labels: pd.DataFrame) -> pd.DataFrame:
    """The canonical columns of ``seen`` with, per tx_id, the last of ``labels`` (:func:`loop_labels`, which
    labels every event of ``seen``; -1 = unknown is kept, which ``apply_labels`` would refuse)."""
    last = labels.drop_duplicates("tx_id", keep="last").set_index("tx_id")["label"]
    df = seen[list(CANONICAL)].reset_index(drop=True)
    lab = last.reindex(df["tx_id"].astype(str).to_numpy())
    if lab.isna().any():
        raise ConfigError(f"bench loop: {int(lab.isna().sum())} event(s) have no label, e.g. tx_id "
                          f"{lab.index[lab.isna().to_numpy()][0]!r}")
    df["label"] = lab.to_numpy().astype(np.int8)
    return df


# -- measures -----------------------------------------------------------------------------------------
def _ap(y, s) -> float:
    from sklearn.metrics import average_precision_score

    return float(average_precision_score(y, s)) if 0 < y.sum() < len(y) else float("nan")


def _measures(f: pd.DataFrame) -> dict:
    fraud = f["label"].to_numpy() == 1
    caught = f["alerted"].to_numpy()
    cd = f[caught].groupby(["day", "customer_id"])["label"].max()
    sc = f["scenario"].to_numpy()
    ids = sorted(int(s) for s in np.unique(sc[fraud]))
    by = {s: float(caught[fraud & (sc == s)].mean()) for s in ids}
    return {"recall": float(caught[fraud].mean()) if fraud.any() else float("nan"),
            "ap": _ap(f["label"].to_numpy(), f["score"].to_numpy()),
            "precision": float(cd.mean()) if len(cd) else float("nan"), "n_fraud": int(fraud.sum()),
            "by_scenario": by, "n_by_scenario": {s: int((fraud & (sc == s)).sum()) for s in ids}}


def weekly(frame: pd.DataFrame) -> list:
    """Per loop week: recall at the card budget, AP, alert (card-day) precision, recall per scenario."""
    out = []
    for w, f in frame.groupby(frame["day"] // 7, sort=True):
        out.append({"week": int(w), **_measures(f), "model_version": sorted(f["model_version"].unique().tolist())})
    return out


def pattern_timing(frame: pd.DataFrame, known: set) -> dict:
    """Per fraud scenario of the loop not in ``known`` (those of the training history): days from its first fraud to
    its first alerted fraud, and to the first day its cumulative recall (alerted frauds so far / frauds so far)
    reaches 0.5; None when never."""
    out = {}
    f = frame[frame["label"].to_numpy() == 1]
    for s, g in f.groupby("scenario", sort=True):
        if int(s) in known:
            continue
        first = int(g["day"].min())
        per_day = g.groupby("day")["alerted"].agg(["sum", "size"])
        cum = per_day["sum"].cumsum() / per_day["size"].cumsum()
        hit = per_day.index[per_day["sum"] > 0]
        half = cum.index[cum >= 0.5]
        out[int(s)] = {"first_fraud_day": first, "n_fraud": int(len(g)),
                       "days_to_first_alert": int(hit[0] - first) if len(hit) else None,
                       "days_to_half_recall": int(half[0] - first) if len(half) else None,
                       "recall": float(g["alerted"].mean())}
    return out


def oracle_arm(df: pd.DataFrame, train_until: pd.Timestamp, weeks: int, budget: int, seed: int = 0) -> dict:
    """The ceiling beside :func:`run_arm`'s arms, in their shape (weeks, patterns; no retrains): each loop day the
    ``budget`` cards with the most frauds alerted (``benchmarks.oracle.budget_oracle``, ties at random by ``seed``).
    ``pattern_first``: per pattern new in the loop, its recall per week when its own frauds are ranked first (no
    ranking catches more of it). Its AP is nan: it ranks card-days, not transactions."""
    from benchmarks.oracle import budget_oracle

    t0 = time.perf_counter()
    train_until = pd.Timestamp(train_until)
    df = _check(df, train_until, weeks, "frozen")
    hist, f = df[df["timestamp"] < train_until], df[df["timestamp"] >= train_until].reset_index(drop=True)
    frame = pd.DataFrame({"tx_id": f["tx_id"].astype(str), "timestamp": f["timestamp"],
                          "customer_id": f["customer_id"].astype(str), "label": f["label"], "scenario": f["scenario"],
                          "day": ((f["timestamp"] - train_until) // DAY).astype(int), "model_version": "oracle"})
    fraud, sc = frame["label"].to_numpy() == 1, frame["scenario"].to_numpy()
    by_loop_day = frame.assign(timestamp=frame["timestamp"] - (train_until - train_until.floor("D")))

    def alerted(target=None) -> np.ndarray:
        scored = frame.assign(score=budget_oracle(by_loop_day, target, seed=seed))
        out = np.zeros(len(frame), bool)
        for _, day in scored.groupby("day", sort=True):
            out[day.index.to_numpy()] = budget_alerts(day, budget)
        return out

    frame["score"] = budget_oracle(by_loop_day, seed=seed)  # card-days of the loop's days (from train_until)
    frame["alerted"] = alerted()
    known = set(hist.loc[hist["label"] == 1, "scenario"].astype(int))
    patterns = pattern_timing(frame, known)
    first = {}
    for s in patterns:
        m = fraud & (sc == s)
        hit = alerted(m)
        first[s] = {int(w): float(hit[m & (frame["day"].to_numpy() // 7 == w)].mean())
                    for w in np.unique(frame.loc[m, "day"].to_numpy() // 7)}
    weeks = [{**w, "ap": float("nan")} for w in weekly(frame)]
    return {"arm": "oracle", "weeks": weeks, "patterns": patterns, "pattern_first": first, "retrains": [],
            "days": [], "final_version": "oracle", "seconds": round(time.perf_counter() - t0, 1)}


# -- the bench ----------------------------------------------------------------------------------------
@dataclass
class BenchConfig:
    seed: int = 3000
    customers: int = 300
    terminals: int = 600
    weeks: int = 16  # the whole world
    train_weeks: int = 4  # the initial training window; the loop runs the remaining weeks
    onset_weeks: int = 2  # new patterns start this many weeks into the loop
    new_patterns: tuple = ("aged_ring", "night_burst")
    arms: tuple = ARMS + ("full_fresh",)  # full_fresh: the full loop with fresh embeddings (when available)
    loop: LoopConfig = field(default_factory=LoopConfig)
    tactics: tuple = ()  # fraud.evasion tactics injected from the onset to the end (names of fraud.evasion.TACTICS)
    tactic_scale: float | None = None  # their activity; None: customers / 500 (the evasion bench's rate per card)

    def scale(self) -> float:
        return float(self.tactic_scale) if self.tactic_scale is not None else self.customers / EVASION_CUSTOMERS


EVASION_CUSTOMERS = 500  # the world size the tactics' rates (fraud.evasion.draw_params) are written for


def check_tactics(names) -> tuple:
    """``names`` as a tuple of known tactic names (``fraud.evasion.TACTICS``; "all" = every tactic)."""
    from fraud.evasion import TACTICS

    names = tuple(TACTICS.values()) if tuple(names) == ("all",) else tuple(names)
    bad = [n for n in names if n not in TACTICS.values()]
    if bad or len(set(names)) != len(names):
        raise ConfigError(f"bench loop: tactics {list(names)}: each once, among {', '.join(TACTICS.values())} "
                          f"(or 'all'); unknown: {bad}")
    return names


def with_tactics(df: pd.DataFrame, cfg: BenchConfig, seed: int) -> tuple[pd.DataFrame, dict]:
    """``df`` with ``cfg.tactics`` injected (``fraud.evasion.inject``, world ``seed``) from the onset (``onset_weeks``
    into the loop) to the end of the world; and what was injected (names, ids, scale, window, rows per tactic)."""
    from fraud.evasion import TACTICS, inject

    names = check_tactics(cfg.tactics)
    if not names:
        return df, {}
    if not cfg.scale() > 0:
        raise ConfigError(f"bench loop: tactic_scale={cfg.tactic_scale!r} must be > 0")
    start = df["timestamp"].iloc[0].floor("D") + 7 * (cfg.train_weeks + cfg.onset_weeks) * DAY
    days = 7 * (cfg.weeks - cfg.train_weeks - cfg.onset_weeks)
    out = inject(df, start, days, names, seed=seed, scale=cfg.scale())
    ids = {sid: n for sid, n in TACTICS.items() if n in names}
    rows = out["scenario"].value_counts()
    return out, {"names": list(names), "ids": sorted(ids), "scale": cfg.scale(), "start": str(start), "days": days,
                 "rows": {n: int(rows.get(sid, 0)) for sid, n in ids.items()}}


def loop_world(cfg: BenchConfig) -> tuple[pd.DataFrame, dict]:
    """(canonical frame, spec dict) of the first world drawn from ``cfg.seed`` on that holds ``cfg.new_patterns``
    and a labelled pattern from the start; the new ones start ``onset_weeks`` into the loop, as do ``cfg.tactics``
    (the spec's ``"injected"``)."""
    from fraud.worlds import draw_spec, generate

    days, onset = 7 * cfg.weeks, 7 * (cfg.train_weeks + cfg.onset_weeks)
    if not 0 < cfg.train_weeks < cfg.weeks or onset >= days - 7:
        raise ConfigError(f"bench loop: train_weeks={cfg.train_weeks}, onset_weeks={cfg.onset_weeks} must leave a "
                          f"week of new patterns in the {cfg.weeks} weeks")
    for k in range(200):
        spec = draw_spec(cfg.seed + k, cfg.customers, cfg.terminals, days, late_from=onset)
        old = [p for p in spec.patterns if p not in cfg.new_patterns]
        if all(p in spec.patterns for p in cfg.new_patterns) and (old or spec.handbook):
            break
    else:
        raise ConfigError(f"bench loop: no world among seeds {cfg.seed}..{cfg.seed + 199} holds {cfg.new_patterns}")
    for p in cfg.new_patterns:
        if p != "aged_ring":
            spec.patterns[p]["from_day"] = onset
    df, injected = with_tactics(generate(spec), cfg, spec.seed)
    return df, {**spec.to_dict(), "injected": injected}


def arm_setup(name: str, loop: LoopConfig) -> tuple[str, LoopConfig]:
    """(run_arm's arm, its LoopConfig) of a bench arm name (``full_fresh`` = ``full`` with fresh embeddings)."""
    if name == "full_fresh":
        return "full", LoopConfig(**{**asdict(loop), "fresh_embeddings": True})
    return name, loop


def run_loop(cfg: BenchConfig, say=lambda s: None) -> dict:
    """Every arm of ``cfg.arms`` on one world, all from the same initial bundle; their weeks, pattern timings,
    retrain decisions and the summary against issue 18's goals."""
    t0 = time.perf_counter()
    df, spec = loop_world(cfg)
    split = df["timestamp"].iloc[0].floor("D") + 7 * cfg.train_weeks * DAY
    say(f"world seed {spec['seed']}: {len(df):,} events, {int(df['label'].sum())} frauds, patterns "
        f"{sorted(spec['patterns'])}, tactics {spec['injected'].get('rows', {})}; training until {split}")
    arms, skipped = {}, {}
    base = initial_bundle(df, split, cfg.loop)
    for name in cfg.arms:
        arm, lc = arm_setup(name, cfg.loop)
        if lc.fresh_embeddings and not fresh_available():
            skipped[name] = f"fraud.features.graph.GraphFeatures has no {FRESH_PARAM!r} switch yet"
            say(f"{name}: skipped ({skipped[name]})")
            continue
        init = base if not lc.fresh_embeddings else None
        res = run_arm(df, split, cfg.weeks - cfg.train_weeks, arm, lc, say=say, initial=init)
        arms[name] = res
        say(f"{name}: " + " ".join(f"{w['recall']:.2f}" for w in res["weeks"]) + f" ({res['seconds']} s)")
    arms["oracle"] = oracle_arm(df, split, cfg.weeks - cfg.train_weeks, cfg.loop.budget, seed=cfg.loop.seed)
    injected = spec["injected"].get("ids", [])
    return {"config": {**asdict(cfg), "loop": asdict(cfg.loop)}, "world": spec, "train_until": str(split),
            "onset_week": cfg.onset_weeks, "pattern_names": pattern_names(), "arms": arms, "skipped_arms": skipped,
            "summary": summary(arms, cfg.onset_weeks, injected), "seconds": round(time.perf_counter() - t0, 1)}


def pattern_names() -> dict:
    """scenario id -> name: the worlds' patterns (``fraud.worlds.PATTERNS``) and the evasion tactics ("... (tactic)")."""
    from fraud.evasion import TACTICS
    from fraud.worlds import PATTERNS

    return {**{int(k): v for k, v in PATTERNS.items()}, **{int(k): f"{v} (tactic)" for k, v in TACTICS.items()}}


def _after(res: dict, onset_week: int) -> dict:
    """Recall at budget of an arm over the loop weeks from ``onset_week`` on: all fraud and the new patterns'."""
    ws = [w for w in res["weeks"] if w["week"] >= onset_week]
    n = sum(w["n_fraud"] for w in ws)
    rec = sum(w["recall"] * w["n_fraud"] for w in ws if w["n_fraud"]) / n if n else float("nan")
    new = {}
    for s in res["patterns"]:
        got = [(w["by_scenario"][s], w["n_by_scenario"][s]) for w in ws if s in w["by_scenario"]]
        k = sum(m for _, m in got)
        new[s] = sum(r * m for r, m in got) / k if k else float("nan")
    return {"recall": rec, "new_pattern_recall": float(np.nanmean(list(new.values()))) if new else float("nan"),
            "by_pattern": new}


def _median_days(res: dict, key: str) -> float:
    vals = [p[key] for p in res["patterns"].values()]
    return float(np.median([np.inf if v is None else v for v in vals])) if vals else float("nan")


def _pattern_first(res: dict, onset_week: int) -> dict:
    """Per new pattern: its recall pooled over the weeks from ``onset_week`` when it is ranked first (oracle arm)."""
    out = {}
    for s, by_week in res["pattern_first"].items():
        got = [(by_week[w["week"]], w["n_by_scenario"][s]) for w in res["weeks"]
               if w["week"] >= onset_week and w["week"] in by_week]
        k = sum(m for _, m in got)
        out[s] = sum(r * m for r, m in got) / k if k else float("nan")
    return out


def _injected(res: dict, onset_week: int, ids) -> dict:
    """An arm's figures on the injected tactics ``ids`` alone: recall after the onset pooled over their frauds,
    median days to first alert and to 50 % recall over them."""
    got = [(w["by_scenario"][s], w["n_by_scenario"][s]) for w in res["weeks"] if w["week"] >= onset_week
           for s in ids if s in w["by_scenario"]]
    k = sum(m for _, m in got)
    only = {**res, "patterns": {s: p for s, p in res["patterns"].items() if s in set(ids)}}
    return {"recall": sum(r * m for r, m in got) / k if k else float("nan"),
            "median_days_to_first_alert": _median_days(only, "days_to_first_alert"),
            "median_days_to_half_recall": _median_days(only, "days_to_half_recall")}


def summary(arms: dict, onset_week: int, injected=()) -> dict:
    """Per arm: recall after the onset, new-pattern recall, median days to first alert and to 50 % recall (and the
    same on the ``injected`` tactics' scenario ids alone); the issue's goals for the full loop against the frozen
    model."""
    out = {name: {**_after(res, onset_week), "median_days_to_first_alert": _median_days(res, "days_to_first_alert"),
                  "median_days_to_half_recall": _median_days(res, "days_to_half_recall"),
                  "promotions": sum(r["promote"] for r in res["retrains"]), "retrains": len(res["retrains"])}
           for name, res in arms.items()}
    for name, res in arms.items():
        if injected:
            out[name]["injected"] = _injected(res, onset_week, injected)
        if "pattern_first" in res:
            out[name]["pattern_first_after_onset"] = _pattern_first(res, onset_week)
    goals = {}
    if "full" in out and "frozen" in out:
        f, z = out["full"], out["frozen"]
        goals["recall_gain_after_onset"] = f["recall"] - z["recall"]
        goals["recall_gain_ge_0.25"] = bool(goals["recall_gain_after_onset"] >= 0.25)
        goals["new_pattern_recall_gain"] = f["new_pattern_recall"] - z["new_pattern_recall"]
        goals["median_days_to_first_alert_le_2"] = bool(f["median_days_to_first_alert"] <= 2)
        goals["median_days_to_half_recall_le_10"] = bool(f["median_days_to_half_recall"] <= 10)
    if "oracle" in out and "frozen" in out:
        goals["oracle_recall_after_onset"] = out["oracle"]["recall"]
        goals["largest_possible_gain_over_frozen"] = out["oracle"]["recall"] - out["frozen"]["recall"]
        goals["gain_0.25_reachable"] = bool(goals["largest_possible_gain_over_frozen"] >= 0.25)
    if injected and "full" in out and "frozen" in out:
        goals["injected_recall_gain"] = out["full"]["injected"]["recall"] - out["frozen"]["injected"]["recall"]
    if "full" in out and "full_fresh" in out:
        fresh, full = out["full_fresh"], out["full"]
        goals["fresh_new_pattern_recall_gain"] = fresh["new_pattern_recall"] - full["new_pattern_recall"]
    return {"arms": out, "goals": goals}


def table(res: dict) -> str:
    names = {int(k): v for k, v in res["pattern_names"].items()}  # also on a JSON round trip (text keys)
    lines = [f"world seed {res['world']['seed']}, training until {res['train_until']}, new patterns from loop week "
             f"{res['onset_week']}"]
    for name, arm in res["arms"].items():
        lines.append(f"{name:>10} recall  " + " ".join(f"{w['recall']:.2f}" for w in arm["weeks"]))
        lines.append(f"{'':>10} AP      " + " ".join(f"{w['ap']:.2f}" for w in arm["weeks"]))
        lines.append(f"{'':>10} prec.   " + " ".join(f"{w['precision']:.2f}" for w in arm["weeks"]))
        for s, p in arm["patterns"].items():
            lines.append(f"{'':>10} {names.get(int(s), s)}: first fraud day {p['first_fraud_day']}, first alert "
                         f"+{p['days_to_first_alert']} d, 50 % recall +{p['days_to_half_recall']} d, recall "
                         f"{p['recall']:.2f}; by week " + _by_week(arm["weeks"], s))
    for name, s in res["summary"]["arms"].items():
        lines.append(f"{name:>10}: recall after onset {s['recall']:.3f}, new patterns {s['new_pattern_recall']:.3f}, "
                     f"median days to first alert {s['median_days_to_first_alert']}, to 50 % "
                     f"{s['median_days_to_half_recall']}, promoted {s['promotions']}/{s['retrains']}")
        if "injected" in s:
            i = s["injected"]
            lines.append(f"{'':>10}  injected tactics: recall after onset {i['recall']:.3f}, median days to first "
                         f"alert {i['median_days_to_first_alert']}, to 50 % {i['median_days_to_half_recall']}")
    for s, r in res["summary"]["arms"].get("oracle", {}).get("pattern_first_after_onset", {}).items():
        lines.append(f"{'oracle':>10}: {names.get(int(s), s)} ranked first, recall after onset {r:.3f}")
    lines.append(f"goals {res['summary']['goals']}; skipped {res['skipped_arms'] or 'none'}")
    return "\n".join(lines)


def _by_week(weeks: list, s) -> str:
    """A pattern's recall per loop week ("-" where it has no fraud that week; JSON turns the ids into text)."""
    got = [{str(k): v for k, v in w["by_scenario"].items()}.get(str(s)) for w in weeks]
    return " ".join("-" if r is None else f"{r:.2f}" for r in got)
