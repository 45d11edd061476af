"""One record per served version: its runtime, codecs, batcher and cache, built once, released once.

A :class:`ServedVersion` is built when its version is published and released when it is
retired *and* the last request that holds it has left: the release follows the requests
actually in flight on it (a counter), never a clock. A :class:`ServedModel` groups a model's
served versions with the repository entry they came from; the service swaps a whole table of
them in one assignment.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Sequence
from contextlib import AbstractContextManager
from contextlib import nullcontext
from dataclasses import dataclass
from dataclasses import field
from time import perf_counter
from typing import TYPE_CHECKING
from typing import Any

import numpy as np
import orjson

from . import telemetry
from .batching import merge
from .batching.batcher import Batcher
from .cache import LocalCache
from .cache import PredictionCache
from .cache import RedisCache
from .cache import input_digest
from .cache import redis_client
from .codecs.seed import SeedCodec
from .codecs.v2 import V2Codec
from .errors import InferenceError
from .errors import ModelLoadError
from .errors import ServerBusy
from .manifest import ImageSpec
from .repository import LoadedVersion
from .repository import ModelEntry
from .runtimes.base import Runtime
from .settings import ServerSettings
from .types import Signature
from .types import TensorDict

if TYPE_CHECKING:  # pragma: no cover
    from collections.abc import Callable

    from .codecs.image import ImageTransform

logger = logging.getLogger(__name__)


class ServedVersion:
    """A loaded version and everything a request on it needs, built once at publication.

    Requests bracket their work with :meth:`acquire` / :meth:`leave`; :meth:`retire` marks
    the version as no longer published, and the resources go once nobody holds it.

    :param model: the loaded version (runtime, signature, manifest).
    :param settings: the server settings (limits, batching, cache backend).
    """

    def __init__(self, model: LoadedVersion, settings: ServerSettings) -> None:
        self.model = model
        self.name = model.name
        self.version = model.version
        #: The version number as the wire formats write it.
        self.label = str(model.version)
        sig = model.signature
        self.seed: SeedCodec | None = (
            SeedCodec(
                sig,
                settings.allow_extra_fields,
                settings.max_batch_rows,
                settings.max_string_length,
            )
            if sig.kind == "tabular"
            else None
        )
        self.v2 = V2Codec(sig, settings.max_batch_rows, settings.max_string_length)
        self.image_spec = _image_spec(sig)
        self.images: ImageTransform | None = (
            _image_transform(self.image_spec, model) if self.image_spec is not None else None
        )
        self.batcher = _create_batcher(model, settings)
        self.cache = _create_cache(model, settings)
        self._lock = threading.Lock()
        self._active = 0
        self._retired = False
        self._released = False
        telemetry.observer().version_serving(self.name, self.version, True)

    @property
    def runtime(self) -> Runtime:
        return self.model.runtime

    @property
    def signature(self) -> Signature:
        return self.model.signature

    def __repr__(self) -> str:
        return f"ServedVersion({self.name!r}, {self.version})"

    # -- lifetime ---------------------------------------------------------------------------

    def acquire(self) -> bool:
        """Count one more request on this version; ``False`` once it has been released
        (the caller then looks the model up again in the newer table)."""
        with self._lock:
            if self._released:
                return False
            self._active += 1
        record = telemetry.current()
        if record is not None:
            record.model = self.name
            record.version = self.label
        return True

    def leave(self) -> None:
        """The request that :meth:`acquire`-d is done; the last one out of a retired version
        releases it."""
        with self._lock:
            self._active -= 1
            last = self._retired and self._active == 0 and not self._released
            if last:
                self._released = True
        if last:
            self._release_soon()

    def retire(self) -> None:
        """No longer published: release now if idle, else when the last request leaves."""
        with self._lock:
            self._retired = True
            idle = self._active == 0 and not self._released
            if idle:
                self._released = True
        if idle:
            self._release_soon()

    @property
    def active(self) -> int:
        """Requests holding this version right now."""
        return self._active

    @property
    def released(self) -> bool:
        return self._released

    def _release_soon(self) -> None:
        # Off the request thread: closing a batcher joins its thread, and the last request's
        # answer should not wait for that.
        threading.Thread(target=self._release, name=f"release-{self.name}", daemon=True).start()

    def _release(self) -> None:
        if self.batcher is not None:
            self.batcher.close()
        if self.cache is not None:
            self.cache.close()
        try:
            self.runtime.unload()
        except Exception:
            logger.exception("unloading model %s version %s failed", self.name, self.version)
        telemetry.observer().version_serving(self.name, self.version, False)
        logger.info("released model %s version %s", self.name, self.version)

    # -- inference --------------------------------------------------------------------------

    def incoming(self) -> AbstractContextManager[None]:
        """Wrap a request's decode + :meth:`infer`, so the batcher knows company is coming."""
        return self.batcher.incoming() if self.batcher is not None else nullcontext()

    def infer(self, inputs: TensorDict, outputs: Sequence[str] | None = None) -> TensorDict:
        """Run the runtime (through the batcher when there is one): every transport's
        inference goes through here.

        :raises InferenceError: the model raised on this input.
        :raises ServerBusy: the batcher's queue is full or its answer is late.
        """
        record = telemetry.current()
        try:
            if record is not None:
                record.rows = merge.batch_size(inputs)
            if self.batcher is not None:
                # The batcher reports the queue wait, batch size and model-call time.
                return self.batcher.submit(inputs, outputs)
            if record is None:
                return self.model.runtime.predict(inputs, outputs)
            started = perf_counter()
            result = self.model.runtime.predict(inputs, outputs)
            record.model_seconds = perf_counter() - started
            record.batch_size = record.rows
            return result
        except (InferenceError, ServerBusy):
            raise
        except Exception as exc:
            # A model raising something unusual on validated input is still the model's
            # answer to this input, not a server fault; say what it raised, not where.
            raise InferenceError(
                f"The model failed on this input: {type(exc).__name__}: {exc}"
            ) from exc

    def cached(
        self, kind: str, x: np.ndarray, answer: Callable[[], dict[str, Any]]
    ) -> dict[str, Any]:
        """The cached answer for this validated input, or ``answer()`` (then cached)."""
        cache = self.cache
        if cache is None:
            return answer()
        key = input_digest(kind, x)
        found = cache.get(key)
        record = telemetry.current()
        if record is not None:
            record.cache_hit = found is not None
            if found is not None:
                record.rows = len(x) if x.ndim else 1
        if found is not None:
            return found
        out = answer()
        cache.put(key, out)
        return out


