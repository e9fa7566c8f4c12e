"""Checkpoints: round trip, atomic write, corrupt file set aside, extras; data only (a planted pickle never runs);
a restored state scores like the one that was saved, bit for bit."""
from __future__ import annotations

import copy
import io
import json
import pickle
import warnings
import zipfile

import numpy as np
import pandas as pd
import pytest

from fraud import safestate
from fraud.bundle import BundleState
from fraud.errors import StateError
from streaming.state import CheckpointStore, dump_state, load_state


def _st(n: int) -> BundleState:
    return BundleState([], n_scored=n, last_timestamp=pd.Timestamp("2024-01-02 03:04:05", tz="UTC"),
                       extra={"warm_until": "x"})


def test_roundtrip_and_offsets(tmp_path):
    st = CheckpointStore(tmp_path, "transactions")
    st.save(2, 117, _st(3), "4")
    st.save(0, 5, _st(1), "4")
    ck = st.load(2)
    assert ck.offset == 117 and ck.partition == 2 and ck.model_version == "4" and ck.state == _st(3)
    assert ck.extras == {}
    assert st.offsets() == {0: 5, 2: 117}
    assert st.load(1) is None
    assert not list(tmp_path.glob(".*.tmp"))  # the temporary file was renamed
    st.save(2, 200, _st(9), "5")  # overwrite
    assert st.load(2).offset == 200


def test_only_allowlisted_state_classes_are_saved():
    with pytest.raises(StateError, match="'dict' is not one of the allowed state classes"):
        dump_state({"n": 1})
    with pytest.raises(StateError, match="expected a BundleState"):
        load_state(_graph_blob(), template=_st(0))


def _graph_blob() -> bytes:
    from fraud.features.graph import GraphState

    return dump_state(GraphState(4, 4, 4))


def test_extras_are_saved_alongside(tmp_path):
    st = CheckpointStore(tmp_path, "transactions")
    seen = {"tx_ids": np.array([3, 1, 2**62], dtype=np.int64), "hashes": np.array([2**64 - 1], dtype=np.uint64)}
    st.save(1, 10, _st(10), "1", extras=seen)
    ck = st.load(1)
    assert sorted(ck.extras) == ["hashes", "tx_ids"]
    assert ck.extras["tx_ids"].dtype == np.int64 and (ck.extras["tx_ids"] == seen["tx_ids"]).all()
    assert ck.extras["hashes"].dtype == np.uint64 and ck.extras["hashes"][0] == 2**64 - 1
    name = st.save_base(1, 10, dump_state(_st(10)), "1", 10, extras={"tx_ids": seen["tx_ids"][:1]})
    assert st.load_base(name)["extras"]["tx_ids"].tolist() == [3]
    assert st.load_base(st.save_base(1, 11, dump_state(_st(11)), "1", 11))["extras"] == {}
    with pytest.raises(StateError, match="dtype object"):
        st.save(1, 12, _st(12), "1", extras={"ids": np.array(["a"], dtype=object)})
    with pytest.raises(StateError, match="must match"):
        st.save(1, 12, _st(12), "1", extras={"a/b": np.zeros(1)})


def test_corrupt_checkpoint_is_set_aside(tmp_path, caplog):
    st = CheckpointStore(tmp_path, "transactions")
    st.path(3).write_bytes(b"not a checkpoint")
    assert st.load(3) is None
    assert not st.path(3).exists()
    assert list(tmp_path.glob("transactions-p0003.corrupt-*"))
    assert "checkpoint unreadable" in caplog.text and "transactions-p0003.ckpt" in caplog.text
    # a checkpoint of another topic in the same file name is refused too
    other = CheckpointStore(tmp_path / "o", "other")
    st.path(4).write_bytes(other.save(4, 1, _st(1), "1").read_bytes())
    assert st.load(4) is None and "topic 'other'" in caplog.text
    # a torn file
    st.save(5, 1, _st(1), "1")
    st.path(5).write_bytes(st.path(5).read_bytes()[:-40])
    assert st.load(5) is None


