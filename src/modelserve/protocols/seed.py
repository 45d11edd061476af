"""The seed's ``/predict`` and ``/predict_batch``: named features in, labels and
probabilities out, through the version's :class:`~modelserve.codecs.seed.SeedCodec`."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING
from typing import Any

from ..codecs.seed import SeedCodec
from ..codecs.seed import parse_json
from ..errors import InvalidInput
from ..service import InferenceService
from ..serving import ServedVersion
from ..types import TABULAR_INPUT

if TYPE_CHECKING:  # pragma: no cover
    from ..predlog import PredictionLog


class SeedProtocol:
    """Score JSON objects of named features on tabular models.

    :param service: the service whose models it scores.
    :param log: where sampled answers are logged; ``None``: not logged.
    """

    def __init__(self, service: InferenceService, log: PredictionLog | None = None) -> None:
        self._service = service
        self._log = log

    def predict_one(self, name: str | None, version: int | None, body: bytes) -> dict[str, Any]:
        """Score one JSON object of named features (the seed's ``/predict``)."""
        return self._predict(name, version, body, batch=False)

    def predict_batch(self, name: str | None, version: int | None, body: bytes) -> dict[str, Any]:
        """Score ``{"instances": [...]}`` (the seed's ``/predict_batch``)."""
        return self._predict(name, version, body, batch=True)

    def _predict(
        self, name: str | None, version: int | None, body: bytes, batch: bool
    ) -> dict[str, Any]:
        log = self._log
        started = time.perf_counter() if log is not None else 0.0
        sv = self._service.acquire(name, version)
        try:
            codec = tabular_codec(sv)
            with sv.incoming():
                payload = parse_json(body, self._service.settings.max_json_depth)
                if batch:
                    x = codec.decode_batch(payload, body)
                    encode = codec.encode_batch
                else:
                    x = codec.decode_one(payload)
                    encode = codec.encode_one
                out = sv.cached(
                    "batch" if batch else "one",
                    x,
                    lambda: encode(sv.infer({TABULAR_INPUT: x})),
                )
        finally:
            sv.leave()
        out["model"] = sv.name
        out["version"] = sv.label
        if log is not None:
            log.record(sv.name, sv.version, sv.signature, x, out, started)
        return out


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
