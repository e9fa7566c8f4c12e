"""The case workflow in a real browser (headless Chromium via Playwright): sign in, filter the queue, open a
case, assign it, close it as fraud through the confirmation page, undo, close again and see it leave the open
queue, export CSV; screenshots of the queue, a case and an entity page at 1400 px and 390 px wide (written to
FRAUD_REVIEW_SHOTS, default /tmp)."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest


def _browser_module():
    spec = importlib.util.spec_from_file_location("review_browser_base", Path(__file__).with_name("test_review_browser.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


_base = _browser_module()
ARGS, CHROMIUM, SHOTS, TOKEN = _base.ARGS, _base.CHROMIUM, _base.SHOTS, _base.TOKEN
server = _base.server   # the same fixture: a uvicorn app over the hand-built alerts, carol's token

pytestmark = pytest.mark.integration


def _shots(page, base, case_id):
    for width, tag in ((1400, "wide"), (390, "narrow")):
        page.set_viewport_size({"width": width, "height": 900})
        for name, path in (("queue", "/"), ("case", f"/case/{case_id}"), ("entity", "/terminal/R0")):
            page.goto(base + path)
            page.screenshot(path=str(SHOTS / f"cases_{name}_{tag}.png"), full_page=True)
        assert page.evaluate("document.documentElement.scrollWidth") <= width + 1   # no sideways page scroll


def test_case_workflow(server):
    if not Path(CHROMIUM).exists():
        pytest.skip(f"Chromium is absent at {CHROMIUM}")
    sync_api = pytest.importorskip("playwright.sync_api", reason="Python Playwright is not installed")
    base, store, app = server
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000}, accept_downloads=True)
            page.set_default_timeout(30_000)
            page.goto(base + "/")
            page.fill("#secret", TOKEN)
            page.click("#login")
            page.wait_for_selector("#queue")
            assert page.locator("a.case-link").count() == 7
            page.check("#f-ring")                                   # filter: ring signal only
            page.click("#apply")
            page.wait_for_selector("#queue")
            assert "ring=1" in page.url and page.locator("a.case-link").count() == 1
            case_id = page.locator("a.case-link").first.inner_text()
            page.click("a.case-link")
            page.wait_for_selector("#case-id")
            assert page.inner_text("#case-id") == case_id
            n = len(app.state.cache.book.members(case_id))
            page.fill("#assignee-name", "carol")
            page.click("#assign")
            page.wait_for_selector("#flash")
            assert page.inner_text("#assignee") == "carol" and "in progress" in page.inner_text("#case-status")
            page.click("#close-fraud")                              # asks first, with the count
            page.wait_for_selector("#confirm-yes")
            assert page.inner_text("#confirm-n") == str(n)
            assert len(store.labels()) == 0
            page.click("#confirm-yes")
            page.wait_for_selector("#flash")
            assert "closed (fraud)" in page.inner_text("#case-status") and len(store.labels()) == n
            page.locator("#history button.undo").first.click()      # undo the decision
            page.wait_for_selector("#flash")
            assert "undone" in page.inner_text("#flash") and len(store.labels()) == 0
            assert "in progress" in page.inner_text("#case-status")
            page.click("#close-fraud")
            page.click("#confirm-yes")
            page.wait_for_selector("#flash")
            page.goto(base + "/")                                   # the open queue no longer lists it
            assert case_id not in [x.inner_text() for x in page.locator("a.case-link").all()]
            page.goto(base + "/?status=closed")
            assert page.locator("a.case-link").first.inner_text() == case_id
            with page.expect_download() as dl:
                page.click("#export-queue")
            text = Path(dl.value.path()).read_text()
            assert text.startswith("case_id,status") and case_id in text
            page.goto(base + f"/case/{case_id}")
            with page.expect_download() as dl:
                page.click("#export-case")
            lines = Path(dl.value.path()).read_text().splitlines()
            assert lines[0].startswith("tx_id,") and len(lines) == n + 1
            _shots(page, base, case_id)
        finally:
            browser.close()
    labels = store.labels()
    assert len(labels) == n and set(labels["analyst"]) == {"carol"} and (labels["label"] == 1).all()
