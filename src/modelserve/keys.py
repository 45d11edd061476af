"""The API keys file: named keys stored as sha256 hashes, with scopes; created, listed, revoked.

The file is TOML, one table per key name, written by ``modelserve keys`` (atomically, under a
lock, so two commands never lose each other's change)::

    ["ci-bot"]
    hash = "sha256:9f86d081884c7d65..."
    scopes = ["predict"]
    models = ["iris"]            # optional: the models a predict key may use
    created = 2024-05-01T12:00:00Z

A running server watches it with :class:`KeyFile`: each worker re-reads it when its size,
mtime or inode changes, looking at most once per interval, so a revoked key stops working
everywhere within about a second, without a restart.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import re
import secrets
import tempfile
import threading
import time
import tomllib
from collections.abc import Callable
from collections.abc import Collection
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC
from datetime import datetime
from pathlib import Path
from typing import Any

from .errors import ConfigError

logger = logging.getLogger(__name__)

#: The scopes a key or token may grant.
SCOPE_PREDICT = "predict"
SCOPE_ADMIN = "admin"
SCOPES = frozenset({SCOPE_PREDICT, SCOPE_ADMIN})

#: New keys start with this, so secret scanners (and people) recognise a leaked one.
KEY_PREFIX = "ms_"
_HASH_PREFIX = "sha256:"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


@dataclass(frozen=True)
class KeyRecord:
    """One named key of the file, as stored: its hash, never the key itself.

    :param models: the models a ``predict`` key may use; ``None`` for every model.
    """

    name: str
    hash: str
    scopes: frozenset[str]
    models: frozenset[str] | None = None
    created: datetime | None = None


def new_key() -> str:
    """A new random API key: 256 bits from :mod:`secrets`, URL-safe, with :data:`KEY_PREFIX`."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


def hash_key(key: str) -> str:
    """The stored form of ``key``: ``sha256:<hex>``.

    One fast hash is enough here, unlike for passwords: a slow, salted hash (bcrypt, argon2)
    exists to make guessing a *low-entropy* secret from its hash expensive, but a key made by
    :func:`new_key` holds 256 random bits, which no one can enumerate however fast the hash
    is. Salting would not help either (no two keys are alike), and a slow hash would cost
    milliseconds on every request. Keys chosen by hand (``MODELSERVE_API_KEY``) should be as
    random: ``python -c 'import secrets; print(secrets.token_urlsafe(32))'``.
    """
    return _HASH_PREFIX + hashlib.sha256(key.encode("utf-8")).hexdigest()


