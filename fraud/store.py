"""The alert store: one SQL database (SQLAlchemy; SQLite file by default, any SQL URL).

Tables
------
alerts     one row per alerted transaction, unique ``tx_id`` (writes are idempotent: a
           re-delivered alert is ignored, never duplicated).
decisions  analyst decisions: ``fraud`` (confirm), ``legit`` (dismiss) or ``note``, per
           transaction (``tx_id``) or per cluster (``cluster_id`` plus the tx_ids it covered),
           with analyst, time and note. ``labels()`` turns them into training labels.
undone     decisions taken back (``undo_decisions``): the decision's row id, who undid it and when.
           ``labels()`` skips undone rows, so retraining uses the latest standing decision per tx_id.

The schema is versioned by Alembic (``fraud/migrations``): opening a store migrates it to the head revision.
"""
from __future__ import annotations

import contextlib
import json
import logging
import time
from datetime import datetime, timezone
from typing import Iterable

import numpy as np
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.exc import OperationalError, SQLAlchemyError

from fraud.errors import ConfigError, FraudError

metadata = sa.MetaData()

alerts = sa.Table(
    "alerts",
    metadata,
    sa.Column("tx_id", sa.String(128), primary_key=True),
    sa.Column("timestamp", sa.DateTime(timezone=True), nullable=False, index=True),
    sa.Column("customer_id", sa.String(128), nullable=False, index=True),
    sa.Column("terminal_id", sa.String(128), nullable=False, index=True),
    sa.Column("amount", sa.Float, nullable=False),
    sa.Column("score", sa.Float, nullable=False),
    sa.Column("reasons", sa.Text, nullable=False, default="[]"),  # JSON list of strings
    sa.Column("model_version", sa.String(64), nullable=True),
    sa.Column("scenario", sa.Integer, nullable=True),  # ground truth when known (simulations)
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
)

decisions = sa.Table(
    "decisions",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("tx_id", sa.String(128), nullable=True, index=True),
    sa.Column("cluster_id", sa.String(128), nullable=True, index=True),
    sa.Column("decision", sa.String(16), nullable=False),  # fraud | legit | note
    sa.Column("analyst", sa.String(128), nullable=False),
    sa.Column("note", sa.Text, nullable=True),
    sa.Column("decided_at", sa.DateTime(timezone=True), nullable=False),
)

undone = sa.Table(
    "undone_decisions",
    metadata,
    sa.Column("decision_id", sa.Integer, primary_key=True),   # decisions.id of the row taken back
    sa.Column("analyst", sa.String(128), nullable=False),
    sa.Column("undone_at", sa.DateTime(timezone=True), nullable=False),
)

DECISIONS = ("fraud", "legit", "note")
ALERT_COLUMNS = ["tx_id", "timestamp", "customer_id", "terminal_id", "amount", "score", "reasons",
                 "model_version", "scenario"]


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


def _check_sqlite_exists(url: str) -> None:
    """A SQLite URL whose file is missing -> ConfigError naming the path (readers: no silent empty store)."""
    u = sa.engine.make_url(url)
    if u.get_backend_name() != "sqlite" or not u.database or u.database == ":memory:" \
            or u.database.startswith("file:"):
        return
    from pathlib import Path

    path = Path(u.database).expanduser()
    if not path.is_file():
        raise ConfigError(f"--alerts-db {url!r}: no alert store at {str(path.resolve())!r} (the file does not "
                          "exist; `fraud serve` and `fraud score --alerts-db` create it): check the path")


@contextlib.contextmanager
def _transaction(engine, conn=None):
    """``conn`` when a caller's transaction is open (its commit is the caller's), else a new one."""
    if conn is not None:
        yield conn
        return
    with engine.begin() as c:
        yield c


def _reason_lists(texts: pd.Series, tx_ids: pd.Series, url: str) -> list:
    """Each stored reasons text as its list. A text that is not a JSON list (written by another tool) becomes a
    one-item list of the text itself, with one warning naming such rows: readers (the review app, retraining)
    keep the alert and its words instead of failing on it."""
    out, bad = [], []
    for text, tx in zip(texts, tx_ids):
        try:
            value = json.loads(text) if text is not None else []
        except (TypeError, ValueError):
            value = None
        if not isinstance(value, list):
            bad.append(str(tx))
            value = [] if text is None else [str(text)]
        out.append(value)
    new = [t for t in bad if t not in _WARNED.setdefault(url, set())]
    if new:                       # once per row and store: readers such as the review app read every few seconds
        _WARNED[url].update(new)
        logging.getLogger(__name__).warning("alert store %s: %d alert(s) have reasons that are not a JSON list "
                                            "(kept as text), e.g. tx_id %s", url, len(new), ", ".join(new[:5]))
    return out


