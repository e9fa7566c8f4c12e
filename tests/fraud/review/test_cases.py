"""Cases: stable ids over re-clustering (grow, split, merge, reopen, follow), analyst actions with history,
undo taking labels back, and the queue's filters and CSV."""
from __future__ import annotations

from types import SimpleNamespace

import pandas as pd
import pytest

from fraud.errors import ConfigError
from fraud.review import queue as Q
from fraud.review.cases import CaseBook
from fraud.review.clusters import cluster_alerts
from fraud.store import AlertStore

from .helpers import hand_built_alerts


def fake(groups: dict, alerts: pd.DataFrame):
    """A ClusterResult-like object with the given cluster id -> tx_ids."""
    a = alerts.set_index("tx_id")
    cl = [SimpleNamespace(id=k, tx_ids=list(v), n_tx=len(v), risk=float(len(v)), surging_terminals=[],
                          colluding_customers=[], customers=sorted(set(a.loc[list(v), "customer_id"])),
                          terminals=sorted(set(a.loc[list(v), "terminal_id"]))) for k, v in groups.items()]
    return SimpleNamespace(clusters=cl, alerts=alerts[alerts["tx_id"].isin([t for v in groups.values() for t in v])])


@pytest.fixture()
def book(tmp_path):
    s = AlertStore(f"sqlite:///{tmp_path / 'a.db'}")
    s.write_alerts(hand_built_alerts())
    return CaseBook(s)


def test_ids_survive_growth_split_merge(book):
    a = book.store.read_alerts()
    t = a["tx_id"].tolist()
    m1 = book.sync(fake({"X": t[:10], "Y": t[10:14]}, a))
    assert m1 == {"X": "CASE-0001", "Y": "CASE-0002"}
    m2 = book.sync(fake({"X2": t[:12], "Y2": t[10:12] and t[12:16]}, a))     # both grew: same ids
    assert m2 == {"X2": "CASE-0001", "Y2": "CASE-0002"}
    m3 = book.sync(fake({"A": t[:7], "B": t[7:12], "C": t[12:16]}, a))       # CASE-0001 splits
    assert m3["A"] == "CASE-0001" and m3["B"] == "CASE-0003" and m3["C"] == "CASE-0002"
    assert book.get("CASE-0003")["link_kind"] == "split_from" and book.get("CASE-0003")["linked_to"] == "CASE-0001"
    m4 = book.sync(fake({"M": t[:16]}, a))                                   # all merge into the oldest, largest
    assert m4 == {"M": "CASE-0001"}
    for c in ("CASE-0002", "CASE-0003"):
        assert book.get(c)["status"] == "merged" and book.get(c)["linked_to"] == "CASE-0001"
    texts = " | ".join(h["text"] for h in book.history("CASE-0001"))
    assert "split" in texts and "merged into this case" in texts


def test_closed_case_reopens_or_is_followed(book):
    a = book.store.read_alerts()
    t = a["tx_id"].tolist()
    book.sync(fake({"X": t[:4]}, a))
    eid, n = book.decide("CASE-0001", "fraud", "alice")
    assert n == 4 and book.get("CASE-0001")["status"] == "closed"
    book.sync(fake({"X": t[:5]}, a))                                         # a new alert joins it: reopened
    assert book.get("CASE-0001")["status"] == "open"
    assert any(h["action"] == "reopened" for h in book.history("CASE-0001"))
    book.decide("CASE-0001", "fraud", "alice")
    same_customer = a[(a["customer_id"] == a.loc[0, "customer_id"]) & ~a["tx_id"].isin(t[:5])]["tx_id"].tolist()
    m = book.sync(fake({"X": t[:5], "N": same_customer[:2]}, a))             # new alerts, same customer: follows
    assert book.get(m["N"])["link_kind"] == "follows" and book.get(m["N"])["linked_to"] == "CASE-0001"


def test_decide_confirms_undo_restores_labels(book):
    a = book.store.read_alerts()
    t = a["tx_id"].tolist()
    book.sync(fake({"X": t[:6]}, a))
    e1, _ = book.decide("CASE-0001", "not_fraud", "alice", tx_ids=t[:2])
    assert book.get("CASE-0001")["status"] == "open"
    e2, n = book.decide("CASE-0001", "fraud", "bob")
    assert n == 6 and book.store.labels()["label"].sum() == 6
    book.undo(e2, "carol")                                                   # a reviewer undoes bob's decision
    lab = book.store.labels().set_index("tx_id")
    assert sorted(lab.index) == sorted(t[:2]) and (lab["label"] == 0).all()  # alice's labels stand again
    assert book.get("CASE-0001")["status"] == "open" and book.get("CASE-0001")["outcome"] is None
    with pytest.raises(ConfigError, match="already undone"):
        book.undo(e2, "carol")
    with pytest.raises(ConfigError, match="not in case"):
        book.decide("CASE-0001", "fraud", "alice", tx_ids=["nope"])
    actions = [h["action"] for h in book.history("CASE-0001")]
    assert actions == ["created", "decide", "decide", "undo"]


