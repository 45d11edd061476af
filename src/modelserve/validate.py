"""`modelserve validate`: load, verify, sample-predict, and optionally write manifests back
and build a version's drift reference profile from reference data."""

from __future__ import annotations

import csv
import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from .drift import build_reference
from .drift import reference_path
from .errors import InvalidInput
from .errors import ModelServeError
from .manifest import MANIFEST_NAME
from .manifest import FeatureSpec
from .manifest import Manifest
from .manifest import dump_manifest
from .manifest import parse_manifest
from .manifest import read_manifest_data
from .protocols.images import ImageProtocol
from .protocols.seed import SeedProtocol
from .repository import FailedVersion
from .repository import LoadedVersion
from .repository import ModelEntry
from .service import InferenceService
from .settings import ServerSettings
from .types import PREDICT_OUTPUT
from .types import TABULAR_INPUT
from .types import Feature


def validate_repository(
    settings: ServerSettings,
    write_manifest: bool,
    echo: Callable[[str], None],
    reference: Path | None = None,
    model: str | None = None,
) -> bool:
    """Check every model version; return True when all load and answer a sample request.

    :param reference: a CSV of reference data (a header row naming the features): profile
        the default version of ``model`` on it and write its ``reference.json``.
    :param model: which model the reference data is for, when the repository holds several.
    """
    service = InferenceService(settings)
    service.load()
    seed, images = SeedProtocol(service), ImageProtocol(service)
    ok = True
    for entry in service.repository.entries():
        for mv in entry.sorted_versions():
            if isinstance(mv, FailedVersion):
                ok = False
                echo(f"FAIL {mv.name} v{mv.version}: {mv.error}")
                continue
            image = mv.signature.kind == "image"
            try:
                if image:
                    answer = images.classify(mv.name, mv.version, [_sample_image()])
                else:
                    sample = orjson.dumps(mv.signature.example())
                    answer = seed.predict_one(mv.name, mv.version, sample)
            except ModelServeError as exc:
                ok = False
                echo(f"FAIL {mv.name} v{mv.version}: sample prediction failed: {exc.message}")
                continue
            if image:
                n_classes = len(mv.signature.classes or ())
                echo(
                    f"ok   {mv.name} v{mv.version}: image model, {n_classes} classes, "
                    f"sample prediction {answer['predicted_class']!r}"
                )
                continue
            echo(
                f"ok   {mv.name} v{mv.version}: {len(mv.signature.features)} features, "
                f"{mv.signature.task}, sample prediction {answer['prediction']!r}"
            )
        if write_manifest and entry.default is not None:
            target = write_entry_manifest(entry, entry.default, settings)
            echo(f"wrote {target}")
    if reference is not None:
        target = write_reference(service, model, reference)
        echo(f"wrote {target}")
    return ok


def write_reference(service: InferenceService, name: str | None, data: Path) -> Path:
    """Profile the default version of model ``name`` on the CSV ``data`` (the rows validated
    as requests are, then scored for the predictions' profile); write ``reference.json``.

    :raises ModelServeError: the model is not tabular, or the data does not fit it.
    """
    name = name or service.default_name()
    if name is None:
        raise InvalidInput(
            f"The repository holds several models ({', '.join(service.names())}): name the one "
            "the reference data is for with --model"
        )
    sv = service.resolve(name)
    if sv.seed is None:
        raise InvalidInput(
            f"Model {sv.name!r} is not a tabular model: drift profiles need features"
        )
    features = sv.signature.features
    instances = _read_reference_csv(data, features)
    limit = sv.seed.max_rows
    tables, predictions = [], []
    for start in range(0, len(instances), limit):
        part = instances[start : start + limit]
        try:
            x = sv.seed.decode_batch({"instances": part})
        except InvalidInput as exc:
            # instances[i] in the codec's details is data row start + i (after the header).
            raise InvalidInput(
                f"{data.name} (rows {start + 1}-{start + len(part)}): {exc.message}", exc.details
            ) from None
        tables.append(x)
        predictions.extend(sv.infer({TABULAR_INPUT: x})[PREDICT_OUTPUT].tolist())
    profile = build_reference(
        sv.signature,
        np.concatenate(tables),
        predictions,
        model=sv.name,
        version=sv.version,
        artifacts=sv.model.hashes,
        source=data.name,
        source_sha256=hashlib.sha256(data.read_bytes()).hexdigest(),
    )
    target = reference_path(sv.model)
    target.write_bytes(orjson.dumps(profile, option=orjson.OPT_INDENT_2))
    return target


def _read_reference_csv(path: Path, features: tuple[Feature, ...]) -> list[dict[str, Any]]:
    """The CSV's rows as request instances: one value per feature, by the feature's type;
    other columns (a label, an id) are ignored."""
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        header = reader.fieldnames or []
        missing = [f.name for f in features if f.name not in header]
        if missing:
            raise InvalidInput(
                f"{path.name} has no column(s) {', '.join(missing)}; its header must name "
                "every feature"
            )
        rows = [
            {f.name: _cell(row[f.name], f, path, line) for f in features}
            for line, row in enumerate(reader, start=2)
        ]
    if not rows:
        raise InvalidInput(f"{path.name} has no data rows")
    return rows


def _cell(text: str | None, feature: Feature, path: Path, line: int) -> Any:
    where = f"{path.name} line {line}, column {feature.name}"
    if text is None or text == "":
        raise InvalidInput(f"{where}: the value is missing")
    if feature.type == "string":
        return text
    if feature.type == "boolean":
        lowered = text.strip().lower()
        if lowered in ("true", "1", "yes"):
            return True
        if lowered in ("false", "0", "no"):
            return False
        raise InvalidInput(f"{where}: {text!r} is not a boolean")
    try:
        value = float(text)
    except ValueError:
        raise InvalidInput(f"{where}: {text!r} is not a number") from None
    if feature.type == "integer":
        if not value.is_integer():
            raise InvalidInput(f"{where}: {text!r} is not a whole number")
        return int(value)
    return value


def write_entry_manifest(entry: ModelEntry, mv: LoadedVersion, settings: ServerSettings) -> Path:
    """Write the inferred signature and every version's sha256 pins into ``model.yaml``.

    Fields already in the manifest are kept; inferred ones fill the gaps.
    """
    single_file = mv.path.is_file()
    model_dir = mv.path.parent if single_file else entry.path
    target = model_dir / MANIFEST_NAME
    existing = read_manifest_data(target) if target.is_file() and not single_file else {}
    current = parse_manifest(existing, target)
    sig = mv.signature
    pins = dict(current.sha256)
    for version in entry.versions.values():
        pins.update(version.hashes)
    update: dict[str, object] = {
        "runtime": current.runtime or mv.runtime.name,
        "task": current.task or sig.task,
        "inputs": current.inputs
        or ([FeatureSpec.model_validate(f.to_dict()) for f in sig.features] or None),
        "sha256": pins,
    }
    if single_file:
        update["artifact"] = mv.artifacts.artifact.name
        if mv.artifacts.preprocessor is not None:
            update["preprocessor"] = mv.artifacts.preprocessor.name
    manifest: Manifest = current.model_copy(update=update)
    target.write_text(dump_manifest(manifest), encoding="utf-8")
    return target


def _sample_image() -> bytes:
    """A small white PNG: any image model must answer it (the preprocessing resizes it)."""
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (32, 32), (255, 255, 255)).save(buf, "PNG")
    return buf.getvalue()
