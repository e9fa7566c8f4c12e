"""Registering a training run: the bundle, its metrics, parameters, tags, curves and plots, in MLflow.

What ``fraud train``, ``fraud retrain`` and ``fraud bench train`` log is the same: one function.
"""
from __future__ import annotations

import tempfile

from fraud.training.plots import curve_figures, embedding_map_files


def log_training(settings, result, name: str, extra_tags=None, champion_if_first: bool = True, run_name=None,
                 df=None) -> str:
    """Log a :class:`~fraud.training.pipeline.TrainResult` to MLflow and register its bundle as ``name``;
    returns the version. ``df`` (the training history) adds the embedding maps."""
    from fraud import registry

    registry.configure(settings.tracking_uri)
    w = result.windows
    figs = curve_figures(result.eval_frame, title=f"eval {w['eval_from'].date()}..{w['eval_until'].date()}")
    tags = {"warnings": " | ".join(result.warnings)[:4000]} if result.warnings else {}
    tags.update(result.tags or {})  # the baseline comparison (fraud.training.baseline)
    tags.update(extra_tags or {})
    try:
        with tempfile.TemporaryDirectory() as tmp:
            maps = embedding_map_files(result.bundle, df, tmp, w["labels_known_before"]) if df is not None else []
            return registry.log_and_register(
                result.bundle, name=name, metrics=result.metrics, params=result.params, tags=tags, figures=figs,
                artifacts={f"plots/{p.name}": p for p in maps}, artifact_root=settings.artifact_root,
                champion_if_first=champion_if_first, run_name=run_name, key=settings.bundle_key)
    finally:
        _close(figs)


def _close(figs: dict) -> None:
    if figs:
        import matplotlib.pyplot as plt

        for f in figs.values():
            plt.close(f)


def log_evaluation(settings, metrics: dict, model_uri: str, version, data, start, end) -> None:
    """``fraud evaluate --log``: the metrics as a run of the experiment ``NAME-evaluations``, tagged with the
    model version, data and window."""
    import mlflow

    from fraud import registry

    exp = registry.ensure_experiment(f"{settings.model_name}-evaluations", settings.artifact_root)
    with mlflow.start_run(experiment_id=exp, run_name="evaluate"):
        mlflow.set_tags({"model_uri": model_uri, "model_version": str(version), "data": str(data),
                         "window": f"[{start}, {end})"})
        mlflow.log_metrics({registry.mlflow_key(k): float(v) for k, v in metrics.items() if v == v})
