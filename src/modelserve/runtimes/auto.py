"""``runtime: auto``: serve a scikit-learn artifact compiled to ONNX, or as it is when it can't be.

At load the estimator (with its separate preprocessor) is converted with skl2onnx, for double
inputs so no feature is rounded to float32, or read back from a cache beside the artifact
keyed by the artifacts' sha256. The compiled graph only serves after a check on a sample: every
label must equal scikit-learn's and every probability must agree within
:data:`PROBA_TOLERANCE`. Models fitted on a DataFrame compile too: one that only checks column
names takes the same ``[rows, features]`` doubles as its numpy-fitted twin, and one that picks
columns by name or takes strings (a ``ColumnTransformer`` with a ``OneHotEncoder``) takes one
named ``[rows, 1]`` input per column, which the ONNX runtime fills from the seed codec's rows
(see :func:`input_layout`). When conversion is unsupported (a custom transformer), the
``onnx`` extra is missing, or the check fails, the original model serves through the sklearn
runtime and the reason is logged and shown in ``/models/<name>``.
"""

from __future__ import annotations

import hashlib
import logging
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ModelLoadError
from ..manifest import FeatureSpec
from ..manifest import Manifest
from ..types import PREDICT_OUTPUT
from ..types import PROBA_OUTPUT
from ..types import TABULAR_INPUT
from ..types import Signature
from ..types import Task
from ..types import TensorDict
from .base import ArtifactSet
from .base import Runtime
from .columns import Column
from .columns import selects_columns
from .sklearn import SKLearnRuntime

logger = logging.getLogger(__name__)

#: Largest difference allowed between compiled and scikit-learn probabilities. Tree
#: ensembles compiled by skl2onnx add up float32 leaf values (about 1e-7 off).
PROBA_TOLERANCE = 1e-5
#: Rows in the verification sample.
SAMPLE_ROWS = 512
#: Folder beside the artifact where compiled graphs are cached (ignored by version discovery).
CACHE_DIR = ".compiled"


class NotCompiled(Exception):
    """Why a model is served uncompiled; the message is shown to operators."""


def verification_sample(signature: Signature, columns: Sequence[Column], rows: int) -> np.ndarray:
    """Synthetic rows in the model's input space, built from what the fitted model says of
    each column: a scaler's mean and spread, an encoder's categories; else the feature's
    bounds, else standard normal; clipped to the bounds. No training data is needed (none is
    shipped with a model). Rows with a string feature come back as an object array.

    :raises NotCompiled: for a string feature whose values nothing fitted lists.
    """
    rng = np.random.default_rng(0)
    width = len(signature.features)
    known = {c.name: c for c in columns}
    numbers = np.empty((rows, width), dtype=np.float64)
    strings: dict[int, np.ndarray] = {}
    for j, feature in enumerate(signature.features):
        column = known.get(feature.name)
        values = feature.enum or (column.categories if column is not None else None)
        if feature.type in ("string", "boolean"):
            if feature.type == "boolean":
                values = (False, True)
            if not values:
                raise NotCompiled(
                    f"nothing fitted lists the values of the string feature {feature.name!r} "
                    "to check the compiled model on"
                )
            strings[j] = np.array(values, dtype=object)[rng.integers(0, len(values), rows)]
            continue
        if values:
            numbers[:, j] = np.asarray(values, dtype=np.float64)[rng.integers(0, len(values), rows)]
            continue
        low = -np.inf if feature.minimum is None else feature.minimum
        high = np.inf if feature.maximum is None else feature.maximum
        loc = column.location if column is not None else None
        if isinstance(loc, int | float) and column is not None and column.scale is not None:
            numbers[:, j] = loc + column.scale * rng.standard_normal(rows)
        elif np.isfinite(low) and np.isfinite(high):
            numbers[:, j] = rng.uniform(low, high, rows)
        else:
            numbers[:, j] = rng.standard_normal(rows)
        numbers[:, j] = np.clip(numbers[:, j], low, high)
        if feature.type == "integer":
            numbers[:, j] = np.round(numbers[:, j])
    if not strings:
        return numbers
    table = numbers.astype(object)
    for j, feature in enumerate(signature.features):
        if j in strings:
            table[:, j] = strings[j]
        elif feature.type == "integer":
            table[:, j] = [int(v) for v in numbers[:, j]]
    return table


