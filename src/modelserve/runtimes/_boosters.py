"""What the XGBoost and LightGBM runtimes share: signature, ONNX compile-and-check, converters.

A native booster file knows its features (count, sometimes names), its objective and its
number of classes; the manifest fills in the rest. At load the booster is converted with
onnxmltools to a float32 graph, cached beside the artifact by sha256 like ``runtime: auto``,
and serves only after it agreed with the booster on a sample built from the booster's own
split thresholds; otherwise the booster serves itself and ``describe()`` says why.
"""

from __future__ import annotations

import hashlib
import logging
import sys
import tempfile
from abc import abstractmethod
from collections.abc import Callable
from collections.abc import Sequence
from dataclasses import dataclass
from dataclasses import field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ModelLoadError
from ..types import PREDICT_OUTPUT
from ..types import PROBA_OUTPUT
from ..types import TABULAR_INPUT
from ..types import Feature
from ..types import Signature
from ..types import Task
from ..types import TensorDict
from .auto import CACHE_DIR
from .auto import SAMPLE_ROWS
from .auto import NotCompiled
from .auto import compare_outputs
from .auto import load_compiled_graph
from .base import ArtifactSet
from .base import Runtime

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class BoosterInfo:
    """What a loaded booster says about itself."""

    num_features: int
    objective: str
    #: ``None`` when the objective is unknown to us (a custom objective): the manifest decides.
    task: Task | None
    #: 0 for regression, else the number of classes (2 for a binary objective).
    num_classes: int = 0
    #: Whether the native scores of a classifier are class probabilities.
    has_proba: bool = False
    #: Names given at training, or ``None`` when the booster only numbers its features.
    feature_names: tuple[str, ...] | None = None
    #: feature index -> the numeric split thresholds of every tree (for the check sample).
    thresholds: dict[int, list[float]] = field(default_factory=dict)


def booster_signature(info: BoosterInfo, artifacts: ArtifactSet) -> Signature:
    """The signature of a booster, from what it knows and what the manifest adds.

    :raises ModelLoadError: when the manifest contradicts the booster.
    """
    manifest = artifacts.manifest
    if manifest.inputs is not None:
        features = tuple(f.to_feature() for f in manifest.inputs)
        if len(features) != info.num_features:
            raise ModelLoadError(
                f"The manifest lists {len(features)} inputs but the booster was trained on "
                f"{info.num_features} features"
            )
        if info.feature_names is not None and [f.name for f in features] != list(
            info.feature_names
        ):
            raise ModelLoadError(
                "The manifest's input names differ from the names the booster was trained "
                f"with ({', '.join(info.feature_names)})"
            )
        if not all(f.type in ("number", "integer") for f in features):
            raise ModelLoadError("A booster takes numbers only: no string or boolean inputs")
    elif info.feature_names is not None:
        features = tuple(Feature(name=n) for n in info.feature_names)
    else:
        features = tuple(Feature(name=f"x{i}") for i in range(info.num_features))
    task = info.task
    if task is None:
        # A custom objective leaves raw scores; without its link we cannot make probabilities.
        if manifest.task == "classification":
            raise ModelLoadError(
                f"The booster's objective {info.objective!r} is unknown to modelserve, so its "
                "scores cannot be turned into classes: serve it as task: regression"
            )
        task = "regression"
    elif manifest.task is not None and manifest.task != task:
        raise ModelLoadError(
            f"The manifest says task: {manifest.task} but the booster's objective "
            f"{info.objective!r} is {task}"
        )
    classes = tuple(range(info.num_classes)) if task == "classification" else None
    class_names = tuple(manifest.class_names) if manifest.class_names else None
    if class_names is not None and (classes is None or len(class_names) != len(classes)):
        raise ModelLoadError(
            f"The manifest has {len(class_names)} class_names but the booster has "
            f"{len(classes or ())} classes"
        )
    return Signature(
        features=features,
        task=task,
        classes=classes,
        class_names=class_names,
        has_proba=task == "classification" and info.has_proba,
    )


