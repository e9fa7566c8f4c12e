"""The review web app through FastAPI's TestClient: authentication, CSRF, escaping, decisions."""
from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient

from fraud.errors import ConfigError
from fraud.review.app import check_password, create_app, hash_password
from fraud.store import AlertStore

from .helpers import hand_built_alerts

TOKEN = "s3cret-review-token"
EVIL = '<script>alert("x")</script>'


@pytest.fixture()
def store(tmp_path):
    s = AlertStore(f"sqlite:///{tmp_path / 'alerts.db'}")
    a = hand_built_alerts()
    a.loc[a.index[-1], "customer_id"] = EVIL          # a one-off alert whose ids are HTML
    a.loc[a.index[-1], "tx_id"] = '<b id="bold">tx</b>'
    a.loc[a.index[-1], "reasons"] = ["<img/src=x/onerror=alert(1)>"]
    s.write_alerts(a)
    return s


@pytest.fixture()
def app(store):
    return create_app(store, token=TOKEN, users={"alice": hash_password("alice-pass-1", iterations=1000)},
                      secret_key="k" * 32)


def csrf_of(html: str) -> str:
    m = re.search(r'name="csrf" value="([^"]+)"', html)
    assert m, "no CSRF field in the page"
    return m.group(1)


def login(client: TestClient, analyst="bob", secret=TOKEN):
    page = client.get("/login")
    assert page.status_code == 200
    r = client.post("/login", data={"analyst": analyst, "secret": secret, "csrf": csrf_of(page.text), "next": "/"},
                    follow_redirects=False)
    return r


def test_requires_auth_configuration(store):
    with pytest.raises(ConfigError, match="FRAUD_REVIEW_TOKEN"):
        create_app(store)


