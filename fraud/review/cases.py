"""Cases: the stored, stable unit an analyst works on (one per cluster of flagged activity).

Clusters are recomputed whenever alerts arrive, and their content-hash ids change. A case keeps its
id across recomputation by matching on member overlap (``CaseBook.sync``, ``_match``): a case goes with
the cluster holding most of its alerts and the rest become new cases "split from" it; a cluster so
chosen by several cases keeps the one an analyst works on, else the oldest, and the others are
"merged into" it (their history stays, pointing to it); a merged-away case whose other alerts form a
cluster of their own keeps that cluster. New alerts joining a closed
case reopen it; a new cluster on a closed case's customers or terminals starts a case linked to it.
Every action (sync, assign, status, decide, note, undo) is a row of ``case_events`` with analyst and time.

Tables ``cases``, ``case_members``, ``case_events`` (migration ``fraud/migrations/versions/0002_cases.py``).
"""
from __future__ import annotations

import json
from collections import Counter
from datetime import datetime, timezone

import pandas as pd
import sqlalchemy as sa

from fraud.errors import ConfigError
from fraud.store import AlertStore, metadata

SYSTEM = "system"
STATUSES = ("open", "in_progress", "closed", "merged")
OUTCOMES = ("fraud", "not_fraud", "mixed")
STATUS_WORDS = {"open": "open", "in_progress": "in progress", "closed": "closed", "merged": "merged"}
OUTCOME_WORDS = {"fraud": "fraud", "not_fraud": "not fraud", "mixed": "mixed", None: ""}

