"""The review app's view (fraud.review.view): pages never wait for new alerts to be grouped, the case book is
synced before a new view is shown, a failed refresh keeps the last view. Real SQLite store, real clustering."""
from __future__ import annotations

import logging
import time

import pandas as pd
import pytest
from fastapi.testclient import TestClient

from fraud.errors import FraudError
from fraud.review.app import create_app
from fraud.review.view import ClusterCache
from fraud.store import AlertStore

from .helpers import hand_built_alerts

TOKEN = "view-test-token"
BEARER = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture()
def split(tmp_path):
    """A store holding all but the last 5 hand-built alerts, and those 5."""
    a = hand_built_alerts()
    store = AlertStore(f"sqlite:///{tmp_path / 'alerts.db'}")
    store.write_alerts(a.iloc[:-5])
    return store, a.iloc[-5:]


def test_pages_get_the_last_view_while_new_alerts_are_grouped(split):
    store, late = split
    app = create_app(store, token=TOKEN, refresh_wait_s=0.2)
    cache, book = app.state.cache, app.state.cache.book
    cache.min_interval_s = 0
    c = TestClient(app)
    first = c.get("/api/clusters", headers=BEARER).json()
    assert first["meta"]["n_alerts"] == len(store.read_alerts()) and first["updating"] is False
    assert c.post("/login", data={"secret": TOKEN, "next": "/"}).status_code == 200
    assert "being grouped" not in c.get("/").text
    with book._lock:                     # the refresh cannot sync the book, so it cannot publish its view
        store.write_alerts(late)
        t0 = time.monotonic()
        stale = c.get("/api/clusters", headers=BEARER).json()
        assert time.monotonic() - t0 < 10                     # answered while the refresh is held (0.2 s wait)
        assert stale["meta"]["n_alerts"] == first["meta"]["n_alerts"] and stale["updating"] is True
        assert stale["as_of"] == first["as_of"]
        page = c.get("/").text
        assert "New alerts are being grouped into cases" in page and "reload in a few seconds" in page
        assert not set(late["tx_id"]) & set(book.members()["tx_id"])
    assert cache.wait(60)
    fresh = c.get("/api/clusters", headers=BEARER).json()
    assert fresh["meta"]["n_alerts"] == first["meta"]["n_alerts"] + len(late) and fresh["updating"] is False
    assert set(late["tx_id"]) <= set(book.members()["tx_id"])          # the new alerts are in cases
    assert "being grouped" not in c.get("/").text


class Flaky(ClusterCache):
    """Fails its refreshes while ``broken``: stands for a database or clustering error."""
    broken = False

    def _compute(self, key, kw):
        if self.broken:
            raise RuntimeError("the database went away")
        return super()._compute(key, kw)


def test_a_failed_refresh_keeps_the_last_view_and_is_retried(split, caplog):
    store, late = split
    cache = Flaky(store, wait_s=None, min_interval_s=0)
    before = cache.view()
    cache.broken = True
    store.write_alerts(late.iloc[:2])
    with caplog.at_level(logging.ERROR, logger="fraud.review.view"):
        assert cache.view() is before
    assert cache.error == "RuntimeError: the database went away" and not cache.refreshing
    assert "the pages keep the last view" in caplog.text
    cache.broken = False
    after = cache.view()                              # the next request sees the change again and retries
    assert after.result.meta["n_alerts"] == before.result.meta["n_alerts"] + 2 and cache.error is None


