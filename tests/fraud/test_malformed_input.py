"""Malformed batch files through the real CLI: one-line errors naming file and line (exit 2) for unusable
files, rejected rows with line and reason (exit 1) for bad rows; never a traceback."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from fraud import schema
from fraud.errors import InputError
from fraud.io import read_transactions

HEADER = "tx_id,timestamp,customer_id,terminal_id,amount\n"
GOOD = "1,2024-01-01,c,t,1\n"


def fraud(*args):
    proc = subprocess.run([sys.executable, "-m", "fraud.cli", *map(str, args)], capture_output=True, text=True)
    assert "Traceback" not in proc.stdout + proc.stderr, proc.stderr
    return proc


def validate(path, tmp_path):
    rej = tmp_path / "rejects.csv"
    return fraud("validate", "--data", path, "--rejects", rej), rej


def file_error(proc, path, *words):
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert proc.stderr.startswith("error: ") and proc.stderr.count("\n") == 1, proc.stderr
    for w in (str(path), *words):
        assert w in proc.stderr, (w, proc.stderr)


def good_frame(**over):
    df = pd.DataFrame({"tx_id": ["a", "b"], "timestamp": pd.to_datetime(["2024-01-01", "2024-01-02"]),
                       "customer_id": ["c", "c"], "terminal_id": ["t", "t"], "amount": [1.0, 2.0]})
    return df.assign(**over)


@pytest.mark.parametrize("content", [b"", b"\n\n"])
def test_empty_file_says_a_header_is_needed(tmp_path, content):
    p = tmp_path / "tx.csv"
    p.write_bytes(content)
    file_error(validate(p, tmp_path)[0], p, "the file is empty", "tx_id,timestamp,customer_id,terminal_id,amount")


def test_header_only_is_valid_with_zero_rows(tmp_path):
    p = tmp_path / "tx.csv"
    p.write_text(HEADER)
    proc, rej = validate(p, tmp_path)
    assert proc.returncode == 0 and "rows: 0  valid: 0  rejected: 0" in proc.stdout
    assert len(pd.read_csv(rej)) == 0


def test_ragged_rows_are_rejected_with_line_and_field_count(tmp_path):
    p = tmp_path / "tx.csv"
    p.write_text(HEADER + GOOD + "2,2024-01-01,c,t,1,9,9\n3,2024-01-02,c\n4,2024-01-03,c,t,2\n")
    proc, rej = validate(p, tmp_path)
    assert proc.returncode == 1
    assert "rows: 4  valid: 2  rejected: 2" in proc.stdout
    assert f"{p}:line 3: field '(row)' value '2,2024-01-01,c,t,1,9,9': row has 7 field(s), the header has 5" \
        in proc.stdout
    assert f"{p}:line 4: field '(row)' value '3,2024-01-02,c': row has 3 field(s), the header has 5" in proc.stdout
    r = pd.read_csv(rej, dtype=str)
    assert r["_line"].tolist() == ["3", "4"] and r["tx_id"].tolist() == ["2", "3"]
    assert r["_reason"].tolist() == ["row has 7 field(s), the header has 5", "row has 3 field(s), the header has 5"]


def test_short_row_is_not_padded_silently(tmp_path):
    p = tmp_path / "tx.csv"  # the missing field is an attribute: pandas alone would pad it and accept the row
    p.write_text(HEADER.strip() + ",channel\n1,2024-01-01,c,t,1,web\n2,2024-01-02,c,t,2\n")
    rep = read_transactions(p)
    assert rep.n_valid == 1 and rep.rejects["_line"].tolist() == [3]
    assert rep.rejects["_reason"].tolist() == ["row has 5 field(s), the header has 6"]


def test_ragged_row_lines_count_quoted_records_and_blank_lines(tmp_path):
    p = tmp_path / "tx.csv"
    p.write_text(HEADER + '1,2024-01-01,"c, quoted",t,1\n\n3,2024-01-03,c,t,1,extra\n4,2024-01-04,c,t,1\n')
    rep = read_transactions(p)
    assert {(int(r.line), r.field) for r in rep.problems.itertuples()} == {
        (3, "tx_id"), (3, "customer_id"), (3, "terminal_id"), (3, "timestamp"), (3, "amount"), (4, "(row)")}
    assert rep.valid["tx_id"].tolist() == ["1", "4"]


def test_unterminated_quote_is_a_clear_error(tmp_path):
    p = tmp_path / "tx.csv"
    p.write_text(HEADER + GOOD + '2,2024-01-01,"c,t,1\n')
    file_error(validate(p, tmp_path)[0], p, "cannot be read as CSV", "quoting")


def test_non_utf8_names_line_and_byte_offset(tmp_path):
    p = tmp_path / "tx.csv"
    p.write_bytes((HEADER + GOOD).encode() + "2,2024-01-01,Zürich,t,1\n".encode("latin-1"))
    offset = len((HEADER + GOOD).encode()) + len("2,2024-01-01,Z")
    file_error(validate(p, tmp_path)[0], p, "line 3", f"byte offset {offset}", "0xfc", "save the file as UTF-8")


@pytest.mark.parametrize("cut", ["truncated", "not parquet"])
def test_broken_parquet_says_re_export(tmp_path, cut):
    p = tmp_path / "tx.parquet"
    good_frame().to_parquet(p)
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2] if cut == "truncated" else (HEADER + GOOD).encode())
    file_error(validate(p, tmp_path)[0], p, "truncated or not Parquet", "re-export it")


def test_parquet_timestamp_of_wrong_type_is_a_schema_error(tmp_path):
    p = tmp_path / "tx.parquet"
    good_frame(timestamp=[[1], [2]]).to_parquet(p)
    file_error(validate(p, tmp_path)[0], p, "column 'timestamp'", "list", "re-export")


def test_paths_that_are_not_readable_files(tmp_path):
    (tmp_path / "dir.csv").mkdir()
    with pytest.raises(InputError, match="is a directory"):
        read_transactions(tmp_path / "dir.csv")
    with pytest.raises(InputError, match="does not exist"):
        read_transactions(tmp_path / "missing.csv")
    (tmp_path / "tx.json").write_text("{}")
    file_error(fraud("validate", "--data", tmp_path / "tx.json"), tmp_path / "tx.json", "unknown file type '.json'")


def test_out_of_range_timestamps_reject_the_row_not_the_file(tmp_path):
    p = tmp_path / "tx.csv"
    p.write_text(HEADER + GOOD + "2,9999-12-31,c,t,1\n3,0001-01-01,c,t,1\n4,2024-01-02,c,t,1\n")
    proc, rej = validate(p, tmp_path)
    assert proc.returncode == 1 and "rows: 4  valid: 2  rejected: 2" in proc.stdout
    reason = "timestamp outside the supported range 1677-09-22..2262-04-11"
    assert f"{p}:line 3: field 'timestamp' value '9999-12-31': {reason}" in proc.stdout
    assert f"{p}:line 4: field 'timestamp' value '0001-01-01': {reason}" in proc.stdout
    assert pd.read_csv(rej)["_line"].tolist() == [3, 4]


def test_out_of_range_parquet_timestamps_and_epochs_are_rejected_rows(tmp_path):
    p = tmp_path / "tx.parquet"
    good_frame(timestamp=pd.to_datetime(["2024-01-01", "9999-12-31"]).as_unit("us")).to_parquet(p)
    rep = read_transactions(p)
    assert rep.n_valid == 1 and rep.problems["line"].tolist() == [2]
    assert "outside the supported range" in rep.problems["reason"].iloc[0]
    good_frame(timestamp=[1.7e9, 1e20]).to_parquet(p)
    rep = read_transactions(p)
    assert rep.n_valid == 1 and "outside the supported range" in rep.problems["reason"].iloc[0]


def test_overflowing_and_huge_amounts_are_rejected_rows(tmp_path):
    p = tmp_path / "tx.csv"
    p.write_text(HEADER + GOOD + "2,2024-01-01,c,t,1e400\n3,2024-01-01,c,t,123456789012345678901234567890\n")
    proc, rej = validate(p, tmp_path)
    assert proc.returncode == 1 and "valid: 1  rejected: 2" in proc.stdout
    assert f"{p}:line 3: field 'amount' value '1e400': not finite: too large for a 64-bit float" in proc.stdout
    assert f"{p}:line 4: field 'amount' value '123456789012345678901234567890': too large" in proc.stdout
    assert pd.read_csv(rej)["_line"].tolist() == [3, 4]


def test_records_with_a_huge_integer_amount_do_not_raise():
    rep = schema.validate_records([
        {"tx_id": "1", "timestamp": "2024-01-01", "customer_id": "c", "terminal_id": "t", "amount": 10**400},
        {"tx_id": "2", "timestamp": "2024-01-01", "customer_id": "c", "terminal_id": "t", "amount": 3},
    ], lines=np.array([7, 8]))
    assert rep.n_valid == 1 and rep.problems["line"].tolist() == [7]
    assert rep.problems["reason"].tolist() == ["not finite: too large for a 64-bit float"]
