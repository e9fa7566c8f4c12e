"""Cases: the stored, stable unit an analyst works on (one per group of flagged activity).

Clusters are recomputed whenever alerts arrive, and HDBSCAN regroups them from day to day; a case keeps
its id because it owns its alerts (``CaseBook.sync``): an alert stays in the case it joined, so an
analyst's bookmark keeps resolving to the same alerts. Recomputed clusters only place alerts no case holds
yet (``_home``): a new alert joins the live case of its cluster holding its customer, else its terminal,
else most of the cluster; a cluster with no live case joins a closed one (which reopens) or starts a new
case, one that "follows" a closed case sharing its customers or terminals. Live cases a cluster joins stay
apart and are linked as related (``_relate``, a "related" event on both), so no id disappears in a merge.
A case splits only when the clustering puts part of its alerts in a cluster sharing no customer or
terminal with the rest (``_splits``): the largest part keeps the id, the rest is a new case "split from"
it. Every action (sync, assign, status, decide, note, undo) is a row of ``case_events`` with analyst and
time. Cases merged by earlier versions keep their status "merged" and their history.

Tables ``cases``, ``case_members``, ``case_events`` (migration ``fraud/migrations/versions/0002_cases.py``).
"""
from __future__ import annotations

import functools
import json
import threading
from collections import Counter
from datetime import datetime, timezone

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from fraud.errors import ConfigError, FraudError
from fraud.review.clusters import tx_digest
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
    sa.Column("link_kind", sa.String(16), nullable=True),      # split_from | follows | related | merged_into (old)
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
    sa.Column("action", sa.String(16), nullable=False),   # created reopened grew split related linked assign ... undo
    sa.Column("text", sa.Text, nullable=False),           # the sentence shown in the history
    sa.Column("detail", sa.Text, nullable=True),          # JSON: decision ids, the state before, ...
    sa.Column("undone_by", sa.Integer, nullable=True),
)

UNDOABLE = ("assign", "status", "decide")
SYNC_ATTEMPTS = 3
LIVE = ("open", "in_progress")


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _seniority(st: dict) -> tuple:
    """Which of several cases leads a group of related cases: one an analyst works on, then the oldest."""
    return (st["status"] != "in_progress", str(st["created_at"]), st["case_id"])


def _components(parts: dict) -> list:
    """Cluster index -> (tx_ids, entity set) parts of one case, as groups that share no customer or terminal
    with each other (parts sharing an entity, directly or through another part, stay together)."""
    groups: list = []
    for i, (txs, ents) in sorted(parts.items()):
        joined = [g for g in groups if g[1] & ents]
        rest = [g for g in groups if not (g[1] & ents)]
        tx = list(txs) + [t for g in joined for t in g[0]]
        en = set(ents).union(*[g[1] for g in joined])
        idx = {i}.union(*[g[2] for g in joined])
        groups = rest + [(tx, en, idx)]
    return groups


def _splits(clusters, owner: dict, state: dict, ent: dict) -> list:
    """(case id, cluster indexes, tx_ids) for each part of a live case to split off: a case whose alerts the
    clustering now puts in several clusters, some of which share no customer or terminal with the rest. The
    largest such group keeps the id; re-shuffles of parts that share an entity move nothing."""
    parts: dict = {}
    for i, cl in enumerate(clusters):
        for t in cl.tx_ids:
            c = owner.get(t)
            if c is not None and state[c]["status"] in LIVE:
                txs, ents = parts.setdefault(c, {}).setdefault(i, ([], set()))
                txs.append(t)
                ents.update((("c", ent[t][0]), ("t", ent[t][1])))
    out = []
    for case_id, by_cluster in sorted(parts.items()):
        if len(by_cluster) < 2:
            continue
        groups = sorted(_components(by_cluster), key=lambda g: (-len(g[0]), min(g[2])))
        out.extend((case_id, sorted(g[2]), sorted(g[0])) for g in groups[1:])
    return out


def _home(t: str, cl, owner: dict, state: dict, ent: dict, held: Counter):
    """The existing case a new alert ``t`` of cluster ``cl`` joins, or None (a new case). ``held``: case ->
    its alerts in the cluster. Among the live cases holding alerts of the cluster: one holding the alert's
    customer, else its terminal, else the one holding most of the cluster; without a live one, the closed
    case holding most of the cluster (it reopens)."""
    live = [c for c in held if state[c]["status"] in LIVE]
    pool = live or list(held)
    if not pool:
        return None
    for k in (0, 1):
        hit = {owner[x] for x in cl.tx_ids if owner.get(x) in pool and ent[x][k] == ent[t][k]}
        if hit:
            pool = sorted(hit)
            break
    return min(pool, key=lambda c: (-held[c], _seniority(state[c])))