def input_layout(sk: SKLearnRuntime) -> str:
    """How the compiled graph takes its input: ``array``, one ``[rows, features]`` double
    tensor; or ``columns``, one ``[rows, 1]`` tensor per feature, named after it.

    A model fitted on a DataFrame only to check column names (scalers, imputers, plain
    pipelines) takes an array like its numpy-fitted twin; one that picks columns by name
    (a ``ColumnTransformer``) or takes strings needs them one by one.
    """
    sig = sk.signature()
    by_name = sk.frame_columns is not None and any(
        selects_columns(est) for est in (sk.model, sk.preprocessor) if est is not None
    )
    return "columns" if by_name or not sig.numeric else "array"


#: Estimators whose ``predict`` casts its input to float32 before comparing it with split
#: thresholds (scikit-learn's tree ``DTYPE``). Given float32 input their graphs compare
#: exactly the same numbers; given doubles, skl2onnx compares the unrounded value with
#: thresholds that lie between it and its float32 rounding, and rows with short decimals
#: (``5.2``) take the other branch. onnxruntime has no double tree ensembles either.
FLOAT32_ESTIMATORS = frozenset(
    {
        "DecisionTreeClassifier",
        "DecisionTreeRegressor",
        "ExtraTreeClassifier",
        "ExtraTreeRegressor",
        "RandomForestClassifier",
        "RandomForestRegressor",
        "ExtraTreesClassifier",
        "ExtraTreesRegressor",
        "GradientBoostingClassifier",
        "GradientBoostingRegressor",
    }
)


def takes_float32(model: Any, pre: Any) -> bool:
    """True when the graph should take float32: a bare tree model with no step before it,
    which scikit-learn itself scores on float32 features."""
    return (
        pre is None and not hasattr(model, "steps") and type(model).__name__ in (FLOAT32_ESTIMATORS)
    )


#: Estimators whose compiled graph cannot give scikit-learn's answers on real rows, and why.
#: Synthetic check rows rarely show it; training-like data (repeated values) does. Measured
#: with skl2onnx 1.20 and onnxruntime 1.32, doubles throughout: a k-NN classifier (the
#: default ``kd_tree`` search) on iris's own rows gives the same labels but probabilities 0.2
#: off (one vote of five) where training rows tie for the fifth place, with or without
#: skl2onnx's ``optim="cdist"`` (which only changes how distances are computed): onnxruntime's
#: ``TopK`` keeps the lowest index, scikit-learn the order of its search. A regressor averages
#: the same tied neighbours.
UNCOMPILABLE = {
    "KNeighborsClassifier": "k-nearest neighbours: the compiled graph orders equally distant "
    "neighbours differently, so votes on ties differ from scikit-learn's",
    "KNeighborsRegressor": "k-nearest neighbours: the compiled graph orders equally distant "
    "neighbours differently, so averages on ties differ from scikit-learn's",
}


#: Estimators whose graph computes in float32 although scikit-learn computes in doubles:
#: skl2onnx 1.20 writes HistGradientBoosting's trees as float32 ``TreeEnsemble*`` nodes only,
#: and onnxruntime has no double ``SVMRegressor``. They get a float32 cast before them, so a
#: feature within float32 rounding of a split threshold could take the other branch (SVR's
#: kernel sums lose about 1e-7 relatively); they serve compiled only when the check passes.
FLOAT32_GRAPHS = frozenset(
    {"HistGradientBoostingClassifier", "HistGradientBoostingRegressor", "SVR"}
)


def _float32_cast(width: int, dtype: Any = np.float32) -> Any:
    from skl2onnx.sklapi import CastTransformer

    return CastTransformer(dtype=dtype).fit(np.zeros((1, width)))


