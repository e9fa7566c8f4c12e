"""``fraud bench pages``: how long the review app's pages take on a given alert store.

It works on a copy of a SQLite store (it adds alerts), builds the app as ``fraud review serve`` does and calls it
in process (FastAPI's TestClient, a shared-token sign-in): the first grouping; each main page with nothing new
(best and median of ``repeat`` calls); then, ``repeat`` times, one new alert (a copy of a stored one, a minute
later) and the queue page right after it: its time, whether it showed the "being grouped" note, and how long the
grouping took to land. Run it with another code tree on ``PYTHONPATH`` to compare versions on the same store.
"""
from __future__ import annotations

import secrets
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import pandas as pd

from fraud.errors import ConfigError


def copy_store(url: str, folder: Path) -> str:
    """A copy of the SQLite store at ``url`` in ``folder``; its URL."""
    prefix = "sqlite:///"
    if not url.startswith(prefix) or not Path(url[len(prefix):]).is_file():
        raise ConfigError(f"--alerts-db {url!r}: the bench works on a copy of a SQLite store file "
                          "(e.g. sqlite:///alerts.db); give an existing one")
    target = folder / "alerts.db"
    shutil.copy(url[len(prefix):], target)
    return prefix + str(target)


def _ms(seconds: list[float]) -> dict:
    return {"best_ms": round(min(seconds) * 1000, 1), "median_ms": round(statistics.median(seconds) * 1000, 1)}


def run(alerts_db: str, repeat: int = 3, wait_s: float = 0.5) -> dict:
    """The figures above, as a dict."""
    from fastapi.testclient import TestClient

    from fraud.review.app import create_app
    from fraud.store import AlertStore

    if repeat < 1:
        raise ConfigError(f"--repeat {repeat}: give at least 1")
    with tempfile.TemporaryDirectory(prefix="fraud-bench-pages-") as tmp:
        store = AlertStore(copy_store(alerts_db, Path(tmp)), must_exist=True)
        token = secrets.token_hex(12)
        t0 = time.perf_counter()
        app = create_app(store, token=token, refresh_wait_s=wait_s, first_wait_s=None)
        cache = app.state.cache
        cache.min_interval_s = 0          # each new alert's grouping starts at once (the app spaces them by 5 s)
        client = TestClient(app)
        client.post("/login", data={"secret": token, "next": "/"})
        view = cache.view()
        first_s = time.perf_counter() - t0
        out = {"alerts": int(store.count_alerts()), "cases": int(len(cache.book.frame())),
               "clusters": len(view.result.clusters), "first_grouping_s": round(first_s, 2), "pages": {}}
        for name, path in _pages(view, cache.book).items():
            out["pages"][name] = _ms([_timed(client, path) for _ in range(repeat)])
        out["after_one_new_alert"] = [_after_new_alert(client, store, cache, k) for k in range(repeat)]
        return out


def _pages(view, book) -> dict:
    pages = {"queue": "/", "clusters": "/clusters", "api_clusters": "/api/clusters"}
    if view.result.clusters:
        pages["cluster"] = f"/cluster/{view.result.clusters[0].id}"
    frame = book.frame()
    if len(frame):
        pages["case"] = f"/case/{frame['case_id'].iloc[0]}"
    return pages


def _timed(client, path: str) -> float:
    t = time.perf_counter()
    r = client.get(path)
    if r.status_code != 200:
        raise ConfigError(f"bench pages: GET {path} answered {r.status_code}: {r.text[:200]}")
    return time.perf_counter() - t


def _after_new_alert(client, store, cache, k: int) -> dict:
    row = store.read_alerts().iloc[[-1]]
    store.write_alerts(row.assign(tx_id=f"bench-pages-{k}-{row['tx_id'].iloc[0]}",
                                  timestamp=pd.to_datetime(row["timestamp"], utc=True) + pd.Timedelta(minutes=1)))
    t = time.perf_counter()
    page = client.get("/")
    queue_s = time.perf_counter() - t
    cache.wait()
    return {"queue_ms": round(queue_s * 1000, 1), "showed_note": "being grouped" in page.text,
            "grouping_landed_s": round(time.perf_counter() - t, 3)}