def test_pages_say_when_the_newest_alerts_could_not_be_grouped(split):
    """A refresh that fails (here the store's alerts table lost a column) leaves the last view on the pages with
    a notice saying why; once the store is readable again the next page load groups the alerts."""
    store, late = split
    app = create_app(store, token=TOKEN, refresh_wait_s=None)
    cache = app.state.cache
    cache.min_interval_s = 0
    c = TestClient(app)
    assert c.post("/login", data={"secret": TOKEN, "next": "/"}).status_code == 200
    n = cache.view().result.meta["n_alerts"]
    store.write_alerts(late.iloc[:1])
    with store.engine.begin() as conn:
        conn.exec_driver_sql("ALTER TABLE alerts RENAME COLUMN amount TO amount_moved")
    page = c.get("/").text
    assert cache.error == "OperationalError: no such column: alerts.amount" and "could not be grouped into cases" in page
    assert "SELECT" not in page
    assert c.get("/api/clusters", headers=BEARER).json()["error"] == cache.error
    with store.engine.begin() as conn:
        conn.exec_driver_sql("ALTER TABLE alerts RENAME COLUMN amount_moved TO amount")
    fresh = c.get("/api/clusters", headers=BEARER).json()
    assert fresh["error"] is None and fresh["meta"]["n_alerts"] == n + 1
    assert "could not be grouped" not in c.get("/").text


def test_a_first_view_that_fails_says_why(split):
    store, _ = split
    cache = Flaky(store, wait_s=None)
    cache.broken = True
    with pytest.raises(FraudError, match="could not be grouped into cases: RuntimeError: the database went away"):
        cache.view()


def test_refreshes_are_spaced_by_min_interval(split):
    from fraud.review.clusters import cluster_alerts

    store, late = split
    cluster_alerts(store.read_alerts())                 # kernels loaded: a grouping here takes well under 1 s
    cache = ClusterCache(store, wait_s=None, min_interval_s=1.5)
    cache.view()
    first = cache._last_start
    store.write_alerts(late.iloc[:1])
    assert cache.view().result.meta["n_alerts"] == len(store.read_alerts())
    assert cache._last_start - first >= 1.5            # the second refresh waited for its turn


def test_a_case_closed_while_new_alerts_are_grouped_is_reopened_by_them(split):
    """The refresh syncs after the analyst's close (the book's writes run one at a time), so the new alert at the
    closed case's terminal reopens it instead of sitting unseen in a closed case."""
    store, _ = split
    app = create_app(store, token=TOKEN, refresh_wait_s=0)
    cache, book = app.state.cache, app.state.cache.book
    cache.min_interval_s = 0
    cache.view()
    a = store.read_alerts()
    victim = a[a["terminal_id"] == "T9"].iloc[[-1]]
    case_id = book.members().set_index("tx_id").loc[victim["tx_id"].iloc[0], "case_id"]
    with book._lock:
        store.write_alerts(victim.assign(tx_id="late-T9", timestamp=victim["timestamp"] + pd.Timedelta(hours=1)))
        cache.view()                                          # starts the refresh; its sync waits for the lock
        assert cache.refreshing
        book.decide(case_id, "not_fraud", analyst="alice")
        assert book.get(case_id)["status"] == "closed"
    assert cache.wait(60)
    assert book.members().set_index("tx_id").loc["late-T9", "case_id"] == case_id
    assert book.get(case_id)["status"] == "open"
    assert [h["action"] for h in book.history(case_id)][-2:] == ["decide", "reopened"]


def test_queue_rows_are_the_same_with_the_views_reasons(split):
    from fraud.review import queue as Q

    store, _ = split
    app = create_app(store, token=TOKEN)
    view = app.state.cache.view()
    book = app.state.cache.book
    with_view = Q.rows(book, view.result, view.strength, 100, view.first_reasons)
    assert [r.__dict__ for r in with_view] == [r.__dict__ for r in Q.rows(book, view.result, view.strength, 100)]
    assert any(r.reason for r in with_view)


