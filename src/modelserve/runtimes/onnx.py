"""ONNX runtime: any ONNX graph through onnxruntime, on the CPU or a configured provider.

A graph is served as one of three kinds, read from its inputs: a 2-D ``[rows, features]``
input is a **tabular** model (scikit-learn converted with skl2onnx) that answers the seed's
``/predict`` like the sklearn runtime; so is a graph with one ``[rows, 1]`` input per feature
that ``model.yaml`` lists (a ``ColumnTransformer`` converted with named inputs), fed column by
column from the same ``[rows, features]`` table. A 4-D input is an **image** classifier;
anything else is a **tensor** model whose named inputs and outputs pass through as they are (V2).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from typing import Any

import numpy as np
import onnxruntime as ort

from ..errors import InferenceError
from ..errors import InvalidInput
from ..errors import ModelLoadError
from ..floats import widen_float32
from ..types import PREDICT_OUTPUT
from ..types import PROBA_OUTPUT
from ..types import TABULAR_INPUT
from ..types import Feature
from ..types import Signature
from ..types import TensorDict
from ..types import TensorSpec
from ._image import check_input
from ._image import image_input_shape
from ._image import image_signature
from ._image import resolve_image_spec
from .base import Runtime

logger = logging.getLogger(__name__)

#: onnxruntime type string -> (V2 datatype, numpy dtype).
_TYPES: dict[str, tuple[str, Any]] = {
    "tensor(float)": ("FP32", np.float32),
    "tensor(double)": ("FP64", np.float64),
    "tensor(float16)": ("FP16", np.float16),
    "tensor(int64)": ("INT64", np.int64),
    "tensor(int32)": ("INT32", np.int32),
    "tensor(int16)": ("INT16", np.int16),
    "tensor(int8)": ("INT8", np.int8),
    "tensor(uint8)": ("UINT8", np.uint8),
    "tensor(bool)": ("BOOL", np.bool_),
    "tensor(string)": ("BYTES", np.object_),
}
_DEFAULT_PROVIDERS = ("CUDAExecutionProvider", "CPUExecutionProvider")
#: Graph attributes where skl2onnx records a classifier's labels, in the order of its columns.
_LABEL_ATTRS = ("classlabels_int64s", "classlabels_ints", "classlabels_strings")


def _dims(arg: Any) -> list[int | None]:
    """A graph shape with ``None`` for symbolic or unknown dimensions."""
    return [d if isinstance(d, int) and d >= 0 else None for d in (arg.shape or [])]


def _spec(arg: Any) -> TensorSpec:
    datatype = _TYPES.get(arg.type, (arg.type, None))[0]
    return TensorSpec(arg.name, datatype, tuple(-1 if d is None else d for d in _dims(arg)))


def _providers(wanted: Sequence[str] | None) -> list[str]:
    available = ort.get_available_providers()
    chosen = [p for p in (wanted or _DEFAULT_PROVIDERS) if p in available]
    if not chosen:
        raise ModelLoadError(
            f"None of the onnx.providers {list(wanted or ())} is available in this "
            f"onnxruntime build (available: {', '.join(available)})"
        )
    return chosen


def _identifier(name: str) -> str:
    """``name`` as skl2onnx names a graph input after it: characters other than letters,
    digits, ``_`` and ``+`` become ``_``, and a leading digit gets a ``_`` before it."""
    seed = re.sub(r"[^\w+]", "_", name)
    return "_" + seed if re.match("[0-9]", seed) else seed


def _class_labels(path: str) -> tuple[Any, ...] | None:
    """The class labels a converted scikit-learn classifier stores in its graph, if any."""
    import onnx

    model = onnx.load(path, load_external_data=False)
    found: tuple[Any, ...] | None = None
    for node in model.graph.node:
        for attr in node.attribute:
            if attr.name in _LABEL_ATTRS:
                values = onnx.helper.get_attribute_value(attr)
                found = tuple(v.decode() if isinstance(v, bytes) else int(v) for v in values)
    return found


class ONNXRuntime(Runtime):
    """Serve an ONNX graph with one ``onnxruntime.InferenceSession`` shared by all threads."""

    name = "onnx"

    _session: ort.InferenceSession
    #: ``tabular``, ``image`` or ``tensor``; decided at load from the graph's inputs.
    kind: str
    #: For a tabular graph fed by column: (input name, numpy dtype) per feature, in order.
    _column_feed: list[tuple[str, Any]] | None = None

    def load(self) -> None:
        manifest = self.artifacts.manifest
        path = str(self.artifacts.artifact)
        options = ort.SessionOptions()
        options.intra_op_num_threads = manifest.onnx.threads
        # Requests already run in parallel on the server's threads; one op pool is enough.
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        try:
            self._session = ort.InferenceSession(
                path, sess_options=options, providers=_providers(manifest.onnx.providers)
            )
        except ModelLoadError:
            raise
        except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph classes
            raise ModelLoadError(
                f"Cannot load {self.artifacts.artifact.name} with onnxruntime: {exc}"
            ) from exc
        self._inputs = self._session.get_inputs()
        self._outputs = self._session.get_outputs()
        self._dtypes = {a.name: _TYPES.get(a.type, ("", None))[1] for a in self._inputs}
        ranks = [len(a.shape or []) for a in self._inputs]
        if manifest.image is not None or (len(self._inputs) == 1 and ranks[0] == 4):
            self.kind = "image"
            self._signature = self._load_image()
        elif self._by_column(ranks):
            self.kind = "tabular"
            self._signature = self._load_columns()
        elif len(self._inputs) == 1 and ranks[0] == 2:
            self.kind = "tabular"
            self._signature = self._load_tabular()
        else:
            self.kind = "tensor"
            self._signature = Signature(
                features=(),
                task=manifest.task or "regression",
                kind="tensor",
                tensor_inputs=tuple(_spec(a) for a in self._inputs),
                tensor_outputs=tuple(_spec(a) for a in self._outputs),
            )

    # -- loading by kind ----------------------------------------------------------------------

    def _load_image(self) -> Signature:
        manifest = self.artifacts.manifest
        if len(self._inputs) != 1:
            raise ModelLoadError(
                f"An image model takes one input; this graph takes {len(self._inputs)}"
            )
        graph_input = self._inputs[0]
        spec = resolve_image_spec(manifest.image, _dims(graph_input))
        datatype = _TYPES.get(graph_input.type, ("FP32", None))[0]
        input_spec = TensorSpec(graph_input.name, datatype, image_input_shape(spec))
        output = self._outputs[0]
        # A forward pass on zeros checks the graph runs, learns the number of classes and
        # warms the session up before the first request.
        probe = np.zeros((1, *input_spec.shape[1:]), dtype=self._dtypes[graph_input.name])
        try:
            (scores,) = self._session.run([output.name], {graph_input.name: probe})
        except Exception as exc:
            raise ModelLoadError(
                f"The graph fails on a {list(probe.shape)} input built from image.size, "
                f"image.mode and image.layout: {exc}"
            ) from exc
        scores = np.asarray(scores)
        if scores.ndim != 2:
            raise ModelLoadError(
                f"Output {output.name!r} has shape {list(scores.shape)}; an image classifier "
                "returns [batch, classes]"
            )
        out_spec = TensorSpec(output.name, _spec(output).datatype, (-1, int(scores.shape[1])))
        return image_signature(manifest.class_names, input_spec, out_spec, spec)

    def _by_column(self, ranks: list[int]) -> bool:
        """True for a graph with one ``[rows, 1]`` input per feature the manifest lists (what
        skl2onnx makes of a ``ColumnTransformer`` given named inputs)."""
        listed = self.artifacts.manifest.inputs
        if listed is None or any(r != 2 for r in ranks) or len(listed) != len(self._inputs):
            return False
        if self._column_inputs([f.name for f in listed]) is None:
            return False
        one_float = len(self._inputs) == 1 and self._inputs[0].type in (
            "tensor(float)",
            "tensor(double)",
        )
        return not one_float and all(_dims(a)[1] in (1, None) for a in self._inputs)

    def _column_inputs(self, names: list[str]) -> list[Any] | None:
        """The graph input that takes each named feature, or ``None`` when some has none.

        An input is named after its feature, or after the feature's C identifier form when
        that is a name skl2onnx had to change (``od280/od315`` becomes ``od280_od315``).
        """
        by_name = {a.name: a for a in self._inputs}
        found = []
        for name in names:
            graph_input = by_name.get(name) or by_name.get(_identifier(name))
            if graph_input is None:
                return None
            found.append(graph_input)
        if len({a.name for a in found}) != len(found):
            return None  # two features would fill one input
        return found

    def _load_columns(self) -> Signature:
        """A tabular graph fed column by column: feature ``j`` of the ``[rows, features]``
        input goes, as a ``[rows, 1]`` tensor of the graph's type, to the input named after it.
        """
        listed = self.artifacts.manifest.inputs or []
        graph_inputs = self._column_inputs([f.name for f in listed]) or []
        self._column_feed = []
        for graph_input in graph_inputs:
            dtype = self._dtypes[graph_input.name]
            if dtype is None:
                raise ModelLoadError(
                    f"Input {graph_input.name!r} is {graph_input.type}, which a tabular "
                    "feature cannot fill"
                )
            self._column_feed.append((graph_input.name, dtype))
        return self._tabular_signature(tuple(f.to_feature() for f in listed))

    def _load_tabular(self) -> Signature:
        manifest = self.artifacts.manifest
        self._column_feed = None
        graph_input = self._inputs[0]
        if graph_input.type not in ("tensor(float)", "tensor(double)"):
            raise ModelLoadError(
                f"Input {graph_input.name!r} is {graph_input.type}; tabular ONNX models take "
                "one float or double [rows, features] input (convert with one FloatTensorType)"
            )
        n_in = _dims(graph_input)[1]
        if manifest.inputs is not None:
            features = tuple(f.to_feature() for f in manifest.inputs)
            if n_in is not None and len(features) != n_in:
                raise ModelLoadError(
                    f"The manifest lists {len(features)} inputs but the graph takes {n_in}"
                )
        elif n_in is not None:
            features = tuple(Feature(name=f"x{i}") for i in range(n_in))
        else:
            raise ModelLoadError(
                "The graph does not fix its number of features: list them under inputs "
                "in model.yaml"
            )
        return self._tabular_signature(features)

    def _tabular_signature(self, features: tuple[Feature, ...]) -> Signature:
        manifest = self.artifacts.manifest
        # skl2onnx classifiers give a label tensor then probabilities (a tensor, or a
        # sequence of maps when ZipMap is on); regressors give one [rows, 1] tensor.
        self._label_name = self._outputs[0].name
        self._proba_name: str | None = None
        self._zipmap = False
        if len(self._outputs) >= 2:
            proba = self._outputs[1]
            self._proba_name = proba.name
            self._zipmap = proba.type.startswith("seq(map(")
            # ZipMap hands float32 scores over as Python floats; they keep float32 digits.
            self._zipmap_dtype = np.float32 if "tensor(float)" in proba.type else np.float64
        task = manifest.task or ("classification" if self._proba_name else "regression")
        classes: tuple[Any, ...] | None = None
        if task == "classification":
            classes = _class_labels(str(self.artifacts.artifact))
            if classes is None and self._proba_name and not self._zipmap:
                width = _dims(self._outputs[1])[-1]
                classes = tuple(range(width)) if width is not None else None
        self._classes = classes
        class_names = tuple(manifest.class_names) if manifest.class_names else None
        if class_names is not None and classes is not None and len(class_names) != len(classes):
            raise ModelLoadError(
                f"The manifest has {len(class_names)} class_names but the model has "
                f"{len(classes)} classes"
            )
        return Signature(
            features=features,
            task=task,
            classes=classes,
            class_names=class_names,
            has_proba=task == "classification" and self._proba_name is not None,
        )

    # -- interface ----------------------------------------------------------------------------

    def signature(self) -> Signature:
        return self._signature

    def describe(self) -> dict[str, Any]:
        return {
            "runtime": self.name,
            "kind": self.kind,
            "providers": self._session.get_providers(),
            "inputs": [_spec(a).to_dict() for a in self._inputs],
            "outputs": [_spec(a).to_dict() for a in self._outputs],
        }

    def predict(self, inputs: TensorDict, outputs: Sequence[str] | None = None) -> TensorDict:
        if self.kind == "tabular":
            return self._predict_tabular(inputs, outputs)
        feed = {}
        for spec in self._signature.tensor_inputs:
            x = inputs.get(spec.name)
            if x is None:
                raise InvalidInput(
                    f"Missing input {spec.name!r}; the model takes "
                    f"{', '.join(s.name for s in self._signature.tensor_inputs)}"
                )
            check_input(x, spec)
            dtype = self._dtypes[spec.name]
            feed[spec.name] = x if dtype is None or x.dtype == dtype else x.astype(dtype)
        names = list(outputs) if outputs is not None else [s.name for s in self._outputs_spec]
        return dict(zip(names, self._run(names, feed), strict=True))

    @property
    def _outputs_spec(self) -> tuple[TensorSpec, ...]:
        return self._signature.tensor_outputs

    def _run(self, names: list[str], feed: dict[str, Any]) -> list[Any]:
        try:
            result: list[Any] = self._session.run(names, feed)
        except Exception as exc:  # onnxruntime's own exception classes (Fail, InvalidArgument)
            raise InferenceError(f"The model could not score this input: {exc}") from exc
        return result

    def _predict_tabular(self, inputs: TensorDict, outputs: Sequence[str] | None) -> TensorDict:
        wanted = set(outputs) if outputs is not None else set(self._signature.outputs)
        x = inputs[TABULAR_INPUT]
        feed = self._tabular_feed(x)
        names = [self._label_name] if PREDICT_OUTPUT in wanted else []
        if PROBA_OUTPUT in wanted and self._proba_name is not None:
            names.append(self._proba_name)
        got = dict(zip(names, self._run(names, feed), strict=True))
        result: TensorDict = {}
        if PREDICT_OUTPUT in wanted:
            labels = np.asarray(got[self._label_name])
            # A regressor's single output is [rows, 1]; the tabular contract is [rows]. Values
            # computed in float32 keep their float32 digits (0.85, not 0.8500000238418579).
            labels = widen_float32(labels)
            result[PREDICT_OUTPUT] = labels.reshape(len(x)) if labels.ndim == 2 else labels
        if self._proba_name is not None and self._proba_name in got:
            proba = got[self._proba_name]
            if self._zipmap:
                keys = self._classes or (tuple(proba[0]) if len(proba) else ())
                proba = np.array([[row[k] for k in keys] for row in proba], self._zipmap_dtype)
            # float32 sums of leaf values land a few ulps outside [0, 1] (-1.5e-08 for a
            # certain 0): a probability cannot, so clip. Users of the sklearn runtime get
            # float64 probabilities: keep the type, at the float32 values' own digits.
            proba = np.asarray(proba)
            if proba.flags.writeable:  # in place: np.clip's wrapper costs more than the work
                np.minimum(np.maximum(proba, 0.0, out=proba), 1.0, out=proba)
            else:
                proba = np.clip(proba, 0.0, 1.0)
            proba = widen_float32(proba)
            result[PROBA_OUTPUT] = np.asarray(proba, dtype=np.float64).reshape(len(x), -1)
        return result

    def _tabular_feed(self, x: np.ndarray) -> dict[str, Any]:
        """The graph's inputs from a ``[rows, features]`` table (float64, or objects for
        mixed rows): the whole table, or one ``[rows, 1]`` column per named input."""
        if self._column_feed is None:
            graph_input = self._inputs[0]
            dtype = self._dtypes[graph_input.name]
            if x.dtype != dtype:
                try:
                    x = x.astype(dtype)
                except (TypeError, ValueError) as exc:
                    raise InvalidInput(f"The model takes numbers only: {exc}") from exc
            return {graph_input.name: x}
        if x.ndim != 2 or x.shape[1] != len(self._column_feed):
            raise InvalidInput(
                f"Expected a [rows, {len(self._column_feed)}] table, got {list(x.shape)}"
            )
        feed: dict[str, Any] = {}
        for j, (name, dtype) in enumerate(self._column_feed):
            column = x[:, j : j + 1]
            try:
                # astype copies: onnxruntime wants each column contiguous.
                feed[name] = column.astype(dtype)
            except (TypeError, ValueError) as exc:
                raise InvalidInput(f"Column {name!r} does not fit the model: {exc}") from exc
        return feed
