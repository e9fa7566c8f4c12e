"""The review web app through FastAPI's TestClient against a real SQLite store: sign-in (per-analyst
tokens, server-side sessions, throttling, revocation), CSRF, the access log, escaping, decisions."""
from __future__ import annotations

import hashlib
import logging
import re
from datetime import datetime, timedelta, timezone

import itsdangerous
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from fraud.errors import ConfigError
from fraud.review.app import check_password, create_app, hash_password
from fraud.review.auth import Throttle, add_analyst, remove_analyst
from fraud.store import AlertStore

from .helpers import hand_built_alerts

ALICE = "alice:alice-secret-0001"
BOB = "bob:bob-secret-0002"
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


def users_of(*tokens) -> dict:
    return {t.split(":")[0]: hash_password(t.split(":", 1)[1], iterations=1000) for t in tokens}


@pytest.fixture()
def app(store):
    return create_app(store, users=users_of(ALICE, BOB))


def csrf_of(html: str) -> str:
    m = re.search(r'name="csrf" value="([^"]+)"', html)
    assert m, "no CSRF field in the page"
    return m.group(1)


def login(client: TestClient, secret=ALICE, **extra):
    page = client.get("/login")
    assert page.status_code == 200
    return client.post("/login", data={"secret": secret, "next": "/", **extra}, follow_redirects=False)


def test_requires_auth_configuration(store):
    with pytest.raises(ConfigError, match="FRAUD_REVIEW_TOKEN"):
        create_app(store)
    with pytest.raises(ConfigError, match="give one"):
        create_app(store, token="shared-token-123", users=users_of(ALICE))