def _numeric_imputer(step: Any) -> bool:
    """True for a ``SimpleImputer`` of numbers: onnxruntime's ``Imputer`` takes float32 only."""
    if type(step).__name__ != "SimpleImputer":
        return False
    stats = getattr(step, "statistics_", None)
    return stats is not None and np.asarray(stats).dtype.kind == "f"


def needs_float32_casts(estimator: Any) -> bool:
    """True when :func:`_cast_to_float32` changes the graph of ``estimator``."""
    steps = getattr(estimator, "steps", None)
    parts = [step for _, step in steps] if steps else [estimator]
    return type(parts[-1]).__name__ in FLOAT32_GRAPHS or any(
        _numeric_imputer(p) for p in parts[:-1]
    )


def _cast_to_float32(estimator: Any) -> Any:
    """A copy of ``estimator`` with float32 casts where scikit-learn or onnxruntime compute
    in float32.

    * A Pipeline's final tree model (:data:`FLOAT32_ESTIMATORS`) gets a cast before it:
      scikit-learn trees round the previous step's output to float32 before comparing it
      with thresholds; skl2onnx compares the doubles, which takes the other branch for values
      between a threshold and their rounding. With the cast the graph compares what
      scikit-learn compares.
    * A final :data:`FLOAT32_GRAPHS` model, bare or in a Pipeline, gets a cast before it: its
      nodes exist for float32 only.
    * A numeric ``SimpleImputer`` step gets a float32 cast before it and a cast back to
      doubles after it, so that only the features are rounded, not what later steps compute.
    """
    from sklearn.pipeline import Pipeline

    steps = getattr(estimator, "steps", None)
    if not steps:
        if type(estimator).__name__ not in FLOAT32_GRAPHS:
            return estimator
        width = int(estimator.n_features_in_)
        return Pipeline([("float32", _float32_cast(width)), ("model", estimator)])
    final = steps[-1][1]
    kind = type(final).__name__
    if not (kind in FLOAT32_ESTIMATORS or kind in FLOAT32_GRAPHS or needs_float32_casts(estimator)):
        return estimator
    out: list[tuple[str, Any]] = []
    for i, (name, step) in enumerate(steps[:-1]):
        if _numeric_imputer(step):
            width = int(step.n_features_in_)
            out.append((f"float32-{i}", _float32_cast(width)))
            out.append((name, step))
            width = len(step.get_feature_names_out())
            out.append((f"float64-{i}", _float32_cast(width, np.float64)))
        else:
            out.append((name, step))
    if kind in FLOAT32_ESTIMATORS or kind in FLOAT32_GRAPHS:
        out.append(("float32", _float32_cast(int(final.n_features_in_))))
    out.append(steps[-1])
    return Pipeline(out)


def _unnamed_boosters(estimator: Any) -> Any:
    """A copy of ``estimator`` whose XGBoost wrappers forget their feature names.

    onnxmltools reads split features only as ``f<index>``; a wrapper fitted on a DataFrame
    names them. The graph takes columns by position either way; the served model keeps
    its names.
    """
    import copy

    steps = getattr(estimator, "steps", None)
    parts = [step for _, step in steps] if steps else [estimator]
    if not any(
        getattr(getattr(p, "get_booster", None), "__self__", None) is not None
        and getattr(p.get_booster(), "feature_names", None)
        for p in parts
        if type(p).__module__.startswith("xgboost")
    ):
        return estimator
    estimator = copy.deepcopy(estimator)
    steps = getattr(estimator, "steps", None)
    for part in [step for _, step in steps] if steps else [estimator]:
        if type(part).__module__.startswith("xgboost"):
            part.get_booster().feature_names = None
    return estimator


#: skl2onnx input type of a feature, by feature type, in the ``columns`` layout.
_COLUMN_TYPES = {"number": "DoubleTensorType", "integer": "Int64TensorType"}


