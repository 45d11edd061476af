"""Drift: a model version's reference profile, and the population stability index of the
traffic the prediction log kept against it.

A reference profile (``reference.json``, next to the version's artifact) holds, per feature,
a histogram of the reference data: numbers in bins whose edges are the reference's deciles
(plus an open bin below the first edge and one above the last), categories (strings,
booleans, enums) with their counts plus one bin for values never seen. The model's
predictions on the reference data are profiled the same way (the predicted-class mix of a
classifier, the distribution of a regressor's output). The report bins the logged inputs
and predictions of a time window with the same edges and compares the shares per bin.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterable
from collections.abc import Mapping
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING
from typing import Any

import numpy as np

from .errors import ConfigError
from .errors import ReferenceNotFound
from .types import PREDICT_OUTPUT
from .types import Feature
from .types import Signature

if TYPE_CHECKING:  # pragma: no cover
    from .predlog import LoggedPrediction
    from .predlog import PredictionStore
    from .repository import LoadedVersion

#: The reference profile's file name, next to the version's artifact.
REFERENCE_NAME = "reference.json"
REFERENCE_FORMAT = "modelserve.reference/1"
#: Bins of a numeric feature: edges at the reference's deciles.
REFERENCE_BINS = 10
#: The share an empty bin counts as, so that the logarithm stays finite (a bin empty on one
#: side and not the other then adds about ``share * 9.2`` to the index).
PSI_EPSILON = 1e-4
#: Most logged records one report reads (the newest); ``truncated`` says when it hit this.
MAX_RECORDS = 100_000
#: The name of the predictions' profile.
PREDICTION = "prediction"


def psi(reference: Sequence[float], current: Sequence[float], eps: float = PSI_EPSILON) -> float:
    """Population stability index of two histograms over the same bins (counts or shares).

    ``sum((c - r) * ln(c / r))`` over the bins, with ``r``, ``c`` each side's share of its
    total and empty bins counted as ``eps``.

    :raises ValueError: when the bins differ in number or a side is empty.
    """
    r = np.asarray(reference, dtype=np.float64)
    c = np.asarray(current, dtype=np.float64)
    if r.shape != c.shape or r.ndim != 1:
        raise ValueError(f"histograms differ in shape: {r.shape} and {c.shape}")
    if r.sum() <= 0 or c.sum() <= 0:
        raise ValueError("a histogram without any count has no shares to compare")
    p = np.maximum(r / r.sum(), eps)
    q = np.maximum(c / c.sum(), eps)
    return float(np.sum((q - p) * np.log(q / p)))


# -- profiles -------------------------------------------------------------------------------


def is_numeric(feature: Feature) -> bool:
    """Numbers without an enum are binned; everything else is counted per category."""
    return feature.type in ("number", "integer") and feature.enum is None


def numeric_profile(name: str, values: Sequence[Any], bins: int = REFERENCE_BINS) -> dict[str, Any]:
    """Bin edges at the quantiles of ``values`` (deciles for 10 bins), and the counts of
    ``values`` in the bins."""
    x = _numbers(values)[0]
    if x.size == 0:
        raise ValueError(f"feature {name!r} has no numeric value in the reference data")
    # "higher": every edge is a value of the data, so a column of few distinct values gets
    # one bin per value instead of empty bins between interpolated edges.
    inner = np.quantile(x, np.linspace(0.0, 1.0, bins + 1)[1:-1], method="higher")
    edges = [float(e) for e in np.unique(inner)]
    profile: dict[str, Any] = {
        "name": name,
        "kind": "numeric",
        "edges": edges,
        "min": float(x.min()),
        "max": float(x.max()),
    }
    profile["counts"] = bin_counts(profile, values)[0]
    return profile


def categorical_profile(name: str, values: Sequence[Any]) -> dict[str, Any]:
    """Each distinct value with its count, most frequent first; one more bin, for values
    the reference never had, counts 0."""
    counts: dict[tuple[str, Any], int] = {}
    first: dict[tuple[str, Any], Any] = {}
    for value in values:
        key = _category_key(value)
        counts[key] = counts.get(key, 0) + 1
        first.setdefault(key, value)
    ordered = sorted(counts, key=lambda k: (-counts[k], str(k)))
    return {
        "name": name,
        "kind": "categorical",
        "categories": [first[k] for k in ordered],
        "counts": [counts[k] for k in ordered] + [0],
    }


def bin_counts(profile: Mapping[str, Any], values: Sequence[Any]) -> tuple[list[int], int]:
    """Count ``values`` in the profile's bins; also return how many did not fit any bin
    (not a number for a numeric profile: a missing value)."""
    if profile["kind"] == "numeric":
        x, missing = _numbers(values)
        edges = np.asarray(profile["edges"], dtype=np.float64)
        # Bin i holds edges[i-1] <= v < edges[i]; the first and last bins are open-ended.
        index = np.searchsorted(edges, x, side="right")
        counts = np.bincount(index, minlength=len(edges) + 1)
        return [int(c) for c in counts], missing
    slots = {_category_key(c): i for i, c in enumerate(profile["categories"])}
    other = len(slots)
    found = [0] * (other + 1)
    for value in values:
        found[slots.get(_category_key(value), other)] += 1
    return found, 0


def _numbers(values: Sequence[Any]) -> tuple[np.ndarray, int]:
    good = [
        float(v)
        for v in values
        if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
    ]
    return np.asarray(good, dtype=np.float64), len(values) - len(good)


def _category_key(value: Any) -> tuple[str, Any]:
    # JSON round trips and numpy arrays turn 1 into 1.0 and back; True == 1 in a dict:
    # key by kind so that booleans, numbers and strings never share a bin.
    if isinstance(value, bool):
        return ("bool", value)
    if isinstance(value, int | float):
        return ("number", float(value))
    if isinstance(value, str):
        return ("string", value)
    return ("other", json.dumps(value, sort_keys=True, default=str))


def build_reference(
    signature: Signature,
    table: np.ndarray,
    predictions: Sequence[Any] | None,
    *,
    model: str,
    version: int,
    artifacts: Mapping[str, str],
    source: str | None = None,
    source_sha256: str | None = None,
    bins: int = REFERENCE_BINS,
) -> dict[str, Any]:
    """The reference profile of a tabular model version from validated reference rows.

    :param table: the reference rows as the model takes them, ``[rows, features]``.
    :param predictions: the version's predictions on those rows (``None``: not profiled).
    :param artifacts: the version's artifact hashes, so a report can tell when the profile
        was built for other files than those now served.
    """
    features = []
    for j, feature in enumerate(signature.features):
        column = table[:, j].tolist()
        features.append(
            numeric_profile(feature.name, column, bins)
            if is_numeric(feature)
            else categorical_profile(feature.name, column)
        )
    prediction = None
    if predictions is not None:
        values = list(predictions)
        numeric = signature.task == "regression"
        prediction = (
            numeric_profile(PREDICTION, values, bins)
            if numeric
            else categorical_profile(PREDICTION, values)
        )
    return {
        "format": REFERENCE_FORMAT,
        "model": model,
        "version": version,
        "rows": int(table.shape[0]),
        "created_at": time.time(),
        "source": source,
        "source_sha256": source_sha256,
        "artifacts": dict(artifacts),
        "features": features,
        "predictions": prediction,
    }


def reference_path(mv: LoadedVersion) -> Path:
    """Where the version's reference profile lives: next to its artifact."""
    return mv.artifacts.artifact.parent / REFERENCE_NAME


