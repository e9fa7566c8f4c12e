"""Context linking: the alerted customers' other transactions join alert groups (hand-built frames)."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from fraud.cli import main
from fraud.errors import ConfigError
from fraud.review.clusters import (cluster_alerts, colluding_customers, context_links, prepare_context, read_context,
                                   terminal_surge)
from fraud.store import AlertStore

from .helpers import hand_built_alerts

T0 = pd.Timestamp("2024-06-01", tz="UTC")


def _alerts(spec):
    """spec: (customer, terminal, hour, scenario) -> alerts, score 0.5, amount 50."""
    return pd.DataFrame([{"tx_id": f"a{i:03d}", "timestamp": T0 + pd.Timedelta(hours=h), "customer_id": c,
                          "terminal_id": t, "amount": 50.0, "score": 0.5, "reasons": [], "scenario": sc}
                         for i, (c, t, h, sc) in enumerate(spec)])


def _background(n_terminals=40, per_terminal=4, days=20, seed=0):
    """Ordinary traffic: each background terminal G<j> has ``per_terminal`` regular customers
    (a few visits each over ``days``), so a terminal sees about 4 distinct customers in 10 days."""
    rng = np.random.default_rng(seed)
    rows = []
    for j in range(n_terminals):
        for i in range(per_terminal):
            for _ in range(3):
                rows.append((f"g{j}_{i}", f"G{j}", float(rng.uniform(0, 24 * days))))
    return rows


def _context(rows):
    return pd.DataFrame([{"tx_id": f"x{i:05d}", "timestamp": T0 + pd.Timedelta(hours=h), "customer_id": c,
                          "terminal_id": t, "amount": 30.0} for i, (c, t, h) in enumerate(rows)])


def ring_world():
    """A ring: mules M0..M8 each alerted ONCE, three at each of R0, R1, R2 (so the flagged graph
    holds three separate 3-customer stars, like compromised terminals); in the context every mule
    also transacted at the two other ring terminals, within a few days (a burst of distinct
    customers at each). Two legit stars with ordinary terminals: P (terminal P1, customers A0..A2)
    and Q (terminal Q1, customers B0..B2); all of A and B, and 25 other customers, also use the
    popular terminal POP, itself flagged for two customers (group at POP: C0, C1). The context
    holds the alerts too, as an archive does."""
    spec = [(f"M{i}", f"R{i % 3}", 24 * 5 + i, 4) for i in range(9)]
    spec += [(f"A{i}", "P1", 24 * 2 + i, 0) for i in range(3)] + [(f"B{i}", "Q1", 24 * 12 + i, 0) for i in range(3)]
    spec += [("C0", "POP", 24 * 8, 0), ("C1", "POP", 24 * 9, 0)]
    alerts = _alerts(spec)
    rows = _background()
    for i in range(9):
        for j in range(3):
            if j != i % 3:
                rows.append((f"M{i}", f"R{j}", 24 * 5 + 10 * j + i))
    for name in ["A0", "A1", "A2", "B0", "B1", "B2"] + [f"p{k}" for k in range(25)]:
        rows.append((name, "POP", float(hash(name) % 400)))
    for name in ["A0", "A1", "A2"]:
        rows.append((name, "P1", 24.0))
    for name in ["B0", "B1", "B2"]:
        rows.append((name, "Q1", 24.0 * 13))
    # like the scorer's archive, the context holds every scored transaction, the alerts included
    own = alerts[["tx_id", "timestamp", "customer_id", "terminal_id", "amount"]]
    return alerts, pd.concat([_context(rows), own], ignore_index=True)


@pytest.fixture(scope="module")
def world():
    return ring_world()


def _by_customers(result):
    return {frozenset(c.customers): c for c in result.clusters}


def test_terminal_surge_flags_the_burst_not_the_ordinary_terminals(world):
    alerts, ctx = world
    s = terminal_surge(ctx)
    assert all(s[f"R{j}"] >= 2.0 for j in range(3))                  # 9 distinct customers in days vs ~4
    assert (s[[f"G{j}" for j in range(40)]] < 2.0).all()
    assert s["P1"] < 2.0 and s["Q1"] < 2.0


def test_context_joins_the_ring_stars(world):
    alerts, ctx = world
    plain = cluster_alerts(alerts, map_coords=False)
    ring_plain = [c for c in plain.clusters if c.dominant_scenario == 4]
    assert len(ring_plain) == 3 and all(len(c.customers) == 3 for c in ring_plain)   # three separate stars
    res = cluster_alerts(alerts, map_coords=False, context=ctx)
    ring = [c for c in res.clusters if c.scenario_mix and "4" in c.scenario_mix]
    assert len(ring) == 1
    r = ring[0]
    assert r.customers == [f"M{i}" for i in range(9)] and r.terminals == ["R0", "R1", "R2"]
    assert r.scenario_mix == {"4": 9} and r.context_groups == 3
    assert r.surging_terminals == ["R0", "R1", "R2"]
    assert r.colluding_customers == []                      # each mule has one alert, at one terminal
    seen = cluster_alerts(alerts, map_coords=False, context=ctx, context_collusion=True)
    assert len(seen.get(r.id).colluding_customers) == 9      # counted from the context: all at 3 terminals
    assert r.context_tx == 27                               # each mule's alert and its two other ring visits
    assert res.clusters[0].id == r.id                       # and it ranks first
    assert res.meta["context"] is True and res.meta["context_links"] >= 2
    # the members are alerts only
    assert sorted(r.tx_ids) == sorted(alerts.loc[alerts["scenario"] == 4, "tx_id"])
    assert sum(c.n_tx for c in res.clusters) == len(alerts)


def test_popular_terminal_does_not_join_unrelated_customers(world):
    alerts, ctx = world
    res = cluster_alerts(alerts, map_coords=False, context=ctx)
    groups = _by_customers(res)
    a, b, pop = frozenset({"A0", "A1", "A2"}), frozenset({"B0", "B1", "B2"}), frozenset({"C0", "C1"})
    assert a in groups and b in groups and pop in groups      # each stays alone
    assert groups[a].context_groups == groups[b].context_groups == 1
    assert groups[a].colluding_customers == [] and groups[a].surging_terminals == []
    # even with surge gating off, A and B (and POP's group) are not linked: A's customers use POP,
    # but POP's customers never used P1 or Q1, and A's never used Q1
    loose = cluster_alerts(alerts, map_coords=False, context=ctx, link_min_surge=None)
    g2 = _by_customers(loose)
    assert a in g2 and b in g2 and pop in g2


def test_without_context_nothing_changes():
    a = hand_built_alerts()
    old = cluster_alerts(a, seed=0, map_coords=False)
    none = cluster_alerts(a, seed=0, map_coords=False, context=None)
    assert [(c.id, c.risk) for c in old.clusters] == [(c.id, c.risk) for c in none.clusters]
    assert old.meta["context"] is False and all(c.context_tx == 0 and c.context_groups == 1 for c in old.clusters)
    # context holding only the alerts themselves links nothing: ring and star stay apart
    same = cluster_alerts(a, seed=0, map_coords=False, context=a[["tx_id", "timestamp", "customer_id", "terminal_id"]])
    assert same.meta["context_links"] == 0 and all(c.context_groups == 1 for c in same.clusters)
    mixes = sorted((c.scenario_mix for c in same.clusters if c.n_tx > 1), key=lambda m: -sum(m.values()))
    assert [m.get("4", 0) for m in mixes] == [48, 0] and mixes[1]["2"] == 20


def test_context_helpers_by_hand():
    a = _alerts([("X", "T1", 0, 0), ("Y", "T1", 1, 0), ("Z", "T2", 2, 0), ("W", "T2", 30, 0)])
    ctx = _context([("X", "T2", 5), ("Y", "T2", 6), ("Z", "T1", 7), ("W", "T1", 8), ("X", "T2", 1000),
                    ("nobody", "T1", 4)])
    v = prepare_context(ctx, a)
    # only alerted customers inside the alerts' window: X's visit at hour 1000 and "nobody" are out
    assert sorted(map(tuple, v[["customer_id", "terminal_id", "n"]].to_numpy().tolist())) == \
        [("W", "T1", 1), ("X", "T2", 1), ("Y", "T2", 1), ("Z", "T1", 1)]
    seen = {"X": {"T1", "T2"}, "Y": {"T1", "T2"}, "Z": {"T1", "T2"}, "W": {"T1", "T2"}}
    keys = ["g1", "g1", "g2", "g2"]
    assert context_links(a, keys, seen) == [("g1", "g2", 2, 2)]
    assert context_links(a, keys, seen, min_shared=3) == []
    assert context_links(a, keys, seen, via={"T1"}) == []             # X, Y seen at T2, not a via terminal
    half = {"X": {"T1", "T2"}, "Y": {"T1"}, "Z": {"T1", "T2"}, "W": {"T2"}}
    assert context_links(a, keys, half) == []                        # one customer each way is not enough
    # colluding: with what was seen, all four used both shared terminals
    assert colluding_customers(a["customer_id"], a["terminal_id"]) == []
    assert colluding_customers(a["customer_id"], a["terminal_id"], seen) == ["W", "X", "Y", "Z"]


def test_bad_context_is_refused(tmp_path):
    a = hand_built_alerts()
    with pytest.raises(ConfigError, match="customer_id"):
        cluster_alerts(a, context=a[["timestamp", "terminal_id"]])
    with pytest.raises(ConfigError, match="link_min_share"):
        cluster_alerts(a, context=a, link_min_share=2.0)
    with pytest.raises(ConfigError, match="--archive"):
        read_context(archive=tmp_path)                               # a folder without date=* parts
    assert read_context() is None


def test_cli_clusters_with_context_file_and_archive(tmp_path, world):
    alerts, ctx = world
    url = f"sqlite:///{tmp_path / 'alerts.db'}"
    AlertStore(url).write_alerts(alerts)
    path = tmp_path / "ctx.parquet"
    ctx.to_parquet(path, index=False)
    day = ctx["timestamp"].dt.strftime("%Y-%m-%d")
    for d, part in ctx.groupby(day):
        (tmp_path / "archive" / f"date={d}").mkdir(parents=True)
        part.to_parquet(tmp_path / "archive" / f"date={d}" / "part-x-p0000-o0-1.parquet", index=False)
    runner = CliRunner()
    plain = json.loads(runner.invoke(main, ["review", "clusters", "--alerts-db", url, "--json"]).output)
    for extra in (["--context", str(path)], ["--archive", str(tmp_path / "archive")]):
        r = runner.invoke(main, ["review", "clusters", "--alerts-db", url, "--json", *extra], catch_exceptions=False)
        assert r.exit_code == 0, r.output
        js = json.loads(r.output)
        top = js["clusters"][0]
        assert top["customers"] == [f"M{i}" for i in range(9)] and top["context_groups"] == 3
        assert js["meta"]["context"] is True and len(js["clusters"]) == len(plain["clusters"]) - 2
        show = runner.invoke(main, ["review", "show", top["id"], "--alerts-db", url, *extra])
        assert show.exit_code == 0 and "surging terminals: R0, R1, R2" in show.output
    assert plain["meta"]["context"] is False


def test_app_cluster_page_shows_the_context(tmp_path, world):
    from fastapi.testclient import TestClient

    from fraud.review.app import create_app

    alerts, ctx = world
    store = AlertStore(f"sqlite:///{tmp_path / 'alerts.db'}")
    store.write_alerts(alerts)
    token = "ctx-review-token"
    client = TestClient(create_app(store, token=token, cluster_kwargs={"context": ctx}))
    r = client.post("/login", data={"secret": token, "next": "/"})
    assert r.status_code == 200
    top = client.app.state.cache.view().result.clusters[0]
    assert top.context_groups == 3
    html = client.get(f"/cluster/{top.id}").text
    assert "surging terminals: R0, R1, R2" in html and "3 alert group(s) linked" in html


def _write_archive_day(root, part: pd.DataFrame, name: str):
    day = part["timestamp"].iloc[0].strftime("%Y-%m-%d")
    folder = root / f"date={day}"
    folder.mkdir(parents=True, exist_ok=True)
    part.to_parquet(folder / name, index=False)
    return folder / name


def test_context_source_follows_a_growing_archive(tmp_path, world):
    """The review app's context: new archive files join it (each read once), removed ones leave it, a changed
    context file is read again, and the app's clusters follow; look() sees no change within refresh_s."""
    from fraud.review.clusters import ContextSource
    from fraud.review.view import ClusterCache

    alerts, ctx = world
    root = tmp_path / "archive"
    ctx = ctx.sort_values("timestamp", kind="stable").reset_index(drop=True)
    first, rest = ctx.iloc[:40], ctx.iloc[40:]
    _write_archive_day(root, first, "part-x-p0000-o000-039.parquet")
    src = ContextSource(root, refresh_s=0)
    v1, c1 = src.get()
    pd.testing.assert_frame_equal(c1, read_context(archive=root))
    assert len(c1) == 40 and src.get()[0] == v1                       # nothing new: same version
    (root / "date=2099-01-01").mkdir()
    (root / "date=2099-01-01" / ".part-x-p0000-o1-2.parquet.tmp").write_bytes(b"half")  # being written: ignored
    store = AlertStore(f"sqlite:///{tmp_path / 'alerts.db'}")
    store.write_alerts(alerts)
    cache = ClusterCache(store, context_source=src, wait_s=None, min_interval_s=0)
    before = cache.view().result
    assert cache.view().result is before
    assert before.clusters[0].customers != [f"M{i}" for i in range(9)]  # the ring's context is not there yet
    days = rest["timestamp"].dt.strftime("%Y-%m-%d")
    for i, (_, part) in enumerate(rest.groupby(days)):
        _write_archive_day(root, part.reset_index(drop=True), f"part-x-p0001-o{i:03d}-{i:03d}.parquet")
    v2, c2 = src.get()
    assert v2 != v1 and len(c2) == len(ctx)
    pd.testing.assert_frame_equal(c2, read_context(archive=root))
    after = cache.view().result
    assert after is not before and after.clusters[0].customers == [f"M{i}" for i in range(9)]
    # a file removed (a restarting scorer discards what it had not checkpointed) leaves the context
    (root / f"date={first['timestamp'].iloc[0]:%Y-%m-%d}" / "part-x-p0000-o000-039.parquet").unlink()
    v3, c3 = src.get()
    assert v3 != v2 and len(c3) == len(ctx) - 40
    # a context file is read again when it changes; look() sees a change no sooner than refresh_s after the last
    path = tmp_path / "ctx.parquet"
    first.to_parquet(path, index=False)
    slow = ContextSource(path=path, refresh_s=3600)
    seen = slow.look()
    assert len(slow.get()[1]) == 40
    ctx.to_parquet(path, index=False)
    assert slow.look() == seen                          # within refresh_s: not looked at
    slow.refresh_s = 0
    assert slow.look() != seen and len(slow.get()[1]) == len(ctx)
    assert slow.look() == slow.look()                   # nothing changed since: the same number
    with pytest.raises(ConfigError, match="context-refresh"):
        ContextSource(path=path, refresh_s=-1)


