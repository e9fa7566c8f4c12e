"""Evaluation: the Fraud Detection Handbook's protocol and metrics, plus recall at an alert budget.

Metrics (higher score = more suspicious):

* :func:`roc_auc`, :func:`average_precision`: scikit-learn's, on transactions.
* :func:`card_precision_at_k`: the book's Card Precision@k. For each test day (UTC calendar day):
  each card's highest score of the day and its label (1 if it had any fraud that day); cards
  ranked by that score (ties: card id order, a stable sort); precision = compromised cards among
  the top k / k. Cards found compromised in the top k of an earlier test day are removed from
  later days. Mean over days.
* :func:`recall_at_budget`: per day, the ``budget`` cards with the highest max score of that day
  are alerted; a fraud transaction counts as caught when its card is alerted that day; recall
  per scenario = caught / fraud transactions of that scenario.

Protocol (:class:`Split`, :func:`train_test`): train on ``train_days`` days from
``train_start``, skip ``delay_days`` (the feedback delay), test on the next ``test_days`` days.
On each test day D, cards already known to be compromised are removed from the test set: the
cards with a fraud between the training start and day ``D - delay - 1`` (the book's
``get_train_test_set``; for the first test day that is the training week).

Dates (:func:`splits_for`):

* the handbook's (``HANDBOOK_SINGLE``, ``HANDBOOK_PREQUENTIAL``) when the data covers them;
* otherwise derived from the end of the data with the same 7/7/7-day shape: with E the midnight
  after the last transaction's day, prequential fold i (i = 0..3) trains from
  ``E - 21 days - 7*i days`` (so fold 0's test week is the last full week of the data); the
  single split is the oldest fold, as in the handbook where the single split's dates equal
  prequential fold 3. When the data is too short for the oldest fold, the single split falls back
  to the latest one; data shorter than one 7/7/7 shape is a ConfigError.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from fraud.errors import ConfigError, SchemaError
from fraud.schema import utc_timestamp

DAY = pd.Timedelta(days=1)

#: the book's single split (chapter 3): training week start
HANDBOOK_SINGLE = "2018-07-25"
#: the book's prequential folds (chapters 5-7): training week starts, fold 0 first
HANDBOOK_PREQUENTIAL = ("2018-08-15", "2018-08-08", "2018-08-01", "2018-07-25")


# --------------------------------------------------------------------------------------------
# metrics
# --------------------------------------------------------------------------------------------
def roc_auc(y, score) -> float:
    """Area under the ROC curve (nan when only one class is present)."""
    from sklearn.metrics import roc_auc_score

    y = np.asarray(y)
    if len(np.unique(y)) < 2:
        return float("nan")
    return float(roc_auc_score(y, np.asarray(score, dtype=float)))


def average_precision(y, score) -> float:
    """Average precision (scikit-learn's definition; nan without any positive)."""
    from sklearn.metrics import average_precision_score

    y = np.asarray(y)
    if not (y == 1).any():
        return float("nan")
    return float(average_precision_score(y, np.asarray(score, dtype=float)))


def _days(ts: pd.Series) -> np.ndarray:
    """UTC calendar day of each timestamp, as int64 days since the epoch."""
    from fraud.features.tabular import DAY_NS, timestamps_ns

    return np.floor_divide(timestamps_ns(ts), DAY_NS)


def _need(frame: pd.DataFrame, cols, where: str) -> None:
    missing = [c for c in cols if c not in frame.columns]
    if missing:
        raise SchemaError(f"{where}: missing column(s) {missing}; columns present: {list(frame.columns)}")


def _daily_cards(frame: pd.DataFrame, score: str) -> pd.DataFrame:
    """One row per (day, card): max score and max label of the day."""
    d = pd.DataFrame({
        "day": _days(frame["timestamp"]),
        "card": frame["customer_id"].astype(str).to_numpy(),
        "score": frame[score].to_numpy(dtype=float),
        "label": frame["label"].to_numpy(dtype=np.int64),
    })
    return d.groupby(["day", "card"], sort=True).max().reset_index()


def card_precision_at_k_per_day(frame: pd.DataFrame, k: int = 100, score: str = "score",
                                remove_detected: bool = True) -> pd.DataFrame:
    """Per test day: ``day`` (date), ``cp`` (precision of the top k cards), ``n_compromised``
    (compromised cards still in play that day), ``detected``."""
    _need(frame, ("timestamp", "customer_id", "label", score), "card_precision_at_k")
    if k <= 0:
        raise ConfigError(f"card_precision_at_k: k={k!r} must be > 0")
    cards = _daily_cards(frame, score)
    detected: set = set()
    rows = []
    for day, g in cards.groupby("day", sort=True):
        if remove_detected and detected:
            g = g[~g["card"].isin(detected)]
        top = g.sort_values("score", ascending=False, kind="stable").head(k)
        found = top.loc[top["label"] == 1, "card"].tolist()
        rows.append({"day": pd.Timestamp(int(day) * 86_400, unit="s", tz="UTC"), "cp": len(found) / k,
                     "n_compromised": int((g["label"] == 1).sum()), "detected": len(found)})
        if remove_detected:
            detected.update(found)
    return pd.DataFrame(rows, columns=["day", "cp", "n_compromised", "detected"])


def card_precision_at_k(frame: pd.DataFrame, k: int = 100, score: str = "score",
                        remove_detected: bool = True) -> float:
    """The book's Card Precision@k: mean over test days (see the module docstring)."""
    per_day = card_precision_at_k_per_day(frame, k=k, score=score, remove_detected=remove_detected)
    return float(per_day["cp"].mean()) if len(per_day) else float("nan")


def recall_at_budget(frame: pd.DataFrame, budget: int = 100, by_scenario: bool = True,
                     score: str = "score") -> dict[str, float]:
    """Recall of fraud transactions when ``budget`` cards a day are alerted.

    Returns ``{"all": r, "1": r1, ...}``: one key per scenario id present among the fraud
    transactions (needs a ``scenario`` column; string keys). nan when there is no fraud.
    """
    _need(frame, ("timestamp", "customer_id", "label", score), "recall_at_budget")
    if budget <= 0:
        raise ConfigError(f"recall_at_budget: budget={budget!r} must be > 0")
    day = _days(frame["timestamp"])
    card = frame["customer_id"].astype(str).to_numpy()
    d = pd.DataFrame({"day": day, "card": card, "score": frame[score].to_numpy(dtype=float)})
    best = d.groupby(["day", "card"], sort=True)["score"].max().reset_index()
    best = best.sort_values(["day", "score"], ascending=[True, False], kind="stable")
    alerted = best.groupby("day", sort=False).head(budget)
    alerted_keys = pd.MultiIndex.from_frame(alerted[["day", "card"]])
    caught = pd.MultiIndex.from_arrays([day, card]).isin(alerted_keys)
    fraud = frame["label"].to_numpy() == 1
    out = {"all": float(caught[fraud].mean()) if fraud.any() else float("nan")}
    if by_scenario and "scenario" in frame.columns:
        sc = frame["scenario"].to_numpy()
        for s in sorted(np.unique(sc[fraud])):
            m = fraud & (sc == s)
            out[str(int(s))] = float(caught[m].mean())
    return out


def book_metrics(test: pd.DataFrame, scores, k: int = 100) -> dict[str, float]:
    """AUC ROC, AP and CP@k of ``scores`` on a test frame (timestamp, customer_id, label)."""
    t = pd.DataFrame({"timestamp": test["timestamp"].to_numpy(), "customer_id": test["customer_id"].to_numpy(),
                      "label": test["label"].to_numpy(), "score": np.asarray(scores, dtype=float)})
    return {"auc": roc_auc(t["label"], t["score"]), "ap": average_precision(t["label"], t["score"]),
            f"cp@{k}": card_precision_at_k(t, k=k)}


# --------------------------------------------------------------------------------------------
# protocol
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Split:
    """One train / delay / test shape. Dates are UTC midnights; ends are exclusive."""

    train_start: pd.Timestamp
    train_days: int = 7
    delay_days: int = 7
    test_days: int = 7

    @property
    def train_end(self) -> pd.Timestamp:
        return self.train_start + self.train_days * DAY

    @property
    def test_start(self) -> pd.Timestamp:
        return self.train_end + self.delay_days * DAY

    @property
    def test_end(self) -> pd.Timestamp:
        return self.test_start + self.test_days * DAY

    def describe(self) -> str:
        d = lambda t: t.strftime("%Y-%m-%d")  # noqa: E731
        return (f"train {d(self.train_start)}..{d(self.train_end - DAY)}, "
                f"test {d(self.test_start)}..{d(self.test_end - DAY)}")


def _midnight(t) -> pd.Timestamp:
    return utc_timestamp(t, "evaluation split date").floor("D")


def handbook_splits(protocol: str, delay_days: int = 7) -> list[Split]:
    if protocol == "single":
        return [Split(_midnight(HANDBOOK_SINGLE), delay_days=delay_days)]
    if protocol == "prequential":
        return [Split(_midnight(s), delay_days=delay_days) for s in HANDBOOK_PREQUENTIAL]
    raise ConfigError(f"--protocol: {protocol!r} is not one of single, prequential")


def derive_splits(frame: pd.DataFrame, protocol: str, delay_days: int = 7, train_days: int = 7,
                  test_days: int = 7, n_folds: int = 4) -> list[Split]:
    """The handbook's shapes placed at the end of the data (see the module docstring)."""
    if protocol not in ("single", "prequential"):
        raise ConfigError(f"--protocol: {protocol!r} is not one of single, prequential")
    if len(frame) == 0:
        raise ConfigError("evaluation: no transactions to split")
    first = _midnight(frame["timestamp"].min())
    end = _midnight(frame["timestamp"].max()) + DAY
    shape = (train_days + delay_days + test_days) * DAY
    starts = [end - shape - i * test_days * DAY for i in range(n_folds)]
    usable = [s for s in starts if s >= first]
    if not usable:
        raise ConfigError(
            f"evaluation: the data spans {first.date()}..{(end - DAY).date()} ({(end - first).days} days), "
            f"shorter than one train/delay/test shape of {train_days}/{delay_days}/{test_days} days")
    if protocol == "single":
        return [Split(usable[-1], train_days, delay_days, test_days)]
    if len(usable) < n_folds:
        raise ConfigError(
            f"evaluation: prequential needs {n_folds} folds; the data spans {first.date()}..{(end - DAY).date()} "
            f"({(end - first).days} days), enough for {len(usable)}")
    return [Split(s, train_days, delay_days, test_days) for s in usable]


def covers_handbook_dates(frame: pd.DataFrame, protocol: str) -> bool:
    if len(frame) == 0:
        return False
    splits = handbook_splits(protocol)
    lo, hi = frame["timestamp"].min(), frame["timestamp"].max()
    return lo <= min(s.train_start for s in splits) and hi >= max(s.test_end for s in splits) - DAY


def splits_for(frame: pd.DataFrame, protocol: str, dates: str = "auto", delay_days: int = 7) -> list[Split]:
    """``dates``: "handbook" (the book's), "end" (derived from the end of the data) or "auto"
    (the book's when the data covers them, else derived)."""
    if dates not in ("auto", "handbook", "end"):
        raise ConfigError(f"--dates: {dates!r} is not one of auto, handbook, end")
    if dates == "handbook" or (dates == "auto" and covers_handbook_dates(frame, protocol)):
        return handbook_splits(protocol, delay_days)
    return derive_splits(frame, protocol, delay_days=delay_days)


def train_test(frame: pd.DataFrame, split: Split) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The book's ``get_train_test_set``: the training week and the filtered test days.

    Returns views of ``frame`` (original index and column order kept, time order).
    """
    _need(frame, ("timestamp", "customer_id", "label"), "train_test")
    ts = frame["timestamp"]
    train = frame[(ts >= split.train_start) & (ts < split.train_end)]
    day = _days(ts)
    day0 = int(split.train_start.as_unit("ns").value // 86_400_000_000_000)
    fraud = frame["label"].to_numpy() == 1
    cust = frame["customer_id"].astype(str).to_numpy()
    keep = np.zeros(len(frame), dtype=bool)
    for i in range(split.test_days):
        d = day0 + split.train_days + split.delay_days + i
        known = pd.unique(cust[fraud & (day >= day0) & (day <= d - split.delay_days - 1)])
        idx = np.flatnonzero(day == d)
        keep[idx] = ~np.isin(cust[idx], known)
    return train, frame[keep]
