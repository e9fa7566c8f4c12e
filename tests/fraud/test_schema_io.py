"""Canonical record, readers and validation: every bad-input case is reported with line, field and value."""
from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

from fraud import schema
from fraud.errors import ConfigError, SchemaError, ValidationError
from fraud.io import load_transactions, parse_column_map, read_transactions, resolve_mapping

HEADER = "tx_id,timestamp,customer_id,terminal_id,amount\n"


def write(tmp_path, text, name="tx.csv"):
    p = tmp_path / name
    p.write_text(text)
    return p


def problems_of(report):
    return {(int(r.line), r.field, r.reason) for r in report.problems.itertuples()}


def test_good_file_is_canonical_and_sorted(tmp_path):
    p = write(tmp_path, HEADER + "b,2024-01-02T00:00:00+02:00,c1,t1,5.5\na,2024-01-01 10:00,c2,t2,0\n")
    rep = read_transactions(p)
    assert rep.ok and rep.n_rows == 2
    v = rep.valid
    assert list(v["tx_id"]) == ["a", "b"]  # sorted by time
    assert str(v["timestamp"].dtype) == "datetime64[ns, UTC]"
    # the +02:00 offset is converted to UTC; naive values are taken as UTC
    assert v["timestamp"].iloc[1] == pd.Timestamp("2024-01-01 22:00", tz="UTC")
    assert v["timestamp"].iloc[0] == pd.Timestamp("2024-01-01 10:00", tz="UTC")
    assert v["amount"].dtype == np.float64


@pytest.mark.parametrize(
    "row, field, reason",
    [
        ("1,not-a-time,c,t,5", "timestamp", "unparseable or missing timestamp"),
        ("1,2024-01-01,c,t,abc", "amount", "not a number"),
        ("1,2024-01-01,c,t,-1", "amount", "negative amount"),
        ("1,2024-01-01,c,t,inf", "amount", "not finite"),
        ("1,2024-01-01,c,t,nan", "amount", "not finite"),
        ("1,2024-01-01,c,t,", "amount", "missing amount"),
        (",2024-01-01,c,t,1", "tx_id", "empty id"),
        ("1,2024-01-01,,t,1", "customer_id", "empty id"),
        ("1,2024-01-01,c, ,1", "terminal_id", "empty id"),
    ],
)
def test_each_bad_value_is_reported_with_line_field_value(tmp_path, row, field, reason):
    p = write(tmp_path, HEADER + "0,2024-01-01,c,t,1\n" + row + "\n")
    rep = read_transactions(p)
    assert rep.n_valid == 1 and rep.n_rejected == 1
    assert (3, field, reason) in problems_of(rep)
    msg = "\n".join(rep.messages())
    assert f"{p}:line 3" in msg and repr(field) in msg


def test_duplicate_tx_id_rejects_the_repeat_only(tmp_path):
    p = write(tmp_path, HEADER + "7,2024-01-01,c,t,1\n7,2024-01-02,c,t,2\n")
    rep = read_transactions(p)
    assert rep.n_valid == 1 and rep.valid["amount"].iloc[0] == 1.0
    assert problems_of(rep) == {(3, "tx_id", "duplicate tx_id")}


def test_blank_line_is_reported_not_dropped(tmp_path):
    p = write(tmp_path, HEADER + "1,2024-01-01,c,t,1\n\n2,2024-01-02,c,t,2\n")
    rep = read_transactions(p)
    assert rep.n_rows == 3 and rep.n_valid == 2 and rep.n_rejected == 1
    assert {line for line, _, _ in problems_of(rep)} == {3}


def test_labels_and_scenarios_are_checked(tmp_path):
    p = write(tmp_path, "tx_id,timestamp,customer_id,terminal_id,amount,label,scenario\n"
                        "1,2024-01-01,c,t,1,0,0\n2,2024-01-01,c,t,1,2,0\n3,2024-01-01,c,t,1,1,x\n")
    rep = read_transactions(p)
    assert rep.n_valid == 1
    assert problems_of(rep) == {(3, "label", "label must be 0 or 1"),
                                (4, "scenario", "scenario must be a non-negative integer")}
    assert rep.valid["label"].dtype == np.int8 and rep.valid["scenario"].dtype == np.int16


def test_extra_columns_are_kept_as_attributes(tmp_path):
    p = write(tmp_path, "tx_id,timestamp,customer_id,terminal_id,amount,channel\n1,2024-01-01,c,t,1,web\n")
    assert read_transactions(p).valid["channel"].tolist() == ["web"]


def test_missing_required_column_fails_at_once_naming_it(tmp_path):
    p = write(tmp_path, "tx_id,timestamp,customer_id,amount\n1,2024-01-01,c,1\n")
    with pytest.raises(SchemaError) as e:
        read_transactions(p)
    assert "'terminal_id'" in str(e.value) and "'customer_id'" in str(e.value)  # names it and those present