def convert(model: Any, pre: Any, signature: Signature, layout: str = "array") -> bytes:
    """The estimator (and preprocessor) as one ONNX graph, taking doubles so that no feature
    is rounded to float32: one ``[rows, width]`` input, or in the ``columns`` layout one
    ``[rows, 1]`` input per feature (strings as strings, integers as int64). A bare tree
    model takes float32, as scikit-learn scores it (:func:`takes_float32`); casts go where
    scikit-learn or onnxruntime compute in float32 (:func:`_cast_to_float32`).

    :raises NotCompiled: when skl2onnx cannot convert it.
    """
    try:
        import skl2onnx  # noqa: F401
    except ImportError:
        raise NotCompiled("skl2onnx is not installed (pip install 'modelserve[onnx]')") from None
    from sklearn.pipeline import make_pipeline

    # Imported here: _boosters imports this module. Registers onnxmltools' converters for
    # XGBoost/LightGBM wrappers already imported by the unpickling; a no-op otherwise.
    from ._boosters import register_booster_converters

    register_booster_converters()
    float_input = layout == "array" and takes_float32(model, pre)
    estimator = make_pipeline(pre, model) if pre is not None else model
    final = estimator.steps[-1][1] if hasattr(estimator, "steps") else estimator
    why = UNCOMPILABLE.get(type(final).__name__)
    if why is not None:
        raise NotCompiled(why)
    estimator = _cast_to_float32(_unnamed_boosters(estimator))
    width = len(signature.features)
    try:
        with warnings.catch_warnings():
            # Converters read fitted attributes that scikit-learn deprecates (SVC's
            # probA_ in 1.9); that is no concern of the model's owner, and the compiled
            # graph is checked against the model before it serves anyway.
            warnings.simplefilter("ignore", FutureWarning)
            warnings.simplefilter("ignore", DeprecationWarning)
            graph = _to_onnx(estimator, signature, layout, width, float_input)
    except NotCompiled:
        raise
    except Exception as exc:  # skl2onnx raises many kinds for what it does not support
        raise NotCompiled(f"skl2onnx cannot convert it: {type(exc).__name__}: {exc}") from exc
    data: bytes = graph.SerializeToString()
    return data


def _parts(estimator: Any) -> list[Any]:
    """``estimator`` and every estimator inside it (Pipeline steps, ColumnTransformer and
    FeatureUnion parts)."""
    found = [estimator]
    inner: list[Any] = [step for _, step in getattr(estimator, "steps", None) or ()]
    inner += [part for _, part, _ in getattr(estimator, "transformers_", None) or ()]
    inner += [part for _, part in getattr(estimator, "transformer_list", None) or ()]
    for part in inner:
        if part is not None and not isinstance(part, str):
            found += _parts(part)
    return found


def converter_options(estimator: Any) -> dict[int, dict[str, Any]]:
    """skl2onnx options for each classifier in ``estimator``, among those its converter
    declares: probabilities as a plain tensor (no ``ZipMap``); for a classifier without
    probabilities (``LinearSVC``), raw scores, the only second output skl2onnx writes for
    double inputs (never served: the model has no ``predict_proba``).

    Every classifier is named, even with no option: skl2onnx 1.20 gives an unnamed classifier
    in a Pipeline a ``zipmap`` option, which converters without it (``LinearSVC``'s) refuse.
    """
    from skl2onnx._supported_operators import sklearn_operator_name_map
    from skl2onnx.common._registration import get_converter
    from sklearn.base import is_classifier

    options: dict[int, dict[str, Any]] = {}
    for part in _parts(estimator):
        if not is_classifier(part) or hasattr(part, "steps"):
            continue
        alias = sklearn_operator_name_map.get(type(part))
        try:
            declared = get_converter(alias).get_allowed_options() if alias else None
        except ValueError:  # no converter: conversion reports it
            declared = None
        if declared is None or declared == "passthrough" or "zipmap" in declared:
            chosen: dict[str, Any] = {"zipmap": False} if hasattr(part, "predict_proba") else {}
        elif "raw_scores" in declared and not hasattr(part, "predict_proba"):
            chosen = {"raw_scores": True}
        else:
            chosen = {}
        options[id(part)] = chosen
    return options