def test_the_app_starts_grouping_with_the_server_and_says_so_until_it_is_done(split):
    """The first grouping starts with the server; a page that would wait longer than first_wait_s says the alerts
    are being grouped and reloads itself (scripts get 503 with Retry-After); then the queue is there."""
    store, _ = split
    app = create_app(store, token=TOKEN, first_wait_s=0.2)
    cache = app.state.cache
    with cache.book._lock:                # the grouping cannot sync its cases, so it cannot finish
        with TestClient(app) as c:        # the server starts: so does the grouping
            assert cache.refreshing
            assert c.post("/login", data={"secret": TOKEN, "next": "/"}).status_code == 503
            page = c.get("/", headers={"accept": "text/html,application/xhtml+xml"})     # a browser
            assert page.status_code == 503 and page.headers["retry-after"] == "5"
            n = len(store.read_alerts())
            assert f"grouped into cases for the first time since the app started ({n} in the store)" in page.text
            assert '<meta http-equiv="refresh" content="5">' in page.text
            api = c.get("/api/clusters", headers=BEARER)
            assert api.status_code == 503 and "grouped into cases for the first time" in api.json()["detail"]
    assert cache.wait(60) and cache.as_of is not None
    with TestClient(app) as c:
        assert c.get("/api/clusters", headers=BEARER).status_code == 200


def test_a_case_that_grew_after_the_analyst_looked_is_not_closed_unseen(split):
    """The case page sends a digest of the alerts the analyst saw; alerts grouped into the case before the
    confirmation or before "yes" stop the close (nothing recorded) and the page says so, with no "yes"."""
    import re

    store, _ = split
    app = create_app(store, token=TOKEN)
    cache, book = app.state.cache, app.state.cache.book
    cache.min_interval_s = 0
    c = TestClient(app)
    assert c.post("/login", data={"secret": TOKEN, "next": "/"}).status_code == 200
    a = store.read_alerts()
    victim = a[a["terminal_id"] == "T9"].iloc[[-1]]
    case_id = book.members().set_index("tx_id").loc[victim["tx_id"].iloc[0], "case_id"]
    n = len(book.members(case_id))
    seen = re.search(r'name="seen" value="([0-9a-f]+)"', c.get(f"/case/{case_id}").text).group(1)
    confirm = c.post(f"/case/{case_id}/decide", data={"outcome": "fraud", "seen": seen, "csrf": _csrf(c)}).text
    assert f'name="seen" value="{seen}"' in confirm and 'id="confirm-yes"' in confirm
    store.write_alerts(victim.assign(tx_id="late-T9", timestamp=victim["timestamp"] + pd.Timedelta(hours=1)))
    cache.view()
    assert cache.wait(60) and len(book.members(case_id)) == n + 1
    yes = c.post(f"/case/{case_id}/decide", data={"outcome": "fraud", "confirm": "yes", "seen": seen,
                                                  "csrf": _csrf(c)})
    assert yes.status_code == 200 and "Nothing was recorded" in yes.text and 'id="confirm-yes"' not in yes.text
    assert book.get(case_id)["status"] != "closed" and len(store.read_decisions()) == 0
    again = c.post(f"/case/{case_id}/decide", data={"outcome": "fraud", "seen": seen, "csrf": _csrf(c)}).text
    assert "Nothing was recorded" in again and 'id="confirm-yes"' not in again       # stale page, same answer
    api = c.post(f"/case/{case_id}/decide", data={"outcome": "fraud", "seen": seen}, headers=BEARER)
    assert api.status_code == 409 and f"(it holds {n + 1} now)" in api.json()["detail"]
    fresh = re.search(r'name="seen" value="([0-9a-f]+)"', c.get(f"/case/{case_id}").text).group(1)
    done = c.post(f"/case/{case_id}/decide", data={"outcome": "fraud", "confirm": "yes", "seen": fresh,
                                                   "csrf": _csrf(c)})
    assert done.status_code == 200 and book.get(case_id)["status"] == "closed"
    assert len(store.read_decisions()) == n + 1


def _csrf(client) -> str:
    import re

    return re.search(r'name="csrf" value="([^"]+)"', client.get("/").text).group(1)


