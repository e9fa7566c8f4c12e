"""Cases: stable ids over re-clustering (grow, reshuffle, clusters joining cases, split, reopen, follow),
analyst actions with history, undo taking labels back, and the queue's order, entries, filters and CSV."""
from __future__ import annotations

import json
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


def tx(a: pd.DataFrame, customers=None, terminals=None) -> list:
    """tx_ids of the hand-built alerts at these customers (and/or terminals), in time order."""
    m = pd.Series(True, index=a.index)
    if customers is not None:
        m &= a["customer_id"].isin(customers)
    if terminals is not None:
        m &= a["terminal_id"].isin(terminals)
    return a.loc[m, "tx_id"].tolist()


def test_ids_survive_growth_and_reshuffles(book):
    a = book.store.read_alerts()
    ring, victims = tx(a, customers=["M0", "M1", "M2", "M3"], terminals=["R0", "R1", "R2"]), tx(a, terminals=["T9"])
    m1 = book.sync(fake({"X": ring[:10], "Y": victims[:4]}, a))
    assert m1 == {"X": "CASE-0001", "Y": "CASE-0002"}
    m2 = book.sync(fake({"X2": ring[:14], "Y2": victims[:8]}, a))               # both grew: same ids
    assert m2 == {"X2": "CASE-0001", "Y2": "CASE-0002"}
    assert [h["action"] for h in book.history("CASE-0001")] == ["created", "grew"]
    # the clustering regroups the ring's alerts (they share customers and terminals): nothing moves
    before = book.members()
    m3 = book.sync(fake({"A": ring[:5], "B": ring[5:14], "C": victims[:8]}, a))
    assert m3 == {"A": "CASE-0001", "B": "CASE-0001", "C": "CASE-0002"}
    pd.testing.assert_frame_equal(book.members(), before)
    assert len(book.frame()) == 2


def test_merge_keeps_both_ids_resolvable_and_linked(book):
    a = book.store.read_alerts()
    ring, victims = tx(a, terminals=["R0", "R1", "R2"]), tx(a, customers=[f"V{i}" for i in range(10)])
    day = pd.Timestamp("2026-01-01", tz="UTC")
    book.sync(fake({"R": ring[:30], "V": victims[:6]}, a), at=day)
    bridge = tx(a, customers=["M0"], terminals=["T9"])                           # the stray alert joins both
    m = book.sync(fake({"ALL": ring[:30] + victims[:8] + bridge}, a), at=day + pd.Timedelta(days=1))
    assert m == {"ALL": "CASE-0001"}                                             # the case holding most of it
    for case_id, other in (("CASE-0001", "CASE-0002"), ("CASE-0002", "CASE-0001")):
        assert book.get(case_id)["status"] == "open" and book.related(case_id) == [other]
        assert any(h["action"] == "related" and other in h["text"] for h in book.history(case_id))
    assert book.get("CASE-0002")["link_kind"] == "related" and book.get("CASE-0002")["linked_to"] == "CASE-0001"
    mem = book.members().set_index("tx_id")["case_id"]
    assert set(mem[ring[:30]]) == {"CASE-0001"} and set(mem[victims[:8]]) == {"CASE-0002"}
    assert mem[bridge[0]] == "CASE-0001"                                         # its customer M0 is in the ring case
    book.sync(fake({"ALL": ring[:30] + victims[:8] + bridge}, a), at=day + pd.Timedelta(days=2))
    assert sum(h["action"] == "related" for h in book.history("CASE-0002")) == 1    # linked once, not every sync


def test_split_keeps_the_id_on_the_larger_part_and_history(book):
    a = book.store.read_alerts()
    ring, lone = tx(a, terminals=["R0", "R1", "R2"]), tx(a, customers=[f"S{i}" for i in range(5)])
    book.sync(fake({"X": ring[:12] + lone}, a))                                  # context once linked them
    m = book.sync(fake({"R": ring[:12], "L": lone}, a))                          # now no shared entity: split
    assert m == {"R": "CASE-0001", "L": "CASE-0002"}
    new = book.get("CASE-0002")
    assert new["link_kind"] == "split_from" and new["linked_to"] == "CASE-0001"
    assert set(book.members("CASE-0002")["tx_id"]) == set(lone)
    assert any(h["action"] == "split" and "CASE-0002" in h["text"] for h in book.history("CASE-0001"))
    assert "split from CASE-0001" in book.history("CASE-0002")[0]["text"]


