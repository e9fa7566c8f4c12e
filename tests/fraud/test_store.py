from __future__ import annotations

import pandas as pd
import pytest

from fraud.errors import ConfigError
from fraud.store import AlertStore


def alerts_frame(ids):
    n = len(ids)
    return pd.DataFrame({
        "tx_id": ids, "timestamp": pd.date_range("2024-01-01", periods=n, freq="h", tz="UTC"),
        "customer_id": ["c"] * n, "terminal_id": ["t"] * n, "amount": [1.0] * n, "score": [0.9] * n,
        "reasons": [["feature:amount high"]] * n,
    })


def test_alerts_are_idempotent_by_tx_id(tmp_path):
    s = AlertStore(f"sqlite:///{tmp_path}/a.db")
    assert s.write_alerts(alerts_frame(["1", "2"]), model_version="3") == 2
    assert s.write_alerts(alerts_frame(["2", "3", "3"])) == 1  # 2 already stored; 3 once
    got = s.read_alerts()
    assert got["tx_id"].tolist() == ["1", "2", "3"] and s.count_alerts() == 3
    assert got["reasons"].iloc[0] == ["feature:amount high"] and got["model_version"].iloc[0] == "3"


def test_reasons_written_by_another_tool_are_kept_as_text_with_a_warning(tmp_path, caplog):
    s = AlertStore(f"sqlite:///{tmp_path}/a.db")
    s.write_alerts(alerts_frame(["1", "2", "3"]))
    with s.engine.begin() as conn:
        conn.exec_driver_sql("UPDATE alerts SET reasons = 'amount far above usual' WHERE tx_id = '2'")
        conn.exec_driver_sql("UPDATE alerts SET reasons = '{\"a\": 1}' WHERE tx_id = '3'")
    with caplog.at_level("WARNING", logger="fraud.store"):
        got = s.read_alerts()
    assert got["reasons"].tolist() == [["feature:amount high"], ["amount far above usual"], ['{"a": 1}']]
    assert "2 alert(s) have reasons that are not a JSON list (kept as text), e.g. tx_id 2, 3" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING", logger="fraud.store"):
        s.read_alerts()
    assert "not a JSON list" not in caplog.text                   # said once per row


def test_alert_rows_keep_their_values_naive_times_are_utc_and_a_racing_writer_is_ignored(tmp_path):
    s = AlertStore(f"sqlite:///{tmp_path}/a.db")
    df = alerts_frame(["a", "b"]).assign(timestamp=pd.to_datetime(["2024-01-01 10:00", "2024-01-01 11:30"]),
                                         scenario=[4.0, float("nan")], model_version=["7", None],
                                         reasons=['["x"]', ("y", "z")])
    assert s.write_alerts(df, model_version="9") == 2
    got = s.read_alerts().set_index("tx_id")
    assert got.loc["a", "timestamp"] == pd.Timestamp("2024-01-01 10:00", tz="UTC")
    assert got.loc["a", "scenario"] == 4 and pd.isna(got.loc["b", "scenario"])
    assert got.loc["a", "model_version"] == "7" and got.loc["b", "model_version"] == "9"
    assert got.loc["a", "reasons"] == ["x"] and got.loc["b", "reasons"] == ["y", "z"]
    # another scorer stored "c" between our check and our insert: the insert skips it instead of failing
    row = {"tx_id": "c", "timestamp": pd.Timestamp("2024-01-02", tz="UTC").to_pydatetime(), "customer_id": "c",
           "terminal_id": "t", "amount": 1.0, "score": 0.5, "reasons": "[]", "model_version": None, "scenario": None,
           "created_at": pd.Timestamp("2024-01-02", tz="UTC").to_pydatetime()}
    with s.engine.begin() as conn:
        conn.execute(s._insert_ignoring_duplicates(), [row])
        conn.execute(s._insert_ignoring_duplicates(), [row, {**row, "tx_id": "d"}])
    assert s.count_alerts() == 4


