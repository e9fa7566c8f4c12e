"""Checkpoints: round trip, atomic write, corrupt file set aside."""
from __future__ import annotations

import pickle

from streaming.state import CheckpointStore


class _Snap:
    def __init__(self, v=None):
        self.v = v

    def snapshot(self) -> bytes:
        return repr(self.v).encode()

    def restore(self, b: bytes):
        self.v = eval(b.decode())  # noqa: S307 - test data
        return self


def test_roundtrip_and_offsets(tmp_path):
    st = CheckpointStore(tmp_path, "transactions")
    state = {"customer": {"A": [1.0, 2.0]}, "n": 3}
    st.save(2, 117, state, "4")
    st.save(0, 5, {"n": 1}, "4")
    ck = st.load(2)
    assert ck.offset == 117 and ck.partition == 2 and ck.model_version == "4" and ck.state == state
    assert st.offsets() == {0: 5, 2: 117}
    assert st.load(1) is None
    assert not list(tmp_path.glob(".*.tmp"))  # the temporary file was renamed
    st.save(2, 200, {"n": 9}, "5")  # overwrite
    assert st.load(2).offset == 200


def test_snapshot_style_state(tmp_path):
    st = CheckpointStore(tmp_path, "tx")
    st.save(0, 1, _Snap([1, 2, 3]), None)
    ck = st.load(0, template=_Snap())
    assert ck.state.v == [1, 2, 3] and ck.model_version is None


def test_corrupt_checkpoint_is_set_aside(tmp_path, caplog):
    st = CheckpointStore(tmp_path, "transactions")
    st.path(3).write_bytes(b"not a pickle")
    assert st.load(3) is None
    assert not st.path(3).exists()
    assert list(tmp_path.glob("transactions-p0003.corrupt-*"))
    assert "checkpoint unreadable" in caplog.text
    # a checkpoint of another topic in the same file name is refused too
    st.path(4).write_bytes(pickle.dumps({"format": 1, "topic": "other", "state": b"P" + pickle.dumps(1)}))
    assert st.load(4) is None


def test_light_checkpoint_and_base_files(tmp_path):
    st = CheckpointStore(tmp_path, "transactions")
    old = st.save_base(1, 10, b"P" + pickle.dumps({"n": 10}), "3", 10)
    name = st.save_base(1, 50, b"P" + pickle.dumps({"n": 50}), "3", 50)
    assert name == st.base_path(1, 50).name and st.load_base(name)["n_scored"] == 50
    base = {"kind": "file", "file": name, "offset": 50, "n_scored": 50, "archive": "/x/archive"}
    st.save(1, 80, None, "3", base=base, n_scored=75)
    ck = st.load(1)
    assert ck.state is None and ck.blob is None and ck.base == base and ck.n_scored == 75 and ck.offset == 80
    assert st.offsets() == {1: 80}  # base files are not checkpoints
    assert st.prune_bases(1, keep=name) == 1
    assert not (tmp_path / old).exists() and (tmp_path / name).exists()
    # a full checkpoint keeps its serialised state as stored (it becomes the base of the next light ones)
    st.save(2, 7, {"n": 7}, "3")
    full = st.load(2)
    assert full.base is None and full.state == {"n": 7} and pickle.loads(full.blob[1:]) == {"n": 7}


def test_light_checkpoint_with_missing_base_is_set_aside(tmp_path, caplog):
    st = CheckpointStore(tmp_path, "transactions")
    st.save(0, 9, None, "1", base={"kind": "file", "file": "gone.ckpt", "offset": 3, "n_scored": 3,
                                   "archive": None}, n_scored=6)
    assert st.load(0) is None
    assert "base file 'gone.ckpt' is missing" in caplog.text
    # a "fresh" base (the model's starting state) needs no file
    st.save(0, 9, None, "1", base={"kind": "fresh", "file": None, "offset": 0, "n_scored": 0, "archive": None},
            n_scored=9)
    assert st.load(0).base["kind"] == "fresh"


def test_writer_gate_opens_while_the_scorer_polls():
    import threading
    import time

    from streaming.loop import Scorer, ServeConfig

    s = Scorer(ServeConfig(bootstrap="127.0.0.1:1", writer_gate_ms=300))
    t0 = time.perf_counter()
    s._writer_gate()  # the scorer is not polling: the gate waits writer_gate_ms, no longer
    waited = time.perf_counter() - t0
    assert 0.25 <= waited < 2.0
    threading.Timer(0.05, s._polling.set).start()
    t0 = time.perf_counter()
    s._writer_gate()  # opens as soon as the scorer enters poll
    assert time.perf_counter() - t0 < 0.25
    s._polling.clear()
    s.cfg.writer_gate_ms = 0
    t0 = time.perf_counter()
    s._writer_gate()  # no gate
    assert time.perf_counter() - t0 < 0.05


def test_waiting_for_the_checkpoint_job_opens_the_writer_gate():
    """The scoring thread waiting for a job (e.g. before its first batch) must not wait out every gated step."""
    import time
    from concurrent.futures import ThreadPoolExecutor

    from streaming.checkpoint import Job
    from streaming.loop import Scorer, ServeConfig

    s = Scorer(ServeConfig(bootstrap="127.0.0.1:1", writer_gate_ms=500))

    def job():
        for _ in range(6):  # six gated steps: 3 s if the gate stayed shut
            s._writer_gate()

    with ThreadPoolExecutor(1) as ex:
        s._ck_job = (ex.submit(job), Job())
        t0 = time.perf_counter()
        s._ck_wait(commit=False)
        assert time.perf_counter() - t0 < 1.5
    assert not s._polling.is_set()  # closed again once the scoring thread goes back to work
