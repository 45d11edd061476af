"""Prediction cache: answers for inputs a model version has already scored.

Opt-in per model (``cache:`` in ``model.yaml``). Keys are built from the model version, the
sha256 of its artifacts and a hash of the *validated* input array, so a swapped version (even
a changed copy under the same number) can never serve an old answer. Two stores:

- ``local``: an LRU per worker process, bounded in entries, each entry with a TTL;
- ``redis``: shared by every worker and server, bounded by Redis' own eviction and the TTL.

Hits and misses are counted per process and shown in ``/models/<name>``.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from abc import ABC
from abc import abstractmethod
from collections import OrderedDict
from typing import Any

import numpy as np
import orjson

from .errors import ConfigError

logger = logging.getLogger(__name__)


def input_digest(kind: str, x: np.ndarray) -> str:
    """A canonical hash of a validated input array (dtype, shape and values)."""
    digest = hashlib.blake2b(digest_size=16)
    digest.update(f"{kind}|{x.dtype.str}|{x.shape}|".encode())
    if x.dtype == object:
        digest.update(orjson.dumps(x.tolist()))
    else:
        digest.update(np.ascontiguousarray(x).tobytes())
    return digest.hexdigest()


class PredictionCache(ABC):
    """A bounded store of encoded answers for one model version."""

    def __init__(self, prefix: str, ttl: float) -> None:
        self.prefix = prefix
        self.ttl = ttl
        self.hits = 0
        self.misses = 0

    def get(self, key: str) -> dict[str, Any] | None:
        value = self._get(f"{self.prefix}:{key}")
        if value is None:
            self.misses += 1
            return None
        self.hits += 1
        answer: dict[str, Any] = orjson.loads(value)
        return answer

    def put(self, key: str, answer: dict[str, Any]) -> None:
        self._put(f"{self.prefix}:{key}", orjson.dumps(answer, option=orjson.OPT_SERIALIZE_NUMPY))

    def stats(self) -> dict[str, Any]:
        return {"backend": self.backend, "hits": self.hits, "misses": self.misses}

    backend: str = ""

    @abstractmethod
    def _get(self, key: str) -> bytes | None: ...

    @abstractmethod
    def _put(self, key: str, value: bytes) -> None: ...

    def close(self) -> None:  # noqa: B027 - only some stores hold resources
        """Drop what this cache holds in this process."""


class LocalCache(PredictionCache):
    """An LRU in this process: at most ``max_entries`` answers, each for ``ttl`` seconds."""

    backend = "local"

    def __init__(self, prefix: str, ttl: float, max_entries: int) -> None:
        super().__init__(prefix, ttl)
        self.max_entries = max_entries
        self._data: OrderedDict[str, tuple[float, bytes]] = OrderedDict()
        self._lock = threading.Lock()

    def _get(self, key: str) -> bytes | None:
        with self._lock:
            item = self._data.get(key)
            if item is None:
                return None
            expires, value = item
            if expires < time.monotonic():
                del self._data[key]
                return None
            self._data.move_to_end(key)
            return value

    def _put(self, key: str, value: bytes) -> None:
        with self._lock:
            self._data[key] = (time.monotonic() + self.ttl, value)
            self._data.move_to_end(key)
            while len(self._data) > self.max_entries:
                self._data.popitem(last=False)

    def stats(self) -> dict[str, Any]:
        return {**super().stats(), "entries": len(self._data), "max_entries": self.max_entries}

    def close(self) -> None:
        with self._lock:
            self._data.clear()


class RedisCache(PredictionCache):
    """Shared through Redis; a Redis error is logged and treated as a miss, never a failure."""

    backend = "redis"

    def __init__(self, prefix: str, ttl: float, client: Any) -> None:
        super().__init__(prefix, ttl)
        self._client = client
        self.errors = 0

    def _get(self, key: str) -> bytes | None:
        try:
            value: bytes | None = self._client.get(key)
            return value
        except Exception as exc:  # the cache is an optimisation: never fail a request on it
            self._note(exc)
            return None

    def _put(self, key: str, value: bytes) -> None:
        try:
            self._client.set(key, value, px=int(self.ttl * 1000))
        except Exception as exc:
            self._note(exc)

    def _note(self, exc: Exception) -> None:
        self.errors += 1
        if self.errors == 1 or self.errors % 1000 == 0:
            logger.warning("prediction cache: Redis error (%d so far): %s", self.errors, exc)

    def stats(self) -> dict[str, Any]:
        return {**super().stats(), "errors": self.errors}


_redis_clients: dict[str, Any] = {}
_redis_lock = threading.Lock()


def redis_client(url: str) -> Any:
    """One connection pool per URL and process (created after the fork, on first use)."""
    with _redis_lock:
        client = _redis_clients.get(url)
        if client is None:
            try:
                import redis
            except ImportError:
                raise ConfigError(
                    "The redis prediction cache needs: pip install 'modelserve[redis]'"
                ) from None
            client = redis.Redis.from_url(url, socket_timeout=0.5, socket_connect_timeout=0.5)
            _redis_clients[url] = client
        return client
