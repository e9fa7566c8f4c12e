"""fraud monitor on a small archive prints PSI per feature and for the score with a verdict; fraud retrain
--if-drift skips when the champion's drift is below the value and retrains when above."""
from __future__ import annotations

import copy
import json

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

@pytest.fixture(scope="module")
def world(drift_world):
    return drift_world


@pytest.fixture(scope="module")
def bundle(drift_bundle):
    """The session's light bundle, copied (other modules share it) and labelled registry version 3."""
    b = copy.copy(drift_bundle)
    b.version = "3"
    return b


def _archive(root, bundle, df):
    """``df`` scored by ``bundle`` and archived as the stream scorer does (fraud.archive.ArchiveWriter)."""
    from fraud.archive import ArchiveWriter

    res = bundle.score_batch(df, explain="none")
    out = df.assign(score=res["score"].to_numpy(), is_alert=res["is_alert"].to_numpy(),
                    reasons=[[] for _ in range(len(df))], model_version="3", kafka_partition=np.int32(0),
                    kafka_offset=np.arange(len(df), dtype=np.int64))
    w = ArchiveWriter(root, "transactions")
    w.write(out)
    assert w.flush()
    return root


def _cli(monkeypatch, bundle, args):
    from fraud import registry
    from fraud.cli import main

    monkeypatch.setattr(registry, "load_bundle", lambda uri, **kw: bundle)
    return CliRunner().invoke(main, args)


def test_monitor_prints_the_table_sorted_with_verdicts(monkeypatch, tmp_path, bundle, world):
    last = world["timestamp"] > world["timestamp"].max() - pd.Timedelta(days=7)
    moved = world.assign(amount=np.where(last, world["amount"] * 4.0, world["amount"]))
    root = _archive(tmp_path / "archive", bundle, moved)
    r = _cli(monkeypatch, bundle, ["monitor", "--archive", str(root), "--days", "7"])
    assert r.exit_code == 0, r.output
    lines = r.output.splitlines()
    assert "(version 3)" in lines[0] and "vs training window" in lines[0]
    assert lines[1].split() == ["PSI", "verdict"] and lines[2].split()[0] == "score"
    rows = [ln.split() for ln in lines[3:-1]]
    assert {x[0] for x in rows} == set(bundle.feature_names)
    psis = [float(x[1]) for x in rows]
    assert psis == sorted(psis, reverse=True)
    assert rows[0][2] == "drifted" and ["TX_AMOUNT", "drifted"] in [[x[0], x[2]] for x in rows]
    assert rows[-1][2] == "stable"  # e.g. the terminal counts: amounts moved, not traffic
    assert lines[-1].startswith("max PSI ") and "(drifted)" in lines[-1]
    js = json.loads(_cli(monkeypatch, bundle, ["monitor", "--archive", str(root), "--json"]).output)
    assert js["version"] == "3" and js["features"]["TX_AMOUNT"] > 0.25 and js["max_psi"] >= js["score"]


def test_monitor_says_when_the_model_has_no_profile(monkeypatch, tmp_path, bundle, world):
    import copy

    old = copy.copy(bundle)
    old.drift_profile = None
    root = _archive(tmp_path / "archive", bundle, world.iloc[-2000:].reset_index(drop=True))
    r = _cli(monkeypatch, old, ["monitor", "--archive", str(root)])
    assert r.exit_code != 0 and "no drift profile" in str(r.exception)


def test_retrain_if_drift_skips_below_and_retrains_above(monkeypatch, tmp_path, bundle, world):
    import fraud.training

    data = tmp_path / "w.parquet"
    world.to_parquet(data)
    ran = []

    def flow(settings, df, cfg, name, **kw):
        ran.append(name)
        return {"window": ["a", "b"], "champion_version": "3", "challenger_version": "4", "champion": {},
                "challenger": {}, "decision": "keep", "reason": "test"}

    monkeypatch.setattr(fraud.training, "retrain_flow", flow)
    r = _cli(monkeypatch, bundle, ["retrain", "--data", str(data), "--if-drift", "5", "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.output.strip().splitlines()[-1])
    assert out["decision"] == "skipped" and "not above --if-drift 5" in out["reason"] and out["drift.max_psi"] < 5
    assert ran == []
    r = _cli(monkeypatch, bundle, ["retrain", "--data", str(data), "--if-drift", "0.0001"])
    assert r.exit_code == 0, r.output
    assert ran == ["fraud-detector"] and "decision: keep" in r.output
