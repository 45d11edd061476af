"""The ``model.yaml`` manifest: what a model folder declares about its artifacts and signature.

A model folder holds ``model.yaml`` and one subfolder per integer version. A version folder may
hold its own ``model.yaml``; its keys override the model-level ones for that version (its
``sha256`` keys are then relative to the version folder).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from typing import Literal

import yaml
from pydantic import BaseModel
from pydantic import ConfigDict
from pydantic import Field
from pydantic import ValidationError
from pydantic import field_validator
from pydantic import model_validator

from .errors import ModelLoadError
from .types import Feature
from .types import Task

MANIFEST_NAME = "model.yaml"
_SHA256_LEN = 64


class FeatureSpec(BaseModel):
    """One input feature as written in a manifest."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1)
    type: Literal["number", "integer", "string", "boolean"] = "number"
    enum: list[Any] | None = None
    minimum: float | None = None
    maximum: float | None = None
    description: str | None = None
    sample: Any = None
    """A typical value of the feature: the example shown in ``/models/<name>`` and used in the
    warm-up row when valid (an MLflow model's input example fills it)."""

    @model_validator(mode="after")
    def _bounds(self) -> FeatureSpec:
        if self.minimum is not None and self.maximum is not None and self.minimum > self.maximum:
            raise ValueError(f"feature {self.name!r}: minimum is greater than maximum")
        return self

    def to_feature(self) -> Feature:
        return Feature(
            name=self.name,
            type=self.type,
            enum=tuple(self.enum) if self.enum is not None else None,
            minimum=self.minimum,
            maximum=self.maximum,
            description=self.description,
            sample=self.sample,
        )


class BatchingSpec(BaseModel):
    """Per-model batching overrides; unset fields take the server settings."""

    model_config = ConfigDict(extra="forbid")

    max_batch_size: int | None = Field(default=None, ge=1)
    max_latency_ms: float | None = Field(default=None, ge=0)


class VersionPolicy(BaseModel):
    """A Triton-style version policy: the latest N versions, or a fixed list of versions."""

    model_config = ConfigDict(extra="forbid")

    latest: int | None = Field(default=None, ge=1)
    specific: list[int] | None = Field(default=None, min_length=1)

    @model_validator(mode="after")
    def _one(self) -> VersionPolicy:
        if (self.latest is None) == (self.specific is None):
            raise ValueError("version_policy takes exactly one of latest: N or specific: [...]")
        return self


class CacheSpec(BaseModel):
    """Opt-in prediction cache for one model."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    max_entries: int = Field(default=10_000, ge=1)
    """Local cache only: most answers kept per worker (least recently used go first)."""
    ttl_seconds: float = Field(default=300.0, gt=0)


#: torchvision's ImageNet statistics, the seed's ``transforms.Normalize`` defaults.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class ImageSpec(BaseModel):
    """Preprocessing of an image model, done with Pillow and numpy (no torchvision).

    Every field is optional: size, mode and layout are read from an ONNX graph's input shape
    when omitted; a TorchScript model needs ``size`` (and ``mode: L`` for one channel).
    """

    model_config = ConfigDict(extra="forbid")

    size: tuple[int, int] | None = None
    """Input ``[height, width]`` the model takes (a single number means a square)."""

    resize: Literal["crop", "stretch"] = "crop"
    """``crop``: scale the shorter side to ``resize_shorter`` then center-crop to ``size``
    (torchvision ``Resize`` + ``CenterCrop``); ``stretch``: scale straight to ``size``."""

    resize_shorter: int | None = Field(default=None, ge=1)
    """``crop`` only: the shorter side before cropping (e.g. 256 for a 224 crop); defaults to
    the larger of the two ``size`` dimensions, i.e. no margin is cut beyond the aspect ratio."""

    mode: Literal["RGB", "L"] | None = None
    """Colour mode: ``RGB`` (3 channels) or ``L`` (grayscale, 1 channel)."""

    mean: list[float] | None = None
    """Per-channel mean subtracted after scaling; ImageNet's for RGB, ``[0.0]`` for L."""

    std: list[float] | None = None
    """Per-channel std divided by after subtracting the mean; ImageNet's for RGB, ``[1.0]``
    for L."""

    scale: float = 1 / 255
    """Multiplies raw 0..255 pixel values before normalising (``ToTensor`` divides by 255)."""

    layout: Literal["NCHW", "NHWC"] | None = None
    """Channel order of the input tensor; PyTorch models use NCHW (the default)."""

    background: tuple[int, int, int] = (255, 255, 255)
    """Transparent pixels (RGBA, LA, palette transparency) are composed over this colour."""

    top_k: int = Field(default=5, ge=1)
    """How many best classes each answer lists under ``top_k``."""

    softmax: bool = True
    """Apply softmax to the model's output; turn off when it already outputs probabilities."""

    @field_validator("size", mode="before")
    @classmethod
    def _square(cls, value: Any) -> Any:
        return (value, value) if isinstance(value, int) else value

    @model_validator(mode="after")
    def _check(self) -> ImageSpec:
        if self.size is not None and min(self.size) < 1:
            raise ValueError("image.size must be positive")
        for key in ("mean", "std"):
            values = getattr(self, key)
            if values is not None and len(values) not in (1, 3):
                raise ValueError(f"image.{key} needs 1 or 3 values")
        if self.std is not None and any(v == 0 for v in self.std):
            raise ValueError("image.std must not contain 0")
        return self

    @property
    def channels(self) -> int:
        return 1 if self.mode == "L" else 3