_WARNED: dict[str, set] = {}


class AlertStore:
    """Thin, idempotent access to the alert store."""

    def __init__(self, url: str, busy_seconds: float = 60.0, lock_wait: float = 5.0, must_exist: bool = False):
        """Open (and migrate) the store at ``url``. ``must_exist``: a reader's open; a SQLite file that does not
        exist is an error naming it instead of a new empty store."""
        if not url or "://" not in url:
            raise ConfigError(f"--alerts-db: {url!r} is not a database URL (e.g. sqlite:///alerts.db)")
        if must_exist:
            _check_sqlite_exists(url)
        self.url = url
        self.busy_seconds = busy_seconds
        # SQLite: wait up to lock_wait s for another connection's lock before "database is locked" (then retried)
        kw = {"connect_args": {"timeout": lock_wait}} if url.startswith("sqlite") else {}
        try:
            self.engine = sa.create_engine(url, future=True, **kw)
            with self.engine.connect():
                pass
        except SQLAlchemyError as e:
            raise FraudError(f"alert store {url!r} is unreachable: {e.__class__.__name__}: {e}") from e
        from fraud import migrations

        migrations.upgrade(self.engine)

    # -- alerts -----------------------------------------------------------------------------
    def write_alerts(self, df: pd.DataFrame, model_version: str | None = None) -> int:
        """Insert alerts; rows whose tx_id is already stored are skipped. Returns rows inserted."""
        if df is None or len(df) == 0:
            return 0
        now = _utcnow()
        n = len(df)
        # column-wise (a scorer flushes thousands of alerts per checkpoint: per-row pandas objects cost ~50 us each)
        ts = pd.to_datetime(df["timestamp"], utc=True).dt.to_pydatetime()  # naive = UTC; aware converted to UTC
        txt = lambda c: [str(x) for x in df[c].to_numpy()]  # noqa: E731
        reasons = [x if isinstance(x, str) else json.dumps([str(v) for v in (list(x) if x is not None else [])])
                   for x in (df["reasons"].to_numpy() if "reasons" in df.columns else [None] * n)]
        mv = df["model_version"].to_numpy() if "model_version" in df.columns else [None] * n
        default_mv = str(model_version) if model_version not in (None, "") else None
        versions = [str(v) if v is not None and v == v and str(v) != "" else default_mv for v in mv]
        sc = pd.to_numeric(df["scenario"], errors="coerce").to_numpy(dtype=float) if "scenario" in df.columns \
            else np.full(n, np.nan)
        scen = [None if np.isnan(v) else int(v) for v in sc]
        recs = [{"tx_id": t, "timestamp": d, "customer_id": c, "terminal_id": m, "amount": a, "score": f,
                 "reasons": r, "model_version": v, "scenario": k, "created_at": now}
                for t, d, c, m, a, f, r, v, k in zip(txt("tx_id"), ts, txt("customer_id"), txt("terminal_id"),
                                                     df["amount"].to_numpy(dtype=float).tolist(),
                                                     df["score"].to_numpy(dtype=float).tolist(),
                                                     reasons, versions, scen)]
        return self._retry_busy(lambda: self._insert_new(recs), f"writing {len(recs)} alert(s)")

    def _insert_new(self, recs: list[dict]) -> int:
        with self.engine.begin() as conn:
            ids = [r["tx_id"] for r in recs]
            existing = set()
            for i in range(0, len(ids), 500):
                chunk = ids[i:i + 500]
                existing |= {row[0] for row in conn.execute(sa.select(alerts.c.tx_id).where(alerts.c.tx_id.in_(chunk)))}
            seen: set = set()
            new = []
            for r in recs:
                if r["tx_id"] in existing or r["tx_id"] in seen:
                    continue
                seen.add(r["tx_id"])
                new.append(r)
            if new:
                conn.execute(self._insert_ignoring_duplicates(), new)
        return len(new)

    def _retry_busy(self, write, what: str):
        """Run ``write()``, again with backoff (0.1 s doubling to 2 s) while the database answers "locked" or
        "busy" (another connection holds a lock), for at most ``busy_seconds``; then raise a FraudError naming
        the store. Each try already waits SQLite's busy timeout."""
        deadline = time.monotonic() + self.busy_seconds
        pause = 0.1
        while True:
            try:
                return write()
            except OperationalError as e:
                text = str(e).lower()
                if ("locked" not in text and "busy" not in text) or time.monotonic() + pause > deadline:
                    raise FraudError(f"alert store {self.url!r}: {what} failed: {e.__class__.__name__}: "
                                     f"{str(e)[:300]}") from e
                time.sleep(pause)
                pause = min(2.0, pause * 2)

    def _insert_ignoring_duplicates(self):
        """INSERT that skips a tx_id another writer stored since our check (two scorers during a rebalance):
        ON CONFLICT DO NOTHING on SQLite and PostgreSQL, INSERT IGNORE on MySQL, a plain INSERT elsewhere."""
        name = self.engine.dialect.name
        if name in ("sqlite", "postgresql"):
            mod = __import__(f"sqlalchemy.dialects.{name}", fromlist=["insert"])
            return mod.insert(alerts).on_conflict_do_nothing(index_elements=["tx_id"])
        if name in ("mysql", "mariadb"):
            return alerts.insert().prefix_with("IGNORE")
        return alerts.insert()

    def read_alerts(self, since=None, until=None, tx_ids=None) -> pd.DataFrame:
        """The stored alerts (timestamp in [since, until) when given; only ``tx_ids`` when given), in time order."""
        if tx_ids is not None:
            ids = sorted({str(t) for t in tx_ids})
            parts = [self._read_alerts(sa.select(alerts).where(alerts.c.tx_id.in_(ids[i:i + 500])))
                     for i in range(0, len(ids), 500)]
            df = pd.concat(parts, ignore_index=True) if parts else self._read_alerts(sa.select(alerts).where(sa.false()))
            return df.sort_values(["timestamp", "tx_id"], kind="stable").reset_index(drop=True)
        q = sa.select(alerts)
        if since is not None:
            q = q.where(alerts.c.timestamp >= pd.Timestamp(since, tz="UTC").to_pydatetime())
        if until is not None:
            q = q.where(alerts.c.timestamp < pd.Timestamp(until, tz="UTC").to_pydatetime())
        return self._read_alerts(q.order_by(alerts.c.timestamp, alerts.c.tx_id))

    def _read_alerts(self, q) -> pd.DataFrame:
        with self.engine.connect() as conn:
            df = pd.read_sql(q, conn)
        if len(df):
            df["timestamp"] = pd.to_datetime(df["timestamp"], utc=True)
            df["reasons"] = _reason_lists(df["reasons"], df["tx_id"], self.url)
        return df

    def count_alerts(self) -> int:
        with self.engine.connect() as conn:
            return conn.execute(sa.select(sa.func.count()).select_from(alerts)).scalar_one()

    # -- decisions --------------------------------------------------------------------------
    def add_decision(self, decision: str, analyst: str, tx_ids: Iterable[str] = (), cluster_id: str | None = None,
                     note: str | None = None, conn=None) -> int:
        """Record a decision for each tx_id (or one row for a cluster note without tx_ids). ``conn``: write in
        this open transaction (the case book's, so that a case and its labels change together)."""
        if decision not in DECISIONS:
            raise ConfigError(f"decision {decision!r} is not one of {', '.join(DECISIONS)}")
        if not analyst:
            raise ConfigError("decision without analyst: every decision names who made it")
        now = _utcnow()
        rows = [{"tx_id": str(t), "cluster_id": cluster_id, "decision": decision, "analyst": analyst,
                 "note": note, "decided_at": now} for t in tx_ids]
        if not rows:
            rows = [{"tx_id": None, "cluster_id": cluster_id, "decision": decision, "analyst": analyst,
                     "note": note, "decided_at": now}]
        with _transaction(self.engine, conn) as c:
            c.execute(decisions.insert(), rows)
        return len(rows)

    def add_decision_rows(self, decision: str, analyst: str, tx_ids: Iterable[str] = (),
                          cluster_id: str | None = None, note: str | None = None, conn=None) -> list[int]:
        """Like ``add_decision``, returning the new rows' ids (so that the action can be undone), in one
        transaction (``conn``: this open one)."""
        with _transaction(self.engine, conn) as c:
            before = c.execute(sa.select(sa.func.max(decisions.c.id))).scalar() or 0
            self.add_decision(decision, analyst, tx_ids, cluster_id, note, conn=c)
            q = sa.select(decisions.c.id).where(decisions.c.id > before, decisions.c.analyst == analyst,
                                                decisions.c.decision == decision)
            if cluster_id is not None:
                q = q.where(decisions.c.cluster_id == cluster_id)
            return [int(r[0]) for r in c.execute(q.order_by(decisions.c.id))]

    def undo_decisions(self, ids: Iterable[int], analyst: str, conn=None) -> int:
        """Take decision rows back (already undone ones are skipped). Returns rows undone. ``conn``: in this open
        transaction."""
        if not analyst:
            raise ConfigError("undo without analyst: every undo names who made it")
        ids = sorted({int(i) for i in ids})
        now = _utcnow()
        with _transaction(self.engine, conn) as c:
            have = {r[0] for r in c.execute(sa.select(undone.c.decision_id).where(undone.c.decision_id.in_(ids)))}
            new = [{"decision_id": i, "analyst": analyst, "undone_at": now} for i in ids if i not in have]
            if new:
                c.execute(undone.insert(), new)
        return len(new)

    def undone_ids(self) -> set[int]:
        with self.engine.connect() as conn:
            return {int(r[0]) for r in conn.execute(sa.select(undone.c.decision_id))}

    def read_decisions(self) -> pd.DataFrame:
        with self.engine.connect() as conn:
            df = pd.read_sql(sa.select(decisions).order_by(decisions.c.id), conn)
        if len(df):
            df["decided_at"] = pd.to_datetime(df["decided_at"], utc=True)
        return df

    def withdrawn(self, since=None) -> pd.DataFrame:
        """Transactions whose every fraud/legit decision was undone (undone at or after ``since`` when given):
        ``tx_id``, ``undone_at``. A label already sent to the live scorer for them is taken back with label 0."""
        d = self.read_decisions()
        with self.engine.connect() as conn:
            u = pd.read_sql(sa.select(undone.c.decision_id, undone.c.undone_at), conn)
        d = d[d["decision"].isin(["fraud", "legit"]) & d["tx_id"].notna()] if len(d) else d
        if not len(d):
            return pd.DataFrame({"tx_id": pd.Series([], dtype=str),
                                 "undone_at": pd.Series([], dtype="datetime64[ns, UTC]")})
        u["undone_at"] = pd.to_datetime(u["undone_at"], utc=True)
        gone = d.merge(u, left_on="id", right_on="decision_id", how="left")
        per_tx = gone.groupby("tx_id").agg(all_undone=("undone_at", lambda x: x.notna().all()),
                                           undone_at=("undone_at", "max")).reset_index()
        out = per_tx[per_tx["all_undone"]]
        if since is not None:
            out = out[out["undone_at"] >= since]
        return out[["tx_id", "undone_at"]].reset_index(drop=True)

    def live_labels(self, since=None) -> pd.DataFrame:
        """What the live scorer should know (``fraud send-labels``): ``tx_id``, ``label`` of each standing decision
        (made at or after ``since`` when given) and, label 0, of each transaction whose decisions were all undone."""
        lab = self.labels()
        if since is not None:
            lab = lab[lab["decided_at"] >= since]
        gone = self.withdrawn(since).assign(label=np.int8(0))
        return pd.concat([lab[["tx_id", "label"]], gone[["tx_id", "label"]]], ignore_index=True)

    def labels(self) -> pd.DataFrame:
        """Analyst labels for retraining: the latest fraud/legit decision per tx_id that was not undone
        (undoing the latest decision brings back the one before it, if any).

        Returns columns ``tx_id``, ``label`` (1 = confirmed fraud, 0 = dismissed),
        ``decided_at``, ``analyst``.
        """
        d = self.read_decisions()
        if len(d) == 0:
            return pd.DataFrame({"tx_id": pd.Series([], dtype=str), "label": pd.Series([], dtype=np.int8),
                                 "decided_at": pd.Series([], dtype="datetime64[ns, UTC]"),
                                 "analyst": pd.Series([], dtype=str)})
        d = d[d["decision"].isin(["fraud", "legit"]) & d["tx_id"].notna() & ~d["id"].isin(self.undone_ids())]
        d = d.sort_values("id").drop_duplicates("tx_id", keep="last")
        out = pd.DataFrame({
            "tx_id": d["tx_id"].astype(str).to_numpy(),
            "label": (d["decision"] == "fraud").astype(np.int8).to_numpy(),
            "decided_at": d["decided_at"].to_numpy(),
            "analyst": d["analyst"].astype(str).to_numpy(),
        })
        return out.reset_index(drop=True)
