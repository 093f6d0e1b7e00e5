"""PostgreSQL access: engine, migrations, and the queries the services share."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


def make_engine(url: str, pre_ping: bool = True, **kwargs) -> Engine:
    """``pre_ping``: a ``SELECT 1`` before each use of a pooled connection, so that a stale one
    (PostgreSQL restarted) is replaced unseen. A worker whose every write goes through
    ``Worker.attempt`` can do without: a dropped connection fails one attempt, SQLAlchemy
    empties the pool, and the attempt is made again; that saves a round trip per transaction
    on the per-frame paths (rules, labels)."""
    return create_engine(url, pool_pre_ping=pre_ping, future=True, **kwargs)


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def migrate(url: str, revision: str = "head") -> None:
    """Bring the database schema to ``revision`` (idempotent)."""
    command.upgrade(alembic_config(url), revision)
