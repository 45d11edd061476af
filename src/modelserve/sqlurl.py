"""SQLAlchemy URLs for the settings that name a database: the prediction log and the job store.

A plain path means a SQLite file, and a bare ``postgresql://`` (or ``postgres://``) gets the
psycopg (3) driver the extras install; anything but SQLite or PostgreSQL is refused at start,
naming the setting, rather than failing on the first write.
"""

from __future__ import annotations

from pathlib import Path

from .errors import ConfigError


def sqlalchemy_url(value: str, setting: str) -> str:
    """The SQLAlchemy URL for ``value`` of the environment variable ``setting``.

    :raises ConfigError: for a database other than SQLite or PostgreSQL.
    """
    if "://" not in value:
        return "sqlite:///" + str(Path(value).expanduser().resolve())
    scheme, rest = value.split("://", 1)
    if scheme in ("postgresql", "postgres"):
        return "postgresql+psycopg://" + rest
    if scheme.split("+")[0] not in ("sqlite", "postgresql"):
        raise ConfigError(
            f"{setting}: {scheme}:// is not supported; use sqlite:///PATH.db, "
            "postgresql://USER@HOST/DB, or a file path"
        )
    return value