def test_light_checkpoint_and_base_files(tmp_path):
    st = CheckpointStore(tmp_path, "transactions")
    old = st.save_base(1, 10, dump_state(_st(10)), "3", 10)
    name = st.save_base(1, 50, dump_state(_st(50)), "3", 50)
    assert name == st.base_path(1, 50).name and st.load_base(name)["n_scored"] == 50
    assert load_state(st.load_base(name)["state"], _st(0)) == _st(50)
    base = {"kind": "file", "file": name, "offset": 50, "n_scored": 50, "archive": "/x/archive"}
    st.save(1, 80, None, "3", base=base, n_scored=75)
    ck = st.load(1)
    assert ck.state is None and ck.blob is None and ck.base == base and ck.n_scored == 75 and ck.offset == 80
    assert st.offsets() == {1: 80}  # base files are not checkpoints
    assert st.prune_bases(1, keep=name) == 1
    assert not (tmp_path / old).exists() and (tmp_path / name).exists()
    # a full checkpoint keeps its serialised state as stored (it becomes the base of the next light ones)
    st.save(2, 7, _st(7), "3")
    full = st.load(2)
    assert full.base is None and full.state == _st(7) and load_state(full.blob) == _st(7)
    # a base file is not a checkpoint, nor the other way round; a base outside the state dir is never read
    with pytest.raises(StateError, match="kind 'checkpoint'"):
        _load_as_base(st)
    with pytest.raises(StateError, match="not a base file"):
        st.load_base("../elsewhere.ckpt")


def _load_as_base(st):
    fake = st.base_path(2, 7)
    fake.write_bytes(st.path(2).read_bytes())
    return st.load_base(fake.name)


def test_light_checkpoint_with_missing_base_is_set_aside(tmp_path, caplog):
    st = CheckpointStore(tmp_path, "transactions")
    gone = st.base_path(0, 3).name
    st.save(0, 9, None, "1", base={"kind": "file", "file": gone, "offset": 3, "n_scored": 3,
                                   "archive": None}, n_scored=6)
    assert st.load(0) is None
    assert f"base file {gone!r} is missing" in caplog.text
    # a base named outside the partition's own base files is refused
    st.save(0, 9, None, "1", base={"kind": "file", "file": "../../etc/passwd", "offset": 3, "n_scored": 3,
                                   "archive": None}, n_scored=6)
    assert st.load(0) is None and "not a base file" in caplog.text
    # a "fresh" base (the model's starting state) needs no file
    st.save(0, 9, None, "1", base={"kind": "fresh", "file": None, "offset": 0, "n_scored": 0, "archive": None},
            n_scored=9)
    assert st.load(0).base["kind"] == "fresh"