class _IntMissingFlags:
    """A skl2onnx container that writes ``nodes_missing_value_tracks_true`` as integers.

    skl2onnx 1.20 gives HistGradientBoosting leaves the flag ``False``, a Python bool, which
    the installed protobuf refuses in an ``ints`` attribute ("Expected an int, got a
    boolean"), so no HistGradientBoosting model converts. The values are 0 and 1 either way.
    """

    def __init__(self, container: Any) -> None:
        self._container = container

    def __getattr__(self, name: str) -> Any:
        return getattr(self._container, name)

    def add_node(self, op_type: str, inputs: Any, outputs: Any, **attrs: Any) -> Any:
        flags = attrs.get("nodes_missing_value_tracks_true")
        if flags is not None:
            attrs["nodes_missing_value_tracks_true"] = [int(v) for v in flags]
        return self._container.add_node(op_type, inputs, outputs, **attrs)


def _custom_converters(estimator: Any) -> tuple[dict[type, Any], dict[type, Any]]:
    """Per-conversion converters and shape calculators for the HistGradientBoosting models in
    ``estimator``: skl2onnx's own, writing through :class:`_IntMissingFlags`."""
    from skl2onnx._supported_operators import sklearn_operator_name_map
    from skl2onnx.common._registration import get_converter
    from skl2onnx.common._registration import get_shape_calculator

    converters: dict[type, Any] = {}
    shapes: dict[type, Any] = {}
    for part in _parts(estimator):
        kind = type(part)
        if not kind.__name__.startswith("HistGradientBoosting") or kind in converters:
            continue
        alias = sklearn_operator_name_map.get(kind)
        if alias is None:
            continue
        native = get_converter(alias)

        def convert(scope: Any, operator: Any, container: Any, native: Any = native) -> None:
            native(scope, operator, _IntMissingFlags(container))

        converters[kind] = convert
        shapes[kind] = get_shape_calculator(alias)
    return converters, shapes


def _to_onnx(
    estimator: Any, signature: Signature, layout: str, width: int, float_input: bool
) -> Any:
    from skl2onnx import convert_sklearn
    from skl2onnx.common import data_types

    if layout == "columns":
        types = []
        for f in signature.features:
            if f.type == "boolean":
                raise NotCompiled(f"boolean feature {f.name!r} has no ONNX input type here")
            kind = _COLUMN_TYPES.get(f.type, "StringTensorType")
            types.append((f.name, getattr(data_types, kind)([None, 1])))
    else:
        kind = "FloatTensorType" if float_input else "DoubleTensorType"
        # The name skl2onnx's to_onnx gives an array input.
        types = [("X", getattr(data_types, kind)([None, width]))]
    converters, shapes = _custom_converters(estimator)
    return convert_sklearn(
        estimator,
        initial_types=types,
        name=f"ONNX({type(estimator).__name__})",
        options=converter_options(estimator),
        custom_conversion_functions=converters,
        custom_shape_calculators=shapes,
    )


def compare_outputs(want: TensorDict, got: TensorDict, task: Task, rows: int) -> None:
    """Check compiled outputs against the original's, by ``runtime: auto``'s rule: labels
    equal, probabilities within :data:`PROBA_TOLERANCE`,
    regression values within it relative to their scale.

    :raises NotCompiled: naming how far they differ.
    """
    if task == "regression":
        expected = np.ravel(want[PREDICT_OUTPUT]).astype(np.float64)
        diff = float(np.max(np.abs(expected - np.ravel(got[PREDICT_OUTPUT]))))
        if not diff <= PROBA_TOLERANCE * max(1.0, float(np.max(np.abs(expected)))):
            raise NotCompiled(f"the compiled predictions differ by up to {diff:.3g}")
        return
    wrong = int(np.sum(np.ravel(want[PREDICT_OUTPUT]) != np.ravel(got[PREDICT_OUTPUT])))
    if wrong:
        raise NotCompiled(f"the compiled labels differ on {wrong} of {rows} sample rows")
    if PROBA_OUTPUT in want:
        diff = float(np.max(np.abs(want[PROBA_OUTPUT] - got[PROBA_OUTPUT])))
        if not diff <= PROBA_TOLERANCE:
            raise NotCompiled(
                f"the compiled probabilities differ by up to {diff:.3g} "
                f"(tolerance {PROBA_TOLERANCE:g})"
            )


