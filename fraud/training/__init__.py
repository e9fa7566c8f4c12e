"""Training: canonical transactions -> a registered :class:`fraud.bundle.ScoringBundle`, as stages.

``config`` (what to train), ``data`` (windows, known labels, the archive), ``featurizers``, ``detector``,
``baseline`` (the book-forest guard), ``threshold``, ``evaluation``, ``warm`` (initial state), composed by
``pipeline.train``; ``gate`` (the promotion gate of ``fraud retrain``), ``plots`` and ``register`` (MLflow).
"""
from fraud.training.config import FraudTrainingWarning, TrainConfig
from fraud.training.data import read_archive
from fraud.training.gate import retrain_flow
from fraud.training.pipeline import TrainResult, train

__all__ = ["FraudTrainingWarning", "TrainConfig", "TrainResult", "read_archive", "retrain_flow", "train"]