def test_new_alert_joins_the_case_holding_its_customer(book):
    a = book.store.read_alerts()
    ring = tx(a, terminals=["R0", "R1", "R2"])
    m0, m1 = tx(a, customers=["M0"], terminals=["R0", "R1", "R2"]), tx(a, customers=["M1"])
    others = [t for t in ring if t not in m0 + m1]
    book.sync(fake({"A": others[:20], "B": m1[:2]}, a))
    book.assign("CASE-0002", "alice", "alice")
    book.sync(fake({"ALL": others[:20] + m1}, a))                                # M1's new alerts: its own case
    mem = book.members().set_index("tx_id")["case_id"]
    assert set(mem[m1]) == {"CASE-0002"} and book.get("CASE-0002")["status"] == "in_progress"
    book.sync(fake({"ALL": others[:20] + m1 + m0}, a))                           # M0 is in no case: the larger one
    assert set(book.members().set_index("tx_id")["case_id"][m0]) == {"CASE-0001"}


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


def test_closed_case_in_a_cluster_with_a_live_case_stays_closed(book):
    a = book.store.read_alerts()
    ring, victims = tx(a, terminals=["R0", "R1", "R2"]), tx(a, terminals=["T9"])
    book.sync(fake({"R": ring[:10], "V": victims[:6]}, a))
    book.decide("CASE-0002", "not_fraud", "alice")
    book.sync(fake({"ALL": ring[:12] + victims[:6]}, a))                          # new ring alerts: the live case
    assert book.get("CASE-0002")["status"] == "closed" and book.related("CASE-0002") == ["CASE-0001"]
    assert set(book.members("CASE-0001")["tx_id"]) == set(ring[:12])


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


def test_each_case_is_ranked_by_its_own_alerts(book, tmp_path):
    res = cluster_alerts(book.store.read_alerts(), map_coords=False)
    ids = book.sync(res)
    risk = {r.case_id: r.risk for r in Q.rows(book, res, Q.strength(res.alerts), 100)}
    assert all(risk[ids[c.id]] == pytest.approx(c.risk) for c in res.clusters)   # a case = its cluster: same risk
    a = book.store.read_alerts()
    ring, victims = tx(a, terminals=["R0", "R1", "R2"]), tx(a, customers=[f"V{i}" for i in range(10)])
    book2 = CaseBook(AlertStore(f"sqlite:///{tmp_path / 'b.db'}"))
    book2.store.write_alerts(a)
    book2.sync(fake({"R": ring, "V": victims}, a))
    joined = fake({"ALL": ring + victims}, a)                                   # one cluster, two cases
    book2.sync(joined)
    rows = {r.case_id: r for r in Q.rows(book2, joined, Q.strength(joined.alerts), 100)}
    assert rows["CASE-0001"].ring and not rows["CASE-0002"].ring              # the victims do not inherit it
    assert rows["CASE-0001"].risk > rows["CASE-0002"].risk > 0


def test_related_cases_are_listed_together_at_their_clusters_priority(book):
    a = book.store.read_alerts()
    ring, victims = tx(a, terminals=["R0", "R1", "R2"]), tx(a, terminals=["T9"])
    book.sync(fake({"R1": ring[:20], "R2": ring[20:21], "MID": victims[:4]}, a))
    joined = fake({"R": ring[:21], "MID": victims[:4]}, a)
    joined.clusters[0].risk, joined.clusters[1].risk = 2000.0, 20.0          # priority 436 and 10
    book.sync(joined)
    rows = Q.rows(book, joined, Q.strength(joined.alerts), 100)
    by_id = {r.case_id: r for r in rows}
    assert by_id["CASE-0002"].priority < by_id["CASE-0003"].priority         # alone it would rank below MID
    assert [r.case_id for r in rows] == ["CASE-0001", "CASE-0002", "CASE-0003"]
    assert by_id["CASE-0002"].related == ["CASE-0001"] and by_id["CASE-0003"].related == []
    assert by_id["CASE-0001"].group_priority == pytest.approx(2000.0 / 21 ** 0.5)
    assert Q.queue_csv(rows).splitlines()[1].endswith(",CASE-0002")


