"""The review app in a real browser: headless Chromium (Debian's package) driven by Playwright.

Logs in with an analyst's token, opens the highest-risk cluster, confirms it as fraud, logs out, and
checks that the labels reached the alert store under the token's holder. Skips with a reason when /usr/bin/chromium or Playwright is absent
(``.ci/run`` installs Chromium)."""
from __future__ import annotations

import importlib.util
import os
import socket
import threading
import time
from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"
TOKEN = "carol:browser-test-token-123"
ARGS = ["--no-sandbox", "--headless=new", "--disable-gpu", "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
        "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run"]
SHOTS = Path(os.environ.get("FRAUD_REVIEW_SHOTS", "/tmp"))

pytestmark = pytest.mark.integration


def _helpers():
    p = Path(__file__).resolve().parents[1] / "fraud" / "review" / "helpers.py"
    spec = importlib.util.spec_from_file_location("review_test_helpers", p)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture()
def server(tmp_path):
    import uvicorn

    from fraud.review.app import create_app
    from fraud.review.auth import hash_password
    from fraud.store import AlertStore

    store = AlertStore(f"sqlite:///{tmp_path / 'alerts.db'}")
    store.write_alerts(_helpers().hand_built_alerts())
    name, secret = TOKEN.split(":", 1)
    app = create_app(store, users={name: hash_password(secret, iterations=1000)})
    port = _free_port()
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off"))
    th = threading.Thread(target=srv.run, daemon=True)
    th.start()
    deadline = time.monotonic() + 30
    while not srv.started:
        if not th.is_alive() or time.monotonic() > deadline:
            pytest.fail("uvicorn did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}", store, app
    finally:
        srv.should_exit = True
        th.join(timeout=10)


def test_login_open_confirm_reaches_store(server):
    if not Path(CHROMIUM).exists():
        pytest.skip(f"Chromium is absent at {CHROMIUM} (install it: apt-get install -y chromium)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="Python Playwright is not installed")
    base, store, app = server
    top = app.state.cache.view().result.clusters[0]
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(30_000)
            page.goto(base + "/clusters")
            assert "/login" in page.url                      # unauthenticated: sent to the login page
            page.screenshot(path=str(SHOTS / "review_login.png"))
            page.fill("#secret", TOKEN)                  # the token names its holder: no name field
            page.click("#login")
            page.wait_for_selector("#clusters")
            page.screenshot(path=str(SHOTS / "review_list.png"), full_page=True)
            links = page.locator("a.cluster-link")
            assert links.count() == len(app.state.cache.view().result.clusters)
            assert links.first.inner_text() == top.id     # highest risk first
            links.first.click()
            page.wait_for_selector("#cluster-id")
            assert page.inner_text("#cluster-id") == top.id
            page.wait_for_load_state("load")               # images included
            imgs = page.locator("img")
            assert imgs.count() == 3
            for i in range(3):                             # subgraph, timeline, embedding map all drawn
                assert imgs.nth(i).evaluate("i => i.complete && i.naturalWidth > 0")
            page.screenshot(path=str(SHOTS / "review_cluster.png"), full_page=True)
            assert page.inner_text(".who b") == "carol"
            page.click("#confirm-fraud")
            page.wait_for_selector("#flash")
            assert "fraud" in page.inner_text("#flash")
            page.screenshot(path=str(SHOTS / "review_confirmed.png"))
            page.click("header form button")              # log out: the session is gone
            page.wait_for_selector("#secret")
            page.goto(base + "/")
            assert "/login" in page.url
        finally:
            browser.close()
    labels = store.labels()
    assert set(labels["tx_id"]) == set(top.tx_ids)
    assert (labels["label"] == 1).all() and set(labels["analyst"]) == {"carol"}
    d = store.read_decisions()
    assert set(d["cluster_id"]) == {top.id} and set(d["decision"]) == {"fraud"}
