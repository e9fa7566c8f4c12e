"""``fraud.review.exposure.exposed_cards``: the other cards used at a confirmed fraud's terminal around its time."""
from __future__ import annotations

import pandas as pd
import pytest

from fraud.errors import ConfigError
from fraud.review.exposure import COLUMNS, exposed_cards

T0 = pd.Timestamp("2024-03-01 12:00", tz="UTC")


def _events(rows):
    return pd.DataFrame([{"tx_id": f"x{i}", "timestamp": T0 + pd.Timedelta(hours=h), "customer_id": c,
                          "terminal_id": t, "amount": 10.0, "score": s} for i, (h, c, t, s) in enumerate(rows)])


def test_cards_at_the_terminals_of_confirmed_frauds_within_the_window_most_confirmed_first():
    ev = _events([(0, "F1", "T1", 0.9), (1, "F2", "T1", 0.8),      # the two confirmed frauds at T1
                  (-3, "A", "T1", 0.1), (5, "A", "T1", 0.3),         # A twice at T1
                  (2, "B", "T1", 0.7),                                # B once, higher score than A
                  (30, "C", "T1", 0.99),                              # C at T1 but 29 h after the last fraud
                  (0, "D", "T2", 0.95), (2, "F3", "T2", 0.5),         # D at T2, one confirmed fraud there
                  (1, "E", "T3", 0.99)])                              # E never at a fraud's terminal
    conf = ev[ev["customer_id"].isin(["F1", "F2", "F3"])]
    out = exposed_cards(ev, conf)
    assert list(out.columns) == COLUMNS
    assert list(out["customer_id"]) == ["B", "A", "D"]            # T1 (2 confirmed) before T2 (1); then by score
    a = out.set_index("customer_id")
    assert a.loc["A", "visits"] == 2 and a.loc["A", "top_score"] == pytest.approx(0.3)
    assert a.loc["A", "first_seen"] == T0 - pd.Timedelta(hours=3)
    assert list(a["confirmed_nearby"]) == [2, 2, 1] and list(a["terminal_id"]) == ["T1", "T1", "T2"]
    # a wider window reaches C; excluded cards (e.g. already alerted) are left out
    wide = exposed_cards(ev, conf, window=pd.Timedelta(hours=48), exclude=["B"])
    assert list(wide["customer_id"]) == ["C", "A", "D"]


def test_confirmed_nearby_counts_the_frauds_within_the_window_of_a_visit():
    """Three frauds of one card at T1 count 3; a fraud 10 days away does not count; the window's edge is in."""
    ev = _events([(0, "F", "T1", 0.9), (2, "F", "T1", 0.9), (4, "F", "T1", 0.9), (240, "G", "T1", 0.9),
                  (1, "A", "T1", 0.1), (28, "B", "T1", 0.1), (216, "C", "T1", 0.1)])
    out = exposed_cards(ev, ev[ev["customer_id"].isin(["F", "G"])]).set_index("customer_id")
    assert out["confirmed_nearby"].to_dict() == {"A": 3, "B": 1, "C": 1}   # B: 24 h after the third; C: 24 h before G


def test_visits_are_per_terminal_and_per_transaction():
    ev = _events([(0, "F1", "T1", 0.9), (1, "F2", "T1", 0.9), (0, "F3", "T2", 0.9),
                  (1, "A", "T2", 0.9), (2, "A", "T1", 0.2), (2, "A", "T1", 0.3)])  # two transactions at one second
    out = exposed_cards(ev, ev[ev["customer_id"].str.startswith("F")])
    assert len(out) == 1 and out.loc[0, "terminal_id"] == "T1"           # its most exposed terminal
    assert out.loc[0, "visits"] == 2 and out.loc[0, "exposed_terminals"] == 2