def load_reference(mv: LoadedVersion) -> dict[str, Any]:
    """Read the version's reference profile.

    :raises ReferenceNotFound: there is none.
    :raises ConfigError: the file is not a reference profile.
    """
    path = reference_path(mv)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ReferenceNotFound(mv.name, mv.version) from None
    except (OSError, ValueError) as exc:
        raise ConfigError(
            f"The reference profile of model {mv.name!r} version {mv.version} cannot be read: "
            f"{type(exc).__name__}; rebuild it with `modelserve validate --reference`"
        ) from None
    if not isinstance(data, dict) or data.get("format") != REFERENCE_FORMAT:
        raise ConfigError(
            f"The reference profile of model {mv.name!r} version {mv.version} is not in the "
            f"{REFERENCE_FORMAT} format; rebuild it with `modelserve validate --reference`"
        )
    return data


# -- the report -----------------------------------------------------------------------------


def compare(
    reference: Mapping[str, Any], records: Iterable[LoggedPrediction], threshold: float
) -> dict[str, Any]:
    """Bin the records' inputs and predictions like the reference and score each feature.

    A feature (or the predictions) is flagged when its index exceeds ``threshold``; with no
    logged rows, nothing is scored (``psi`` is ``None``).
    """
    profiles: list[dict[str, Any]] = list(reference["features"])
    columns: dict[str, list[Any]] = {p["name"]: [] for p in profiles}
    predicted: list[Any] = []
    rows = 0
    for record in records:
        for row in record.inputs:
            for name, values in columns.items():
                values.append(row.get(name))
        rows += len(record.inputs)
        predicted.extend(record.outputs.get(PREDICT_OUTPUT, ()))
    features = [_scored(p, columns[p["name"]], threshold) for p in profiles]
    ref_predictions = reference.get("predictions")
    predictions = (
        _scored(ref_predictions, predicted, threshold) if ref_predictions is not None else None
    )
    flagged = [f["name"] for f in features if f["drifted"]]
    return {
        "rows": rows,
        "threshold": threshold,
        "drifted": flagged,
        "predictions_drifted": bool(predictions and predictions["drifted"]),
        "features": features,
        "predictions": predictions,
    }


def _scored(profile: Mapping[str, Any], values: Sequence[Any], threshold: float) -> dict[str, Any]:
    current, missing = bin_counts(profile, values)
    score = psi(profile["counts"], current) if sum(current) else None
    out: dict[str, Any] = {"name": profile["name"], "kind": profile["kind"]}
    if profile["kind"] == "numeric":
        out.update(edges=profile["edges"], min=profile.get("min"), max=profile.get("max"))
    else:
        out["categories"] = profile["categories"]
    out.update(
        reference=list(profile["counts"]),
        current=current,
        missing=missing,
        psi=None if score is None else round(score, 6),
        drifted=score is not None and score > threshold,
    )
    return out


def drift_report(
    mv: LoadedVersion,
    store: PredictionStore,
    window: float,
    threshold: float,
    now: float | None = None,
) -> dict[str, Any]:
    """Compare the version's logged traffic of the last ``window`` seconds with its
    reference profile.

    :raises ReferenceNotFound: the version has no reference profile.
    """
    reference = load_reference(mv)
    until = time.time() if now is None else now
    since = until - window
    records = store.read(mv.name, mv.version, since, until, limit=MAX_RECORDS)
    body: dict[str, Any] = {
        "model": mv.name,
        "version": str(mv.version),
        "window_seconds": window,
        "since": since,
        "until": until,
        "records": len(records),
        "truncated": len(records) >= MAX_RECORDS,
    }
    body.update(compare(reference, records, threshold))
    pinned = reference.get("artifacts")
    body["reference"] = {
        "rows": reference.get("rows"),
        "created_at": reference.get("created_at"),
        "source": reference.get("source"),
        "source_sha256": reference.get("source_sha256"),
        # False when the profile was built against other artifact files than those served.
        "matches_model": pinned == mv.hashes if pinned else None,
    }
    return body
