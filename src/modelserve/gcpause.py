"""Pause the cyclic garbage collector while a large batch is decoded, scored and encoded.

A 10,000-row JSON request parses into ~10,000 lists that stay alive until its answer is
written; every few hundred container allocations after that (the answer's rows, the parser's
own lists) trigger a collection, and the older generations walk all of them again: about a
third of a big request's time went to collections that free nothing. Reference counting
still frees everything the request drops; only cycles wait until the last pause ends.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager

_lock = threading.Lock()
_holders = 0
_was_enabled = False


@contextmanager
def gc_paused() -> Iterator[None]:
    """Keep the collector off for the block; nested and concurrent blocks share one pause.

    The collector comes back on when the last block leaves, and only if it was on before
    the first one entered (a program that turned it off itself keeps it off).
    """
    global _holders, _was_enabled
    with _lock:
        if _holders == 0:
            _was_enabled = gc.isenabled()
            gc.disable()
        _holders += 1
    try:
        yield
    finally:
        with _lock:
            _holders -= 1
            if _holders == 0 and _was_enabled:
                gc.enable()
