"""streaming.batch.score: one model call for a poll's partitions equals scoring each partition alone with its own
state; the result columns are stacked per partition (time order inside each) and ``order`` maps them back."""
from __future__ import annotations

import numpy as np
import pandas as pd

from streaming import batch


def test_one_call_for_all_partitions_equals_each_partition_alone(drift_bundle, drift_world):
    rows = drift_world.sort_values("timestamp", kind="stable").iloc[-600:].reset_index(drop=True)
    rng = np.random.default_rng(0)
    part = rng.integers(0, 3, len(rows)).astype(np.int32)
    offs = np.arange(len(rows), dtype=np.int64) + 100
    many = {p: drift_bundle.new_state() for p in range(3)}
    alone = {p: drift_bundle.new_state() for p in range(3)}
    for lo in range(0, len(rows), 200):  # three polls: each partition's state carries over
        sl = slice(lo, lo + 200)
        res, order, cols = batch.score(drift_bundle, "7", many, rows.iloc[sl], part[sl], offs[sl], "tx")
        want = pd.concat([drift_bundle.score(rows.iloc[sl][part[sl] == p].reset_index(drop=True), alone[p])
                          for p in range(3)], ignore_index=True)
        assert res["tx_id"].tolist() == rows.iloc[sl]["tx_id"].to_numpy()[order].tolist() == want["tx_id"].tolist()
        np.testing.assert_array_equal(res["score"].to_numpy(), want["score"].to_numpy())
        np.testing.assert_array_equal(res["is_alert"].to_numpy(), want["is_alert"].to_numpy())
        assert res["reasons"].tolist() == want["reasons"].tolist()
        assert (res["kafka_partition"].to_numpy() == part[sl][order]).all()
        assert (res["kafka_offset"].to_numpy() == offs[sl][order]).all()
        assert set(res["model_version"]) == {"7"} and list(cols) == list(res.columns)
        assert res["is_alert"].dtype == bool and res["score"].dtype == np.float64


def test_to_frame_groups_a_poll_by_partition_in_time_order():
    from types import SimpleNamespace

    from streaming.decode import EventRules, decode, to_frame

    evs = [(1, "2024-01-31T10:00:03Z"), (0, "2024-01-31T10:00:02Z"), (1, "2024-01-31T10:00:01Z"),
           (0, "2024-01-31T10:00:02Z"), (2, "2024-01-31T10:00:00Z")]
    msgs = [SimpleNamespace(value=('{"tx_id": "t%d", "timestamp": "%s", "customer_id": "c", "terminal_id": "m", '
                                   '"amount": 1.0}' % (i, t)).encode(), key=b"k", partition=p, offset=i,
                            timestamp=1_706_745_600_000) for i, (p, t) in enumerate(evs)]
    d, letters = decode(msgs, EventRules())
    rows, order = to_frame(d)
    assert not letters and order.tolist() == [1, 3, 2, 0, 4]
    assert rows["tx_id"].tolist() == ["t1", "t3", "t2", "t0", "t4"]
    grouped = [msgs[i] for i in (1, 3, 2, 0, 4)]  # already grouped and in time order: nothing moves
    assert to_frame(decode(grouped, EventRules())[0])[1].tolist() == list(range(5))
