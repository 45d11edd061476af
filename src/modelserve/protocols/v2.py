"""Open Inference Protocol (V2): readiness, model metadata and inference through the
version's :class:`~modelserve.codecs.v2.V2Codec`."""

from __future__ import annotations

import time
from collections.abc import Sequence
from contextlib import nullcontext
from typing import TYPE_CHECKING
from typing import Any

from ..codecs.encoded import decode_base64_image
from ..codecs.v2 import RequestInput
from ..codecs.v2 import decode_request
from ..codecs.v2 import encode_response
from ..errors import InferenceError
from ..errors import ModelNotFound
from ..gcpause import gc_paused
from ..service import InferenceService
from ..serving import ServedVersion
from ..types import TABULAR_INPUT
from ..types import TensorDict
from .images import ImageProtocol

if TYPE_CHECKING:  # pragma: no cover
    from ..predlog import PredictionLog

#: Bodies larger than this (bytes) are decoded and scored with the collector paused.
_BIG_BODY = 64 * 1024


class V2Protocol:
    """The inference and health parts of the Open Inference Protocol.

    :param service: the service whose models it serves.
    :param images: how encoded images sent as ``BYTES`` tensors are decoded and scored.
    :param log: where sampled answers of tabular models are logged; ``None``: not logged.
    """

    def __init__(
        self, service: InferenceService, images: ImageProtocol, log: PredictionLog | None = None
    ) -> None:
        self._service = service
        self._images = images
        self._log = log

    def server_ready(self) -> bool:
        """Server readiness: every model has a loaded version."""
        return self._service.ready()

    def model_ready(self, name: str, version: int | None = None) -> bool:
        """Whether the model (version) can serve now.

        :raises ModelNotFound: for an unknown name or version.
        """
        model = self._service.find_model(name)
        if model is None:
            raise ModelNotFound(name)
        if version is None:
            return model.default is not None
        if version not in model.entry.versions:
            raise ModelNotFound(name, version)
        return version in model.versions

    def model_metadata(self, name: str, version: int | None = None) -> dict[str, Any]:
        """V2 model metadata: name, ready versions, platform (the model's framework, see
        :meth:`~modelserve.runtimes.base.Runtime.platform`), input and output tensor specs."""
        sv = self._service.resolve(name, version)
        model = self._service.find_model(sv.name)
        ready = sorted(model.versions) if model is not None else [sv.version]
        inputs, outputs = sv.v2.metadata()
        return {
            "name": sv.name,
            "versions": [str(v) for v in ready],
            "platform": sv.runtime.platform(),
            "inputs": inputs,
            "outputs": outputs,
        }

    def infer(
        self, name: str, version: int | None, body: bytes, header_length: int | None = None
    ) -> tuple[bytes, int | None]:
        """Run a V2 inference request (JSON, or JSON header + binary tensors).

        The version is held for the whole request, so it finishes on it even if a reload
        swaps in a newer one meanwhile.

        :returns: the response body and the length of its JSON header when it carries binary
            outputs (``Inference-Header-Content-Length``), else ``None``.
        """
        log = self._log
        started = time.perf_counter() if log is not None else 0.0
        inputs: TensorDict | None = None
        sv = self._service.acquire(name, version)
        # Big bodies parse into many objects that live until the answer: pause the collector
        # for them (see gcpause); small ones are not worth the lock.
        pause = gc_paused() if len(body) > _BIG_BODY else nullcontext()
        try:
            with pause:
                request = decode_request(body, header_length, self._service.settings.max_json_depth)
                wanted = sv.v2.check_outputs(request.outputs)
                images = _encoded_images(sv, request.inputs)
                if images is not None:
                    result = self._images.infer(sv, images, wanted)
                else:
                    inputs = sv.v2.model_inputs(request.inputs)
                    result = sv.infer(inputs, wanted)
        finally:
            sv.leave()
        binary = (
            {o.name: o.binary for o in request.outputs}
            if request.outputs is not None
            else dict.fromkeys(wanted, request.binary_output)
        )
        missing = [n for n in wanted if n not in result]
        if missing:
            raise InferenceError(f"The model did not produce output(s) {', '.join(missing)}")
        if log is not None and inputs is not None and sv.signature.kind == "tabular":
            log.record(sv.name, sv.version, sv.signature, inputs[TABULAR_INPUT], result, started)
        return encode_response(
            sv.name, sv.label, request.id, [(n, result[n], binary[n]) for n in wanted]
        )


def _encoded_images(sv: ServedVersion, inputs: Sequence[RequestInput]) -> list[bytes] | None:
    """Image files sent to an image model as one V2 ``BYTES`` tensor (one file per row):
    raw bytes with the binary extension, base64 strings in JSON. ``None`` otherwise."""
    if sv.image_spec is None or len(inputs) != 1:
        return None
    tensor = inputs[0]
    if tensor.datatype != "BYTES":
        return None
    return [
        item if isinstance(item, bytes) else decode_base64_image(str(item), f"{tensor.name}[{i}]")
        for i, item in enumerate(tensor.data.reshape(-1).tolist())
    ]
