"""``fraud bench loop --unreviewed reliable``: positive-unlabelled learning's reliable negatives. A loop event no
analyst decided reaches the weekly retrain as genuine (0) when the model version that scored it live put it below
``--reliable-quantile`` of that version's live scores, else unknown (-1); reviewed events keep the analyst's
decision. Checked through the CLI on a tiny world, reading what the retrain receives."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

import benchmarks.loop as loop
from benchmarks.loop import LoopConfig, loop_labels, reliable_negatives, unreviewed_frauds, with_labels
from fraud.cli import main
from fraud.errors import ConfigError

Q = 0.8
WORLD = {"seed": 5, "customers": 150, "terminals": 300, "weeks": 6, "train_weeks": 3, "onset_weeks": 0}
TINY = ['featurizers=["tabular","behaviour"]', 'unsupervised=["hbos"]', "supervised=lightgbm",
        'ensemble_params={"supervised_params":{"n_estimators":30}}', "warm_state_days=14",
        "baseline_trees=20"]  # a small guard forest: the structure, not its figures


class Recorder:
    """Wraps the loop's own score_day, analyst and _train (each still runs) and keeps what they saw."""

    def __init__(self, monkeypatch):
        self.scores, self.decisions, self.trained = [], [], []
        for name in ("score_day", "analyst", "_train"):
            monkeypatch.setattr(loop, name, self._wrap(name, getattr(loop, name)))

    def _wrap(self, name, real):
        def spy(*a, **kw):
            out = real(*a, **kw)
            if name == "score_day":
                self.scores.append(out[["tx_id", "score"]].assign(version=str(a[0].version)))
            elif name == "analyst":
                self.decisions.append(out[["tx_id", "label"]])
            else:  # the frame a training receives, and how many days had been scored before it
                self.trained.append((a[0][["tx_id", "timestamp", "label"]].copy(), len(self.scores)))
            return out
        return spy


@pytest.fixture(scope="module")
def run():
    mp = pytest.MonkeyPatch()
    rec = Recorder(mp)
    args = ["bench", "loop", "--arms", "full", "--budget", "5", "--cases", "3", "--unreviewed", "reliable",
            "--reliable-quantile", str(Q), "--json"]
    args += [a for k, v in WORLD.items() for a in (f"--{k.replace('_', '-')}", str(v))]
    try:
        res = CliRunner().invoke(main, args + [a for s in TINY for a in ("--set", s)])
    finally:
        mp.undo()
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout), rec


@pytest.mark.slow
def test_the_retrain_receives_reliable_negatives_unknown_near_misses_and_the_analysts_decisions(run):
    res, rec = run
    train_until = pd.Timestamp(res["train_until"])
    assert res["config"]["loop"]["unreviewed"] == "reliable" and res["config"]["loop"]["reliable_quantile"] == Q
    retrains = res["arms"]["full"]["retrains"]
    assert len(retrains) == 2 == len(rec.trained) - 1  # the initial training, then one a week
    for (df, n_days), r in zip(rec.trained[1:], retrains):
        live = pd.concat(rec.scores[:n_days], ignore_index=True)
        cuts = live.groupby("version")["score"].apply(lambda s: np.quantile(s.to_numpy(), Q))
        assert r["reliable_cuts"] == pytest.approx(cuts.to_dict())
        decided = pd.concat(rec.decisions[:n_days]).drop_duplicates("tx_id", keep="last").set_index("tx_id")
        lab = df.set_index(df["tx_id"].astype(str))["label"]
        loop_tx = df.loc[df["timestamp"] >= train_until, "tx_id"].astype(str)
        reviewed = loop_tx[loop_tx.isin(decided.index)]
        assert len(reviewed) and (lab[reviewed].to_numpy() == decided.loc[reviewed, "label"].to_numpy()).all()
        rest = live.set_index("tx_id").loc[loop_tx[~loop_tx.isin(decided.index)]]
        below = rest["score"].to_numpy() < rest["version"].map(cuts).to_numpy()
        got = lab[rest.index].to_numpy()
        assert below.any() and (~below).any()
        assert (got[below] == 0).all() and (got[~below] == -1).all()
        assert r["labels"]["unknown"] == int((~below).sum())
    assert len(retrains[1]["reliable_cuts"]) == 1 + retrains[0]["promote"]  # a promoted model gets its own cut


def test_reliable_negatives_cut_per_model_version():
    live = pd.DataFrame({"tx_id": list("abcdefgh"), "score": [1, 2, 3, 4, 10, 20, 30, 40.0],
                         "model_version": ["1"] * 4 + ["2"] * 4})
    ok, cuts = reliable_negatives(live, 0.5)
    assert cuts == {"1": 2.5, "2": 25.0}  # each version's own median: version 2's scale does not move version 1's
    assert ok.to_dict() == dict(zip("abcdefgh", [True, True, False, False] * 2))
    with pytest.raises(ConfigError, match="live scores"):
        reliable_negatives(live.iloc[:0], 0.5)


def test_loop_labels_reliable_keeps_history_and_the_latest_decision():
    ts = pd.to_datetime(["2019-01-01", "2019-01-02", "2019-01-03", "2019-01-04", "2019-01-05"], utc=True)
    seen = pd.DataFrame({"tx_id": list("abcde"), "timestamp": ts, "customer_id": "k", "terminal_id": "t",
                         "amount": 1.0, "label": [1, 1, 1, 1, 0]})
    ok = pd.Series([True, False, True, False], index=list("bcde"))
    dec = [pd.DataFrame({"tx_id": ["c"], "label": [0]}), pd.DataFrame({"tx_id": ["c"], "label": [1]})]
    got = with_labels(seen, loop_labels(seen, ts[1], dec, "reliable", ok)).set_index("tx_id")["label"].to_dict()
    assert got == {"a": 1, "b": 0, "c": 1, "d": 0, "e": -1}  # a: the initial file's; c: the analyst's last word
    with pytest.raises(ConfigError, match="no live score, e.g. tx_id 'e'"):
        loop_labels(seen, ts[1], dec, "reliable", ok.iloc[:3])
    for q in (0, 1, 1.5, True, "0.9"):
        with pytest.raises(ConfigError, match="reliable_quantile"):
            LoopConfig(unreviewed="reliable", reliable_quantile=q).check()


def test_unreviewed_frauds_counts_missed_frauds_by_the_label_they_got():
    ts = pd.to_datetime([f"2019-01-0{d}" for d in range(1, 8)], utc=True)
    seen = pd.DataFrame({"tx_id": list("abcdefg"), "timestamp": ts, "label": [1, 1, 1, 1, 1, 0, 1],
                         "scenario": [2, 2, 21, 21, 3, 0, 21]})
    ok = pd.Series([True, False, True, False, True, False], index=list("bcdefg"))
    labels = loop_labels(seen, ts[1], [pd.DataFrame({"tx_id": ["e", "g"], "label": [1, 1]})], "reliable", ok)
    # a: before the loop; e, g: decided; f: genuine; b (2) and d (21) taught genuine, c (21) skipped
    assert unreviewed_frauds(seen, labels, ts[1]) == {"genuine": {2: 1, 21: 1}, "unknown": {21: 1}}