def test_app_shows_related_cases_on_the_queue_and_the_case_page(book):
    from fastapi.testclient import TestClient

    from fraud.review.app import create_app

    from .test_app import ALICE, login, users_of

    a = book.store.read_alerts()
    ring = tx(a, terminals=["R0", "R1", "R2"])
    book.sync(fake({"A": ring[:30], "B": ring[30:]}, a))                     # two cases, before any link
    client = TestClient(create_app(book.store, users=users_of(ALICE)))
    login(client)
    page = client.get("/case/CASE-0002")                                      # the app re-clusters: one ring
    assert page.status_code == 200
    assert "Related to <a href=\"/case/CASE-0001\">CASE-0001</a>" in page.text and 'id="related"' in page.text
    queue = client.get("/").text
    assert "related: <a href=\"/case/CASE-0002\">CASE-0002</a>" in queue


def test_a_page_holds_whole_entries_a_case_with_its_related_cases(book):
    a = book.store.read_alerts()
    ring, victims, lone = tx(a, terminals=["R0", "R1", "R2"]), tx(a, terminals=["T9"]), tx(a, customers=["S0"])
    book.sync(fake({"R1": ring[:20], "R2": ring[20:21], "MID": victims[:4], "S": lone}, a))
    joined = fake({"R": ring[:21], "MID": victims[:4], "S": lone}, a)
    book.sync(joined)
    rows = Q.rows(book, joined, Q.strength(joined.alerts), 100)
    assert [r.lead for r in rows][:2] == [None, rows[0].case_id]
    assert [[r.case_id for r in g] for g in Q.entries(rows)][0] == [rows[0].case_id, rows[1].case_id]
    shown, pages = Q.page(rows, Q.Filters(per_page=1, page=1))
    assert pages == 3 and [r.case_id for r in shown] == [rows[0].case_id, rows[1].case_id]
    book.decide(rows[0].case_id, "fraud", "alice")                           # the lead leaves the open queue
    rows = Q.select(Q.rows(book, joined, Q.strength(joined.alerts), 100), Q.Filters(), book)
    assert [len(g) for g in Q.entries(rows)] == [1, 1, 1]


def test_grouping_never_sinks_a_case_below_its_own_priority(book):
    a = book.store.read_alerts()
    ring, victims = tx(a, terminals=["R0", "R1", "R2"]), tx(a, terminals=["T9"])
    book.sync(fake({"R": ring[:20], "V": victims[:4], "MID": victims[4:8]}, a))
    joined = fake({"RV": ring[:20] + victims[:4], "MID": victims[4:8]}, a)
    joined.clusters[0].risk, joined.clusters[1].risk = 1.0, 4.0             # a weak cluster joins the ring case
    book.sync(joined)
    rows = Q.rows(book, joined, Q.strength(joined.alerts), 100)
    ring_row = next(r for r in rows if r.case_id == "CASE-0001")
    assert ring_row.group_priority == pytest.approx(ring_row.priority) and ring_row.priority > 2.0
    assert [r.case_id for r in rows] == ["CASE-0001", "CASE-0002", "CASE-0003"]


class Interleaved(CaseBook):
    """A book whose sync lets ``meanwhile`` run after it has read the cases and before it places new alerts:
    another process (its own engine, its own lock) acting at that moment."""
    meanwhile = None

    def _place_fresh(self, conn, *args):
        if self.meanwhile is not None:
            self.meanwhile()
        return super()._place_fresh(conn, *args)