def _related_pairs(conn) -> dict:
    """Case id -> the cases linked to it as related (from the ``related`` events of the history)."""
    out: dict = {}
    q = sa.select(case_events.c.case_id, case_events.c.detail).where(case_events.c.action == "related")
    for case_id, detail in conn.execute(q):
        out.setdefault(case_id, set()).add(json.loads(detail)["case"])
    return out


class CaseChanged(FraudError):
    """A whole-case decision on a case that gained alerts since the analyst confirmed it (``members``: its
    alerts now)."""

    def __init__(self, message: str, members: int):
        super().__init__(message)
        self.members = members


def alerts_digest(tx_ids) -> str:
    """What an analyst saw of a case: a short digest of its alerts (tx_ids), checked before a whole-case decision."""
    return tx_digest(tx_ids)[:16]


def _one_at_a_time(method):
    """Writes to the book run one at a time in this process (the review app's refresh thread syncs while request
    handlers act on cases), each reading the cases as the previous write left them: a sync never grows a case
    that was closed after it read the case's status, and an action's "before" state is the one it changed."""
    @functools.wraps(method)
    def serialised(self, *args, **kwargs):
        with self._lock:
            return method(self, *args, **kwargs)
    return serialised


class CaseBook:
    """Cases over an alert store (same database)."""

    def __init__(self, store: AlertStore):
        self.store = store
        self.engine = store.engine
        self._lock = threading.RLock()

    # -- reading -----------------------------------------------------------------------------
    def frame(self) -> pd.DataFrame:
        with self.engine.connect() as conn:
            df = pd.read_sql(sa.select(cases).order_by(cases.c.case_id), conn)
        for c in ("created_at", "updated_at"):
            df[c] = pd.to_datetime(df[c], utc=True)
        for c in ("outcome", "assignee", "linked_to", "link_kind", "cluster_id"):
            df[c] = df[c].astype(object).where(df[c].notna(), None)
        return df

    def version(self) -> int:
        """The id of the book's last event. Every action, undo and case-changing sync logs one; a sync that only
        moves cases to other cluster ids does not (the app's own syncs come with a new view anyway)."""
        with self.engine.connect() as conn:
            return int(conn.execute(sa.select(sa.func.max(case_events.c.id))).scalar() or 0)

    def get(self, case_id: str) -> dict:
        with self.engine.connect() as conn:
            return self._case(conn, case_id)

    def _locked_case(self, conn, case_id: str) -> dict:
        """The case, read after taking its write lock in ``conn``'s transaction (a no-op update first: a row lock
        on PostgreSQL, the database's write lock on SQLite), so no other process changes it until ``conn``
        commits: an action's checks and its "before" state for undo are the state it changes."""
        conn.execute(cases.update().where(cases.c.case_id == case_id).values(updated_at=cases.c.updated_at))
        return self._case(conn, case_id)

    def _members(self, conn, case_id: str) -> list[str]:
        return [r[0] for r in conn.execute(sa.select(case_members.c.tx_id).where(case_members.c.case_id == case_id)
                                           .order_by(case_members.c.tx_id))]

    def members_digest(self, case_id: str) -> str:
        """A short digest of the case's alerts (tx_ids): what an analyst saw, to check before a whole-case
        decision that no alert joined or left the case since."""
        with self.engine.connect() as conn:
            return alerts_digest(self._members(conn, case_id))

    @staticmethod
    def _case(conn, case_id: str) -> dict:
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

    @staticmethod
    def _touch_live(conn, case_id, at) -> bool:
        """Mark a case updated if it is still live; False when another process closed it since it was read."""
        return conn.execute(cases.update().where(cases.c.case_id == case_id, cases.c.status.in_(LIVE))
                            .values(updated_at=at)).rowcount > 0

    def _update(self, conn, case_id, at, **values):
        conn.execute(cases.update().where(cases.c.case_id == case_id).values(updated_at=at, **values))

    def related(self, case_id: str) -> list[str]:
        """Cases linked to this one as related (the clustering joined their alerts; both ids stay)."""
        with self.engine.connect() as conn:
            return sorted(_related_pairs(conn).get(case_id, set()))

    @_one_at_a_time
    def sync(self, result, at: datetime | None = None) -> dict:
        """Bring the cases up to date with the clusters of ``result`` (a ClusterResult); returns cluster id ->
        the case holding most of its alerts. See the module docstring for the rules."""
        at = at or _now()
        a = result.alerts
        ent = {t: (c, m) for t, c, m in zip(a["tx_id"].astype(str), a["customer_id"].astype(str),
                                            a["terminal_id"].astype(str))}
        for attempt in range(1, SYNC_ATTEMPTS + 1):
            try:
                return self._sync_once(result, ent, at)
            except IntegrityError as e:   # another process placed the same alerts first: read the book again
                if attempt == SYNC_ATTEMPTS:
                    raise FraudError(f"case book in {self.store.url!r}: another process kept writing the same cases "
                                     f"({SYNC_ATTEMPTS} attempts); try again") from e

    def _sync_once(self, result, ent: dict, at: datetime) -> dict:
        with self.engine.begin() as conn:
            owner = {r[0]: r[1] for r in conn.execute(sa.select(case_members.c.tx_id, case_members.c.case_id))}
            state = {r["case_id"]: dict(r) for r in conn.execute(sa.select(cases)).mappings()}
            for case_id, idx, txs in _splits(result.clusters, owner, state, ent):
                self._split(conn, case_id, txs, owner, state, result.clusters[idx[0]], at)
            self._place_fresh(conn, result.clusters, owner, state, ent, at)
            self._relate(conn, result.clusters, owner, state, at)
            return self._track_clusters(conn, result.clusters, owner, state)

    def _split(self, conn, case_id, txs, owner, state, cl, at) -> None:
        new = self._next_ids(conn, 1)[0]
        self._new_case(conn, new, cl, at, case_id, "split_from",
                       f"split from {case_id}: {len(txs)} of its alerts now share no customer or terminal with the "
                       f"rest of it", len(txs))
        self._log(conn, case_id, SYSTEM, "split", f"split: {len(txs)} alert(s) sharing no customer or terminal with "
                  f"the rest moved to the new case {new}", {"into": new, "tx_ids": txs[:200]}, at)
        self._update(conn, case_id, at)
        conn.execute(case_members.update().where(case_members.c.tx_id.in_(txs)).values(case_id=new))
        owner.update({t: new for t in txs})
        state[new] = {"case_id": new, "status": "open", "created_at": at, "cluster_id": cl.id, "linked_to": case_id}

    def _place_fresh(self, conn, clusters, owner, state, ent, at) -> None:
        """Alerts no case holds yet join the case ``_home`` finds, else form a new case per cluster."""
        joins: dict = {}
        rows = []
        closed_ents = self._closed_entities(conn, state)
        for cl in clusters:
            fresh = [t for t in cl.tx_ids if t not in owner]
            if not fresh:
                continue
            held = Counter(owner[x] for x in cl.tx_ids if x in owner and state[owner[x]]["status"] != "merged")
            homeless = []
            for t in fresh:
                home = _home(t, cl, owner, state, ent, held)
                (joins.setdefault(home, []) if home else homeless).append(t)
            if homeless:
                new = self._next_ids(conn, 1)[0]
                self._create(conn, new, cl, homeless, closed_ents, at)
                state[new] = {"case_id": new, "status": "open", "created_at": at, "cluster_id": cl.id,
                              "linked_to": None}
                rows += [(t, new) for t in homeless]
        for case_id, txs in sorted(joins.items()):
            self._grow(conn, case_id, txs, state[case_id], at)
            rows += [(t, case_id) for t in txs]
        if rows:
            conn.execute(case_members.insert(), [{"tx_id": t, "case_id": c, "customer_id": ent[t][0],
                                                  "terminal_id": ent[t][1], "joined_at": at} for t, c in rows])
        owner.update(dict(rows))

    def _create(self, conn, case_id, cl, txs, closed_ents, at) -> None:
        linked = sorted(set().union(*[closed_ents.get(("c", c), set()) for c in cl.customers],
                                    *[closed_ents.get(("t", t), set()) for t in cl.terminals]))
        if linked:
            self._new_case(conn, case_id, cl, at, linked[0], "follows",
                           f"new alerts on the customers or terminals of closed case {', '.join(linked)}: "
                           f"this case follows it", len(txs))
            for other in linked:
                self._log(conn, other, SYSTEM, "linked", f"new alerts on its entities started case {case_id}",
                          {"case": case_id}, at)
        else:
            self._new_case(conn, case_id, cl, at, None, None, f"created with {len(txs)} alerts", len(txs))

    def _grow(self, conn, case_id, txs, st, at) -> None:
        if st["status"] != "closed":
            if self._touch_live(conn, case_id, at):
                self._log(conn, case_id, SYSTEM, "grew", f"{len(txs)} new alert(s) joined", {"tx_ids": txs[:200]}, at)
                return
            st.update(conn.execute(sa.select(cases).where(cases.c.case_id == case_id)).mappings().one())
        self._update(conn, case_id, at, status="open")
        self._log(conn, case_id, SYSTEM, "reopened", f"reopened: {len(txs)} new alert(s) joined it after it was "
                  f"closed as {OUTCOME_WORDS[st['outcome']]}", {"tx_ids": txs[:200],
                                                                 "outcome_before": st["outcome"]}, at)
        st["status"] = "open"

    def _relate(self, conn, clusters, owner, state, at) -> None:
        """Cases whose alerts the clustering now puts in one cluster stay apart (each keeps its id, members and
        history) and are linked as related to the case holding most of that cluster."""
        known = _related_pairs(conn)
        for cl in clusters:
            held = Counter(owner[t] for t in cl.tx_ids if t in owner and state[owner[t]]["status"] != "merged")
            if len(held) < 2:
                continue
            lead = min(held, key=lambda c: (-held[c], _seniority(state[c])))
            for other in sorted(held):
                if other == lead or other in known.get(lead, set()):
                    continue
                for x, y in ((lead, other), (other, lead)):
                    self._log(conn, x, SYSTEM, "related", f"related to {y}: the clustering now joins their alerts "
                              f"({held[x]} and {held[y]} in one cluster); both cases stay, each with its own alerts "
                              f"and history", {"case": y, "cluster_id": cl.id}, at)
                    known.setdefault(x, set()).add(y)
                if state[other].get("linked_to") is None:
                    conn.execute(cases.update().where(cases.c.case_id == other)
                                 .values(linked_to=lead, link_kind="related"))
                    state[other]["linked_to"] = lead

    def _track_clusters(self, conn, clusters, owner, state) -> dict:
        """Each case's cluster (the one holding most of its alerts) is recorded; returns cluster id -> lead case."""
        best: dict = {}
        lead = {}
        for cl in clusters:
            held = Counter(owner[t] for t in cl.tx_ids if t in owner)
            for c, n in held.items():
                if n > best.get(c, (0, None))[0]:
                    best[c] = (n, cl.id)
            if held:
                lead[cl.id] = min(held, key=lambda c: (-held[c], _seniority(state[c])))
        for c, (_, cid) in best.items():
            if state[c].get("cluster_id") != cid:
                conn.execute(cases.update().where(cases.c.case_id == c).values(cluster_id=cid))
        return lead

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

    def _new_case(self, conn, case_id, cl, at, linked_to, kind, text, n_tx) -> None:
        conn.execute(cases.insert().values(case_id=case_id, status="open", outcome=None, assignee=None,
                                           created_at=at, updated_at=at, linked_to=linked_to, link_kind=kind,
                                           cluster_id=cl.id))
        self._log(conn, case_id, SYSTEM, "created", text, {"cluster_id": cl.id, "n_tx": n_tx}, at)

    # -- analyst actions ---------------------------------------------------------------------
    @_one_at_a_time
    def assign(self, case_id: str, assignee: str | None, analyst: str) -> int:
        with self.engine.begin() as conn:
            st = self._locked_case(conn, case_id)    # its "before" for undo is the state this changes
            status = "in_progress" if assignee and st["status"] == "open" else st["status"]
            self._update(conn, case_id, _now(), assignee=assignee or None, status=status)
            return self._log(conn, case_id, analyst, "assign",
                             f"assigned to {assignee}" if assignee else "unassigned",
                             {"before": {"assignee": st["assignee"], "status": st["status"]}})

    @_one_at_a_time
    def set_status(self, case_id: str, status: str, analyst: str) -> int:
        if status not in ("open", "in_progress"):
            raise ConfigError(f"status {status!r}: set open or in_progress here; a case is closed by a decision")
        with self.engine.begin() as conn:
            st = self._locked_case(conn, case_id)
            self._update(conn, case_id, _now(), status=status, outcome=None if status == "open" else st["outcome"])
            return self._log(conn, case_id, analyst, "status", f"status set to {STATUS_WORDS[status]}",
                             {"before": {"status": st["status"], "outcome": st["outcome"]}})

    @_one_at_a_time
    def decide(self, case_id: str, outcome: str, analyst: str, tx_ids=None, note: str | None = None,
               expect_digest: str | None = None) -> tuple[int, int]:
        """Label transactions and (for the whole case) close it. ``outcome``: fraud | not_fraud label every
        member (or only ``tx_ids``, leaving the case open); mixed closes it with the labels given so far.
        ``expect_digest``: :meth:`members_digest` of the alerts the analyst saw; a whole-case decision on a case
        whose alerts changed since raises :class:`CaseChanged` (alerts are never closed unseen). The checks,
        the labels and the case's change are one transaction. Returns (event id, transactions labelled)."""
        if outcome not in OUTCOMES:
            raise ConfigError(f"outcome {outcome!r} is not one of {', '.join(OUTCOMES)}")
        chosen = [str(t) for t in (tx_ids or [])]
        if chosen and outcome == "mixed":
            raise ConfigError("outcome mixed closes a whole case; label single transactions fraud or not_fraud")
        at = _now()
        with self.engine.begin() as conn:
            st = self._locked_case(conn, case_id)
            members = self._members(conn, case_id)
            outside = [t for t in chosen if t not in set(members)]
            if outside:
                raise ConfigError(f"tx_id(s) {outside[:5]} are not in case {case_id!r}")
            if not chosen and expect_digest is not None and alerts_digest(members) != expect_digest:
                raise CaseChanged(f"alerts joined or left case {case_id} since you looked at it (it holds "
                                  f"{len(members)} now); look at them, then decide again", len(members))
            label = {"fraud": "fraud", "not_fraud": "legit"}.get(outcome)
            targets = chosen or (members if label else [])
            ids = self.store.add_decision_rows(label, analyst, targets, cluster_id=case_id, note=note,
                                               conn=conn) if targets else []
            what = (f"labelled {len(targets)} transaction(s) {OUTCOME_WORDS[outcome]}" if chosen else
                    f"closed as {OUTCOME_WORDS[outcome]}" + (f", {len(targets)} transaction(s) labelled" if targets else ""))
            if chosen:
                self._update(conn, case_id, at)
            else:
                self._update(conn, case_id, at, status="closed", outcome=outcome)
            eid = self._log(conn, case_id, analyst, "decide", what + (f": {note}" if note else ""),
                            {"decision_ids": ids, "n_tx": len(targets), "outcome": outcome,
                             "before": {"status": st["status"], "outcome": st["outcome"]}}, at)
        return eid, len(targets)

    @_one_at_a_time
    def note(self, case_id: str, text: str, analyst: str) -> int:
        if not text.strip():
            raise ConfigError("a note needs text")
        with self.engine.begin() as conn:
            self._locked_case(conn, case_id)
            self._update(conn, case_id, _now())
            return self._log(conn, case_id, analyst, "note", text.strip()[:4000])

    @_one_at_a_time
    def undo(self, event_id: int, analyst: str) -> int:
        """Undo an assign, status or decide event: its labels are taken back (retraining then uses the
        decision before it, if any) and the case returns to its state before, in one transaction with the
        case locked (two analysts undoing one event: the second is told it was undone). Returns the undo's id."""
        ev = self.event(event_id)
        if ev["action"] not in UNDOABLE:
            raise ConfigError(f"event {event_id}: a {ev['action']!r} event cannot be undone "
                              f"(only {', '.join(UNDOABLE)})")
        detail = json.loads(ev["detail"] or "{}")
        at = _now()
        with self.engine.begin() as conn:
            self._locked_case(conn, ev["case_id"])
            now = conn.execute(sa.select(case_events.c.undone_by).where(case_events.c.id == int(event_id))).scalar()
            if now is not None:
                raise ConfigError(f"event {event_id} was already undone (event {now})")
            n = self.store.undo_decisions(detail.get("decision_ids", []), analyst, conn=conn)
            self._update(conn, ev["case_id"], at, **detail.get("before", {}))
            uid = self._log(conn, ev["case_id"], analyst, "undo", f"undid: {ev['text']}"
                            + (f" ({n} label(s) taken back)" if n else ""), {"event": int(event_id)}, at)
            conn.execute(case_events.update().where(case_events.c.id == int(event_id)).values(undone_by=uid))
        return uid