def test_no_shared_terminal_no_scores_no_frauds_and_bad_input():
    ev = _events([(0, "F1", "T1", 0.9), (1, "A", "T1", 0.1), (2, "B", "T2", 0.1)])
    assert exposed_cards(ev[ev["terminal_id"] == "T2"], ev.iloc[:1]).empty           # no event at a fraud's terminal
    assert exposed_cards(ev.assign(terminal_id=["T1", "T5", "T5"]), ev.iloc[:1]).empty  # only the fraud itself
    plain = ev.drop(columns="score")
    out = exposed_cards(plain, plain.iloc[:1])
    assert list(out["customer_id"]) == ["A"] and out["top_score"].isna().all()
    assert exposed_cards(plain, plain.iloc[:0]).empty and list(exposed_cards(plain.iloc[:0], plain).columns) == COLUMNS
    with pytest.raises(ConfigError, match=r"confirmed frauds lack column\(s\) \['terminal_id'\]"):
        exposed_cards(plain, plain.drop(columns="terminal_id"))


@pytest.fixture()
def compromised(tmp_path):
    """The hand-built alerts in a real store (T9: a compromised terminal's victims) and an archive holding them plus
    four cards never alerted: W1 at T9 5 h before its first alert, W2 2 h after its last, W3 days later, W4 elsewhere."""
    from fraud.store import AlertStore

    from .helpers import hand_built_alerts

    a = hand_built_alerts()
    db = f"sqlite:///{tmp_path / 'alerts.db'}"
    AlertStore(db).write_alerts(a)
    t9 = a[a["terminal_id"] == "T9"]
    first, last = t9["timestamp"].min(), t9["timestamp"].max()
    extra = pd.DataFrame({"tx_id": ["w1", "w2", "w3", "w4"], "customer_id": ["W1", "W2", "W3", "W4"],
                          "terminal_id": ["T9", "T9", "T9", "U0"], "amount": 20.0, "score": [0.05, 0.2, 0.9, 0.9],
                          "timestamp": [first - pd.Timedelta(hours=5), last + pd.Timedelta(hours=2),
                                        last + pd.Timedelta(days=3), first]})
    ctx = pd.concat([a[["tx_id", "timestamp", "customer_id", "terminal_id", "amount", "score"]], extra])
    day = tmp_path / "archive" / "date=2024-03-05"
    day.mkdir(parents=True)
    ctx.to_parquet(day / "part-x-p0000-o000-100.parquet", index=False)
    return db, tmp_path / "archive", ctx, t9["tx_id"].iloc[-1]


def _expected(ctx: pd.DataFrame, victim: str, members: set) -> set:
    """The cards at the victim's terminal within a day of it, outside its case."""
    v = ctx.set_index("tx_id").loc[victim]
    near = ctx[(ctx["terminal_id"] == v["terminal_id"]) & ((ctx["timestamp"] - v["timestamp"]).abs()
                                                            <= pd.Timedelta(hours=24))]
    out = set(near["customer_id"]) - members
    assert "W2" in out and "W1" not in out                             # W1 came 33 h before the confirmed fraud
    return out


def test_the_case_page_lists_the_cards_exposed_once_a_fraud_is_confirmed(compromised):
    """Real store, real clustering, the context from an archive folder: the compromised terminal T9's case lists
    the other cards used at T9 within a day of its confirmed fraud (not the case's own, not later visitors)."""
    import re

    from fastapi.testclient import TestClient

    from fraud.review.app import create_app
    from fraud.review.clusters import ContextSource
    from fraud.store import AlertStore

    db, archive, ctx, victim = compromised
    app = create_app(AlertStore(db), token="exposure-token", context_source=ContextSource(archive, refresh_s=0))
    c = TestClient(app)
    bearer = {"Authorization": "Bearer exposure-token"}
    assert c.post("/login", data={"secret": "exposure-token", "next": "/"}).status_code == 200
    app.state.cache.view()
    assert app.state.cache.wait(60)
    book = app.state.cache.book
    case_id = book.members().set_index("tx_id").loc[victim, "case_id"]
    before = c.get(f"/case/{case_id}").text
    assert "Listed once a transaction of this case is confirmed as fraud" in before and 'id="exposed"' not in before
    r = c.post(f"/case/{case_id}/decide", data={"outcome": "fraud", "tx_id": victim}, headers=bearer)
    assert r.status_code == 200, r.text
    page = c.get(f"/case/{case_id}").text
    table = page.split('id="exposed"', 1)[1].split("</table>", 1)[0]
    listed = re.findall(r'href="/customer/([^"]+)"', table)
    expected = _expected(ctx, victim, set(book.members(case_id)["customer_id"]))
    assert set(listed) == expected and len(listed) == len(expected)    # W3 came days later, W4 elsewhere


