"""Alembic environment: the alert store's metadata (fraud.store and the review sign-in tables); runs on the
connection fraud.migrations.upgrade hands over, or on sqlalchemy.url (the alembic CLI)."""
from alembic import context
from sqlalchemy import engine_from_config, pool

import fraud.review.cases  # noqa: F401 - its tables are on the store's metadata
from fraud.review.auth import auth_metadata
from fraud.store import metadata

target_metadata = [metadata, auth_metadata]


def run(connection) -> None:
    context.configure(connection=connection, target_metadata=target_metadata,
                      render_as_batch=connection.dialect.name == "sqlite")
    with context.begin_transaction():
        context.run_migrations()


def main() -> None:
    cfg = context.config
    if context.is_offline_mode():
        context.configure(url=cfg.get_main_option("sqlalchemy.url"), target_metadata=target_metadata,
                          literal_binds=True)
        with context.begin_transaction():
            context.run_migrations()
        return
    conn = cfg.attributes.get("connection")
    if conn is not None:
        run(conn)
        return
    engine = engine_from_config(cfg.get_section(cfg.config_ini_section, {}), prefix="sqlalchemy.",
                                poolclass=pool.NullPool)
    with engine.connect() as conn:
        run(conn)


main()