def test_rejects_file_holds_bad_rows_with_line_and_reason(tmp_path):
    p = write(tmp_path, HEADER + "1,2024-01-01,c,t,1\n2,bad,c,t,-3\n")
    out = tmp_path / "rej.csv"
    rep = read_transactions(p, rejects=out)
    rej = pd.read_csv(out)
    assert rep.n_rejected == 1 and len(rej) == 1
    assert rej["_line"].tolist() == [3]
    assert "negative amount" in rej["_reason"].iloc[0] and "timestamp" in rej["_reason"].iloc[0]
    assert rej["tx_id"].tolist() == [2]


def test_column_mapping_and_handbook_preset(tmp_path):
    df = pd.DataFrame({
        "TRANSACTION_ID": [0, 1], "TX_DATETIME": pd.to_datetime(["2018-04-01 00:00:31", "2018-04-01 00:02:10"]),
        "CUSTOMER_ID": [596, 4961], "TERMINAL_ID": [3156, 3412], "TX_AMOUNT": [57.16, 81.51],
        "TX_FRAUD": [0, 1], "TX_FRAUD_SCENARIO": [0, 2], "TX_TIME_DAYS": [0, 0],
    })
    p = tmp_path / "hb.parquet"
    df.to_parquet(p)
    v = read_transactions(p, preset="handbook").valid
    assert v["tx_id"].tolist() == ["0", "1"] and v["customer_id"].tolist() == ["596", "4961"]
    assert v["label"].tolist() == [0, 1] and "TX_TIME_DAYS" in v.columns
    cols = "tx_id=TRANSACTION_ID,timestamp=TX_DATETIME,customer_id=CUSTOMER_ID,terminal_id=TERMINAL_ID,amount=TX_AMOUNT"
    v2 = read_transactions(p, columns=cols).valid
    assert v2["amount"].tolist() == [57.16, 81.51] and "label" not in v2.columns
    with pytest.raises(SchemaError, match="'NOPE'"):
        read_transactions(p, columns=cols.replace("TX_AMOUNT", "NOPE"))


def test_parquet_bad_rows_report_row_numbers(tmp_path):
    df = pd.DataFrame({"tx_id": ["a", "b"], "timestamp": ["2024-01-01", "2024-01-02"], "customer_id": ["c", "c"],
                       "terminal_id": ["t", "t"], "amount": [1.0, float("inf")]})
    p = tmp_path / "x.parquet"
    df.to_parquet(p)
    rep = read_transactions(p)
    assert rep.line_kind == "row" and problems_of(rep) == {(2, "amount", "not finite")}


def test_bad_options_name_the_value():
    with pytest.raises(ConfigError, match="'amount'"):
        parse_column_map("amount")
    with pytest.raises(ConfigError, match="'price'"):
        parse_column_map("price=X")
    with pytest.raises(ConfigError, match="'nope'"):
        resolve_mapping(None, "nope")


def test_strict_load_raises_with_problems(tmp_path):
    p = write(tmp_path, HEADER + "1,2024-01-01,c,t,-1\n")
    with pytest.raises(ValidationError) as e:
        load_transactions(p, strict=True)
    assert "negative amount" in str(e.value) and len(e.value.problems) == 1


def test_validate_records_reports_missing_fields_per_event():
    rep = schema.validate_records([
        {"tx_id": "1", "timestamp": "2024-01-01T00:00:00Z", "customer_id": "c", "terminal_id": "t", "amount": 3},
        {"tx_id": "2", "timestamp": "2024-01-01T00:00:00Z", "customer_id": "c", "amount": "x"},
    ], source="transactions", lines=np.array([10, 11]))
    assert rep.n_valid == 1
    assert {(r.line, r.field) for r in rep.problems.itertuples()} == {(11, "terminal_id"), (11, "amount")}


@pytest.mark.parametrize("value", ["2018-08-01 12:00", pd.Timestamp("2018-08-01 12:00"),
                                   "2018-08-01T14:00+02:00", pd.Timestamp("2018-08-01 08:00", tz="US/Eastern")])
def test_utc_timestamp_takes_naive_as_utc_and_converts_aware(value):
    """The one scalar UTC normaliser (options such as --train-until, split dates, graph cutoffs): naive = UTC,
    aware converted, the same instant either way."""
    t = schema.utc_timestamp(value, "--until")
    assert str(t.tz) == "UTC" and t == pd.Timestamp("2018-08-01 12:00", tz="UTC")


@pytest.mark.parametrize("value", ["not-a-date", "", None, "NaT", float("nan")])
def test_utc_timestamp_names_the_option_and_the_value(value):
    with pytest.raises(ConfigError, match=rf"^--since: {re.escape(repr(value))} is not a date/time"):
        schema.utc_timestamp(value, "--since")
