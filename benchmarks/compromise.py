"""Common point of compromise: a day's card cases lifted by the terminals they used that day (label-free).

An analyst works the day's alerts as card-days. A terminal whose distinct cards of the day lie far above its own
rate (``BH_T_CARDS_SURPRISE_1D``, a causal per-row column) looks like a compromised terminal, and every card that
used it that day belongs in the case, the ones that came before the burst showed included: a per-row score cannot
see a terminal's first fraud, a day's queue built at the end of the day can. :class:`CompromiseCases` gives each
card-day max(its own max score, a lift) where the lift grows with the largest surprise of any terminal the card
used that day (reached at any time of that UTC day, never the day before or after), if it exceeds the surprise's
training ``quantile``; lifted card-days are placed at the model's training score quantile ``below`` (just under
its confident alerts, as ``fraud.detectors.activity.ActivityAlarm(below=...)``), so genuine bursts do not
displace confident frauds. No labels. ``fraud bench evasion --reach-back`` ranks card-days with it (figures and
the choice of parameters: docs/benchmarks.md, "Rotated terminals", "Reaching back within the day").
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from fraud.errors import ConfigError, NotFittedError

COLUMN = "BH_T_CARDS_SURPRISE_1D"
_TINY = 1e-6  # lifted card-days order among themselves by surprise, above the level by less than this share
_NEEDS = ("timestamp", "customer_id", "terminal_id")


def _check(frame: pd.DataFrame, scores, surprise, where: str) -> tuple[np.ndarray, np.ndarray]:
    missing = [c for c in _NEEDS if c not in frame.columns]
    if missing:
        raise ConfigError(f"{where}: the frame lacks column(s) {missing}; present: {list(frame.columns)}")
    s, z = np.asarray(scores, dtype=np.float64), np.nan_to_num(np.asarray(surprise, dtype=np.float64))
    if s.shape != (len(frame),) or z.shape != (len(frame),):
        raise ConfigError(f"{where}: scores {s.shape} and surprise {z.shape} must have one value per row of the "
                          f"frame ({len(frame)} rows)")
    return s, z


def _keys(frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per row: (card-day code, terminal-day code, day number), UTC days."""
    from fraud.features.tabular import DAY_NS, timestamps_ns

    day = np.floor_divide(timestamps_ns(frame["timestamp"]), DAY_NS)
    card = pd.DataFrame({"d": day, "c": frame["customer_id"].astype(str).to_numpy()})
    term = pd.DataFrame({"d": day, "t": frame["terminal_id"].astype(str).to_numpy()})
    return card.groupby(["d", "c"], sort=False).ngroup().to_numpy(), \
        term.groupby(["d", "t"], sort=False).ngroup().to_numpy(), day


