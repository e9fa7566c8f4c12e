"""Detectors: unsupervised (PyOD contract), supervised head, fusion, thresholds, reason codes.

Public API::

    from fraud.detectors import Ensemble, threshold_for_budget, threshold_for_precision
    ens = Ensemble(unsupervised=("iforest", "ecod", "copod", "hbos", "autoencoder"),
                   supervised="lightgbm", combine="auto", seed=0).fit(X_df, y)   # y: NaN/-1 = unknown
    scores = ens.decision_function(X_df)          # [0, 1]
    ens.detector_scores(X_df); ens.explain(X_df, top=3)
"""
from fraud.detectors.ensemble import COMBINES, Ensemble
from fraud.detectors.fusion import LogisticCombiner, MaxCombiner, MeanCombiner, RankNormalizer, make_combiner
from fraud.detectors.supervised import SUPERVISED, SupervisedHead, labelled_mask
from fraud.detectors.threshold import threshold_for_budget, threshold_for_precision
from fraud.detectors.unsupervised import (UNSUPERVISED, AutoEncoderDetector, FastCOPOD, FastECOD, FastIForest,
                                          make_detector)

__all__ = [
    "Ensemble", "COMBINES", "UNSUPERVISED", "SUPERVISED", "make_detector", "FastECOD", "FastCOPOD", "FastIForest",
    "AutoEncoderDetector", "SupervisedHead", "labelled_mask", "RankNormalizer", "MeanCombiner", "MaxCombiner",
    "LogisticCombiner", "make_combiner", "threshold_for_budget", "threshold_for_precision",
]