def load_compiled_graph(
    path: Path, manifest: Manifest, signature: Signature, **overrides: Any
) -> Runtime:
    """Load a compiled graph with the ONNX runtime, described by the model's own signature
    (its features as ``inputs``, its task) and ``overrides`` on top of its manifest.

    :raises NotCompiled: when onnxruntime cannot load it.
    """
    from .onnx import ONNXRuntime

    update = {
        "inputs": [FeatureSpec.model_validate(f.to_dict()) for f in signature.features],
        "task": signature.task,
        **overrides,
    }
    compiled = ONNXRuntime(ArtifactSet(artifact=path, manifest=manifest.model_copy(update=update)))
    try:
        compiled.load()
    except ModelLoadError as exc:
        raise NotCompiled(f"onnxruntime cannot load the compiled graph: {exc.message}") from exc
    return compiled


class AutoRuntime(Runtime):
    """A scikit-learn model, served compiled to ONNX whenever that gives the same answers."""

    name = "auto"

    _impl: Runtime
    reason: str | None
    cache_path: Path | None

    def platform(self) -> str:
        return "sklearn"  # compiled or not, the artifact is a scikit-learn model

    def load(self) -> None:
        sk = SKLearnRuntime(self.artifacts)
        sk.load()
        self._sklearn = sk
        self._impl = sk
        self.reason = None
        self.cache_path = None
        self._all_outputs = frozenset(sk.signature().outputs)
        # Read once: the estimator does not change while loaded, and each read of the
        # properties walks the pipeline and wraps its classes again (about 1 µs a call).
        self._classes = sk.classes
        self._labels_from_proba = sk.labels_from_proba
        if not self.artifacts.manifest.compile:
            self.reason = "compile: false in model.yaml"
            return
        try:
            self._impl = self._compile(sk)
        except NotCompiled as exc:
            self.reason = str(exc)
            logger.warning(
                "%s: serving with scikit-learn, not compiled: %s",
                self.artifacts.artifact.name,
                self.reason,
            )

    def _compile(self, sk: SKLearnRuntime) -> Runtime:
        sig = sk.signature()
        layout = input_layout(sk)
        try:
            import onnxruntime  # noqa: F401
        except ImportError:
            raise NotCompiled(
                "onnxruntime is not installed (pip install 'modelserve[onnx]')"
            ) from None
        path = self._cached_graph(sk, layout)
        compiled = load_compiled_graph(path, self.artifacts.manifest, sig, preprocessor=None)
        self._verify(sk, compiled, sig)
        return compiled

    def _cached_graph(self, sk: SKLearnRuntime, layout: str) -> Path:
        """The compiled graph's file: from the cache when its key matches, else converted now."""
        from skl2onnx import __version__ as skl2onnx_version
        from sklearn.pipeline import make_pipeline

        key = hashlib.sha256(skl2onnx_version.encode())
        if layout == "array" and takes_float32(sk.model, sk.preprocessor):
            key.update(b"float32")  # graphs of tree models once took doubles
        final = sk.model.steps[-1][1] if hasattr(sk.model, "steps") else sk.model
        if type(final).__name__ in FLOAT32_ESTIMATORS and not takes_float32(
            sk.model, sk.preprocessor
        ):
            key.update(b"cast")  # and had no float32 cast before the tree
        pre = sk.preprocessor
        estimator = make_pipeline(pre, sk.model) if pre is not None else sk.model
        if needs_float32_casts(estimator):
            key.update(b"float32-graph")  # SVR's and imputers' graphs once took doubles
        if layout != "array":
            # The per-column graph also depends on the features' types (a manifest may set
            # them); array graphs keep the keys they always had.
            key.update(layout.encode())
            for f in sk.signature().features:
                key.update(f"{f.name}\0{f.type}\0".encode())
        for path in (self.artifacts.artifact, self.artifacts.preprocessor):
            if path is not None:
                key.update(path.read_bytes())
        cache = self.artifacts.artifact.parent / CACHE_DIR / f"{key.hexdigest()[:32]}.onnx"
        if cache.is_file():
            self.cache_path = cache
            return cache
        data = convert(sk.model, sk.preprocessor, sk.signature(), layout)
        try:
            cache.parent.mkdir(exist_ok=True)
            tmp = cache.with_suffix(".tmp")
            tmp.write_bytes(data)
            tmp.replace(cache)  # atomic: other workers never read half a file
            self.cache_path = cache
            return cache
        except OSError as exc:  # a read-only model folder: compile anyway, cache nothing
            logger.info("cannot cache the compiled graph beside the artifact: %s", exc)
            handle = tempfile.NamedTemporaryFile(suffix=".onnx", delete=False)
            with handle:
                handle.write(data)
            return Path(handle.name)

    def _verify(self, sk: SKLearnRuntime, compiled: Runtime, sig: Signature) -> None:
        x = verification_sample(sig, sk.columns, SAMPLE_ROWS)
        try:
            want = sk.predict({TABULAR_INPUT: x})
            got = self._predict_compiled(compiled, {TABULAR_INPUT: x}, None)
        except Exception as exc:  # a model may refuse synthetic rows: then nothing is proven
            raise NotCompiled(f"cannot check the compiled model on a sample: {exc}") from exc
        compare_outputs(want, got, sig.task, len(x))

    # -- interface ----------------------------------------------------------------------------

    @property
    def compiled(self) -> bool:
        return self._impl is not self._sklearn

    def signature(self) -> Signature:
        return self._sklearn.signature()

    def describe(self) -> dict[str, Any]:
        info = self._sklearn.describe()
        info.update(
            runtime=self.name,
            serving="onnx" if self.compiled else "sklearn",
            compiled=self.compiled,
            reason=self.reason,
        )
        return info

    def predict(self, inputs: TensorDict, outputs: Sequence[str] | None = None) -> TensorDict:
        if not self.compiled:
            return self._sklearn.predict(inputs, outputs)
        return self._predict_compiled(self._impl, inputs, outputs)

    def _predict_compiled(
        self, compiled: Runtime, inputs: TensorDict, outputs: Sequence[str] | None
    ) -> TensorDict:
        classes = self._classes
        wanted = self._all_outputs if outputs is None else self._all_outputs & set(outputs)
        if self._labels_from_proba and classes is not None and PREDICT_OUTPUT in wanted:
            # scikit-learn defines these estimators' labels as classes_[argmax(proba)]; take
            # them the same way (ties included) rather than from the graph's own tie-break.
            result = compiled.predict(inputs, [PROBA_OUTPUT])
            result[PREDICT_OUTPUT] = classes.take(np.argmax(result[PROBA_OUTPUT], axis=1))
            if PROBA_OUTPUT not in wanted:
                del result[PROBA_OUTPUT]
            return result
        # Only what scikit-learn serves: a LinearSVC graph's second output holds raw scores.
        result = compiled.predict(inputs, sorted(wanted))
        if classes is not None and PREDICT_OUTPUT in result:
            # Labels keep scikit-learn's dtype (the graph may give int64 for int32 classes).
            result[PREDICT_OUTPUT] = result[PREDICT_OUTPUT].astype(classes.dtype, copy=False)
        return result

    def unload(self) -> None:
        self._impl.unload()
