"""Score Spark DataFrames with a modelserve model: :func:`predict_udf`.

The UDF runs the model through the same runtime (its compiled graph when there is one) and
the same validation as the server's ``/predict_batch``, one Arrow batch of a partition per
model call. Each executor process loads the model once (:func:`scorer`, a cache keyed by
the model path); a row that fails validation gets a null prediction and the reason in the
``error`` field, instead of failing the task.

Needs the ``spark`` extra (``pyspark``, ``pandas``, ``pyarrow``)::

    from pyspark.sql import functions as F
    from modelserve.spark import predict_udf

    score = predict_udf("models/", model="iris")
    scored = df.withColumn("scored", score(F.struct(*features)))
    scored.select("scored.prediction", "scored.error")
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING
from typing import Any

import numpy as np
import pandas as pd

from .errors import ModelServeError
from .jobs.scoring import ChunkScorer
from .settings import load_settings

if TYPE_CHECKING:  # pragma: no cover
    from pyspark.sql.types import DataType
    from pyspark.sql.types import StructType

    from .service import InferenceService

#: The field of the result struct that says why a row was not scored (null when it was).
ERROR_FIELD = "error"

#: One loaded repository per path, and one scorer per model version in it.
_SERVICES: dict[str, InferenceService] = {}
_SCORERS: dict[tuple[str, str | None, int | None], ChunkScorer] = {}
_LOCK = threading.Lock()


def scorer(model_path: str, model: str | None = None, version: int | None = None) -> ChunkScorer:
    """This process's scorer for a model, loaded on first use and kept (executors reuse
    their Python workers, so the model loads once per worker, not once per batch).

    The settings come from the ``MODELSERVE_*`` environment of the process, as for the
    server (``MODELSERVE_ALLOW_EXTRA_FIELDS`` included).
    """
    key = (str(model_path), model, version)
    found = _SCORERS.get(key)
    if found is not None:
        return found
    with _LOCK:
        found = _SCORERS.get(key)
        if found is None:
            service = _SERVICES.get(key[0])
            if service is None:
                from .service import InferenceService

                settings = load_settings(model_path=Path(model_path), profile="testing")
                service = InferenceService(settings)
                service.load()
                _SERVICES[key[0]] = service
            found = _SCORERS[key] = ChunkScorer(service, model, version)
    return found


def result_schema(model_path: str, model: str | None = None, version: int | None = None) -> str:
    """The result struct's type as Spark DDL: the prediction columns of ``/predict_batch``
    (``prediction``, ``class_name``, ``probability_<class>``) and ``error``."""
    found = scorer(model_path, model, version)
    sig = found.signature
    fields = [f"prediction {_label_type(sig.classes, sig.task)}"]
    for column in found.prediction_columns[1:]:
        kind = "string" if column == "class_name" else "double"
        fields.append(f"`{column}` {kind}")
    fields.append(f"{ERROR_FIELD} string")
    return ", ".join(fields)


def _label_type(classes: tuple[Any, ...] | None, task: str) -> str:
    if task == "regression" or classes is None:
        return "double"
    kind = np.asarray(classes).dtype.kind
    return {"i": "bigint", "u": "bigint", "b": "boolean", "f": "double"}.get(kind, "string")


def predict_udf(
    model_path: str | Path,
    *,
    model: str | None = None,
    version: int | None = None,
    result_type: str | StructType | None = None,
) -> Any:
    """A pandas UDF that scores a struct of feature columns on the model at ``model_path``.

    :param model_path: a model repository (or one model's folder or artifact), readable
        at this path by every executor.
    :param model: which model, when the repository holds several.
    :param version: which version; ``None``: the default one.
    :param result_type: the UDF's return type; default :func:`result_schema` (the model
        is loaded on the driver once to work it out).
    :returns: a UDF to call with ``F.struct(*feature_columns)``; its value is a struct of
        the prediction fields (null when the row is invalid) and ``error``.
    """
    from pyspark.sql.pandas.functions import pandas_udf

    path = str(model_path)
    returns: str | DataType = result_type or result_schema(path, model, version)

    def score(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        chunk_scorer = scorer(path, model, version)
        for frame in batches:
            yield score_frame(chunk_scorer, frame)

    return pandas_udf(score, returnType=returns)  # type: ignore[call-overload]


def score_frame(chunk_scorer: ChunkScorer, frame: pd.DataFrame) -> pd.DataFrame:
    """One row of answers per row of ``frame``, in order: the prediction fields (missing
    where the row was rejected) and the reason it was, in ``error``."""
    n = len(frame)
    frame = frame.reset_index(drop=True)
    columns = chunk_scorer.prediction_columns
    try:
        scored = chunk_scorer.score(frame, 0)
    except ModelServeError as exc:  # a missing feature column: every row says so
        out = pd.DataFrame({c: pd.Series([None] * n, dtype=object) for c in columns})
        out[ERROR_FIELD] = exc.message
        return out
    answers = scored.predictions.set_index("row")[columns].reindex(range(n))
    out = pd.DataFrame(
        {c: _nullable(answers[c], scored.predictions[c]) for c in columns}, index=range(n)
    )
    error = pd.Series([None] * n, dtype=object)
    for row_error in scored.errors:
        error.iat[row_error.row] = row_error.reason
    out[ERROR_FIELD] = error
    return out


def _nullable(column: pd.Series, original: pd.Series) -> pd.Series:
    """Integer labels stay integers where rows are missing (reindexing made them floats)."""
    if original.dtype.kind in "iu":
        return column.astype("Int64")
    if original.dtype.kind == "b":
        return column.astype("boolean")
    return column
