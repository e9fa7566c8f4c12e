"""`fraud review cases list` (README, "Cases, the queue and reasons in words"): the header states the order the rows
are printed in. The queue ranks by risk / sqrt(alerts) (``fraud.review.queue``), so a lone alert can come before a
larger case of higher total risk; the header used to say "highest risk first"."""
from __future__ import annotations

import math

import pandas as pd
from click.testing import CliRunner

from fraud.cli import main
from fraud.store import AlertStore


def _alerts() -> pd.DataFrame:
    """Two cards hitting one terminal 100 times (many alerts, few pairs: high total risk, low risk per alert) and
    one alert on its own."""
    t0 = pd.Timestamp("2018-06-01", tz="UTC")
    rows = [("V0" if i % 2 else "V1", "T1", i) for i in range(100)] + [("X", "U0", 200)]
    return pd.DataFrame([{"tx_id": f"tx{k:03d}", "timestamp": t0 + pd.Timedelta(hours=h), "customer_id": c,
                          "terminal_id": t, "amount": 20.0, "score": 0.9, "reasons": ["amount"],
                          "model_version": "1", "scenario": 0} for k, (c, t, h) in enumerate(rows)])


def _rows(output: str) -> list[tuple[float, int]]:
    """(risk, alerts) of each printed case row."""
    out = []
    for line in output.splitlines():
        if line.startswith(("CASE-", "+CASE-")):
            f = line.split()
            out.append((float(f[2]), int(f[4])))
    return out


def test_cases_list_header_names_the_order_of_its_rows(tmp_path):
    url = f"sqlite:///{tmp_path / 'alerts.db'}"
    AlertStore(url).write_alerts(_alerts())
    r = CliRunner().invoke(main, ["review", "cases", "list", "--alerts-db", url])
    assert r.exit_code == 0, r.output
    rows = _rows(r.output)
    assert len(rows) == 2
    risks = [risk for risk, _ in rows]
    assert risks != sorted(risks, reverse=True), "this world should order by priority, not by total risk"
    header = r.output.splitlines()[0]
    assert "highest risk first" not in header, header
    assert "risk / sqrt(alerts)" in header, header
    priority = [risk / math.sqrt(n) for risk, n in rows]
    assert priority == sorted(priority, reverse=True), r.output
