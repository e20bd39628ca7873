"""Apply Alembic migrations programmatically (the server does this at every start)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


def upgrade_to_head(engine: Engine) -> None:
    migrate(engine, "head")


def migrate(engine: Engine, revision: str, down: bool = False) -> None:
    """Move the schema up (or down) to `revision`.

    On SQLite, changing a table means rebuilding it (Alembic's batch mode), and dropping the old copy of a table with
    foreign keys on would cascade-delete the rows that point at it: the keys are off while the migration runs (a
    pragma that only works outside a transaction) and checked before it commits."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    sqlite = engine.dialect.name == "sqlite"
    with engine.connect() as connection:
        if sqlite:
            connection.exec_driver_sql("PRAGMA foreign_keys=OFF")
            connection.commit()  # ends SQLAlchemy's implicit transaction; SQLite itself began none for a pragma
        try:
            with connection.begin():
                config.attributes["connection"] = connection
                (command.downgrade if down else command.upgrade)(config, revision)
                if sqlite and connection.exec_driver_sql("PRAGMA foreign_key_check").first() is not None:
                    raise RuntimeError("the migration left rows pointing at nothing; nothing was changed")
        finally:
            if sqlite:
                connection.exec_driver_sql("PRAGMA foreign_keys=ON")
                connection.commit()
