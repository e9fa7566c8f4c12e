from __future__ import annotations

import subprocess
import sys

from click.testing import CliRunner

from fraud.cli import main, run

HEADER = "tx_id,timestamp,customer_id,terminal_id,amount\n"


def test_validate_good_file_exits_zero(tmp_path):
    p = tmp_path / "ok.csv"
    p.write_text(HEADER + "1,2024-01-01,c,t,1\n2,2024-01-02,c,u,2\n")
    r = CliRunner().invoke(main, ["validate", "--data", str(p)])
    assert r.exit_code == 0, r.output
    assert "rows: 2  valid: 2  rejected: 0" in r.output


def test_validate_bad_file_prints_each_problem_and_fails(tmp_path):
    p = tmp_path / "bad.csv"
    p.write_text(HEADER + "1,2024-01-01,c,t,1\n2,nope,c,t,-1\n")
    rej = tmp_path / "rej.csv"
    r = CliRunner().invoke(main, ["validate", "--data", str(p), "--rejects", str(rej)])
    assert r.exit_code == 1
    assert "line 3: field 'timestamp' value 'nope'" in r.output
    assert "line 3: field 'amount' value '-1': negative amount" in r.output
    assert rej.exists()


def test_schema_error_is_one_line_with_exit_2(tmp_path):
    p = tmp_path / "x.csv"
    p.write_text("a,b\n1,2\n")
    proc = subprocess.run([sys.executable, "-m", "fraud.cli", "validate", "--data", str(p)],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: ") and "missing required column" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_every_command_has_help():
    runner = CliRunner()
    r = runner.invoke(main, ["--help"])
    assert r.exit_code == 0
    names = list(main.commands)
    assert "validate" in names
    for name, cmd in main.commands.items():
        r = runner.invoke(main, [name, "--help"])
        assert r.exit_code == 0 and "Usage" in r.output, name
        for sub in getattr(cmd, "commands", {}):
            r = runner.invoke(main, [name, sub, "--help"])
            assert r.exit_code == 0 and "Usage" in r.output, (name, sub)


def test_run_returns_exit_codes(tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["fraud", "validate", "--data", str(tmp_path / "missing.csv")])
    assert run() == 2
