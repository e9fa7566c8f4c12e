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
