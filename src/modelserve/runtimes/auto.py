"""``runtime: auto``: serve a scikit-learn artifact compiled to ONNX, or as it is when it can't be.

At load the estimator (with its separate preprocessor) is converted with skl2onnx, for double
inputs so no feature is rounded to float32, or read back from a cache beside the artifact
keyed by the artifacts' sha256. The compiled graph only serves after a check on a sample: every
label must equal scikit-learn's and every probability must agree within
:data:`PROBA_TOLERANCE`. When conversion is unsupported (a custom transformer, a DataFrame
model, string features), the ``onnx`` extra is missing, or the check fails, the original model
serves through the sklearn runtime and the reason is logged and shown in ``/models/<name>``.
"""

from __future__ import annotations

import hashlib
import logging
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ModelLoadError
from ..manifest import FeatureSpec
from ..types import PREDICT_OUTPUT
from ..types import PROBA_OUTPUT
from ..types import TABULAR_INPUT
from ..types import Signature
from ..types import TensorDict
from .base import ArtifactSet
from .base import Runtime
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


def verification_sample(model: Any, pre: Any, signature: Signature, rows: int) -> np.ndarray:
    """Synthetic rows in the model's input space: from a StandardScaler's statistics when the
    model starts with one, else from the features' bounds, else standard normal; clipped to
    the bounds. No training data is needed (none is shipped with a model)."""
    rng = np.random.default_rng(0)
    first = pre if pre is not None else (model.steps[0][1] if hasattr(model, "steps") else model)
    width = len(signature.features)
    low = np.array([-np.inf if f.minimum is None else f.minimum for f in signature.features])
    high = np.array([np.inf if f.maximum is None else f.maximum for f in signature.features])
    mean, scale = getattr(first, "mean_", None), getattr(first, "scale_", None)
    if mean is not None and scale is not None and len(mean) == width:
        x = mean + np.asarray(scale) * rng.standard_normal((rows, width))
    else:
        x = rng.standard_normal((rows, width))
        bounded = np.isfinite(low) & np.isfinite(high)
        x[:, bounded] = rng.uniform(low[bounded], high[bounded], size=(rows, int(bounded.sum())))
    x = np.asarray(np.clip(x, low, high), dtype=np.float64)
    integer = np.array([f.type == "integer" for f in signature.features])
    x[:, integer] = np.round(x[:, integer])
    return x


def convert(model: Any, pre: Any, width: int) -> bytes:
    """The estimator (and preprocessor) as one ONNX graph taking ``[rows, width]`` doubles.

    :raises NotCompiled: when skl2onnx cannot convert it.
    """
    try:
        from skl2onnx import to_onnx
    except ImportError:
        raise NotCompiled("skl2onnx is not installed (pip install 'modelserve[onnx]')") from None
    from sklearn.pipeline import make_pipeline

    estimator = make_pipeline(pre, model) if pre is not None else model
    final = estimator.steps[-1][1] if hasattr(estimator, "steps") else estimator
    options = {id(final): {"zipmap": False}} if hasattr(final, "classes_") else None
    try:
        graph = to_onnx(estimator, np.zeros((1, width), dtype=np.float64), options=options)
    except Exception as exc:  # skl2onnx raises many kinds for what it does not support
        raise NotCompiled(f"skl2onnx cannot convert it: {type(exc).__name__}: {exc}") from exc
    data: bytes = graph.SerializeToString()
    return data