def threshold_sample(thresholds: dict[int, list[float]], signature: Signature, rows: int) -> Any:
    """Rows that take every branch of every tree: each value is a split threshold, a midpoint
    between two neighbouring thresholds, or beyond the outermost ones.

    Random normal rows (``runtime: auto``'s sample) would mostly fall on one side of splits
    on features with large scales; trees are only tested where they branch. Values are kept
    in the manifest's bounds and integer features are rounded, as requests are validated.
    """
    rng = np.random.default_rng(0)
    width = len(signature.features)
    x = rng.standard_normal((rows, width))
    for index, found in thresholds.items():
        t = np.unique(np.asarray(found, dtype=np.float64))
        if index >= width or not len(t):
            continue
        outside = [t[0] - 1.0 - abs(t[0]), t[-1] + 1.0 + abs(t[-1])]
        candidates = np.concatenate([t, (t[1:] + t[:-1]) / 2, outside])
        x[:, index] = rng.choice(candidates, size=rows)
    low = np.array([-np.inf if f.minimum is None else f.minimum for f in signature.features])
    high = np.array([np.inf if f.maximum is None else f.maximum for f in signature.features])
    x = np.clip(x, low, high)
    integer = np.array([f.type == "integer" for f in signature.features], dtype=bool)
    x[:, integer] = np.round(x[:, integer])
    return x


def cached_graph(artifact: Path, key: Sequence[bytes], build: Callable[[], bytes]) -> Path:
    """The compiled graph's file in the artifact's cache folder, built only on a cache miss.

    ``key`` holds what the graph depends on besides the artifact's bytes (converter version).
    A read-only model folder still compiles, into a temporary file.
    """
    digest = hashlib.sha256()
    for part in key:
        digest.update(part)
    digest.update(artifact.read_bytes())
    cache = artifact.parent / CACHE_DIR / f"{digest.hexdigest()[:32]}.onnx"
    if cache.is_file():
        return cache
    data = build()
    try:
        cache.parent.mkdir(exist_ok=True)
        tmp = cache.with_suffix(".tmp")
        tmp.write_bytes(data)
        tmp.replace(cache)  # atomic: other workers never read half a file
        return cache
    except OSError as exc:
        logger.info("cannot cache the compiled graph beside the artifact: %s", exc)
        handle = tempfile.NamedTemporaryFile(suffix=".onnx", delete=False)
        with handle:
            handle.write(data)
        return Path(handle.name)


def variable_batch(model: Any) -> bytes:
    """Serialise a converted graph with every output's first dimension left variable.

    onnxmltools declares some label outputs as ``[1]``; onnxruntime then logs a shape warning
    on every call with more than one row.
    """
    for output in model.graph.output:
        dims = output.type.tensor_type.shape.dim
        if len(dims):
            dims[0].Clear()
            dims[0].dim_param = "N"
    data: bytes = model.SerializeToString()
    return data