def test_review_serve_picks_up_new_archive_files(tmp_path, world):
    """`fraud review serve --archive` as a process: archive files written while it runs reach its clusters (after
    a background refresh: a page reloaded a few seconds later shows them)."""
    import os
    import socket
    import subprocess
    import sys
    import time
    import urllib.request

    alerts, ctx = world
    url = f"sqlite:///{tmp_path / 'alerts.db'}"
    AlertStore(url).write_alerts(alerts)
    root = tmp_path / "archive"
    ctx = ctx.sort_values("timestamp", kind="stable").reset_index(drop=True)
    _write_archive_day(root, ctx.iloc[:40], "part-x-p0000-o000-039.parquet")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    token = "serve-test-token-123"
    env = {**os.environ, "FRAUD_REVIEW_TOKEN": token}
    proc = subprocess.Popen([sys.executable, "-m", "fraud.cli", "review", "serve", "--port", str(port), "--alerts-db",
                             url, "--archive", str(root), "--context-refresh", "0"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)

    def top_customers():
        req = urllib.request.Request(f"http://127.0.0.1:{port}/api/clusters",
                                     headers={"Authorization": f"Bearer {token}", "X-Analyst": "t"})
        with urllib.request.urlopen(req, timeout=10) as r:
            return json.loads(r.read())["clusters"][0]["customers"]

    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                before = top_customers()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(f"review serve did not start: {proc.stdout.read().decode()[-2000:]}")
                time.sleep(0.2)
        ring = [f"M{i}" for i in range(9)]
        assert before != ring
        rest = ctx.iloc[40:]
        for i, (_, part) in enumerate(rest.groupby(rest["timestamp"].dt.strftime("%Y-%m-%d"))):
            _write_archive_day(root, part.reset_index(drop=True), f"part-x-p0001-o{i:03d}-{i:03d}.parquet")
        deadline = time.monotonic() + 60          # grouped off the request path: reload until it shows
        while top_customers() != ring:
            assert time.monotonic() < deadline, "the new archive files never reached the clusters"
            time.sleep(0.2)
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_a_damaged_archive_file_is_left_out_of_the_context_with_a_warning(tmp_path, world, caplog):
    """The app keeps following the archive: a file it cannot read is named once in the log and left out; the
    pages never read files themselves (look() only lists them)."""
    from fraud.review.clusters import ContextSource
    from fraud.review.view import ClusterCache

    alerts, ctx = world
    ctx = ctx.sort_values("timestamp", kind="stable").reset_index(drop=True)
    root = tmp_path / "archive"
    _write_archive_day(root, ctx.iloc[:40], "part-x-p0000-o000-039.parquet")
    store = AlertStore(f"sqlite:///{tmp_path / 'alerts.db'}")
    store.write_alerts(alerts)
    cache = ClusterCache(store, context_source=ContextSource(root, refresh_s=0), wait_s=None, min_interval_s=0)
    before = cache.view()
    bad = root / "date=2099-01-02" / "part-x-p0009-o000-001.parquet"
    bad.parent.mkdir()
    bad.write_bytes(b"not a parquet file")
    _write_archive_day(root, ctx.iloc[40:80].reset_index(drop=True), "part-x-p0001-o000-039.parquet")
    with caplog.at_level("WARNING", logger="fraud.review.clusters"):
        after = cache.view()
        again = cache.view()
    assert after is not before and cache.error is None and len(after.context) == 80
    assert again is after and caplog.text.count("cannot read") == 1 and str(bad) in caplog.text