def test_queue_filters_search_pages_csv(book):
    res = cluster_alerts(book.store.read_alerts(), map_coords=False)
    book.sync(res)
    rows = Q.rows(book, res, Q.strength(res.alerts), 100)
    prio = [r.risk / r.n_tx ** 0.5 for r in rows]
    assert prio == sorted(prio, reverse=True)
    top = rows[0].case_id
    book.assign(top, "alice", "alice")
    rows = Q.rows(book, res, Q.strength(res.alerts), 100)
    assert [r.case_id for r in Q.select(rows, Q.Filters(assignee="alice"), book)] == [top]
    assert [r.case_id for r in Q.select(rows, Q.Filters(ring=True), book)] == [top]
    assert [r.case_id for r in Q.select(rows, Q.Filters(q="M3"), book)] == [top]
    assert [r.case_id for r in Q.select(rows, Q.Filters(q="T9"), book)][:1]
    shown, pages = Q.page(rows, Q.Filters(per_page=3, page=2))
    assert pages == 3 and len(shown) == 3
    book.decide(top, "fraud", "alice")
    rows = Q.rows(book, res, Q.strength(res.alerts), 100)
    assert top not in [r.case_id for r in Q.select(rows, Q.Filters(), book)]
    assert Q.queue_csv(rows).splitlines()[0].startswith("case_id,status")
    f = Q.Filters.parse({"min_risk": "x", "since": "yesterday-ish", "status": "bogus"})
    assert len(f.errors) == 3 and f.status == "active"


def test_merge_keeps_the_older_case_even_when_smaller(book):
    a = book.store.read_alerts()
    t = a["tx_id"].tolist()
    day = pd.Timestamp("2026-01-01", tz="UTC")
    book.sync(fake({"OLD": t[:2]}, a), at=day)
    book.sync(fake({"OLD": t[:2], "NEW": t[2:10]}, a), at=day + pd.Timedelta(days=1))
    m = book.sync(fake({"M": t[:12]}, a), at=day + pd.Timedelta(days=2))   # the younger case holds more alerts
    assert m == {"M": "CASE-0001"}
    new = book.get("CASE-0002")
    assert new["status"] == "merged" and new["link_kind"] == "merged_into" and new["linked_to"] == "CASE-0001"
    assert set(book.members("CASE-0001")["tx_id"]) == set(t[:12])


def test_merge_keeps_the_case_an_analyst_works_on(book):
    a = book.store.read_alerts()
    t = a["tx_id"].tolist()
    day = pd.Timestamp("2026-01-01", tz="UTC")
    book.sync(fake({"OLD": t[:2]}, a), at=day)
    book.sync(fake({"OLD": t[:2], "NEW": t[2:6]}, a), at=day + pd.Timedelta(days=1))
    book.assign("CASE-0002", "alice", "alice")
    assert book.sync(fake({"M": t[:6]}, a), at=day + pd.Timedelta(days=2)) == {"M": "CASE-0002"}
    assert book.get("CASE-0001")["linked_to"] == "CASE-0002"


def test_split_part_keeps_a_case_whose_largest_part_was_taken(book):
    a = book.store.read_alerts()
    t = a["tx_id"].tolist()
    day = pd.Timestamp("2026-01-01", tz="UTC")
    book.sync(fake({"OLD": t[:3]}, a), at=day)
    book.sync(fake({"OLD": t[:3], "NEW": t[3:8]}, a), at=day + pd.Timedelta(days=1))
    # the younger case's larger part joins the older case; its smaller part stays alone under its id
    m = book.sync(fake({"J": t[:3] + t[3:6], "R": t[6:8]}, a), at=day + pd.Timedelta(days=2))
    assert m == {"J": "CASE-0001", "R": "CASE-0002"}


def test_queue_puts_a_small_ring_above_a_large_weak_case_and_a_single_alert(book):
    a = book.store.read_alerts()
    t = a["tx_id"].tolist()
    res = fake({"WEAK": t[:20], "RING": t[20:23], "ONE": t[23:24]}, a)
    for cl, risk in zip(res.clusters, (20.0, 9.0, 4.0)):      # priority 4.5, 5.2, 4.0; per alert 1, 3, 4
        cl.risk = risk
    ids = book.sync(res)
    rows = Q.rows(book, res, Q.strength(res.alerts), 100)
    assert [r.case_id for r in rows] == [ids["RING"], ids["WEAK"], ids["ONE"]]
    assert rows[0].priority == pytest.approx(9.0 / 3 ** 0.5)