@dataclass(frozen=True, eq=False)
class ServedModel:
    """A model as published: its repository entry and its served (ready) versions."""

    entry: ModelEntry
    versions: dict[int, ServedVersion]
    default: ServedVersion | None = field(init=False)

    def __post_init__(self) -> None:
        top = self.entry.default
        object.__setattr__(self, "default", self.versions[top.version] if top else None)

    @property
    def name(self) -> str:
        return self.entry.name


def _image_spec(sig: Signature) -> ImageSpec | None:
    spec = sig.extra.get("image")
    return spec if sig.kind == "image" and isinstance(spec, ImageSpec) else None


def _image_transform(spec: ImageSpec, model: LoadedVersion) -> ImageTransform:
    # Pillow is the optional ``images`` extra: imported only when an image model serves.
    from .codecs.image import ImageTransform

    if spec.size is None or spec.mode is None or spec.layout is None:
        raise ModelLoadError(
            f"Model {model.name} version {model.version}: the image preprocessing is not "
            "fully resolved (size, mode and layout are needed)"
        )
    return ImageTransform(
        size=spec.size,
        mode=spec.mode,
        resize=spec.resize,
        resize_shorter=spec.resize_shorter,
        mean=tuple(spec.mean or ()),
        std=tuple(spec.std or ()),
        scale=spec.scale,
        layout=spec.layout,
        background=spec.background,
    )


def _create_batcher(model: LoadedVersion, settings: ServerSettings) -> Batcher | None:
    spec = model.manifest.batching
    size = (spec.max_batch_size if spec else None) or settings.max_batch_size
    latency = spec.max_latency_ms if spec and spec.max_latency_ms is not None else None
    if size <= 1:
        return None
    cheap = model.call_ms is not None and model.call_ms < settings.batch_min_cost_ms
    if spec is None and cheap:
        return None  # too cheap to share: the hand-off would cost more than the call
    return Batcher(
        model.runtime.predict,
        max_batch_size=size,
        max_latency_ms=settings.max_latency_ms if latency is None else latency,
        max_queue=settings.max_queue,
        timeout=float(settings.timeout),
        name=f"{model.name}-v{model.version}",
    )


def _create_cache(model: LoadedVersion, settings: ServerSettings) -> PredictionCache | None:
    spec = model.manifest.cache
    if spec is None or not spec.enabled:
        return None
    # The artifacts' hashes make a changed copy under the same version number a new key.
    pins = hashlib.blake2b(orjson.dumps(sorted(model.hashes.items())), digest_size=8).hexdigest()
    prefix = f"modelserve:{model.name}:{model.version}:{pins}"
    if settings.cache_backend == "redis":
        return RedisCache(prefix, spec.ttl_seconds, redis_client(settings.redis_url))
    return LocalCache(prefix, spec.ttl_seconds, spec.max_entries)