# -- a planted file never runs ------------------------------------------------------------------------------
class _Planted:
    """What an attacker plants: unpickling it writes the marker file (stands for any shell command)."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (_touch, (self.marker,))


def _touch(path):  # module-level so that the pickle refers to it by name
    with open(path, "w") as f:
        f.write("ran")
    return 0


def _npz(path, header: dict, **arrays) -> None:
    with open(path, "wb") as f:
        safestate.write_npz(f, header, arrays)


def test_a_planted_pickle_is_refused_and_never_runs(tmp_path, caplog):
    marker = tmp_path / "marker"
    state_dir = tmp_path / "state"
    st = CheckpointStore(state_dir, "transactions")
    evil = pickle.dumps(_Planted(marker))
    pickle.loads(evil)  # the plant works when unpickled...
    assert marker.exists()
    marker.unlink()
    # ...as the partition's checkpoint (an old-format pickle checkpoint, or raw): set aside, nothing ran
    old_format = pickle.dumps({"format": 1, "topic": "transactions", "partition": 0, "offset": 5,
                               "model_version": "1", "state": b"P" + evil, "saved_at": 0.0})
    for i, data in enumerate((evil, old_format)):
        st.path(i).write_bytes(data)
        assert st.load(i, template=_st(0)) is None
        assert list(state_dir.glob(f"transactions-p{i:04d}.corrupt-*"))
    assert "an older pickle-format file is never unpickled" in caplog.text
    assert st.offsets() == {}
    # ...as a base file
    base = st.base_path(2, 4)
    base.write_bytes(old_format)
    st.save(2, 9, None, "1", base={"kind": "file", "file": base.name, "offset": 4, "n_scored": 4, "archive": None},
            n_scored=9)
    ck = st.load(2)
    with pytest.raises(StateError, match="never unpickled"):
        st.load_base(ck.base["file"])
    # ...inside a well-formed checkpoint: the state bytes are a pickle, or an npy member holds a pickled object
    # array, or the header names a class outside the allowlist
    ok = {"format": 2, "kind": "checkpoint", "topic": "transactions", "partition": 3, "offset": 1,
          "model_version": "1", "saved_at": 0.0, "base": None, "n_scored": None}
    cases = [np.frombuffer(b"P" + evil, np.uint8)]
    buf = io.BytesIO()
    np.savez(buf, header=np.frombuffer(json.dumps({"class": "BundleState", "meta": {}, "arrays": ["x"],
                                                   "strings": [], "children": []}).encode(), np.uint8),
             **{"s.x": np.array([_Planted(marker)], dtype=object)})
    cases.append(np.frombuffer(buf.getvalue(), np.uint8))
    buf = io.BytesIO()
    safestate.write_npz(buf, {"class": "posix.system", "meta": {}, "arrays": [], "strings": [], "children": []}, {})
    cases.append(np.frombuffer(buf.getvalue(), np.uint8))
    for state in cases:
        _npz(st.path(3), ok, state=state)
        assert st.load(3, template=_st(0)) is None
    assert "'posix.system' is not one of the allowed state classes" in caplog.text
    assert "allow_pickle=False" in caplog.text
    assert not marker.exists()


# -- restore == replay, bit for bit ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def trained():
    """A small bundle with every featurizer (tabular, behaviour, graph, sequence) and its world."""
    from fraud.simulate import simulate
    from fraud.training import TrainConfig, train

    world = simulate(customers=150, terminals=300, days=40, seed=5)
    cfg = TrainConfig(featurizers=("tabular", "behaviour", "graph", "sequence"), unsupervised=("hbos",),
                      supervised=None, warm_state_days=10,
                      featurizer_params={"sequence": {"epochs": 1, "max_train_events": 5000, "hidden": 8,
                                                      "term_dim": 4}})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return train(world, cfg, unsupervised=True).bundle, world


def test_a_restored_state_scores_like_the_saved_one(tmp_path, trained):
    bundle, world = trained
    live = world.iloc[-3000:]
    state = bundle.warm_state()
    bundle.score_frame(live.iloc[:1500], batch_size=200, state=state)
    st = CheckpointStore(tmp_path, "transactions")
    st.save(0, 1500, state, "1")
    name = st.save_base(0, 1500, st.load(0).blob, "1", state.n_scored)
    restored = [st.load(0, template=bundle.new_state()).state,
                load_state(st.load_base(name)["state"], bundle.new_state())]
    assert [type(s).__name__ for s in state.featurizer_states] == ["BaselineState", "BehaviourState", "GraphState",
                                                                   "SequenceState"]
    ref = copy.deepcopy(state)
    expected = bundle.score_frame(live.iloc[1500:], batch_size=100, state=ref)
    for r in restored:
        assert r.n_scored == state.n_scored and r.last_timestamp == state.last_timestamp and r.extra == state.extra
        got = bundle.score_frame(live.iloc[1500:], batch_size=100, state=r)
        assert got["score"].to_numpy().tobytes() == expected["score"].to_numpy().tobytes()
        assert (got["is_alert"] == expected["is_alert"]).all()
        h1, a1 = safestate.encode(ref)
        h2, a2 = safestate.encode(r)
        assert h1 == h2 and sorted(a1) == sorted(a2)
        for k in a1:
            assert a1[k].dtype == a2[k].dtype and a1[k].tobytes() == a2[k].tobytes(), k


def test_checkpoint_files_are_zip_archives_of_arrays(tmp_path, trained):
    bundle, _ = trained
    p = CheckpointStore(tmp_path, "t").save(0, 1, bundle.warm_state(), "1")
    with zipfile.ZipFile(p) as z:
        names = z.namelist()
    assert "header.npy" in names and "state.npy" in names
    with np.load(p, allow_pickle=False) as z:
        inner = np.load(io.BytesIO(z["state"].tobytes()), allow_pickle=False)
        assert all(inner[k].dtype != object for k in inner.files)


def test_writer_gate_opens_while_the_scorer_polls(tmp_path):
    import threading
    import time

    from streaming.loop import Scorer, ServeConfig

    s = Scorer(ServeConfig(bootstrap="127.0.0.1:1", writer_gate_ms=300, state_dir=str(tmp_path)))
    t0 = time.perf_counter()
    s.ck.gate()  # the scorer is not polling: the gate waits writer_gate_ms, no longer
    waited = time.perf_counter() - t0
    assert 0.25 <= waited < 2.0
    threading.Timer(0.05, s.ck.polling.set).start()
    t0 = time.perf_counter()
    s.ck.gate()  # opens as soon as the scorer enters poll
    assert time.perf_counter() - t0 < 0.25
    s.ck.polling.clear()
    s.cfg.writer_gate_ms = 0
    t0 = time.perf_counter()
    s.ck.gate()  # no gate
    assert time.perf_counter() - t0 < 0.05


def test_waiting_for_the_checkpoint_job_opens_the_writer_gate(tmp_path):
    """The scoring thread waiting for a job (e.g. before its first batch) must not wait out every gated step."""
    import time
    from concurrent.futures import ThreadPoolExecutor

    from streaming.checkpoint import Job
    from streaming.loop import Scorer, ServeConfig

    s = Scorer(ServeConfig(bootstrap="127.0.0.1:1", writer_gate_ms=500, state_dir=str(tmp_path)))

    def job():
        for _ in range(6):  # six gated steps: 3 s if the gate stayed shut
            s.ck.gate()

    with ThreadPoolExecutor(1) as ex:
        s.ck.in_flight = (ex.submit(job), Job())
        t0 = time.perf_counter()
        s.ck.wait(commit=False)
        assert time.perf_counter() - t0 < 1.5
    assert not s.ck.polling.is_set()  # closed again once the scoring thread goes back to work


def _paced_job(s, steps, step_s):
    """Run ``steps`` gated steps of ``step_s`` seconds each as the writer thread runs a job; returns its seconds."""
    import time

    from streaming.checkpoint import Job

    def save(items, version):  # each item is one gated step of the job
        t = time.perf_counter()
        while time.perf_counter() - t < step_s:
            pass

    s.ck.save = save
    t0 = time.perf_counter()
    s.ck.run_paced(Job(items=list(range(steps))))
    return time.perf_counter() - t0


def test_writer_paces_its_steps(tmp_path):
    """Between two steps of a background job the writer leaves the scoring thread ``writer_pace`` times the time
    the last step took (its share of the GIL <= 1 / (1 + pace)), never past half the checkpoint interval."""
    from streaming.loop import Scorer, ServeConfig

    s = Scorer(ServeConfig(bootstrap="127.0.0.1:1", writer_gate_ms=0, writer_pace=3.0, checkpoint_interval=60,
                           state_dir=str(tmp_path)))
    paced = _paced_job(s, 5, 0.04)  # 5 steps of 40 ms: 4 pauses of >= 120 ms
    assert paced >= 0.2 + 4 * 0.12 * 0.9
    s.cfg.writer_pace = 0
    assert _paced_job(s, 5, 0.04) < paced / 2  # no pacing: the steps back to back
    s.cfg.writer_pace, s.cfg.checkpoint_interval = 50.0, 0.6
    assert _paced_job(s, 5, 0.04) < 0.3 + 0.2 + 0.3  # pauses end when the job has run half the interval
    assert s.ck._paced is None  # only a running job is paced
    s.ck.gate()  # outside a job: no pause


def test_waiting_for_the_job_stops_the_pacing(tmp_path):
    """The scoring thread waiting for a job (a rebalance, a model swap, shutdown) must not wait out its pauses."""
    import time
    from concurrent.futures import ThreadPoolExecutor

    from streaming.checkpoint import Job
    from streaming.loop import Scorer, ServeConfig

    s = Scorer(ServeConfig(bootstrap="127.0.0.1:1", writer_gate_ms=0, writer_pace=100.0, checkpoint_interval=60,
                           state_dir=str(tmp_path)))
    s.ck.save = lambda items, version: time.sleep(0.02)  # 20 ms steps: 2 s pauses when paced

    with ThreadPoolExecutor(1) as ex:
        s.ck.in_flight = (ex.submit(s.ck.run_paced, Job(items=list(range(4)))), Job())
        time.sleep(0.1)  # inside the first pause
        t0 = time.perf_counter()
        s.ck.wait(commit=False)
        assert time.perf_counter() - t0 < 1.0
    assert not s.ck.hurry.is_set()
