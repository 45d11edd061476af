"""Models loaded once in the main process and shared, copy-on-write, by the forked workers.

The main process loads the versions whose runtime is fork-safe (:attr:`Runtime.fork_safe`:
plain Python and numpy objects, no native thread pool, no socket) and offers them here;
then :func:`freeze` moves everything allocated so far out of the garbage collector's reach,
so that a collection in a worker never writes to the pages that hold the models. A worker's
repository, loading the same files (same path, same sha256, same manifest), takes the
preloaded runtime instead of unpickling its own copy; everything else (signature, warm-up,
batcher and reload threads) still happens in the worker, after the fork.

Each runtime is taken at most once per process: a worker that retires the version and later
loads it again reads its own copy. The main process keeps its objects for the workers it
forks later (respawned or recycled workers start without reading the files again).
"""

from __future__ import annotations

import gc
import logging
from collections.abc import Mapping
from dataclasses import dataclass

from .runtimes.base import ArtifactSet
from .runtimes.base import Runtime

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Offer:
    runtime_name: str
    artifacts: ArtifactSet
    hashes: tuple[tuple[str, str], ...]
    runtime: Runtime


_offers: list[_Offer] = []


def offer(
    runtime_name: str, artifacts: ArtifactSet, hashes: Mapping[str, str], runtime: Runtime
) -> None:
    """Make a loaded runtime available to the workers forked from now on."""
    _offers.append(_Offer(runtime_name, artifacts, tuple(sorted(hashes.items())), runtime))


def take(runtime_name: str, artifacts: ArtifactSet, hashes: Mapping[str, str]) -> Runtime | None:
    """The preloaded runtime for exactly these files, or ``None``; removed once taken.

    The hashes were computed by the caller from the files as they are now: a file changed
    since the main process read it does not match, and the caller loads it itself.
    """
    wanted = tuple(sorted(hashes.items()))
    for i, found in enumerate(_offers):
        if (
            found.runtime_name == runtime_name
            and found.hashes == wanted
            and found.artifacts == artifacts
        ):
            del _offers[i]
            return found.runtime
    return None


def count() -> int:
    """How many runtimes are on offer in this process."""
    return len(_offers)


def clear() -> None:
    """Forget every offer (tests; a main process that stops preloading)."""
    _offers.clear()


def freeze() -> None:
    """Collect once, then freeze what is left (``gc.freeze``), just before forking workers.

    Without it the first full collection in each worker walks, and so writes to, every
    object the main process allocated, turning shared pages into private copies.
    """
    gc.collect()
    gc.freeze()
    logger.debug("froze %d objects before forking the workers", gc.get_freeze_count())
