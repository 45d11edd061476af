"""PyTorch runtime: TorchScript files, or a state dict loaded into a module class named in the
manifest, run under ``torch.inference_mode()`` on the CPU or a CUDA device.

State dicts are read with ``weights_only=True``, so a ``.pt`` file cannot run code when it is
loaded; TorchScript files hold code by design: serve only ones you trust and pin their sha256.
"""

from __future__ import annotations

import importlib
import logging
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from ..errors import InferenceError
from ..errors import ModelLoadError
from ..types import Signature
from ..types import TensorDict
from ..types import TensorSpec
from ._image import check_input
from ._image import image_input_shape
from ._image import image_signature
from ._image import resolve_image_spec
from .base import Runtime

logger = logging.getLogger(__name__)

#: The input and output names the torch runtime gives its one input and output tensors.
INPUT_NAME = "input"
OUTPUT_NAME = "output"


def _device(wanted: str) -> torch.device:
    if wanted == "cuda" and not torch.cuda.is_available():
        raise ModelLoadError("torch.device is cuda but torch sees no CUDA device")
    if wanted == "auto":
        wanted = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(wanted)


def _set_threads(threads: int) -> None:
    # Thread counts are process-wide in torch: the last model loaded sets them. Inter-op
    # threads can only be set before torch first runs anything in parallel.
    torch.set_num_threads(threads)
    try:
        torch.set_num_interop_threads(threads)
    except RuntimeError:
        pass


def _import_class(target: str) -> Any:
    module_name, _, attr = target.partition(":")
    if not module_name or not attr:
        raise ModelLoadError(f"torch.module must look like 'package.module:Class', not {target!r}")
    try:
        module = importlib.import_module(module_name)
        return getattr(module, attr)
    except (ImportError, AttributeError) as exc:
        raise ModelLoadError(f"Cannot import torch.module {target!r}: {exc}") from exc


def _first_tensor(out: Any) -> torch.Tensor:
    """The scores of a forward pass that may return a tensor, a tuple or a dict."""
    if isinstance(out, torch.Tensor):
        return out
    if isinstance(out, list | tuple) and out and isinstance(out[0], torch.Tensor):
        return out[0]
    if isinstance(out, dict) and out:
        first = next(iter(out.values()))
        if isinstance(first, torch.Tensor):
            return first
    raise InferenceError(f"The model returned a {type(out).__name__}, not a tensor")


class TorchRuntime(Runtime):
    """Serve an image classifier written in PyTorch.

    The input is one float32 batch (``[N, C, H, W]`` by default) named ``input``; the output,
    named ``output``, is ``[N, classes]`` scores (logits, or probabilities with
    ``image.softmax: false``).
    """

    name = "torch"

    _model: Any
    _device: torch.device

    def platform(self) -> str:
        return "pytorch"  # KServe's model format name; "torch" is only the manifest's word

    def load(self) -> None:
        manifest = self.artifacts.manifest
        opts = manifest.torch
        path = self.artifacts.artifact
        _set_threads(opts.threads)
        self._device = _device(opts.device)
        if opts.module is None:
            try:
                with warnings.catch_warnings():
                    # torch 2.13 deprecates TorchScript for torch.export, yet it is still the
                    # format torch loads without the model's source; say so once in the docs,
                    # not in every worker's log. (Start-up is single-threaded: safe here.)
                    warnings.simplefilter("ignore", DeprecationWarning)
                    model = torch.jit.load(  # type: ignore[no-untyped-call]
                        str(path), map_location=self._device
                    )
            except Exception as exc:  # torch raises RuntimeError or ValueError, unannotated
                raise ModelLoadError(
                    f"Cannot load {path.name} as TorchScript ({type(exc).__name__}: {exc}). "
                    "For a state dict, name its module class under torch.module in model.yaml"
                ) from exc
        else:
            cls = _import_class(opts.module)
            try:
                state = torch.load(path, map_location=self._device, weights_only=True)
                model = cls(**opts.module_kwargs)
                model.load_state_dict(state)
            except Exception as exc:  # unpickling, shape and key mismatches
                raise ModelLoadError(
                    f"Cannot load {path.name} into {opts.module}: {type(exc).__name__}: {exc}"
                ) from exc
            model.to(self._device)
        self._model = model.eval()
        spec = resolve_image_spec(manifest.image, None)
        self._input = TensorSpec(INPUT_NAME, "FP32", image_input_shape(spec))
        # One forward pass on zeros: checks the module takes this input, learns the number
        # of classes, and pays torch's first-call costs before the first request does.
        probe = np.zeros((1, *self._input.shape[1:]), dtype=np.float32)
        try:
            scores = self._forward(probe)
        except Exception as exc:
            raise ModelLoadError(
                f"{path.name} fails on a {list(probe.shape)} input built from image.size, "
                f"image.mode and image.layout: {type(exc).__name__}: {exc}"
            ) from exc
        if scores.ndim != 2:
            raise ModelLoadError(
                f"{path.name} returns shape {list(scores.shape)}; an image classifier "
                "returns [batch, classes]"
            )
        output = TensorSpec(OUTPUT_NAME, "FP32", (-1, int(scores.shape[1])))
        self._signature = image_signature(manifest.class_names, self._input, output, spec)

    def _forward(self, x: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            out = _first_tensor(self._model(torch.from_numpy(x).to(self._device)))
            result: np.ndarray = out.float().cpu().numpy()
        return result

    def signature(self) -> Signature:
        return self._signature

    def describe(self) -> dict[str, Any]:
        return {
            "runtime": self.name,
            "format": "state_dict" if self.artifacts.manifest.torch.module else "torchscript",
            "device": str(self._device),
            "threads": torch.get_num_threads(),
        }

    def predict(self, inputs: TensorDict, outputs: Sequence[str] | None = None) -> TensorDict:
        x = inputs.get(INPUT_NAME)
        if x is None:
            raise InferenceError(f"The torch runtime takes one input named {INPUT_NAME!r}")
        check_input(x, self._input)
        x = np.ascontiguousarray(x, dtype=np.float32)
        try:
            return {OUTPUT_NAME: self._forward(x)}
        except InferenceError:
            raise
        except RuntimeError as exc:
            raise InferenceError(f"The model could not score this input: {exc}") from exc
