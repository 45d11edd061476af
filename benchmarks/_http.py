"""One HTTP call for the benchmarks' answer checks, with failures named for the report."""

from __future__ import annotations

import urllib.error
import urllib.request


def fetch(
    request: urllib.request.Request, timeout: float, what: str, error: type[Exception]
) -> bytes:
    """The answer's body; ``error(f"{what}: ...")`` for an HTTP error status or no answer."""
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:
            body: bytes = answer.read()
            return body
    except urllib.error.HTTPError as exc:
        detail = exc.read()[:300].decode(errors="replace")
        raise error(f"{what}: HTTP {exc.code}: {detail}") from exc
    except OSError as exc:
        raise error(f"{what}: {exc}") from exc
