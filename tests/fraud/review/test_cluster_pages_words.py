"""The cluster pages speak an analyst's words: the clusters list, a cluster's page and the static report show
each reason as a sentence (one per feature family), never a raw code such as ``feature:CL_T_NEW_AGED``."""
from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient

from fraud.review.app import create_app, hash_password
from fraud.store import AlertStore

from .helpers import hand_built_alerts

TOKEN = "alice:alice-secret-0001"
CODES = ["feature:CL_T_NEW_AGED high (6.00 vs p99 2.00)", "feature:BH_T_KNOWN_FRAUD_7D high (4.00 vs p99 1.00)",
         "feature:BH_T_KNOWN_FRAUD_28D high (9.00 vs p99 2.00)", "detector:hbos 0.99"]
RAW = re.compile(r"feature:|detector:|CL_T_|BH_T_|\bhbos\b")


@pytest.fixture()
def client(tmp_path):
    store = AlertStore(f"sqlite:///{tmp_path / 'alerts.db'}")
    a = hand_built_alerts()
    a["reasons"] = [CODES] * len(a)
    store.write_alerts(a)
    c = TestClient(create_app(store, users={"alice": hash_password("alice-secret-0001", iterations=1000)}))
    r = c.post("/login", data={"secret": TOKEN, "next": "/"}, follow_redirects=False)
    assert r.status_code == 303
    return c


def test_clusters_list_and_cluster_page_in_words(client):
    page = client.get("/clusters").text
    rows = re.findall(r'href="/cluster/([^"]+)"', page)
    assert rows, "no cluster listed"
    body = page.split("<tbody>")[1]
    assert not RAW.search(body), RAW.search(body).group(0)
    assert "signs of a ring: cards converging on shared terminals" in body
    assert body.count("terminal fraud history") == body.count("</tr>")  # one sentence for the 7 and 28 days
    one = client.get(f"/cluster/{rows[0]}").text
    assert not RAW.search(one.split("<h2")[1]), RAW.search(one.split("<h2")[1]).group(0)
    assert "rare values for several features" in one and "signs of a ring" in one
    assert "came to this terminal for the first time in the last week" in one  # each alert's own sentence


def test_static_report_in_words(tmp_path):
    from fraud.review.clusters import cluster_alerts
    from fraud.review.report import write_report

    a = hand_built_alerts()
    a["reasons"] = [CODES] * len(a)
    index = write_report(cluster_alerts(a), tmp_path / "report")
    html = index.read_text()
    table = html.split("<table")[1]
    assert not RAW.search(table), RAW.search(table).group(0)
    assert "terminal fraud history" in table


def test_review_show_in_words(tmp_path):
    """`fraud review show` prints each transaction's reasons as sentences (--json keeps the codes)."""
    import json

    from click.testing import CliRunner

    from fraud.cli import main

    db = f"sqlite:///{tmp_path / 'alerts.db'}"
    a = hand_built_alerts()
    a["reasons"] = [CODES] * len(a)
    AlertStore(db).write_alerts(a)
    cl = json.loads(CliRunner().invoke(main, ["review", "clusters", "--alerts-db", db, "--json"]).output)["clusters"]
    out = CliRunner().invoke(main, ["review", "show", cl[0]["id"], "--alerts-db", db])
    assert out.exit_code == 0, out.output
    assert not RAW.search(out.output), RAW.search(out.output).group(0)
    assert "- terminal had 4 confirmed frauds in the last 7 days" in out.output
    assert "reasons (alerts): signs of a ring" in out.output
    js = json.loads(CliRunner().invoke(main, ["review", "show", cl[0]["id"], "--alerts-db", db, "--json"]).output)
    assert js["transactions"][0]["reasons"] == CODES