def test_a_case_another_process_closes_during_a_sync_is_reopened_by_its_new_alerts(book):
    a = book.store.read_alerts()
    ring = tx(a, customers=["M0", "M1", "M2", "M3"], terminals=["R0", "R1", "R2"])
    assert book.sync(fake({"X": ring[:10]}, a)) == {"X": "CASE-0001"}
    other = CaseBook(AlertStore(book.store.url))
    mine = Interleaved(AlertStore(book.store.url))
    mine.meanwhile = lambda: other.decide("CASE-0001", "fraud", analyst="bob") if other.get("CASE-0001")[
        "status"] != "closed" else None
    mine.sync(fake({"X2": ring[:14]}, a))
    assert mine.get("CASE-0001")["status"] == "open"                  # not 4 new alerts hidden in a closed case
    assert [h["action"] for h in mine.history("CASE-0001")] == ["created", "decide", "reopened"]
    assert set(mine.members("CASE-0001")["tx_id"]) == set(ring[:14])


def test_two_processes_placing_the_same_new_alerts_put_each_in_one_case(book):
    a = book.store.read_alerts()
    ring, victims = tx(a, customers=["M0", "M1", "M2", "M3"], terminals=["R0", "R1", "R2"]), tx(a, terminals=["T9"])
    res = fake({"X": ring[:10], "Y": victims[:4]}, a)
    other = CaseBook(AlertStore(book.store.url))
    mine = Interleaved(AlertStore(book.store.url))
    mine.meanwhile = lambda: other.sync(res)              # the other process places them first (then: nothing new)
    assert mine.sync(res) == {"X": "CASE-0001", "Y": "CASE-0002"}
    members = mine.members()
    assert len(mine.frame()) == 2 and members["tx_id"].is_unique and len(members) == 14


def test_an_undo_another_process_made_first_is_not_made_twice(book):
    a = book.store.read_alerts()
    ring = tx(a, customers=["M0", "M1", "M2", "M3"], terminals=["R0", "R1", "R2"])
    book.sync(fake({"X": ring[:10]}, a))
    eid, _ = book.decide("CASE-0001", "fraud", analyst="bob")
    other = CaseBook(AlertStore(book.store.url))

    class Racing(CaseBook):
        def event(self, event_id):
            ev = super().event(event_id)
            if ev["undone_by"] is None:
                other.undo(event_id, "carol")              # the other process's undo lands after this read
            return ev

    mine = Racing(AlertStore(book.store.url))
    with pytest.raises(ConfigError, match=f"event {eid} was already undone"):
        mine.undo(eid, "alice")
    assert [h["action"] for h in mine.history("CASE-0001")] == ["created", "decide", "undo"]
    assert mine.get("CASE-0001")["status"] == "open" and len(mine.store.labels()) == 0


def test_an_action_holds_its_case_from_reading_it_to_changing_it(book):
    """Another process cannot change a case between an action's read (its checks, its "before" for undo) and
    its write: on SQLite the other's write waits for the action's transaction (here: gives up after 0.2 s)."""
    a = book.store.read_alerts()
    book.sync(fake({"X": tx(a, customers=["M0", "M1", "M2", "M3"], terminals=["R0", "R1", "R2"])[:10]}, a))
    other = CaseBook(AlertStore(book.store.url, lock_wait=0.2))
    seen = {}

    class Reading(CaseBook):
        def _case(self, conn, case_id):               # inside the action's transaction, as it reads the case
            if "other" not in seen:
                try:
                    other.decide(case_id, "fraud", analyst="bob")
                    seen["other"] = "closed it"
                except Exception as e:  # noqa: BLE001 - what the other process got is the point
                    seen["other"] = type(e).__name__
            return CaseBook._case(conn, case_id)

    mine = Reading(AlertStore(book.store.url))
    eid = mine.assign("CASE-0001", "dora", analyst="alice")
    assert seen["other"] == "OperationalError"                       # database is locked: it waited, gave up
    st = mine.get("CASE-0001")
    assert (st["status"], st["assignee"], st["outcome"]) == ("in_progress", "dora", None)
    assert json.loads(mine.event(eid)["detail"])["before"] == {"assignee": None, "status": "open"}
