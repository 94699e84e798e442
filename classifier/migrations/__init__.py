"""The store's schema migrations (Alembic), shipped inside the package so that an
installed wheel upgrades its database itself: :func:`upgrade` runs them up to the
newest revision each time the store is opened."""
from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy.engine import Engine

HERE = Path(__file__).resolve().parent


def config(engine: Engine | None = None) -> Config:
    """An Alembic configuration for these migrations, without an alembic.ini."""
    cfg = Config()
    cfg.set_main_option("script_location", str(HERE))
    if engine is not None:
        cfg.attributes["engine"] = engine
    return cfg


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Bring the database's schema to ``revision``; existing rows are kept."""
    command.upgrade(config(engine), revision)
