"""Alembic migrations of the alert store (alerts, decisions, review sign-in tables; later revisions add more).

``upgrade(engine)`` brings a database to the head revision; :class:`fraud.store.AlertStore` calls it on start.
A database created by ``create_all`` before migrations existed (our tables, no ``alembic_version``) is stamped
with the initial revision, not re-created, then upgraded. New revision (from the repository root):
``alembic -c fraud/migrations/alembic.ini revision -m "..."`` and write its upgrade/downgrade by hand.
"""
from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa

from fraud.errors import FraudError

HERE = Path(__file__).resolve().parent
INITIAL = "0001"
INITIAL_TABLES = ("alerts", "decisions", "review_server_secret", "review_sessions")
_PG_LOCK = 0x66726175  # advisory lock id: concurrent starts (N scorers) migrate one at a time


def config(engine=None, connection=None):
    """An alembic Config on this folder (no ini file needed); ``connection`` is handed to env.py."""
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(HERE))
    if engine is not None:
        cfg.set_main_option("sqlalchemy.url", engine.url.render_as_string(hide_password=False).replace("%", "%%"))
    cfg.attributes["connection"] = connection
    return cfg


def head() -> str:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(config()).get_current_head()


def current(engine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def upgrade(engine) -> str:
    """Migrate ``engine``'s database to head (stamping a pre-migration ``create_all`` database first); returns
    the revision reached. Raises FraudError naming the database when a migration fails."""
    from alembic import command

    try:
        with engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_PG_LOCK})")
            cfg = config(connection=conn)
            if _is_legacy(conn):
                _create_initial_tables(conn)
                command.stamp(cfg, INITIAL)
            command.upgrade(cfg, "head")
    except Exception as e:  # noqa: BLE001 - another process may have migrated first (SQLite has no lock)
        if current(engine) == head():
            return head()
        url = engine.url.render_as_string(hide_password=True)
        raise FraudError(f"alert store {url!r}: migration to {head()} failed: {e.__class__.__name__}: "
                         f"{str(e)[:300]}") from e
    return head()


def _is_legacy(conn) -> bool:
    """Our tables exist but no alembic_version: created by create_all before migrations."""
    names = set(sa.inspect(conn).get_table_names())
    return "alembic_version" not in names and "alerts" in names


def _create_initial_tables(conn) -> None:
    """The initial revision's tables a legacy database may lack (e.g. the review tables): only those, so later
    revisions still create theirs."""
    from fraud.review.auth import auth_metadata
    from fraud.store import metadata

    for md in (metadata, auth_metadata):
        md.create_all(conn, tables=[t for n, t in md.tables.items() if n in INITIAL_TABLES])
