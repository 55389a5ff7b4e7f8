"""Migrations reach the models exactly, and undo cleanly, on both databases."""

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect

from feedbot.store import db
from feedbot.store.models import Base
from tests.pgschema import fresh_schema


def test_upgrade_matches_models_and_downgrade_removes_everything(database_url):
    db.upgrade(database_url)
    engine = db.make_engine(database_url)
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            assert compare_metadata(context, Base.metadata) == []
        assert db.current_revision(engine) == db.head_revision()
        db.require_schema(engine)
        db.downgrade(database_url, "base")
        assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
        db.upgrade(database_url)
        assert set(Base.metadata.tables) <= set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def test_unmigrated_database_is_refused_with_instructions(database_url):
    engine = db.make_engine(database_url)
    try:
        db.require_schema(engine)
    except db.SchemaError as exc:
        assert "feedbot db upgrade" in str(exc)
    else:
        raise AssertionError("an empty database must be refused")
    finally:
        engine.dispose()


def test_delivery_revision_up_and_down_keeps_rows(database_url):
    """0002 adds per-part records, heartbeats and indexes to a database holding deliveries, and
    removes them again, on both databases."""
    from sqlalchemy import text

    db.upgrade(database_url, "0001")
    engine = db.make_engine(database_url)
    try:
        with engine.begin() as connection:
            connection.execute(text("INSERT INTO subscribers (id, telegram_id, chat_id, name, state, timezone, "
                                    "send_time, digest_size, frequency, created_at) VALUES (1, 1, 1, '', 'active', "
                                    "'UTC', '08:00', 5, 'daily', CURRENT_TIMESTAMP)"))
            connection.execute(text("INSERT INTO deliveries (id, subscriber_id, local_date, status, claimed_at) "
                                    "VALUES (1, 1, '2026-03-12', 'sent', CURRENT_TIMESTAMP)"))
        db.upgrade(database_url, "0002")
        inspector = inspect(engine)
        assert "heartbeats" in inspector.get_table_names()
        assert "ix_shown_paper_id" in {i["name"] for i in inspector.get_indexes("shown")}
        assert "ix_deliveries_status" in {i["name"] for i in inspector.get_indexes("deliveries")}
        with engine.connect() as connection:
            assert connection.execute(text("SELECT parts_sent, source FROM deliveries")).one() == (0, "schedule")
        db.downgrade(database_url, "0001")
        inspector = inspect(engine)
        assert "heartbeats" not in inspector.get_table_names()
        assert "parts_sent" not in {c["name"] for c in inspector.get_columns("deliveries")}
        with engine.connect() as connection:
            assert connection.execute(text("SELECT count(*) FROM deliveries")).scalar() == 1
    finally:
        engine.dispose()


def swap_stopped_half_way(database_url: str, left: str) -> None:
    """0013 builds the (status, id) index, then drops the old one, outside a transaction on
    PostgreSQL: a run stopped after either step (a cancelled build leaves an invalid index) left
    the version at 0012. Upgrading again finishes the swap, and so does downgrading."""
    from sqlalchemy import text

    db.upgrade(database_url, "0012")
    engine = db.make_engine(database_url)
    try:
        with engine.begin() as connection:
            connection.execute(text("CREATE INDEX ix_deliveries_status_id ON deliveries (status, id)"))
            if left == "new index invalid":
                connection.execute(text("UPDATE pg_index SET indisvalid = false "
                                        "WHERE indexrelid = 'ix_deliveries_status_id'::regclass"))
            if left == "both steps done":
                connection.execute(text("DROP INDEX ix_deliveries_status"))
        db.upgrade(database_url)
        indexes = {i["name"]: i["column_names"] for i in inspect(engine).get_indexes("deliveries")}
        assert indexes.get("ix_deliveries_status_id") == ["status", "id"] and "ix_deliveries_status" not in indexes
        if database_url.startswith("postgresql"):
            with engine.connect() as connection:
                assert connection.execute(text("SELECT indisvalid FROM pg_index "
                                               "WHERE indexrelid = 'ix_deliveries_status_id'::regclass")).scalar()
        with engine.begin() as connection:  # the downgrade stopped after its first step, then run again
            connection.execute(text("CREATE INDEX ix_deliveries_status ON deliveries (status)"))
        db.downgrade(database_url, "0012")
        indexes = {i["name"] for i in inspect(engine).get_indexes("deliveries")}
        assert "ix_deliveries_status" in indexes and "ix_deliveries_status_id" not in indexes
    finally:
        engine.dispose()


@pytest.mark.parametrize("left", ["new index built", "both steps done"])
def test_the_delivery_index_swap_completes_after_a_run_stopped_half_way(database_url, left):
    swap_stopped_half_way(database_url, left)


def test_the_delivery_index_swap_replaces_an_index_a_cancelled_build_left_invalid(postgres_url):
    """Only a PostgreSQL build done CONCURRENTLY can be left invalid (by a cancel or a lost connection)."""
    with fresh_schema(postgres_url) as url:
        swap_stopped_half_way(url, "new index invalid")
