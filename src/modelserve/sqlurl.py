"""SQLAlchemy URLs for the settings that name a database: the prediction log and the job store.

A plain path means a SQLite file, and a bare ``postgresql://`` (or ``postgres://``) gets the
psycopg (3) driver the extras install; anything but SQLite or PostgreSQL is refused at start,
naming the setting, rather than failing on the first write.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING
from typing import Any

from .errors import ConfigError

if TYPE_CHECKING:  # pragma: no cover
    from sqlalchemy import Engine


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


#: Seconds a SQLite writer waits for another process' write lock before it fails.
SQLITE_BUSY_SECONDS = 30.0


def open_engine(value: str, setting: str, extra: str, **options: Any) -> tuple[Engine, bool]:
    """A SQLAlchemy engine for ``value`` of ``setting``, and whether it is SQLite.

    SQLite gets WAL (a server's processes write one file, one at a time, each waiting up to
    :data:`SQLITE_BUSY_SECONDS`, while others read; NORMAL is durable under WAL but for the
    last transactions on a power cut), connections shared across threads one at a time, and
    its folder created; other databases get ``pool_pre_ping``.

    :param extra: the extra(s) to name when SQLAlchemy or the driver is missing.
    :param options: more ``create_engine`` options.
    :raises ConfigError: SQLAlchemy or the driver is missing, or the URL is invalid.
    """
    try:
        import sqlalchemy as sa
    except ImportError:
        raise ConfigError(
            f"{setting} needs SQLAlchemy: pip install 'modelserve[{extra}]'"
        ) from None
    try:
        parsed = sa.make_url(sqlalchemy_url(value, setting))
    except sa.exc.ArgumentError as exc:
        raise ConfigError(f"{setting} is not a database URL: {exc}") from None
    sqlite = parsed.get_backend_name() == "sqlite"
    if sqlite:
        if parsed.database:
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        options["connect_args"] = {"check_same_thread": False, "timeout": SQLITE_BUSY_SECONDS}
    else:
        options["pool_pre_ping"] = True
    try:
        engine = sa.create_engine(parsed, **options)
    except ImportError as exc:
        raise ConfigError(
            f"{setting}: the database driver is missing ({exc}); pip install 'modelserve[{extra}]'"
        ) from None
    if sqlite:
        sa.event.listen(engine, "connect", _sqlite_pragmas)
    return engine, sqlite


def display_url(engine: Engine) -> str:
    """The engine's URL with its password hidden, for messages."""
    return engine.url.render_as_string(hide_password=True)


def _sqlite_pragmas(dbapi_connection: Any, record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()