def test_decisions_become_labels_latest_wins(tmp_path):
    s = AlertStore(f"sqlite:///{tmp_path}/a.db")
    s.add_decision("fraud", "ann", ["1", "2"], cluster_id="k1", note="ring")
    s.add_decision("note", "bob", [], cluster_id="k1", note="looked again")
    s.add_decision("legit", "bob", ["2"])
    lab = s.labels().set_index("tx_id")["label"].to_dict()
    assert lab == {"1": 1, "2": 0}
    d = s.read_decisions()
    assert d["analyst"].tolist() == ["ann", "ann", "bob", "bob"] and d["note"].iloc[2] == "looked again"


def test_bad_inputs_name_the_value(tmp_path):
    with pytest.raises(ConfigError, match="'nonsense'"):
        AlertStore("nonsense")
    s = AlertStore(f"sqlite:///{tmp_path}/a.db")
    with pytest.raises(ConfigError, match="'maybe'"):
        s.add_decision("maybe", "ann", ["1"])


def _hold_lock(path, seconds):
    """Another connection holds SQLite's write lock for ``seconds`` (as a long report or a second writer would)."""
    import sqlite3
    import threading

    con = sqlite3.connect(path, check_same_thread=False)
    con.execute("BEGIN EXCLUSIVE")
    t = threading.Timer(seconds, lambda: (con.rollback(), con.close()))
    t.start()
    return t


def _alerts(n=3):
    return pd.DataFrame({"tx_id": [f"a{i}" for i in range(n)], "timestamp": pd.Timestamp("2024-01-01", tz="UTC"),
                         "customer_id": "C", "terminal_id": "T", "amount": 1.0, "score": 0.9,
                         "reasons": [["r"]] * n, "model_version": "1"})


def test_a_locked_store_is_retried_with_backoff_until_the_lock_goes(tmp_path):
    import time

    store = AlertStore(f"sqlite:///{tmp_path / 'a.db'}", busy_seconds=10, lock_wait=0.2)
    t = _hold_lock(tmp_path / "a.db", 1.5)
    t0 = time.monotonic()
    assert store.write_alerts(_alerts()) == 3
    assert time.monotonic() - t0 >= 1.0
    t.join()


def test_a_store_locked_past_the_budget_fails_naming_the_store(tmp_path):
    from fraud.errors import FraudError

    store = AlertStore(f"sqlite:///{tmp_path / 'a.db'}", busy_seconds=0.5, lock_wait=0.1)
    t = _hold_lock(tmp_path / "a.db", 2.0)
    with pytest.raises(FraudError, match=r"a\.db.*writing 3 alert\(s\) failed.*locked"):
        store.write_alerts(_alerts())
    t.join()
    assert store.write_alerts(_alerts()) == 3  # nothing half-written: all three go in once the lock is gone


def test_live_labels_of_an_empty_store_and_alerts_by_tx_id(tmp_path):
    """A store without decisions (a fresh stack: fraud send-labels --follow starts before any) has no labels to
    send, and no error; read_alerts(tx_ids=) reads only those alerts."""
    import pandas as pd

    from fraud.store import AlertStore

    store = AlertStore(f"sqlite:///{tmp_path / 'a.db'}")
    assert len(store.live_labels()) == 0 and len(store.withdrawn()) == 0
    store.add_decision("note", "ann", cluster_id="k", note="looked")
    assert len(store.live_labels()) == 0
    df = pd.DataFrame({"tx_id": ["a", "b", "c"], "timestamp": pd.to_datetime(["2024-01-03", "2024-01-01",
                                                                              "2024-01-02"], utc=True),
                       "customer_id": ["c"] * 3, "terminal_id": ["t"] * 3, "amount": [1.0, 2.0, 3.0],
                       "score": [0.9] * 3, "reasons": [[], [], []]})
    store.write_alerts(df, "1")
    assert store.read_alerts(tx_ids=["c", "a", "zz"])["tx_id"].tolist() == ["c", "a"]
    assert len(store.read_alerts(tx_ids=[])) == 0