class BoosterRuntime(Runtime):
    """A gradient-boosted tree model in its library's own file format.

    Subclasses load the booster and score it natively; this class infers the signature,
    compiles to ONNX when the check passes and shapes the outputs.
    """

    #: Library name shown as ``serving`` when the booster serves itself.
    library: str

    _compiled: Runtime | None
    reason: str | None
    cache_path: Path | None

    @abstractmethod
    def _load_booster(self) -> BoosterInfo:
        """Load the artifact with the library; raise :class:`ModelLoadError` if it cannot."""

    @abstractmethod
    def _native_scores(self, x: np.ndarray) -> np.ndarray:
        """``[rows, classes]`` probabilities for a classifier with probabilities, else
        ``[rows]`` labels or values.

        :raises InferenceError: when the library rejects the input.
        """

    @abstractmethod
    def _convert(self) -> bytes:
        """The booster as a serialised ONNX graph taking ``[rows, features]`` float32.

        :raises NotCompiled: when onnxmltools cannot convert it.
        """

    @abstractmethod
    def _converter_key(self) -> list[bytes]:
        """What the converted graph depends on besides the artifact (library versions)."""

    def load(self) -> None:
        self.info = self._load_booster()
        self._signature = booster_signature(self.info, self.artifacts)
        self._compiled = None
        self.reason = None
        self.cache_path = None
        if not self.artifacts.manifest.compile:
            self.reason = "compile: false in model.yaml"
            return
        try:
            self._compiled = self._compile()
        except NotCompiled as exc:
            self.reason = str(exc)
            logger.warning(
                "%s: serving with %s, not compiled: %s",
                self.artifacts.artifact.name,
                self.library,
                self.reason,
            )

    def _compile(self) -> Runtime:
        sig = self._signature
        if sig.task == "classification" and not sig.has_proba:
            raise NotCompiled(
                f"objective {self.info.objective!r} gives labels only; the check compares "
                "probabilities"
            )
        try:
            import onnxmltools  # noqa: F401
            import onnxruntime  # noqa: F401
        except ImportError as exc:
            raise NotCompiled(
                f"{exc.name} is not installed (pip install 'modelserve[onnxmltools]')"
            ) from None

        path = cached_graph(self.artifacts.artifact, self._converter_key(), self._convert)
        self.cache_path = path if path.parent.name == CACHE_DIR else None
        compiled = load_compiled_graph(
            path, self.artifacts.manifest, sig, runtime="onnx", class_names=None
        )
        x = threshold_sample(self.info.thresholds, sig, SAMPLE_ROWS)
        try:
            want = self._outputs(self._native_scores(x), set(sig.outputs))
            got = self._outputs(self._compiled_scores(compiled, x), set(sig.outputs))
        except Exception as exc:  # nothing is proven when either side fails on the sample
            raise NotCompiled(f"cannot check the compiled model on a sample: {exc}") from exc
        compare_outputs(want, got, sig.task, len(x))
        return compiled

    def _compiled_scores(self, compiled: Runtime, x: np.ndarray) -> np.ndarray:
        if self._signature.has_proba:
            return compiled.predict({TABULAR_INPUT: x}, [PROBA_OUTPUT])[PROBA_OUTPUT]
        return compiled.predict({TABULAR_INPUT: x}, [PREDICT_OUTPUT])[PREDICT_OUTPUT]

    def _outputs(self, scores: np.ndarray, wanted: set[str]) -> TensorDict:
        result: TensorDict = {}
        if self._signature.has_proba:
            proba = np.asarray(scores, dtype=np.float64)
            if PROBA_OUTPUT in wanted:
                result[PROBA_OUTPUT] = proba
            if PREDICT_OUTPUT in wanted:
                # The scikit-learn wrappers' rule: argmax, the first class on ties (a binary
                # model's class 1 only above 0.5).
                result[PREDICT_OUTPUT] = np.argmax(proba, axis=1).astype(np.int64)
        elif PREDICT_OUTPUT in wanted:
            values = np.asarray(scores).reshape(-1)
            kind = np.int64 if self._signature.task == "classification" else np.float64
            result[PREDICT_OUTPUT] = values.astype(kind)
        return result

    # -- interface ----------------------------------------------------------------------------

    @property
    def compiled(self) -> bool:
        return self._compiled is not None

    def signature(self) -> Signature:
        return self._signature

    def describe(self) -> dict[str, Any]:
        return {
            "runtime": self.name,
            "serving": "onnx" if self.compiled else self.library,
            "compiled": self.compiled,
            "reason": self.reason,
            "objective": self.info.objective,
            "num_features": self.info.num_features,
            "num_classes": self.info.num_classes or None,
        }

    def predict(self, inputs: TensorDict, outputs: Sequence[str] | None = None) -> TensorDict:
        wanted = set(outputs) if outputs is not None else set(self._signature.outputs)
        x = inputs[TABULAR_INPUT]
        if self._compiled is not None:
            return self._outputs(self._compiled_scores(self._compiled, x), wanted)
        return self._outputs(self._native_scores(x), wanted)

    def unload(self) -> None:
        if self._compiled is not None:
            self._compiled.unload()


# -- scikit-learn wrappers inside pickles -----------------------------------------------------


#: Libraries whose wrappers skl2onnx already knows (see :func:`register_booster_converters`).
_registered: set[str] = set()


def register_booster_converters() -> None:
    """Teach skl2onnx the scikit-learn wrappers of XGBoost and LightGBM (``XGBClassifier``,
    ``XGBRegressor``, ``LGBMClassifier``, ``LGBMRegressor``), alone or inside a Pipeline.

    Uses onnxmltools' converters. Only libraries already imported are registered: unpickling a
    wrapper imports its library, and a plain scikit-learn model pays for no import. Idempotent;
    does nothing without skl2onnx or onnxmltools.
    """
    try:
        from skl2onnx import update_registered_converter
        from skl2onnx.common.shape_calculator import calculate_linear_classifier_output_shapes
        from skl2onnx.common.shape_calculator import calculate_linear_regressor_output_shapes
    except ImportError:
        return
    classifier_options = {"nocl": [True, False], "zipmap": [True, False, "columns"]}
    for module, classifier, regressor, alias in (
        ("xgboost", "XGBClassifier", "XGBRegressor", "XGBoost"),
        ("lightgbm", "LGBMClassifier", "LGBMRegressor", "LightGbm"),
    ):
        library = sys.modules.get(module)
        if library is None or module in _registered:
            continue
        try:
            convert = _onnxmltools_converter(module)
        except ImportError:
            return
        update_registered_converter(
            getattr(library, classifier),
            f"{alias}{classifier}",
            calculate_linear_classifier_output_shapes,
            convert,
            parser=_parse_float32_classifier,
            options=classifier_options,
        )
        update_registered_converter(
            getattr(library, regressor),
            f"{alias}{regressor}",
            calculate_linear_regressor_output_shapes,
            convert,
            parser=_parse_float32_regressor,
        )
        _registered.add(module)