def read_keys(path: Path) -> tuple[KeyRecord, ...]:
    """Parse the keys file; a file that does not exist holds no keys.

    :raises ConfigError: naming the file and the problem when it is not a valid keys file.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return ()
    except OSError as exc:
        raise ConfigError(f"Cannot read the keys file {path}: {exc}") from exc
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"The keys file {path} is not valid TOML: {exc}") from exc
    return tuple(_record(path, name, table) for name, table in data.items())


def _record(path: Path, name: str, table: Any) -> KeyRecord:
    where = f"key {name!r} of {path}"
    if not isinstance(table, dict):
        raise ConfigError(f"The {where} must be a table (hash, scopes, models, created)")
    unknown = sorted(set(table) - {"hash", "scopes", "models", "created"})
    if unknown:
        raise ConfigError(f"The {where} has unknown fields: {', '.join(unknown)}")
    digest = table.get("hash")
    if not isinstance(digest, str) or not re.fullmatch(r"sha256:[0-9a-f]{64}", digest):
        raise ConfigError(f'The {where} needs hash = "sha256:<64 hex digits>"')
    scopes = table.get("scopes")
    if not _strings(scopes) or not scopes or not set(scopes) <= SCOPES:
        raise ConfigError(f"The {where} needs scopes, a list of: {', '.join(sorted(SCOPES))}")
    models = table.get("models")
    if models is not None and not _strings(models):
        raise ConfigError(f"The {where} has models that are not a list of names")
    created = table.get("created")
    if created is not None and not isinstance(created, datetime):
        raise ConfigError(f"The {where} has a created that is not a date-time")
    return KeyRecord(
        name=name,
        hash=digest,
        scopes=frozenset(scopes),
        models=frozenset(models) if models is not None else None,
        created=created,
    )


def _strings(value: object) -> bool:
    return isinstance(value, list) and all(isinstance(item, str) for item in value)


def create_key(
    path: Path,
    name: str,
    scopes: Collection[str],
    models: Collection[str] | None = None,
    now: datetime | None = None,
) -> str:
    """Add a key named ``name`` to the file (created if need be) and return the key itself,
    which is stored nowhere: the caller shows it once.

    :param models: limit a ``predict`` key to these models; ``None`` for every model.
    :raises ConfigError: for a bad or taken name, an unknown scope, or models without the
        ``predict`` scope.
    """
    if not _NAME.fullmatch(name):
        raise ConfigError(
            f"Invalid key name {name!r}: use up to 64 letters, digits, '_', '.' or '-', "
            "starting with a letter or digit"
        )
    unknown = sorted(set(scopes) - SCOPES)
    if not scopes or unknown:
        raise ConfigError(f"Unknown scope(s) {', '.join(unknown)}: use {', '.join(sorted(SCOPES))}")
    if models is not None and SCOPE_PREDICT not in scopes:
        raise ConfigError("A model limit (--model) only applies to a key with the predict scope")
    key = new_key()
    record = KeyRecord(
        name=name,
        hash=hash_key(key),
        scopes=frozenset(scopes),
        models=frozenset(models) if models is not None else None,
        created=(now or datetime.now(UTC)).replace(microsecond=0),
    )
    with _locked(path):
        records = read_keys(path)
        if any(r.name == name for r in records):
            raise ConfigError(f"A key named {name!r} already exists in {path}; revoke it first")
        _write_keys(path, (*records, record))
    return key


def revoke_key(path: Path, name: str) -> None:
    """Remove the key named ``name``; running servers stop accepting it within seconds.

    :raises ConfigError: when the file holds no such key.
    """
    with _locked(path):
        records = read_keys(path)
        kept = tuple(r for r in records if r.name != name)
        if len(kept) == len(records):
            raise ConfigError(f"No key named {name!r} in {path}")
        _write_keys(path, kept)


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Hold an exclusive lock beside the keys file: a read-change-write is never interleaved."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = path.with_name(path.name + ".lock")
    with open(lock, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def format_keys(records: Collection[KeyRecord]) -> str:
    """The TOML text of ``records`` (checked to read back as the same records)."""

    def string(value: str) -> str:
        return '"' + "".join(_TOML_ESCAPES.get(c) or _escape(c) for c in value) + '"'

    def strings(values: Collection[str]) -> str:
        return "[" + ", ".join(string(v) for v in sorted(values)) + "]"

    lines = [
        "# modelserve API keys, managed with `modelserve keys`: only sha256 hashes are stored.",
    ]
    for r in records:
        lines += ["", f"[{string(r.name)}]", f"hash = {string(r.hash)}"]
        lines.append(f"scopes = {strings(r.scopes)}")
        if r.models is not None:
            lines.append(f"models = {strings(r.models)}")
        if r.created is not None:
            lines.append(f"created = {r.created.astimezone(UTC).strftime('%Y-%m-%dT%H:%M:%SZ')}")
    text = "\n".join(lines) + "\n"
    back = {(r.name, r.hash, r.scopes, r.models) for r in _parse(text)}
    if back != {(r.name, r.hash, r.scopes, r.models) for r in records}:
        raise ConfigError("A key name or model name cannot be written to the keys file")
    return text


_TOML_ESCAPES = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\t": "\\t", "\r": "\\r"}


def _escape(char: str) -> str:
    # TOML basic strings may not hold control characters (DEL included) as they are.
    return f"\\u{ord(char):04x}" if ord(char) < 0x20 or ord(char) == 0x7F else char


def _parse(text: str) -> tuple[KeyRecord, ...]:
    return tuple(_record(Path("<new>"), n, t) for n, t in tomllib.loads(text).items())


def _write_keys(path: Path, records: Collection[KeyRecord]) -> None:
    """Replace the file in one rename: a reader sees the old file or the new one, whole."""
    text = format_keys(records)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class KeyFile:
    """The keys file as a running worker sees it: re-read when it changed, looked at no more
    than once per ``interval`` seconds (one ``stat``), whatever the request rate.

    A file that becomes invalid or unreadable while serving lets no key in (it is logged)
    until it is valid again: a broken revocation must not leave the revoked key working.

    :param clock: seconds, monotonic (tests pass a fake one).
    """

    def __init__(
        self, path: Path, interval: float = 1.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.path = path
        self._interval = interval
        self._clock = clock
        self._lock = threading.Lock()
        self._signature: tuple[int, int, int] | None = None
        self._records: tuple[KeyRecord, ...] = ()
        self._checked = clock()
        self._load()

    def records(self) -> tuple[KeyRecord, ...]:
        """The current keys; the same tuple object until the file changes."""
        now = self._clock()
        # Only one thread looks; the others go on with the keys as they were a moment ago.
        if now - self._checked >= self._interval and self._lock.acquire(blocking=False):
            try:
                self._checked = now
                self._load()
            finally:
                self._lock.release()
        return self._records

    def _load(self) -> None:
        try:
            st = os.stat(self.path)
            signature: tuple[int, int, int] | None = (st.st_mtime_ns, st.st_size, st.st_ino)
        except FileNotFoundError:
            signature = None
        except OSError as exc:
            logger.error("cannot stat the keys file %s: %s; no key is accepted", self.path, exc)
            self._signature, self._records = None, ()
            return
        if signature == self._signature:
            return
        try:
            records = read_keys(self.path) if signature is not None else ()
        except ConfigError as exc:
            logger.error("%s; no key of the file is accepted until it is fixed", exc.message)
            records = ()
        if signature is not None and self._signature is not None:
            logger.info("keys file %s changed: %d key(s)", self.path, len(records))
        self._signature, self._records = signature, records