class TorchOptions(BaseModel):
    """How the ``torch`` runtime builds and runs a model."""

    model_config = ConfigDict(extra="forbid")

    module: str | None = None
    """``package.module:Class`` of the network whose state dict the artifact holds; leave
    unset for a TorchScript file. The class must be importable by the server."""

    module_kwargs: dict[str, Any] = Field(default_factory=dict)
    """Keyword arguments the module class is built with before its weights are loaded."""

    threads: int = Field(default=1, ge=1)
    """Intra-op threads (process-wide in torch). One suits a server whose worker threads
    already run requests in parallel; raise it for one large model on an idle machine."""

    device: Literal["cpu", "cuda", "auto"] = "cpu"
    """``auto`` uses CUDA when torch sees a GPU, else the CPU."""


class ONNXOptions(BaseModel):
    """How the ``onnx`` runtime builds its onnxruntime session."""

    model_config = ConfigDict(extra="forbid")

    providers: list[str] | None = None
    """onnxruntime execution providers in order of preference; default CUDA (when this
    onnxruntime build has it) then CPU. Unavailable ones are skipped."""

    threads: int = Field(default=1, ge=1)
    """Intra-op threads of the session (see ``torch.threads``)."""


class Manifest(BaseModel):
    """A model's manifest. Every field is optional: missing ones are inferred at load."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    runtime: str | None = None
    """Which runtime loads the artifact; guessed from the artifact's extension when omitted
    (``.pkl``/``.joblib``/``.skops`` -> ``sklearn``)."""

    artifact: str | None = None
    """The model file inside each version folder; found by extension when omitted."""

    preprocessor: str | None = None
    """An optional fitted transformer file applied before the model (the tutorial's scaler)."""

    sha256: dict[str, str] = Field(default_factory=dict)
    """Pinned hashes, ``{path relative to the model folder: hex digest}``."""

    task: Task | None = None
    inputs: list[FeatureSpec] | None = None
    class_names: list[str] | None = None
    """Display names aligned with the model's ``classes_``."""

    image: ImageSpec | None = None
    """Image models: how an uploaded picture becomes the model's input tensor."""

    torch: TorchOptions = Field(default_factory=lambda: TorchOptions())
    """``torch`` runtime only: how to build, place and thread the module."""

    onnx: ONNXOptions = Field(default_factory=lambda: ONNXOptions())
    """``onnx`` runtime only: execution providers and threads."""

    description: str | None = None
    trusted_types: list[str] = Field(default_factory=list)
    """skops only: extra types to trust when loading a ``.skops`` file."""

    trust: bool = False
    """Load this model's pickle/joblib files in production although their sha256 is not
    pinned (they run code when loaded); pinning them is the better way."""

    batching: BatchingSpec | None = None
    """Adaptive batching for this model (``max_batch_size: 1`` turns it off)."""

    cache: CacheSpec | None = None
    """Prediction cache for this model (off unless given)."""

    compile: bool = True
    """``runtime: auto`` (scikit-learn) and the XGBoost/LightGBM runtimes: serve the model
    compiled to ONNX when the compiled answers match the model's own; ``false`` keeps it on
    its own library."""

    version_policy: Literal["all"] | VersionPolicy = "all"
    """Which version folders to serve: ``all`` (the default), ``{latest: N}`` (the N highest
    versions that load) or ``{specific: [1, 3]}``. Read from the model-level manifest."""

    @field_validator("sha256")
    @classmethod
    def _hex_digests(cls, pins: dict[str, str]) -> dict[str, str]:
        for path, digest in pins.items():
            if len(digest) != _SHA256_LEN or any(
                c not in "0123456789abcdef" for c in digest.lower()
            ):
                raise ValueError(f"sha256 for {path!r} is not a 64-character hex digest")
        return {path: digest.lower() for path, digest in pins.items()}

    @field_validator("inputs")
    @classmethod
    def _unique_names(cls, inputs: list[FeatureSpec] | None) -> list[FeatureSpec] | None:
        names = [f.name for f in inputs or ()]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"duplicate input names: {', '.join(dupes)}")
        return inputs


def read_manifest_data(path: Path) -> dict[str, Any]:
    """Read a manifest file into a mapping, or raise a :class:`ModelLoadError` naming it."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ModelLoadError(f"Cannot read manifest {path}: {exc}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ModelLoadError(f"Manifest {path} must be a mapping of fields to values")
    return data


def parse_manifest(data: dict[str, Any], source: Path | str) -> Manifest:
    """Validate manifest data, listing every bad field in the error."""
    try:
        return Manifest.model_validate(data)
    except ValidationError as exc:
        details = [
            {"path": ".".join(str(p) for p in e["loc"]) or "(root)", "message": e["msg"]}
            for e in exc.errors()
        ]
        listing = "; ".join(f"{d['path']}: {d['message']}" for d in details)
        raise ModelLoadError(f"Invalid manifest {source}: {listing}", details) from exc


def load_version_manifest(model_dir: Path, version_dir: Path | None) -> Manifest:
    """Merge the model-level manifest with a version's own, if it has one."""
    data: dict[str, Any] = {}
    source = top = model_dir / MANIFEST_NAME
    if top.is_file():
        data = read_manifest_data(top)
    if version_dir is not None and (version_dir / MANIFEST_NAME).is_file():
        source = version_dir / MANIFEST_NAME
        override = read_manifest_data(source)
        pins = {
            f"{version_dir.name}/{k}": v for k, v in (override.pop("sha256", None) or {}).items()
        }
        data = {**data, **override, "sha256": {**(data.get("sha256") or {}), **pins}}
    return parse_manifest(data, source)


def dump_manifest(manifest: Manifest) -> str:
    """Render a manifest as YAML, leaving out empty and default fields."""
    data = manifest.model_dump(mode="json", exclude_none=True, exclude_defaults=True)
    return yaml.safe_dump(data, sort_keys=False)