cases = sa.Table(
    "cases", metadata,
    sa.Column("case_id", sa.String(32), primary_key=True),
    sa.Column("status", sa.String(16), nullable=False, index=True),
    sa.Column("outcome", sa.String(16), nullable=True),
    sa.Column("assignee", sa.String(128), nullable=True, index=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("linked_to", sa.String(32), nullable=True),
    sa.Column("link_kind", sa.String(16), nullable=True),      # split_from | merged_into | follows
    sa.Column("cluster_id", sa.String(32), nullable=True),      # the cluster it matched at the last sync
)

case_members = sa.Table(
    "case_members", metadata,
    sa.Column("tx_id", sa.String(128), primary_key=True),
    sa.Column("case_id", sa.String(32), nullable=False, index=True),
    sa.Column("customer_id", sa.String(128), nullable=False, index=True),
    sa.Column("terminal_id", sa.String(128), nullable=False, index=True),
    sa.Column("joined_at", sa.DateTime(timezone=True), nullable=False),
)

case_events = sa.Table(
    "case_events", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("case_id", sa.String(32), nullable=False, index=True),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("analyst", sa.String(128), nullable=False),
    sa.Column("action", sa.String(16), nullable=False),   # created reopened grew split merged linked assign status decide note undo
    sa.Column("text", sa.Text, nullable=False),           # the sentence shown in the history
    sa.Column("detail", sa.Text, nullable=True),          # JSON: decision ids, the state before, ...
    sa.Column("undone_by", sa.Integer, nullable=True),
)

UNDOABLE = ("assign", "status", "decide")


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _seniority(st: dict) -> tuple:
    """Which of several cases keeps its id in a merge: one an analyst works on, then the oldest."""
    return (st["status"] != "in_progress", str(st["created_at"]), st["case_id"])


def _match(overlaps: list, state: dict) -> dict:
    """Cluster index -> case id from ``overlaps`` ((alerts shared, cluster index, case id) triples).

    Each case goes with the cluster holding most of its alerts; a cluster so chosen by several cases keeps
    the senior one (``_seniority``) and the others are merged into it. A cluster left without a case then
    takes the case with most of its alerts among those not yet matched (the rest of a case split apart)."""
    largest: dict = {}
    for n, i, case_id in sorted(overlaps, key=lambda x: (-x[0], x[1])):
        largest.setdefault(case_id, i)
    case_of: dict = {}
    for case_id in sorted(largest, key=lambda c: _seniority(state[c])):
        case_of.setdefault(largest[case_id], case_id)
    taken = set(case_of.values())
    for n, i, case_id in sorted(overlaps, key=lambda x: (-x[0], _seniority(state[x[2]]), x[1])):
        if i not in case_of and case_id not in taken:
            case_of[i] = case_id
            taken.add(case_id)
    return case_of


class CaseBook:
    """Cases over an alert store (same database)."""

    def __init__(self, store: AlertStore):
        self.store = store
        self.engine = store.engine

    # -- reading -----------------------------------------------------------------------------
    def frame(self) -> pd.DataFrame:
        with self.engine.connect() as conn:
            df = pd.read_sql(sa.select(cases).order_by(cases.c.case_id), conn)
        for c in ("created_at", "updated_at"):
            df[c] = pd.to_datetime(df[c], utc=True)
        for c in ("outcome", "assignee", "linked_to", "link_kind", "cluster_id"):
            df[c] = df[c].astype(object).where(df[c].notna(), None)
        return df

    def get(self, case_id: str) -> dict:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(cases).where(cases.c.case_id == case_id)).mappings().first()
        if row is None:
            raise ConfigError(f"case {case_id!r}: no such case (list them with `fraud review cases list`)")
        return dict(row)

    def members(self, case_id: str | None = None) -> pd.DataFrame:
        q = sa.select(case_members)
        if case_id is not None:
            q = q.where(case_members.c.case_id == case_id)
        with self.engine.connect() as conn:
            return pd.read_sql(q.order_by(case_members.c.tx_id), conn)

    def history(self, case_id: str) -> list[dict]:
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(case_events).where(case_events.c.case_id == case_id)
                                .order_by(case_events.c.id)).mappings().all()
        return [dict(r) for r in rows]

    def event(self, event_id: int) -> dict:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(case_events).where(case_events.c.id == int(event_id))).mappings().first()
        if row is None:
            raise ConfigError(f"event {event_id!r}: no such case event")
        return dict(row)

    def cases_of(self, customer_id=None, terminal_id=None) -> list[str]:
        q = sa.select(case_members.c.case_id).distinct()
        if customer_id is not None:
            q = q.where(case_members.c.customer_id == str(customer_id))
        if terminal_id is not None:
            q = q.where(case_members.c.terminal_id == str(terminal_id))
        with self.engine.connect() as conn:
            return sorted(r[0] for r in conn.execute(q))

    # -- writing -----------------------------------------------------------------------------
    def _log(self, conn, case_id, analyst, action, text, detail=None, at=None) -> int:
        r = conn.execute(case_events.insert().values(case_id=case_id, at=at or _now(), analyst=analyst,
                                                     action=action, text=text,
                                                     detail=json.dumps(detail) if detail is not None else None))
        return int(r.inserted_primary_key[0])

    def _next_ids(self, conn, n: int) -> list[str]:
        ids = [r[0] for r in conn.execute(sa.select(cases.c.case_id))]
        top = max((int(i.split("-")[1]) for i in ids), default=0)
        return [f"CASE-{top + k:04d}" for k in range(1, n + 1)]

    def _update(self, conn, case_id, at, **values):
        conn.execute(cases.update().where(cases.c.case_id == case_id).values(updated_at=at, **values))

    def sync(self, result, at: datetime | None = None) -> dict:
        """Match the clusters of ``result`` (a ClusterResult) to cases; returns cluster id -> case id.
        See the module docstring for the rules."""
        at = at or _now()
        alerts = result.alerts
        ent = {t: (c, m) for t, c, m in zip(alerts["tx_id"].astype(str), alerts["customer_id"].astype(str),
                                            alerts["terminal_id"].astype(str))}
        with self.engine.begin() as conn:
            owner = {r[0]: r[1] for r in conn.execute(sa.select(case_members.c.tx_id, case_members.c.case_id))}
            state = {r["case_id"]: dict(r) for r in conn.execute(sa.select(cases)).mappings()}
            overlaps = []
            for i, cl in enumerate(result.clusters):
                for case_id, n in Counter(owner[t] for t in cl.tx_ids if t in owner).items():
                    if state[case_id]["status"] != "merged":
                        overlaps.append((n, i, case_id))
            case_of = _match(overlaps, state)
            taken = set(case_of.values())
            new_idx = [i for i in range(len(result.clusters)) if i not in case_of]
            for i, case_id in zip(new_idx, self._next_ids(conn, len(new_idx))):
                case_of[i] = case_id
            closed_ents = self._closed_entities(conn, state)
            for i, cl in enumerate(result.clusters):
                self._apply(conn, cl, case_of[i], state, owner, closed_ents, case_of, result, at)
            conn.execute(case_members.delete().where(case_members.c.tx_id.in_(list(ent)))) if len(ent) < 30000 \
                else conn.execute(case_members.delete())
            rows = [{"tx_id": t, "case_id": case_of[i], "customer_id": ent[t][0], "terminal_id": ent[t][1],
                     "joined_at": at} for i, cl in enumerate(result.clusters) for t in cl.tx_ids]
            if rows:
                conn.execute(case_members.insert(), rows)
            self._merge_leftovers(conn, state, taken, owner, case_of, result, at)
        return {cl.id: case_of[i] for i, cl in enumerate(result.clusters)}

    def _closed_entities(self, conn, state) -> dict:
        closed = [k for k, v in state.items() if v["status"] == "closed"]
        out: dict = {}
        if not closed:
            return out
        q = sa.select(case_members.c.case_id, case_members.c.customer_id, case_members.c.terminal_id) \
            .where(case_members.c.case_id.in_(closed))
        for case_id, c, t in conn.execute(q):
            out.setdefault(("c", c), set()).add(case_id)
            out.setdefault(("t", t), set()).add(case_id)
        return out

    def _apply(self, conn, cl, case_id, state, owner, closed_ents, case_of, result, at) -> None:
        mine = [t for t in cl.tx_ids if owner.get(t) == case_id]
        fresh = [t for t in cl.tx_ids if t not in owner]
        if case_id not in state:
            parents = Counter(owner[t] for t in cl.tx_ids if t in owner)
            if parents:                                    # part of another case: a split
                parent = parents.most_common(1)[0][0]
                self._new_case(conn, case_id, cl, at, parent, "split_from",
                               f"split from {parent}: {sum(parents.values())} of its alerts now form this case")
                self._log(conn, parent, SYSTEM, "split", f"split: {sum(parents.values())} alerts moved to the new "
                          f"case {case_id}", {"into": case_id}, at)
                self._update(conn, parent, at)
            else:
                linked = sorted(set().union(*[closed_ents.get(("c", c), set()) for c in cl.customers],
                                            *[closed_ents.get(("t", t), set()) for t in cl.terminals]))
                if linked:
                    self._new_case(conn, case_id, cl, at, linked[0], "follows",
                                   f"new alerts on the customers or terminals of closed case "
                                   f"{', '.join(linked)}: this case follows it")
                    for other in linked:
                        self._log(conn, other, SYSTEM, "linked", f"new alerts on its entities started case {case_id}",
                                  {"case": case_id}, at)
                else:
                    self._new_case(conn, case_id, cl, at, None, None, f"created with {cl.n_tx} alerts")
            state[case_id] = {"case_id": case_id, "status": "open", "created_at": at}
            return
        st = state[case_id]
        others = Counter(owner[t] for t in cl.tx_ids if t in owner and owner[t] != case_id)
        if fresh and st["status"] == "closed":
            self._update(conn, case_id, at, status="open", cluster_id=cl.id)
            self._log(conn, case_id, SYSTEM, "reopened", f"reopened: {len(fresh)} new alert(s) joined it "
                      f"after it was closed as {OUTCOME_WORDS[st['outcome']]}",
                      {"tx_ids": fresh[:200], "outcome_before": st["outcome"]}, at)
        elif fresh:
            self._update(conn, case_id, at, cluster_id=cl.id)
            self._log(conn, case_id, SYSTEM, "grew", f"{len(fresh)} new alert(s) joined ({len(mine) + len(fresh)} "
                      f"+ {sum(others.values())} moved in)" if others else f"{len(fresh)} new alert(s) joined",
                      {"tx_ids": fresh[:200]}, at)
        elif st.get("cluster_id") != cl.id:              # same alerts, a new cluster id: not an analyst-visible change
            conn.execute(cases.update().where(cases.c.case_id == case_id).values(cluster_id=cl.id))

    def _new_case(self, conn, case_id, cl, at, linked_to, kind, text) -> None:
        conn.execute(cases.insert().values(case_id=case_id, status="open", outcome=None, assignee=None,
                                           created_at=at, updated_at=at, linked_to=linked_to, link_kind=kind,
                                           cluster_id=cl.id))
        self._log(conn, case_id, SYSTEM, "created", text, {"cluster_id": cl.id, "n_tx": cl.n_tx}, at)

    def _merge_leftovers(self, conn, state, taken, owner, case_of, result, at) -> None:
        """Cases that matched no cluster while their alerts now belong to other cases: merged."""
        now_owner = {t: case_of[i] for i, cl in enumerate(result.clusters) for t in cl.tx_ids}
        assigned = set(case_of.values())
        for case_id, st in state.items():
            if case_id in assigned or st.get("status") == "merged":
                continue
            went = Counter(now_owner[t] for t, o in owner.items() if o == case_id and t in now_owner)
            if not went:
                continue                                  # its alerts are outside this window: left as it is
            into = went.most_common(1)[0][0]
            self._update(conn, case_id, at, status="merged", linked_to=into, link_kind="merged_into")
            self._log(conn, case_id, SYSTEM, "merged", f"merged into {into}: its {sum(went.values())} alerts "
                      f"now belong there (this history stays here)", {"into": into}, at)
            self._log(conn, into, SYSTEM, "merged", f"{case_id} merged into this case "
                      f"({sum(went.values())} alerts; its history stays on {case_id})", {"from": case_id}, at)

    # -- analyst actions ---------------------------------------------------------------------
    def assign(self, case_id: str, assignee: str | None, analyst: str) -> int:
        st = self.get(case_id)
        status = "in_progress" if assignee and st["status"] == "open" else st["status"]
        with self.engine.begin() as conn:
            self._update(conn, case_id, _now(), assignee=assignee or None, status=status)
            return self._log(conn, case_id, analyst, "assign",
                             f"assigned to {assignee}" if assignee else "unassigned",
                             {"before": {"assignee": st["assignee"], "status": st["status"]}})

    def set_status(self, case_id: str, status: str, analyst: str) -> int:
        if status not in ("open", "in_progress"):
            raise ConfigError(f"status {status!r}: set open or in_progress here; a case is closed by a decision")
        st = self.get(case_id)
        with self.engine.begin() as conn:
            self._update(conn, case_id, _now(), status=status, outcome=None if status == "open" else st["outcome"])
            return self._log(conn, case_id, analyst, "status", f"status set to {STATUS_WORDS[status]}",
                             {"before": {"status": st["status"], "outcome": st["outcome"]}})

    def decide(self, case_id: str, outcome: str, analyst: str, tx_ids=None, note: str | None = None) -> tuple[int, int]:
        """Label transactions and (for the whole case) close it. ``outcome``: fraud | not_fraud label every
        member (or only ``tx_ids``, leaving the case open); mixed closes it with the labels given so far.
        Returns (event id, transactions labelled)."""
        if outcome not in OUTCOMES:
            raise ConfigError(f"outcome {outcome!r} is not one of {', '.join(OUTCOMES)}")
        st = self.get(case_id)
        members = self.members(case_id)["tx_id"].tolist()
        chosen = [str(t) for t in (tx_ids or [])]
        outside = [t for t in chosen if t not in set(members)]
        if outside:
            raise ConfigError(f"tx_id(s) {outside[:5]} are not in case {case_id!r}")
        if chosen and outcome == "mixed":
            raise ConfigError("outcome mixed closes a whole case; label single transactions fraud or not_fraud")
        label = {"fraud": "fraud", "not_fraud": "legit"}.get(outcome)
        targets = chosen or (members if label else [])
        ids = self.store.add_decision_rows(label, analyst, targets, cluster_id=case_id, note=note) if targets else []
        whole = not chosen
        at = _now()
        what = (f"labelled {len(targets)} transaction(s) {OUTCOME_WORDS[outcome]}" if chosen else
                f"closed as {OUTCOME_WORDS[outcome]}" + (f", {len(targets)} transaction(s) labelled" if targets else ""))
        with self.engine.begin() as conn:
            if whole:
                self._update(conn, case_id, at, status="closed", outcome=outcome)
            else:
                self._update(conn, case_id, at)
            eid = self._log(conn, case_id, analyst, "decide", what + (f": {note}" if note else ""),
                            {"decision_ids": ids, "n_tx": len(targets), "outcome": outcome,
                             "before": {"status": st["status"], "outcome": st["outcome"]}}, at)
        return eid, len(targets)

    def note(self, case_id: str, text: str, analyst: str) -> int:
        self.get(case_id)
        if not text.strip():
            raise ConfigError("a note needs text")
        with self.engine.begin() as conn:
            self._update(conn, case_id, _now())
            return self._log(conn, case_id, analyst, "note", text.strip()[:4000])

    def undo(self, event_id: int, analyst: str) -> int:
        """Undo an assign, status or decide event: its labels are taken back (retraining then uses the
        decision before it, if any) and the case returns to its state before. Returns the undo event id."""
        ev = self.event(event_id)
        if ev["action"] not in UNDOABLE:
            raise ConfigError(f"event {event_id}: a {ev['action']!r} event cannot be undone "
                              f"(only {', '.join(UNDOABLE)})")
        if ev["undone_by"] is not None:
            raise ConfigError(f"event {event_id} was already undone (event {ev['undone_by']})")
        detail = json.loads(ev["detail"] or "{}")
        n = self.store.undo_decisions(detail.get("decision_ids", []), analyst)
        at = _now()
        with self.engine.begin() as conn:
            self._update(conn, ev["case_id"], at, **detail.get("before", {}))
            uid = self._log(conn, ev["case_id"], analyst, "undo", f"undid: {ev['text']}"
                            + (f" ({n} label(s) taken back)" if n else ""), {"event": int(event_id)}, at)
            conn.execute(case_events.update().where(case_events.c.id == int(event_id)).values(undone_by=uid))
        return uid
