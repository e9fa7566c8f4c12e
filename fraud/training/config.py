"""What a training run is asked to do: :class:`TrainConfig` (featurizers, detectors, windows, budget).

One dataclass shared by ``fraud train``, ``fraud retrain`` and the benchmarks; ``params()`` is what
MLflow records of it.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from fraud.errors import ConfigError

BOOK_TREES = 100  # the handbook's random forest: the baseline guard's default size
DEFAULT_FEATURIZERS = ("tabular", "behaviour", "graph", "sequence", "collusion")
DEFAULT_UNSUPERVISED = ("iforest", "ecod", "copod", "hbos", "autoencoder")


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
    #: (``fraud.training.baseline``; needs the tabular featurizer and labelled fraud in both windows)
    baseline_guard: bool = True
    #: trees of the guard's forest (the book's 100; fewer train faster, e.g. in tests and quick experiments)
    baseline_trees: int = BOOK_TREES
    #: days of history (before train-until) replayed through the online path to give the bundle a warm
    #: initial state (``bundle.initial_state_``): a stream scorer starting without a checkpoint then sees
    #: customer/terminal windows and sequence states as of the training cutoff, not empty ones. 0 = off.
    warm_state_days: int = 37
    #: the label-free activity alarm under the collusion alarm (``fraud.detectors.activity``; needs the
    #: behaviour featurizer). Off: no gain on the evasion bench's development worlds, lower AP on bench worlds
    activity_alarm: bool = False
    #: the label-free terminal alarm (``fraud.detectors.activity.terminal_alarm``: a terminal's distinct cards of
    #: the last day far above its own rate lift a row just under the model's confident rows; needs the behaviour
    #: featurizer, whose BH_T_CARDS_SURPRISE column it turns on; skipped without it). Off: rotated terminals 0.26 ->
    #: 0.29 in the loop at a 50-card budget, not 0.5, at a small cost elsewhere (docs/benchmarks.md)
    terminal_alarm: bool = False
    seed: int = 0
    explain: str = "alerts"
    top_reasons: int = 3
    name: str = "fraud-detector"

    def __post_init__(self):
        t = self.baseline_trees
        if isinstance(t, bool) or not isinstance(t, int) or t < 1:
            raise ConfigError(f"training config: baseline_trees={t!r} must be an integer >= 1 (the guard forest's "
                              "trees)")

    def params(self) -> dict:
        return {
            "featurizers": ",".join(self.featurizers), "unsupervised_detectors": ",".join(self.unsupervised),
            "supervised_head": self.supervised or "none", "feedback_delay_days": self.feedback_delay_days,
            "alert_budget_per_day": self.alert_budget_per_day, "eval_days": self.eval_days,
            "warmup_days": self.warmup_days, "seed": self.seed, "max_supervised_rows": self.max_supervised_rows,
            **{f"featurizer.{k}": v for k, v in self.featurizer_params.items()},
            **{f"ensemble.{k}": v for k, v in self.ensemble_params.items()},
            **({"baseline.trees": self.baseline_trees} if self.baseline_trees != BOOK_TREES else {}),
            **({"activity_alarm": True} if self.activity_alarm else {}),
            **({"terminal_alarm": True} if self.terminal_alarm else {}),
        }


def split_list(value: str | None) -> tuple:
    """``"a, b,"`` -> ``("a", "b")`` (a comma-separated option)."""
    return tuple(x.strip() for x in (value or "").split(",") if x.strip())


def config_from_options(settings, name: str, features=None, detectors=None, supervised="lightgbm",
                        eval_days: int = 7, seed=None, head_trees=None, baseline_trees=None
                        ) -> tuple[TrainConfig, dict]:
    """(TrainConfig of the CLI's model options and ``settings``, {featurizer: why skipped}). Without
    ``features``: every default featurizer that imports."""
    from fraud.training.featurizers import available_featurizers

    skipped = {}
    names = split_list(features)
    if not names:
        ok, skipped = available_featurizers(DEFAULT_FEATURIZERS)
        names = tuple(ok)
    kw = {}
    if head_trees:
        kw["ensemble_params"] = {"supervised_params": {"n_estimators": int(head_trees)}}
    if baseline_trees is not None:
        kw["baseline_trees"] = baseline_trees
    if split_list(detectors):
        kw["unsupervised"] = split_list(detectors)
    cfg = TrainConfig(featurizers=names, supervised=None if supervised == "none" else supervised,
                      feedback_delay_days=settings.feedback_delay_days,
                      alert_budget_per_day=settings.alert_budget_per_day, eval_days=eval_days,
                      seed=settings.seed if seed is None else seed, name=name, **kw)
    return cfg, skipped
