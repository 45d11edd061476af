"""A JSON batch of number rows straight into a float array, without Python objects per value.

``{"instances": [[...], ...]}`` of a numeric model is most of a big request's bytes, and
parsing it into Python lists (one float object per value, one list per row) and then
copying those into an array costs more than the model on 10,000 rows. simdjson parses the
document into its own tape and copies the numbers of ``instances`` into one buffer in C.

This is a fast path, never a second rulebook: it answers only when it can *prove* the body
is an object whose ``instances`` is a non-empty array of rows that are each an array of
exactly ``width`` numbers, and says ``None`` (the caller then parses with orjson and
validates as before, with its error messages) for anything else, including every invalid
document. The proof, over what simdjson accepts:

- the document is an object with no repeated key (orjson keeps a repeated key's last value,
  simdjson its first) and only scalar values besides ``instances``, whose keys and string
  values hold none of ``[``, ``]`` and ``,``;
- every value under ``instances`` is a number (``as_buffer`` refuses anything else);
- the body holds exactly ``rows + 1`` ``[`` (``instances`` and its rows: nothing is nested
  deeper), and ``rows`` runs of ``[`` then ``width - 1`` commas then ``]`` once everything
  but brackets and commas is removed: ``rows`` flat arrays of ``width`` values, which are
  then every array under ``instances``, so its ``rows`` items are exactly those.

Numbers parse as orjson parses them: both round correctly to the nearest double, and both
refuse NaN, infinities and numbers out of a double's range (simdjson's refusal falls back to
orjson's error). An integer beyond 64 bits, which simdjson does not parse, falls back too.
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np
import simdjson

#: Every byte but JSON's array brackets and commas (``bytes.translate`` deletes them).
_NOT_STRUCTURE = bytes(b for b in range(256) if b not in b"[],")
_STRUCTURE = frozenset("[],")
#: Scalar values simdjson returns as Python objects (containers come back as its proxies).
_SCALARS = (str, int, float, bool, type(None))
#: One parser for the process: a parser keeps its tape, at the size of the largest document
#: it parsed, as long as it lives; one per thread or per model would keep one each. Parsing
#: holds the GIL anyway, so sharing it costs no parallelism.
_PARSER = simdjson.Parser()
_LOCK = threading.Lock()
#: Bodies up to this size use the shared parser; a bigger one gets a parser of its own, freed
#: with the request. A 116 MB body left the shared parser holding 265 MB for the process's
#: life; this caps what it keeps at a few times this size, and a parser of its own costs a
#: big body little (10,000 rows of 30 features are 2.1 MB, under it).
SHARED_PARSER_UP_TO = 4 * 1024 * 1024


class NumericRows:
    """Parse number-row batches of one width; safe to share between threads.

    :param width: the values per row (the model's features).
    :param max_rows: batches with more rows are left to the caller (which refuses them).
    """

    def __init__(self, width: int, max_rows: int) -> None:
        self.width = width
        self.max_rows = max_rows
        self._row = b"[" + b"," * (width - 1) + b"]"

    def table(self, body: bytes) -> tuple[np.ndarray, dict[str, Any]] | None:
        """``(rows x width float64 array, the document's other members)``, or ``None`` when
        the body is not proven to be such a batch (see the module's docstring)."""
        if len(body) > SHARED_PARSER_UP_TO:
            parsed = self._parse(body, simdjson.Parser())
        else:
            with _LOCK:
                parsed = self._parse(body, _PARSER)
        if parsed is None:
            return None
        flat, rows, others = parsed
        if flat.size != rows * self.width:
            return None
        for text in (*others, *(v for v in others.values() if type(v) is str)):
            if not _STRUCTURE.isdisjoint(text):
                return None
        structure = body.translate(None, _NOT_STRUCTURE)
        if structure.count(b"[") != rows + 1 or structure.count(self._row) != rows:
            return None
        return flat.reshape(rows, self.width), others

    def _parse(
        self, body: bytes, parser: simdjson.Parser
    ) -> tuple[np.ndarray, int, dict[str, Any]] | None:
        """The numbers of ``instances`` (a copy), its length and the other members.

        The parser refuses a new document while proxies of the last one live: they all
        are locals here, gone when this returns.
        """
        try:
            doc = parser.parse(body)
            if not isinstance(doc, simdjson.Object):
                return None
            keys = list(doc.keys())
            if "instances" not in keys or len(set(keys)) != len(keys):
                return None
            others: dict[str, Any] = {}
            for key in keys:
                if key != "instances":
                    value = doc[key]
                    if not isinstance(value, _SCALARS):
                        return None
                    others[key] = value
            instances = doc["instances"]
            if not isinstance(instances, simdjson.Array):
                return None
            rows = len(instances)
            if not 0 < rows <= self.max_rows:
                return None
            flat = np.frombuffer(instances.as_buffer(of_type="d"), dtype=np.float64)
        except (ValueError, TypeError, RuntimeError, KeyError):
            # Invalid JSON, a value that is not a number, an integer beyond 64 bits.
            return None
        return flat, rows, others