class CompromiseCases:
    """Card-day case scores lifted by the day's most surprising terminal (module doc).

    Parameters
    ----------
    quantile : a terminal-day is a compromise candidate when its largest surprise exceeds the surprise's
        ``quantile`` over the training rows (``threshold_``).
    below : lifted card-days are placed at the model's training score ``below`` quantile (``level_``).
    """

    def __init__(self, quantile: float = 0.995, below: float = 0.97):
        self.quantile = quantile
        self.below = below

    def fit(self, scores, surprise) -> "CompromiseCases":
        """``threshold_``: the ``quantile`` of ``surprise`` (the training rows' column); ``level_``: the ``below``
        quantile of ``scores`` (the model's scores of its training rows, or of any reference rows: the day's own)."""
        for name in ("quantile", "below"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or not 0 < v < 1:
                raise ConfigError(f"CompromiseCases: {name}={v!r} must be a quantile in (0, 1)")
        s, z = np.asarray(scores, dtype=np.float64), np.nan_to_num(np.asarray(surprise, dtype=np.float64))
        if s.ndim != 1 or z.ndim != 1 or not len(s) or not len(z):
            raise ConfigError(f"CompromiseCases.fit: needs non-empty 1-d scores and surprise, got shapes "
                              f"{s.shape} and {z.shape}")
        self.threshold_ = float(np.quantile(z, self.quantile))
        self.level_ = float(np.quantile(s, self.below))
        return self

    def placed_on(self, scores) -> "CompromiseCases":
        """A copy whose lifts sit at the ``below`` quantile of other reference ``scores`` (e.g. the day's own, when
        the model changes during a run), ``threshold_`` kept."""
        self._fitted()
        s = np.asarray(scores, dtype=np.float64)
        if s.ndim != 1 or not len(s):
            raise ConfigError(f"CompromiseCases.placed_on: needs non-empty 1-d scores, got shape {s.shape}")
        out = CompromiseCases(self.quantile, self.below)
        out.threshold_, out.level_ = self.threshold_, float(np.quantile(s, self.below))
        return out

    def lift(self, frame: pd.DataFrame, scores, surprise) -> np.ndarray:
        """Per row: its card-day's lift (0 when none of the card's terminals of the day exceeds ``threshold_``)."""
        self._fitted()
        _, z = _check(frame, scores, surprise, "CompromiseCases")
        if not len(frame):
            return np.zeros(0)
        cd, td, _ = _keys(frame)
        return self._lift(z, cd, td)

    def case_scores(self, frame: pd.DataFrame, scores, surprise) -> np.ndarray:
        """Per row: its card-day's case score, max(the card's own max score of the day, its lift); rank the day's
        card-days by it (each row carries its card-day's value, so a card-day max gives it back)."""
        s, z = _check(frame, scores, surprise, "CompromiseCases")
        if not len(frame):
            return np.zeros(0)
        self._fitted()
        cd, td, _ = _keys(frame)
        own = np.full(cd.max() + 1, -np.inf)
        np.maximum.at(own, cd, s)
        return np.maximum(own[cd], self._lift(z, cd, td))

    def _fitted(self) -> None:
        if not hasattr(self, "threshold_"):
            raise NotFittedError("CompromiseCases is not fitted; call fit(scores, surprise) first")

    def _lift(self, z: np.ndarray, cd: np.ndarray, td: np.ndarray) -> np.ndarray:
        """The lift per row from its surprise ``z``, card-day codes ``cd`` and terminal-day codes ``td``."""
        term_max = np.full(td.max() + 1, -np.inf)
        np.maximum.at(term_max, td, z)  # a terminal's largest surprise of the day, at any time of it
        card_max = np.full(cd.max() + 1, -np.inf)
        np.maximum.at(card_max, cd, term_max[td])  # the most surprising terminal the card used that day
        e = card_max[cd] - self.threshold_
        up = self.level_ + _TINY * (1 - self.level_) * (1 - 1 / (1 + np.maximum(e, 0)))
        return np.where(e > 0, up, 0.0)

    def terminals(self, frame: pd.DataFrame, surprise) -> pd.DataFrame:
        """The day's compromise candidates: one row per terminal-day above ``threshold_`` (day, terminal_id,
        surprise, cards: the distinct cards that used it that day), most surprising first: the case's reason."""
        _, z = _check(frame, np.zeros(len(frame)), surprise, "CompromiseCases")
        _, td, day = _keys(frame)
        d = pd.DataFrame({"day": pd.to_datetime(day * 86_400, unit="s", utc=True), "td": td,
                          "terminal_id": frame["terminal_id"].astype(str).to_numpy(),
                          "card": frame["customer_id"].astype(str).to_numpy(), "z": z})
        g = d.groupby("td", sort=False).agg(day=("day", "first"), terminal_id=("terminal_id", "first"),
                                            surprise=("z", "max"), cards=("card", "nunique"))
        return g[g["surprise"] > self.threshold_].sort_values("surprise", ascending=False).reset_index(drop=True)


def surprise_column(frame: pd.DataFrame) -> np.ndarray:
    """``BH_T_CARDS_SURPRISE_1D`` of every row of a time-ordered frame (timestamp, customer_id, terminal_id,
    amount): each row sees only earlier rows and no label (``fraud.features.behaviour``, opt-in column)."""
    from fraud.features.behaviour import BehaviourFeatures

    f = BehaviourFeatures(groups=("activity",), columns=[COLUMN], cards_surprise=True).fit()
    rows = frame[["timestamp", "customer_id", "terminal_id", "amount"]]
    return f.transform(rows)[COLUMN].to_numpy(dtype=np.float64)