def test_first_reasons_are_worded_once_and_equal_a_fresh_wording(split):
    from fraud.review.queue import first_reasons

    store, late = split
    cache = ClusterCache(store, wait_s=None, min_interval_s=0)
    before = cache.view()
    store.write_alerts(late)
    after = cache.view()
    fresh = first_reasons(after.result.alerts)
    pd.testing.assert_series_equal(after.first_reasons, fresh, check_names=False)
    assert len(after.first_reasons) == len(before.first_reasons) + len(late)


def test_queue_rows_are_kept_until_the_book_or_the_view_changes(split):
    """Pages reuse the queue's rows while neither the grouping nor the case book changed; an action (here an
    assignment) or new alerts give new rows at once."""
    store, late = split
    app = create_app(store, token=TOKEN)
    cache, book = app.state.cache, app.state.cache.book
    cache.min_interval_s = 0
    c = TestClient(app)
    first = c.get("/api/cases", headers=BEARER).json()["cases"]
    v0 = book.version()
    assert c.get("/api/cases", headers=BEARER).json()["cases"] == first and book.version() == v0
    case_id = first[0]["case_id"]
    book.assign(case_id, "dora", analyst="alice")
    assert book.version() > v0
    after = {r["case_id"]: r for r in c.get("/api/cases", headers=BEARER).json()["cases"]}
    assert after[case_id]["assignee"] == "dora"
    store.write_alerts(late)
    cache.view()
    assert cache.wait(60)
    grown = c.get("/api/cases", headers=BEARER).json()["cases"]
    assert sum(r["n_tx"] for r in grown) == sum(r["n_tx"] for r in first) + len(late)


def test_a_case_page_during_the_first_grouping_says_so_instead_of_not_found(split):
    """After a restart the book holds cases before the new app has grouped the alerts: their pages wait for the
    grouping (503 page, reloads itself), they are not "no such case"."""
    store, _ = split
    create_app(store, token=TOKEN).state.cache.view()          # the first app grouped them: the book has cases
    app = create_app(store, token=TOKEN, first_wait_s=0.2)
    with app.state.cache.book._lock, TestClient(app) as c:
        page = c.get("/case/CASE-0001", headers={"accept": "text/html", **BEARER})
        assert page.status_code == 503 and "grouped into cases for the first time" in page.text
        csv = c.get("/case/CASE-0001/transactions.csv", headers=BEARER)
        assert csv.status_code == 503


def test_a_decision_on_a_cluster_that_changed_tells_the_browser_nothing_was_recorded(split):
    """New alerts joining a cluster give it a new id: a decision posted from its old page records nothing and the
    browser gets a page saying so (scripts: 409)."""
    import re

    store, late = split
    app = create_app(store, token=TOKEN)
    cache = app.state.cache
    cache.min_interval_s = 0
    c = TestClient(app)
    assert c.post("/login", data={"secret": TOKEN, "next": "/"}).status_code == 200
    old = cache.view().result
    cid = next(cl.id for cl in old.clusters if "T9" in cl.terminals)
    page = c.get(f"/cluster/{cid}").text
    csrf = re.search(r'name="csrf" value="([^"]+)"', page).group(1)
    victim = old.alerts[old.alerts["terminal_id"] == "T9"].iloc[[-1]].drop(columns=["cluster_id"])
    store.write_alerts(victim.assign(tx_id="late-T9", timestamp=victim["timestamp"] + pd.Timedelta(hours=1)))
    cache.view()
    assert cache.wait(60) and cache.view().result.get(cid) is None
    r = c.post(f"/cluster/{cid}/decision", data={"decision": "fraud", "csrf": csrf},
               headers={"accept": "text/html"})
    assert r.status_code == 409 and "Nothing was recorded" in r.text and "work from the case queue" in r.text
    api = c.post(f"/cluster/{cid}/decision", data={"decision": "fraud"}, headers=BEARER)
    assert api.status_code == 409 and len(store.read_decisions()) == 0