def test_unauthenticated_reads_and_writes_are_refused(app, store):
    c = TestClient(app)
    r = c.get("/", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"].startswith("/login")
    cid = app.state.cache.get().clusters[0].id
    r = c.get(f"/cluster/{cid}", follow_redirects=False)
    assert r.status_code == 303 and "/login?next=" in r.headers["location"]
    assert c.get(f"/cluster/{cid}/graph.png").status_code == 401
    assert c.get("/api/clusters").status_code == 401
    assert c.get("/api/clusters", headers={"Authorization": "Bearer wrong-token"}).status_code == 401
    r = c.post(f"/cluster/{cid}/decision", data={"decision": "fraud"}, follow_redirects=False)
    assert r.status_code == 401
    assert len(store.read_decisions()) == 0
    assert len(store.labels()) == 0


def test_login_rejects_wrong_secret_and_sets_safe_cookie(app):
    c = TestClient(app)
    r = login(c, secret="not-the-token")
    assert r.status_code == 401
    assert c.get("/", follow_redirects=False).status_code == 303
    r = login(c)
    assert r.status_code == 303
    cookie = r.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=lax" in cookie
    assert c.get("/").status_code == 200
    # a configured user logs in with its password (not with the token under its name)
    c2 = TestClient(app)
    assert login(c2, "alice", TOKEN).status_code == 401
    assert login(c2, "alice", "alice-pass-1").status_code == 303


def test_login_next_is_local_only(app):
    c = TestClient(app)
    page = c.get("/login")
    r = c.post("/login", data={"analyst": "bob", "secret": TOKEN, "csrf": csrf_of(page.text),
                               "next": "//evil.example/x"}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/"


def test_csrf_is_checked_on_every_post(app, store):
    c = TestClient(app)
    login(c)
    cid = app.state.cache.get().clusters[0].id
    r = c.post(f"/cluster/{cid}/decision", data={"decision": "fraud"}, follow_redirects=False)
    assert r.status_code == 403
    r = c.post(f"/cluster/{cid}/decision", data={"decision": "fraud", "csrf": "forged"}, follow_redirects=False)
    assert r.status_code == 403
    r = c.post("/logout", data={"csrf": "forged"}, follow_redirects=False)
    assert r.status_code == 403
    assert len(store.read_decisions()) == 0
    # login itself is CSRF-protected too
    c2 = TestClient(app)
    r = c2.post("/login", data={"analyst": "bob", "secret": TOKEN, "csrf": "x"}, follow_redirects=False)
    assert r.status_code == 403


def test_pages_escape_html_ids(app):
    c = TestClient(app)
    login(c)
    res = app.state.cache.get()
    evil = next(cl for cl in res.clusters if EVIL in cl.customers)
    page = c.get(f"/cluster/{evil.id}")
    assert page.status_code == 200
    assert EVIL not in page.text and "<b id=\"bold\">" not in page.text and "<img/src" not in page.text
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in page.text
    assert "&lt;b id=&#34;bold&#34;&gt;tx&lt;/b&gt;" in page.text
    listing = c.get("/")
    assert EVIL not in listing.text and "&lt;img/src=x/onerror=alert(1)&gt;" in listing.text
    nf = c.get("/cluster/%3Cimg%20src%3Dx%20onerror%3Dalert(1)%3E")
    assert nf.status_code == 404
    assert "<img src=x onerror" not in nf.text and "&lt;img src=x onerror=alert(1)&gt;" in nf.text


def test_cluster_and_transaction_decisions_reach_the_store(app, store):
    c = TestClient(app)
    login(c, "bob")
    res = app.state.cache.get()
    top = res.clusters[0]
    page = c.get(f"/cluster/{top.id}")
    assert page.status_code == 200 and top.id in page.text
    for img in ("graph", "timeline", "map"):
        r = c.get(f"/cluster/{top.id}/{img}.png")
        assert r.status_code == 200 and r.content[:8] == b"\x89PNG\r\n\x1a\n"
    token = csrf_of(page.text)
    r = c.post(f"/cluster/{top.id}/decision", data={"decision": "fraud", "note": "ring of mules", "csrf": token},
               headers={"accept": "text/html"}, follow_redirects=False)
    assert r.status_code == 303
    labels = store.labels().set_index("tx_id")
    assert set(labels.index) == set(top.tx_ids)
    assert (labels["label"] == 1).all() and (labels["analyst"] == "bob").all()
    d = store.read_decisions()
    assert set(d["cluster_id"]) == {top.id} and set(d["note"]) == {"ring of mules"}
    # per transaction: dismiss one, and a cluster note (one row, no tx)
    one = top.tx_ids[0]
    r = c.post(f"/cluster/{top.id}/decision", data={"decision": "legit", "tx_id": one, "csrf": token})
    assert r.status_code == 200 and r.json()["rows"] == 1
    assert store.labels().set_index("tx_id").loc[one, "label"] == 0
    r = c.post(f"/cluster/{top.id}/decision", data={"decision": "note", "note": "call the bank", "csrf": token})
    assert r.status_code == 200 and r.json()["rows"] == 1
    # a tx from another cluster is refused
    other = res.clusters[1].tx_ids[0]
    r = c.post(f"/cluster/{top.id}/decision", data={"decision": "fraud", "tx_id": other, "csrf": token})
    assert r.status_code == 400
    r = c.post(f"/cluster/{top.id}/decision", data={"decision": "maybe", "csrf": token})
    assert r.status_code == 400
    page = c.get(f"/cluster/{top.id}")
    assert "call the bank" in page.text and "ring of mules" in page.text


def test_bearer_token_api_and_sorting(app, store):
    c = TestClient(app)
    h = {"Authorization": f"Bearer {TOKEN}", "X-Analyst": "script"}
    js = c.get("/api/clusters", headers=h).json()
    risks = [x["risk"] for x in js["clusters"]]
    assert risks == sorted(risks, reverse=True)
    cid = js["clusters"][1]["id"]
    r = c.post(f"/cluster/{cid}/decision", data={"decision": "legit"}, headers=h)
    assert r.status_code == 200
    assert set(store.labels()["analyst"]) == {"script"}
    login(c)
    page = c.get("/?sort=tx&order=asc")
    ids = re.findall(r'class="cluster-link" href="/cluster/(C[0-9a-f]+)"', page.text)
    n_tx = {x["id"]: x["n_tx"] for x in js["clusters"]}
    assert [n_tx[i] for i in ids] == sorted(n_tx[i] for i in ids)


def test_password_hashes():
    h = hash_password("pw-123456", iterations=1000)
    assert check_password("pw-123456", h) and not check_password("pw-1234567", h)
    assert not check_password("x", "garbage")
