"""Migrations reach the models exactly, and undo cleanly, on both databases."""

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect

from feedbot import db
from feedbot.models import Base


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
