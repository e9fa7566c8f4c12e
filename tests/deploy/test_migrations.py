"""Alembic migrations of the alert store: a fresh database is migrated to head; a database made by create_all
before migrations existed is stamped (rows kept); the head matches the metadata; readers refuse a missing file."""
import pandas as pd
import pytest
import sqlalchemy as sa

from fraud import migrations
from fraud.errors import ConfigError
from fraud.review.auth import auth_metadata
from fraud.store import AlertStore, metadata

ALERT = pd.DataFrame({"tx_id": ["t1"], "timestamp": [pd.Timestamp("2024-01-02", tz="UTC")], "customer_id": ["c"],
                      "terminal_id": ["m"], "amount": [5.0], "score": [0.9], "reasons": [["amount"]]})


def _tables(url):
    return set(sa.inspect(sa.create_engine(url)).get_table_names())


def test_fresh_sqlite_database_is_migrated_to_head(tmp_path):
    url = f"sqlite:///{tmp_path / 'fresh.db'}"
    store = AlertStore(url)
    assert migrations.current(store.engine) == migrations.head()
    assert set(migrations.INITIAL_TABLES) | {"alembic_version"} <= _tables(url)
    assert store.write_alerts(ALERT) == 1 and store.count_alerts() == 1
    AlertStore(url)  # a second open is a no-op at head
    assert AlertStore(url).count_alerts() == 1


def test_create_all_database_is_stamped_and_keeps_its_rows(tmp_path):
    url = f"sqlite:///{tmp_path / 'old.db'}"
    engine = sa.create_engine(url)
    initial = [metadata.tables[n] for n in ("alerts", "decisions")]
    metadata.create_all(engine, tables=initial)  # as AlertStore did before migrations (no review tables yet)
    with engine.begin() as conn:
        conn.execute(metadata.tables["decisions"].insert(), {"tx_id": "t0", "decision": "fraud", "analyst": "a",
                                                             "decided_at": pd.Timestamp("2024-01-01")})
    engine.dispose()
    store = AlertStore(url)
    assert migrations.current(store.engine) == migrations.head()
    assert store.labels()["tx_id"].tolist() == ["t0"]
    assert {"review_sessions", "review_server_secret"} <= _tables(url)
    store.write_alerts(ALERT)
    assert store.count_alerts() == 1


def test_migrations_at_head_match_the_metadata(tmp_path):
    """A table or column added to the metadata needs a revision: autogenerate finds nothing to do at head."""
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    store = AlertStore(f"sqlite:///{tmp_path / 'h.db'}")
    with store.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), [metadata, auth_metadata])
    assert diff == [], f"the metadata differs from the migrations' head: add a revision for {diff}"


def test_reader_refuses_a_missing_sqlite_file(tmp_path):
    missing = tmp_path / "wrong" / "path.db"
    with pytest.raises(ConfigError, match="path.db"):
        AlertStore(f"sqlite:///{missing}", must_exist=True)
    assert not missing.exists()