class AutoRuntime(Runtime):
    """A scikit-learn model, served compiled to ONNX whenever that gives the same answers."""

    name = "auto"

    _impl: Runtime
    reason: str | None
    cache_path: Path | None

    def load(self) -> None:
        sk = SKLearnRuntime(self.artifacts)
        sk.load()
        self._sklearn = sk
        self._impl = sk
        self.reason = None
        self.cache_path = None
        self._all_outputs = frozenset(sk.signature().outputs)
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
        if not sig.numeric:
            raise NotCompiled("it has string or boolean features")
        if sk.frame_columns is not None:
            raise NotCompiled("it was fitted on a pandas DataFrame (columns picked by name)")
        try:
            import onnxruntime  # noqa: F401
        except ImportError:
            raise NotCompiled(
                "onnxruntime is not installed (pip install 'modelserve[onnx]')"
            ) from None
        from .onnx import ONNXRuntime

        path = self._cached_graph(sk, len(sig.features))
        manifest = self.artifacts.manifest.model_copy(
            update={
                "inputs": [FeatureSpec.model_validate(f.to_dict()) for f in sig.features],
                "task": sig.task,
                "preprocessor": None,
            }
        )
        compiled = ONNXRuntime(ArtifactSet(artifact=path, manifest=manifest))
        try:
            compiled.load()
        except ModelLoadError as exc:
            raise NotCompiled(f"onnxruntime cannot load the compiled graph: {exc.message}") from exc
        self._verify(sk, compiled, sig)
        return compiled

    def _cached_graph(self, sk: SKLearnRuntime, width: int) -> Path:
        """The compiled graph's file: from the cache when its key matches, else converted now."""
        from skl2onnx import __version__ as skl2onnx_version

        key = hashlib.sha256(skl2onnx_version.encode())
        for path in (self.artifacts.artifact, self.artifacts.preprocessor):
            if path is not None:
                key.update(path.read_bytes())
        cache = self.artifacts.artifact.parent / CACHE_DIR / f"{key.hexdigest()[:32]}.onnx"
        if cache.is_file():
            self.cache_path = cache
            return cache
        data = convert(sk.model, sk.preprocessor, width)
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
        x = verification_sample(sk.model, sk.preprocessor, sig, SAMPLE_ROWS)
        try:
            want = sk.predict({TABULAR_INPUT: x})
            got = self._predict_compiled(compiled, {TABULAR_INPUT: x}, None)
        except Exception as exc:  # a model may refuse synthetic rows: then nothing is proven
            raise NotCompiled(f"cannot check the compiled model on a sample: {exc}") from exc
        labels_ok = np.array_equal(
            np.asarray(want[PREDICT_OUTPUT]).ravel(), np.asarray(got[PREDICT_OUTPUT]).ravel()
        )
        if sig.task == "regression":
            expected = np.ravel(want[PREDICT_OUTPUT]).astype(np.float64)
            diff = float(np.max(np.abs(expected - np.ravel(got[PREDICT_OUTPUT]))))
            if not diff <= PROBA_TOLERANCE * max(1.0, float(np.max(np.abs(expected)))):
                raise NotCompiled(f"the compiled predictions differ by up to {diff:.3g}")
            return
        if not labels_ok:
            wrong = int(np.sum(np.ravel(want[PREDICT_OUTPUT]) != np.ravel(got[PREDICT_OUTPUT])))
            raise NotCompiled(f"the compiled labels differ on {wrong} of {len(x)} sample rows")
        if PROBA_OUTPUT in want:
            diff = float(np.max(np.abs(want[PROBA_OUTPUT] - got[PROBA_OUTPUT])))
            if not diff <= PROBA_TOLERANCE:
                raise NotCompiled(
                    f"the compiled probabilities differ by up to {diff:.3g} "
                    f"(tolerance {PROBA_TOLERANCE:g})"
                )

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
        classes = self._sklearn.classes
        wanted = set(outputs) if outputs is not None else self._all_outputs
        if self._sklearn.labels_from_proba and classes is not None and PREDICT_OUTPUT in wanted:
            # scikit-learn defines these estimators' labels as classes_[argmax(proba)]; take
            # them the same way (ties included) rather than from the graph's own tie-break.
            result = compiled.predict(inputs, [PROBA_OUTPUT])
            result[PREDICT_OUTPUT] = classes.take(np.argmax(result[PROBA_OUTPUT], axis=1))
            if PROBA_OUTPUT not in wanted:
                del result[PROBA_OUTPUT]
            return result
        result = compiled.predict(inputs, outputs)
        if classes is not None and PREDICT_OUTPUT in result:
            # Labels keep scikit-learn's dtype (the graph may give int64 for int32 classes).
            result[PREDICT_OUTPUT] = result[PREDICT_OUTPUT].astype(classes.dtype, copy=False)
        return result

    def unload(self) -> None:
        self._impl.unload()
