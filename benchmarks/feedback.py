"""``fraud bench feedback``: what label feedback is worth to the live scorer.

A live transaction carries no label. The events after a model's training cutoff are scored day by day from its
starting state (one partition, micro-batches, as the stream scorer does) under four arms: ``labels_in_events``
(every event carries its true label, as a replayed simulation does: the featurizers use it after their feedback
delay), ``no_feedback`` (no label ever reaches the state), ``analyst`` (at the end of each day the analyst
decides every transaction of the day's ``budget`` top cards: ``add_labels`` with the truth) and
``analyst_chargebacks`` (also every fraud, reported ``chargeback_days`` after its day). Reported per arm: AP
and recall at budget over the days from ``delay_days`` on (before that no label can count), and over all days.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from benchmarks.loop import budget_alerts
from fraud.evaluate import average_precision, recall_at_budget

ARMS = ("labels_in_events", "no_feedback", "analyst", "analyst_chargebacks")
CANONICAL = ["tx_id", "timestamp", "customer_id", "terminal_id", "amount"]


def score_days(bundle, days: list[pd.DataFrame], arm: str, budget: int, chargeback_days: int,
               batch_rows: int = 1000) -> np.ndarray:
    """Scores of every event of ``days`` (frames with ``label``, one per UTC day, in order) under ``arm``."""
    state, out, due = bundle.warm_state(), [], {}
    for d, day in enumerate(days):
        rows = day[CANONICAL + (["label"] if arm == "labels_in_events" else [])].reset_index(drop=True)
        s = np.concatenate([bundle.score(rows.iloc[i:i + batch_rows], state)["score"].to_numpy()
                            for i in range(0, len(rows), batch_rows)]) if len(rows) else np.empty(0)
        out.append(s)
        if arm in ("analyst", "analyst_chargebacks"):
            alerted = budget_alerts(day.assign(score=s), budget)
            bundle.add_labels(state, day.loc[alerted, CANONICAL + ["label"]])
        if arm == "analyst_chargebacks":
            due.setdefault(d + chargeback_days, []).append(day.loc[day["label"] == 1, CANONICAL + ["label"]])
            for frauds in due.pop(d, []):
                bundle.add_labels(state, frauds)
    return np.concatenate(out) if out else np.empty(0)


def run_feedback(bundle, df: pd.DataFrame, since, budget: int = 10, chargeback_days: int = 7,
                 delay_days: int = 7, arms=ARMS) -> dict:
    """Score ``df``'s events at or after ``since`` under each arm; AP and recall at budget per arm."""
    test = df[df["timestamp"] >= since].sort_values("timestamp", kind="stable").reset_index(drop=True)
    day = (test["timestamp"] - test["timestamp"].min().floor("D")).dt.days.to_numpy()
    days = [test[day == d] for d in range(int(day.max()) + 1)] if len(test) else []
    late = day >= delay_days
    res = {"events": len(test), "days": len(days), "frauds": int(test["label"].sum()), "budget": budget,
           "chargeback_days": chargeback_days, "delay_days": delay_days, "arms": {}}
    for arm in arms:
        s = score_days(bundle, days, arm, budget, chargeback_days)
        scored = test.assign(score=s)
        res["arms"][arm] = {
            "ap_after_delay": average_precision(test["label"][late], s[late]),
            "ap_all": average_precision(test["label"], s),
            "recall_at_budget_after_delay": recall_at_budget(scored[late], budget, by_scenario=False)["all"],
            "recall_at_budget_all": recall_at_budget(scored, budget, by_scenario=False)["all"],
        }
    return res


def table(res: dict) -> str:
    lines = [f"{res['events']:,} events over {res['days']} days, {res['frauds']} frauds; budget {res['budget']} "
             f"cards a day; chargebacks after {res['chargeback_days']} days; 'late' = from day {res['delay_days']}",
             f"{'arm':<22}{'AP late':>9}{'AP all':>9}{'recall late':>13}{'recall all':>12}"]
    for arm, r in res["arms"].items():
        lines.append(f"{arm:<22}{r['ap_after_delay']:>9.3f}{r['ap_all']:>9.3f}"
                     f"{r['recall_at_budget_after_delay']:>13.3f}{r['recall_at_budget_all']:>12.3f}")
    return "\n".join(lines)
