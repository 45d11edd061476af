"""The runtime interface: load an artifact once, describe it, and predict on numpy arrays.

A runtime never sees HTTP, JSON or the batcher. It receives ``{"input": array}`` and returns
the outputs that were asked for, keyed by name (see :mod:`modelserve.types`).
"""

from __future__ import annotations

from abc import ABC
from abc import abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from dataclasses import field
from pathlib import Path
from typing import Any
from typing import ClassVar

from ..manifest import Manifest
from ..types import Signature
from ..types import TensorDict


@dataclass(frozen=True)
class ArtifactSet:
    """The files of one model version, already hash-checked by the repository."""

    artifact: Path
    preprocessor: Path | None = None
    manifest: Manifest = field(default_factory=Manifest)


class Runtime(ABC):
    """Base class of every model runtime.

    Subclasses are built with the version's :class:`ArtifactSet`; :meth:`load` is called once,
    then :meth:`predict` from many threads at once, so it must not mutate shared state.
    """

    #: The manifest ``runtime`` value this class serves.
    name: ClassVar[str]

    #: Whether a :meth:`load`-ed instance may be handed across ``fork()``: it holds only
    #: Python and numpy objects (no native thread pool, session or socket) and neither
    #: :meth:`load` nor unpickling started a thread. The main process preloads such
    #: runtimes so the workers share their memory (:mod:`modelserve.preload`).
    fork_safe: ClassVar[bool] = False

    def __init__(self, artifacts: ArtifactSet) -> None:
        self.artifacts = artifacts

    @abstractmethod
    def load(self) -> None:
        """Load the artifact into memory; raise :class:`ModelLoadError` if it cannot be."""

    @abstractmethod
    def signature(self) -> Signature:
        """Describe inputs and outputs; inferred from the model where the manifest is silent."""

    @abstractmethod
    def predict(self, inputs: TensorDict, outputs: Sequence[str] | None = None) -> TensorDict:
        """Score a batch. ``outputs`` names what to return; ``None`` means every output.

        :raises InferenceError: when the model rejects the input.
        """

    def unload(self) -> None:  # noqa: B027 - optional hook, most runtimes need nothing
        """Release resources. The default does nothing; the object is simply dropped."""

    def platform(self) -> str:
        """The framework the artifact comes from, for V2 model metadata's ``platform``.

        Named as KServe names model formats (``sklearn``, ``onnx``, ``pytorch``, ``xgboost``,
        ``lightgbm``): one scheme for every runtime, which says what the model *is*, not how
        it is served (a compiled scikit-learn model is still ``sklearn``). Triton's platform
        names (``onnxruntime_onnx``, ``pytorch_libtorch``) have no entry for scikit-learn or
        the boosters. Defaults to the runtime's manifest :attr:`name`.
        """
        return self.name

    def describe(self) -> dict[str, Any]:
        """Extra facts for the model metadata (e.g. the estimator class)."""
        return {"runtime": self.name}