def test_cases_show_lists_the_exposed_cards_with_the_archive(compromised):
    import re

    from click.testing import CliRunner

    from fraud.cli import main
    from fraud.review.cases import CaseBook
    from fraud.store import AlertStore

    db, archive, ctx, victim = compromised
    where = ["--alerts-db", db, "--archive", str(archive)]
    run = CliRunner().invoke
    assert run(main, ["review", "cases", "list", *where]).exit_code == 0
    book = CaseBook(AlertStore(db))
    case_id = book.members().set_index("tx_id").loc[victim, "case_id"]
    before = run(main, ["review", "cases", "show", case_id, *where])
    assert before.exit_code == 0, before.output
    assert "cards exposed" not in before.output                        # nothing confirmed yet
    r = run(main, ["review", "cases", "decide", case_id, "fraud", "--analyst", "ana", "--tx-id", victim, "--yes",
                   *where])
    assert r.exit_code == 0, r.output
    out = run(main, ["review", "cases", "show", case_id, *where]).output
    assert "cards exposed at the terminals of its confirmed frauds" in out
    listed = re.findall(r"^  c=(\S+) t=T9 first visit ", out, flags=re.M)
    assert set(listed) == _expected(ctx, victim, set(book.members(case_id)["customer_id"]))


def test_a_fraud_whose_terminal_the_archive_lacks_lists_no_card(compromised):
    """The archive no longer holds the fraud's day (retention), or holds another period: the page says no card
    was exposed, and the command prints nothing more; neither fails."""
    from click.testing import CliRunner

    from fraud.cli import main
    from fraud.review.cases import CaseBook
    from fraud.store import AlertStore

    db, archive, ctx, victim = compromised
    part = next(archive.glob("date=*/*.parquet"))
    ctx[ctx["terminal_id"] != "T9"].to_parquet(part, index=False)
    where = ["--alerts-db", db, "--archive", str(archive)]
    run = CliRunner().invoke
    assert run(main, ["review", "cases", "list", *where]).exit_code == 0
    case_id = CaseBook(AlertStore(db)).members().set_index("tx_id").loc[victim, "case_id"]
    assert run(main, ["review", "cases", "decide", case_id, "fraud", "--analyst", "ana", "--tx-id", victim, "--yes",
                      *where]).exit_code == 0
    out = run(main, ["review", "cases", "show", case_id, *where])
    assert out.exit_code == 0, out.output
    assert "cards exposed" not in out.output
    from fastapi.testclient import TestClient

    from fraud.review.app import create_app
    from fraud.review.clusters import ContextSource

    app = create_app(AlertStore(db), token="exposure-token", context_source=ContextSource(archive, refresh_s=0))
    c = TestClient(app)
    page = c.get(f"/case/{case_id}", headers={"Authorization": "Bearer exposure-token", "accept": "text/html"})
    assert page.status_code == 200 and "No other card used these terminals within a day" in page.text


def test_the_page_rows_say_how_many_there_are_beyond_the_limit():
    from fraud.review.queue import exposed

    ev = _events([(0, "F", "T1", 0.9), (1, "A", "T1", 0.5), (2, "B", "T1", 0.4), (3, "C", "T1", 0.3)])
    txs = [{"tx_id": "x0", "label": "fraud"}]
    out = exposed(ev, ev.iloc[:1], txs, {"F"}, limit=2)
    assert out["total"] == 3 and [r["customer_id"] for r in out["rows"]] == ["A", "B"]
    assert out["rows"][0] == {"customer_id": "A", "terminal_id": "T1", "visits": 1, "first_seen": "2024-03-01 13:00",
                              "confirmed": 1, "terminals": 1, "alerted": False, "score": 0.5}
    assert exposed(None, ev.iloc[:1], txs, set()) is None
    assert exposed(ev, ev.iloc[:1], [{"tx_id": "x0", "label": "not fraud"}], set()) == {"rows": [], "total": 0}