def test_unauthenticated_reads_and_writes_are_refused(app, store):
    c = TestClient(app)
    r = c.get("/", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"].startswith("/login")
    cid = app.state.cache.view().result.clusters[0].id
    r = c.get(f"/cluster/{cid}", follow_redirects=False)
    assert r.status_code == 303 and "/login?next=" in r.headers["location"]
    assert c.get(f"/cluster/{cid}/graph.png").status_code == 401
    assert c.get("/api/clusters").status_code == 401
    assert c.get("/api/clusters", headers={"Authorization": "Bearer alice:wrong-token"}).status_code == 401
    r = c.post(f"/cluster/{cid}/decision", data={"decision": "fraud"}, follow_redirects=False)
    assert r.status_code == 401
    assert len(store.read_decisions()) == 0
    assert len(store.labels()) == 0


def test_login_rejects_wrong_token_and_sets_safe_cookie(app):
    c = TestClient(app)
    r = login(c, secret="alice:not-the-token")
    assert r.status_code == 401 and "Wrong token" in r.text
    assert login(c, secret="bob-secret-0002").status_code == 401        # the secret without its name
    assert c.get("/", follow_redirects=False).status_code == 303
    r = login(c)
    assert r.status_code == 303
    cookie = r.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie
    assert c.get("/").status_code == 200


def test_no_key_derivable_from_a_token(store):
    """The old app signed a cookie handed out by GET /login with sha256(token): guessable offline."""
    token = "shared-review-token"
    app = create_app(store, token=token)
    c = TestClient(app)
    page = c.get("/login")
    assert "set-cookie" not in page.headers                  # nothing signed before authentication
    r = login(c, secret=token)
    assert r.status_code == 303
    sid = c.cookies["fraud_review"]
    old_key = hashlib.sha256(b"fraud-review-session\0" + token.encode()).hexdigest()
    secret = app.state.gate.sessions.secret
    assert len(secret) >= 32 and old_key.encode() != secret and hashlib.sha256(token.encode()).digest() != secret
    with pytest.raises(itsdangerous.BadSignature):
        itsdangerous.TimestampSigner(old_key).unsign(sid)
    assert "." not in sid and len(sid) >= 40                 # a random id, no payload to check a guess against
    with store.engine.connect() as conn:                     # the database keeps only an HMAC of the id
        stored = conn.execute(sa.text("select id_mac, analyst from review_sessions")).all()
    assert [a for _, a in stored] == ["shared-token"] and sid not in stored[0][0]
    other = create_app(AlertStore(store.url.replace("alerts.db", "other.db")), token=token)
    assert other.state.gate.sessions.secret != secret         # same token, unrelated secrets


def test_login_next_is_local_only(app):
    c = TestClient(app)
    r = c.post("/login", data={"secret": ALICE, "next": "//evil.example/x"}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/"


def test_csrf_is_checked_on_every_post(app, store):
    c = TestClient(app)
    login(c)
    cid = app.state.cache.view().result.clusters[0].id
    token = csrf_of(c.get("/").text)
    r = c.post(f"/cluster/{cid}/decision", data={"decision": "fraud"}, follow_redirects=False)
    assert r.status_code == 403
    r = c.post(f"/cluster/{cid}/decision", data={"decision": "fraud", "csrf": "forged"}, follow_redirects=False)
    assert r.status_code == 403
    r = c.post("/logout", data={"csrf": "forged"}, follow_redirects=False)
    assert r.status_code == 403
    # a form posted from another site, even one that learnt the CSRF token, cannot decide
    r = c.post(f"/cluster/{cid}/decision", data={"decision": "fraud", "csrf": token},
               headers={"Origin": "http://evil.example"}, follow_redirects=False)
    assert r.status_code == 403
    r = c.post(f"/cluster/{cid}/decision", data={"decision": "fraud", "csrf": token},
               headers={"Sec-Fetch-Site": "cross-site"}, follow_redirects=False)
    assert r.status_code == 403
    assert len(store.read_decisions()) == 0
    r = c.post(f"/cluster/{cid}/decision", data={"decision": "note", "note": "n", "csrf": token},
               headers={"Origin": "http://testserver"})
    assert r.status_code == 200
    # sign-in from another site is refused
    c2 = TestClient(app)
    r = c2.post("/login", data={"secret": ALICE}, headers={"Origin": "http://evil.example"}, follow_redirects=False)
    assert r.status_code == 403 and "set-cookie" not in r.headers


def test_wrong_logins_are_throttled_per_address(app):
    c = TestClient(app, client=("10.0.0.1", 4000))
    for i in range(5):
        assert login(c, secret=f"alice:guess-{i}").status_code == 401
    r = login(c, secret="alice:guess-5")
    assert r.status_code == 429 and int(r.headers["retry-after"]) > 0
    assert "Too many wrong sign-ins" in r.text and "Try again in" in r.text
    assert login(c, secret=BOB).status_code == 429            # even the right token, from this address
    r = c.get("/api/clusters", headers={"Authorization": f"Bearer {BOB}"})
    assert r.status_code == 429 and "retry-after" in r.headers
    other = TestClient(app, client=("10.0.0.2", 4000))          # another address, another analyst: unaffected
    assert login(other, secret=BOB).status_code == 303


def test_wrong_logins_are_throttled_per_name_then_back_off(store):
    now = [1000.0]
    app = create_app(store, users=users_of(ALICE, BOB), throttle=Throttle(clock=lambda: now[0]))
    for i in range(5):                                          # one guess from each of 5 addresses
        r = login(TestClient(app, client=(f"10.1.0.{i}", 1)), secret=f"alice:guess-{i}")
        assert r.status_code == 401
    r = login(TestClient(app, client=("10.1.0.99", 1)), secret=ALICE)
    assert r.status_code == 429 and r.headers["retry-after"] == "60"
    r = TestClient(app, client=("10.1.0.98", 1)).get("/api/clusters", headers={"Authorization": "Bearer alice:x"})
    assert r.status_code == 429
    assert login(TestClient(app, client=("10.1.0.97", 1)), secret=BOB).status_code == 303
    now[0] += 61                                                # the lockout ends ...
    for i in range(5):
        assert login(TestClient(app, client=(f"10.2.0.{i}", 1)), secret=f"alice:again-{i}").status_code == 401
    r = login(TestClient(app, client=("10.2.0.99", 1)), secret=ALICE)
    assert r.headers["retry-after"] == "120"                    # ... and the next one is twice as long
    now[0] += 121
    assert login(TestClient(app, client=("10.2.0.99", 1)), secret=ALICE).status_code == 303


def test_logout_revokes_the_session(app, store):
    c = TestClient(app)
    login(c)
    cid = app.state.cache.view().result.clusters[0].id
    token = csrf_of(c.get("/").text)
    old = c.cookies["fraud_review"]
    assert c.post("/logout", data={"csrf": token}, follow_redirects=False).status_code == 303
    replay = TestClient(app, cookies={"fraud_review": old})
    r = replay.post(f"/cluster/{cid}/decision", data={"decision": "fraud", "csrf": token}, follow_redirects=False)
    assert r.status_code == 401
    assert replay.get("/", follow_redirects=False).status_code == 303
    assert len(store.read_decisions()) == 0


def test_rotating_or_removing_a_token_revokes_its_sessions(store, tmp_path):
    users = tmp_path / "users.json"
    first = add_analyst(users, "alice")
    bob = add_analyst(users, "bob")
    assert first.startswith("alice:") and first.split(":", 1)[1] not in users.read_text()
    app = create_app(store, users=users)
    c, cb = TestClient(app), TestClient(app)
    assert login(c, secret=first).status_code == 303 and login(cb, secret=bob).status_code == 303
    cid = app.state.cache.view().result.clusters[0].id
    token = csrf_of(c.get("/").text)
    second = add_analyst(users, "alice")                        # rotate while the app runs
    r = c.post(f"/cluster/{cid}/decision", data={"decision": "fraud", "csrf": token}, follow_redirects=False)
    assert r.status_code == 401
    assert c.get("/api/clusters", headers={"Authorization": f"Bearer {first}"}).status_code == 401
    assert cb.get("/").status_code == 200                       # bob's session is untouched
    assert login(TestClient(app), secret=second).status_code == 303
    remove_analyst(users, "bob")
    assert cb.get("/", follow_redirects=False).status_code == 303
    assert len(store.read_decisions()) == 0


def test_the_analyst_is_the_tokens_holder(app, store):
    c = TestClient(app)
    assert login(c, secret=ALICE, analyst="mallory").status_code == 303    # a typed name is ignored
    res = app.state.cache.view().result
    cid, other = res.clusters[0].id, res.clusters[1].id
    page = c.get(f"/cluster/{cid}")
    assert "mallory" not in page.text
    r = c.post(f"/cluster/{cid}/decision", data={"decision": "note", "note": "n", "csrf": csrf_of(page.text),
                                                 "analyst": "mallory"})
    assert r.status_code == 200 and r.json()["analyst"] == "alice"
    r = TestClient(app).post(f"/cluster/{other}/decision", data={"decision": "legit"},
                             headers={"Authorization": f"Bearer {BOB}", "X-Analyst": "mallory"})
    assert r.status_code == 200 and r.json()["analyst"] == "bob"
    d = store.read_decisions()
    assert set(d[d["cluster_id"] == cid]["analyst"]) == {"alice"}
    assert set(d[d["cluster_id"] == other]["analyst"]) == {"bob"}
    assert d["decided_at"].notna().all()
    assert set(store.labels()["analyst"]) == {"bob"}


def test_sessions_survive_a_restart_with_the_stored_secret(store):
    c = TestClient(create_app(store, users=users_of(ALICE)))
    assert login(c).status_code == 303
    cookie = c.cookies["fraud_review"]
    restarted = create_app(AlertStore(store.url), users=users_of(ALICE))
    assert TestClient(restarted, cookies={"fraud_review": cookie}).get("/").status_code == 200
    # a secret given by the caller (FRAUD_REVIEW_SECRET) replaces the stored one
    given = create_app(store, users=users_of(ALICE), secret="x" * 32)
    assert TestClient(given, cookies={"fraud_review": cookie}).get("/", follow_redirects=False).status_code == 303
    c2 = TestClient(given)
    assert login(c2).status_code == 303
    again = create_app(store, users=users_of(ALICE), secret="x" * 32)
    assert TestClient(again, cookies={"fraud_review": c2.cookies["fraud_review"]}).get("/").status_code == 200
    with pytest.raises(ConfigError, match="FRAUD_REVIEW_SECRET"):
        create_app(store, users=users_of(ALICE), secret="short")


def test_access_log_records_requests_and_sign_ins(app, caplog):
    caplog.set_level(logging.INFO, logger="fraud.review.access")
    c = TestClient(app, client=("10.9.9.9", 1))
    login(c, secret="alice:wrong")
    login(c)
    c.get("/api/clusters")
    c.post("/logout", data={"csrf": csrf_of(c.get("/").text)})
    c.get("/api/clusters", headers={"Authorization": "Bearer bob:wrong"})
    lines = [r.getMessage() for r in caplog.records if r.name == "fraud.review.access"]
    assert any(re.fullmatch(r"\S+Z 10\.9\.9\.9 - GET /login 200", x) for x in lines), lines
    assert any(x.endswith("10.9.9.9 alice sign-in failed") for x in lines)
    assert any(x.endswith("10.9.9.9 alice sign-in ok") for x in lines)
    assert any(x.endswith("10.9.9.9 alice GET /api/clusters 200") for x in lines)
    assert any(x.endswith("10.9.9.9 alice sign-in logout") for x in lines)
    assert any(x.endswith("10.9.9.9 - POST /login 401") for x in lines)
    assert any(x.endswith("10.9.9.9 bob sign-in bearer failed") for x in lines)
    assert not any("alice-secret" in x for x in lines)


def test_pages_escape_html_ids(app):
    c = TestClient(app)
    login(c)
    res = app.state.cache.view().result
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
    login(c, BOB)
    res = app.state.cache.view().result
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
    h = {"Authorization": f"Bearer {BOB}"}
    js = c.get("/api/clusters", headers=h).json()
    risks = [x["risk"] for x in js["clusters"]]
    assert risks == sorted(risks, reverse=True)
    cid = js["clusters"][1]["id"]
    r = c.post(f"/cluster/{cid}/decision", data={"decision": "legit"}, headers=h)
    assert r.status_code == 200
    assert set(store.labels()["analyst"]) == {"bob"}
    login(c)
    page = c.get("/?sort=tx&order=asc")
    ids = re.findall(r'class="cluster-link" href="/cluster/(C[0-9a-f]+)"', page.text)
    n_tx = {x["id"]: x["n_tx"] for x in js["clusters"]}
    assert [n_tx[i] for i in ids] == sorted(n_tx[i] for i in ids)


def test_password_hashes():
    h = hash_password("pw-123456", iterations=1000)
    assert check_password("pw-123456", h) and not check_password("pw-1234567", h)
    assert not check_password("x", "garbage")


def test_sessions_expire(store):
    app = create_app(store, users=users_of(ALICE), session_hours=1)
    c = TestClient(app)
    assert login(c).status_code == 303
    r = login(c)
    assert "max-age=3600" in r.headers["set-cookie"].lower()
    assert c.get("/").status_code == 200
    with store.engine.begin() as conn:                         # an hour later
        conn.execute(sa.text("update review_sessions set expires_at = :t"),
                     {"t": datetime.now(timezone.utc) - timedelta(seconds=1)})
    assert c.get("/", follow_redirects=False).status_code == 303
    with store.engine.connect() as conn:
        assert conn.execute(sa.text("select count(*) from review_sessions")).scalar_one() == 1   # the rest go at the next sign-in