def _onnxmltools_converter(module: str) -> Callable[[Any, Any, Any], None]:
    if module == "xgboost":
        from onnxmltools.convert.xgboost.operator_converters.XGBoost import convert_xgboost

        native = convert_xgboost
    else:
        from onnxmltools.convert.lightgbm.operator_converters.LightGbm import convert_lightgbm

        native = convert_lightgbm

    def convert(scope: Any, operator: Any, container: Any) -> None:
        native(scope, operator, _MLOpsetCap(container))

    return convert


class _MLOpsetCap:
    """A skl2onnx container whose ``ai.onnx.ml`` nodes get the newest version skl2onnx can
    write.

    onnxmltools' converters add tree-ensemble nodes without a version; skl2onnx then picks the
    newest one in the installed onnx (5), and refuses it when it writes the model ("version 5
    of domain 'ai.onnx.ml' not supported yet"). Versions 3 and 5 of these operators take the
    same attributes.
    """

    def __init__(self, container: Any) -> None:
        self._container = container

    def __getattr__(self, name: str) -> Any:
        return getattr(self._container, name)

    def add_node(
        self,
        op_type: str,
        inputs: Any,
        outputs: Any,
        op_domain: str = "",
        op_version: int | None = None,
        **attrs: Any,
    ) -> Any:
        if op_domain == "ai.onnx.ml" and op_version is None:
            op_version = _ml_version(op_type)
        return self._container.add_node(
            op_type, inputs, outputs, op_domain=op_domain, op_version=op_version, **attrs
        )


def _ml_version(op_type: str) -> int | None:
    from onnx import defs
    from skl2onnx.common._topology import get_default_opset_for_domain

    highest = get_default_opset_for_domain("ai.onnx.ml")
    versions = [
        s.since_version
        for s in defs.get_all_schemas_with_history()
        if s.name == op_type and s.domain == "ai.onnx.ml" and s.since_version <= highest
    ]
    return max(versions) if versions else None


def _as_float32(scope: Any, inputs: list[Any], custom_parsers: Any) -> list[Any]:
    """Cast double inputs to float32 first, as XGBoost and LightGBM's converters require.

    ``runtime: auto`` converts for double inputs. XGBoost casts features to float32 itself, so
    the cast changes nothing for it; LightGBM compares doubles, and the check on a sample
    decides whether float32 is close enough.
    """
    from skl2onnx._parse import _parse_sklearn_simple_model
    from skl2onnx.common.data_types import FloatTensorType
    from skl2onnx.sklapi import CastTransformer

    if all(isinstance(v.type, FloatTensorType) for v in inputs):
        return inputs
    cast = CastTransformer(dtype=np.float32)
    result: list[Any] = _parse_sklearn_simple_model(
        scope, cast, inputs, custom_parsers=custom_parsers
    )
    return result


def _parse_float32_classifier(
    scope: Any, model: Any, inputs: list[Any], custom_parsers: Any = None
) -> Any:
    from skl2onnx._parse import _parse_sklearn_classifier

    inputs = _as_float32(scope, inputs, custom_parsers)
    return _parse_sklearn_classifier(scope, model, inputs, custom_parsers=custom_parsers)


def _parse_float32_regressor(
    scope: Any, model: Any, inputs: list[Any], custom_parsers: Any = None
) -> Any:
    from skl2onnx._parse import _parse_sklearn_simple_model

    inputs = _as_float32(scope, inputs, custom_parsers)
    return _parse_sklearn_simple_model(scope, model, inputs, custom_parsers=custom_parsers)
