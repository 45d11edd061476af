"""The seed's ``/predict`` and ``/predict_batch``: named features in, labels and
probabilities out, through the version's :class:`~modelserve.codecs.seed.SeedCodec`."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING
from typing import Any

from ..codecs import tables
from ..codecs.seed import SeedCodec
from ..codecs.seed import parse_json
from ..errors import InvalidInput
from ..gcpause import gc_paused
from ..service import InferenceService
from ..serving import ServedVersion
from ..types import TABULAR_INPUT

if TYPE_CHECKING:  # pragma: no cover
    from ..predlog import PredictionLog


class SeedProtocol:
    """Score JSON objects of named features, and batches as tables, on tabular models.

    :param service: the service whose models it scores.
    :param log: where sampled answers are logged; ``None``: not logged.
    """

    def __init__(self, service: InferenceService, log: PredictionLog | None = None) -> None:
        self._service = service
        self._log = log
        # Import pyarrow now, once, rather than on the first Arrow request (~80 ms).
        tables.load_pyarrow()

    def predict_one(self, name: str | None, version: int | None, body: bytes) -> dict[str, Any]:
        """Score one JSON object of named features (the seed's ``/predict``)."""
        log = self._log
        started = time.perf_counter() if log is not None else 0.0
        sv = self._service.acquire(name, version)
        try:
            codec = tabular_codec(sv)
            with sv.incoming():
                payload = parse_json(body, self._service.settings.max_json_depth)
                x = codec.decode_one(payload)
                out = sv.cached("one", x, lambda: codec.encode_one(sv.infer({TABULAR_INPUT: x})))
        finally:
            sv.leave()
        out["model"] = sv.name
        out["version"] = sv.label
        if log is not None:
            log.record(sv.name, sv.version, sv.signature, x, out, started)
        return out

    def predict_batch(
        self,
        name: str | None,
        version: int | None,
        body: bytes,
        content_type: str = tables.JSON,
        accept: str = tables.JSON,
        columns: bool = False,
        written: bool = False,
    ) -> dict[str, Any] | bytes:
        """Score a batch (the seed's ``/predict_batch``): ``{"instances": [...]}`` in JSON,
        or a table in one of :data:`~modelserve.codecs.tables.TABLE_TYPES`.

        :param content_type: the body's media type (JSON or a table type).
        :param accept: the answer's media type: JSON (a dict is returned) or a table type
            (its bytes are returned).
        :param columns: answer JSON as one array per field (also asked for by
            ``"format": "columns"`` in a JSON body); table answers are columns anyway.
        :param written: the caller only writes the answer with ``orjson.dumps`` (the
            routes): a rows answer's ``predictions`` may then be its JSON text already
            (:meth:`~modelserve.codecs.seed.SeedCodec.encode_batch_json`), unless
            answers are logged, which reads them.
        """
        log = self._log
        started = time.perf_counter() if log is not None else 0.0
        sv = self._service.acquire(name, version)
        try:
            codec = tabular_codec(sv)
            # One pause for the whole request: the parsed rows stay alive until the answer
            # is built, and collections that walk them free nothing (see gcpause).
            with sv.incoming(), gc_paused():
                if content_type == tables.JSON:
                    # The codec checks the depth: a batch it proves a table of numbers has
                    # a known one, and its body need not be scanned for it.
                    max_depth = self._service.settings.max_json_depth
                    rows = codec.decode_batch_body(body, max_depth)
                    if rows is not None:
                        # Number rows, parsed straight into x: no Python object per value.
                        x, others = rows
                        columns = columns or codec.batch_format(others) == "columns"
                    else:
                        payload = parse_json(body, max_depth, measure=False)
                        x = codec.decode_batch(payload, body, max_depth)
                        columns = columns or codec.batch_format(payload) == "columns"
                        del payload  # its rows are in x now; free them while the pause lasts
                else:
                    data = tables.read_table(body, content_type, codec.max_rows)
                    x = codec.decode_table(data)
                if columns or accept != tables.JSON:
                    encode = codec.encode_columns
                    kind = "columns"
                elif written and log is None:
                    encode = codec.encode_batch_json
                    kind = "batch-json"
                else:
                    encode = codec.encode_batch
                    kind = "batch"
                out = sv.cached(kind, x, lambda: encode(sv.infer({TABULAR_INPUT: x})))
        finally:
            sv.leave()
        out["model"] = sv.name
        out["version"] = sv.label
        if log is not None:
            log.record(sv.name, sv.version, sv.signature, x, out, started)
        if accept == tables.JSON:
            return out
        return tables.write_table(
            codec.table_columns(out), accept, {"model": sv.name, "version": sv.label}
        )


def tabular_codec(sv: ServedVersion) -> SeedCodec:
    """The version's seed codec.

    :raises InvalidInput: when the version is not a tabular model (saying what to use).
    """
    if sv.seed is not None:
        return sv.seed
    kind = sv.signature.kind
    raise InvalidInput(
        f"Model {sv.name!r} is an {kind} model, not a tabular one: "
        f"use /models/{sv.name}/predict_image"
        if kind == "image"
        else f"Model {sv.name!r} takes tensors, not named features: use /v2"
    )
