"""The promotion gate of ``fraud retrain``: a challenger replaces ``NAME@champion`` only if it wins.

Both are compared on the most recent labelled window whose labels neither trained on; the challenger
must beat the champion's AP by a margin without a worse CP@100. The decision becomes MLflow tags.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from fraud import schema
from fraud.errors import ConfigError
from fraud.training.config import TrainConfig
from fraud.training.data import DAY, apply_labels, hide_recent_labels
from fraud.training.evaluation import score_window, undefined_metrics, window_metrics
from fraud.training.pipeline import train


def promotion_decision(champion: dict, challenger: dict, ap_margin: float = 0.01, k: int = 100) -> tuple[bool, str]:
    """Promote iff challenger AP >= champion AP + margin and challenger CP@k >= champion CP@k."""
    cpk = f"cp@{k}"
    ca, ha = challenger.get("ap", float("nan")), champion.get("ap", float("nan"))
    cc, hc = challenger.get(cpk, float("nan")), champion.get(cpk, float("nan"))
    if not np.isfinite(ca):
        return False, "challenger AP undefined on the gate window (no labelled fraud): champion kept"
    if not np.isfinite(ha):
        return True, f"champion AP undefined on the gate window; challenger AP {ca:.4f}: promoted"
    if ca < ha + ap_margin:
        return False, (f"challenger AP {ca:.4f} does not beat champion AP {ha:.4f} by the margin {ap_margin}: "
                       "champion kept")
    if np.isfinite(hc) and np.isfinite(cc) and cc < hc:
        return False, (f"challenger AP {ca:.4f} beats champion {ha:.4f} by >= {ap_margin}, but CP@{k} "
                       f"{cc:.4f} is worse than champion's {hc:.4f}: champion kept")
    return True, (f"challenger AP {ca:.4f} >= champion AP {ha:.4f} + {ap_margin} and CP@{k} {cc:.4f} >= "
                  f"{hc:.4f}: promoted")


def gate_window(champion_cfg: dict, challenger_windows: dict) -> tuple[pd.Timestamp, pd.Timestamp]:
    """The most recent labelled window neither model's supervised head trained on."""
    start = challenger_windows["label_cutoff"]
    end = challenger_windows["labels_known_before"]
    champ_cut = champion_cfg.get("label_cutoff")
    if champ_cut:
        start = max(start, pd.Timestamp(champ_cut))
    return start, end


def compare_on_window(champion, challenger, df: pd.DataFrame, start, end) -> dict:
    ch = window_metrics(score_window(champion, df, start, end))
    cl = window_metrics(score_window(challenger, df, start, end))
    return {"champion": ch, "challenger": cl}


def retrain_flow(settings, df: pd.DataFrame, cfg: TrainConfig, name: str, labels: pd.DataFrame | None = None,
                 ap_margin: float = 0.01, window_days: int | None = None, progress=None, log=None,
                 unreviewed: str = "genuine") -> dict:
    """Train a challenger on ``df`` (+ analyst ``labels``), compare it with ``name@champion`` on the most
    recent labelled window neither trained on, register it with the decision as tags, move the alias
    only if it wins. ``log(result, tags) -> version`` registers the challenger (the CLI logs curves
    and plots there); default: :func:`fraud.registry.log_and_register`. ``unreviewed``: events without an
    analyst label or a reported fraud are "genuine" (0) or "unknown" (learnt and scored by neither).

    Returns {"decision": "promote"|"keep", "reason", "window", "champion", "challenger" (metric dicts),
    "champion_version", "challenger_version"}.
    """
    from fraud import registry

    say = progress or (lambda msg: None)
    registry.configure(settings.tracking_uri)
    champion, champ_version = _champion(settings, name, say)
    df = apply_labels(df, labels, unreviewed=unreviewed)
    if len(df) == 0:
        raise ConfigError("retrain: no transactions in the data or archive given")
    until = df[schema.TIMESTAMP].iloc[-1].floor("D") + DAY
    train_from = None if window_days is None else until - window_days * DAY
    say(f"training the challenger on {len(df):,} transactions (until {until})")
    res = train(df, cfg, train_from=train_from, train_until=until, progress=say)
    (start, end), ch, cl, promote, reason = gate_decision(champion, champ_version, res, df, ap_margin, say)
    tags = _gate_tags(promote, reason, start, end, ap_margin, champ_version, ch, cl)
    res.metrics.update({f"gate.challenger.{k}": v for k, v in cl.items() if k in ("ap", "auc", "cp@100")})
    res.metrics.update({f"gate.champion.{k}": v for k, v in ch.items() if k in ("ap", "auc", "cp@100")})
    if log is None:
        version = registry.log_and_register(res.bundle, name=name, metrics=res.metrics, params=res.params,
                                            tags={**res.tags, **tags}, artifact_root=settings.artifact_root,
                                            run_name="retrain-challenger", key=settings.bundle_key)
    else:
        version = log(res, tags)
    if promote and champion is not None:
        registry.set_alias(name, registry.CHAMPION, version)
    if promote:
        say(f"models:/{name}@{registry.CHAMPION} -> version {version}")
    return {"decision": tags["retrain.decision"], "reason": reason, "window": [str(start), str(end)],
            "champion": ch, "challenger": cl, "champion_version": champ_version, "challenger_version": version}


def _champion(settings, name: str, say):
    """(the champion bundle, its version), or (None, None) when there is none yet."""
    from fraud import registry
    from fraud.errors import RegistryError

    try:
        version = registry.resolve_alias(name, registry.CHAMPION)
    except RegistryError:
        say(f"no models:/{name}@{registry.CHAMPION} yet: the challenger becomes champion")
        return None, None
    return registry.load_bundle(f"models:/{name}/{version}", key=settings.bundle_key), version


def gate_decision(champion, champ_version, res, df: pd.DataFrame, ap_margin: float, say):
    """The promotion gate without MLflow (``fraud retrain`` and the closed-loop bench): ((start, end) of the gate
    window, champion metrics, challenger metrics, promote?, reason)."""
    w = res.windows
    if champion is None:
        return ((w["eval_from"], w["eval_until"]), undefined_metrics(), window_metrics(res.eval_frame), True,
                "no champion yet: the first model becomes champion")
    start, end = gate_window(champion.config, w)
    if start >= end:
        none = undefined_metrics()
        return ((start, end), none, dict(none), False,
                f"no labelled window that neither model trained on (champion label cutoff "
                f"{champion.config.get('label_cutoff')}, challenger's labels known before {end}): champion kept")
    say(f"comparing champion v{champ_version} and challenger on [{start}, {end})")
    cmp = compare_on_window(champion, res.bundle, hide_recent_labels(df, end), start, end)
    promote, reason = promotion_decision(cmp["champion"], cmp["challenger"], ap_margin)
    return (start, end), cmp["champion"], cmp["challenger"], promote, reason


def _gate_tags(promote: bool, reason: str, start, end, ap_margin: float, champ_version, ch: dict, cl: dict) -> dict:
    tags = {"retrain.decision": "promote" if promote else "keep", "retrain.reason": reason,
            "retrain.window": f"[{start}, {end})", "retrain.ap_margin": ap_margin,
            "retrain.champion_version": champ_version or "none"}
    for who, m in (("champion", ch), ("challenger", cl)):
        for k in ("ap", "auc", "cp@100", "n", "n_fraud"):
            tags[f"retrain.{who}.{k}"] = m.get(k)
    return tags
