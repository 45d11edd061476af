"""MLflow model folders: read ``MLmodel`` (and the input example) into a manifest, without MLflow.

A folder written by ``mlflow.<flavor>.save_model`` / ``log_model`` holds an ``MLmodel`` YAML
file naming the model file of each *flavor*, the signature (column names and types, as JSON
strings) and where the input example was saved. The model files themselves are the
libraries' own formats (a pickle, an XGBoost or LightGBM booster file, an ONNX graph), so the
existing runtimes serve them once the ``MLmodel`` facts are turned into a :class:`Manifest`.
Only files are read here; nothing is imported from the model.
"""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path
from typing import Any

import yaml

from .errors import ModelLoadError
from .manifest import Manifest
from .manifest import parse_manifest

MLMODEL_NAME = "MLmodel"

#: MLflow column types (``mlflow.types.DataType``) -> manifest feature types. ``binary``,
#: ``datetime`` and the nested ``array``/``object``/``map`` types have no tabular
#: counterpart here.
_COLUMN_TYPES = {
    "double": "number",
    "float": "number",
    "long": "integer",
    "integer": "integer",
    "string": "string",
    "boolean": "boolean",
}
#: The flavors served, in order of preference when a folder has several.
_FLAVORS = ("sklearn", "xgboost", "lightgbm", "onnx")
#: ``mlflow.sklearn`` serialisation formats; the first two are pickles joblib reads.
_SKLEARN_FORMATS = ("cloudpickle", "pickle", "skops")
#: Model files of the xgboost flavor the XGBoost runtime reads (``model_format``).
_XGBOOST_FORMATS = ("xgb", "json", "ubj")


def is_mlflow_model(folder: Path) -> bool:
    """True when ``folder`` holds an ``MLmodel`` file."""
    return (folder / MLMODEL_NAME).is_file()


def load_mlflow_manifest(folder: Path, declared: Manifest | None = None) -> Manifest:
    """The manifest of the MLflow model in ``folder``: artifact, runtime, inputs, examples.

    :param declared: a ``model.yaml`` manifest beside it; the fields it sets win (sha256 pins,
        batching, a corrected input list...).
    :raises ModelLoadError: for an unreadable ``MLmodel``, a flavor modelserve cannot serve
        (custom Python code), or a signature with types it cannot take.
    """
    path = folder / MLMODEL_NAME
    mlmodel = _read_yaml(path)
    flavors = mlmodel.get("flavors")
    if not isinstance(flavors, dict) or not flavors:
        raise ModelLoadError(f"{path} lists no flavors: it is not an MLflow model file")
    data = _flavor_manifest(path, flavors)
    inputs, task = _signature(path, mlmodel.get("signature"))
    if inputs is not None:
        _attach_example(folder, mlmodel.get("saved_input_example_info"), inputs)
        data["inputs"] = inputs
    if task is not None:
        data["task"] = task
    flavor = data.pop("_flavor")
    run = mlmodel.get("run_id")
    data["description"] = f"MLflow {flavor} model" + (f" (run {run})" if run else "")
    if declared is not None:
        data.update(declared.model_dump(mode="json", include=declared.model_fields_set))
    return parse_manifest(data, path)


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ModelLoadError(f"Cannot read {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise ModelLoadError(f"{path} must be a YAML mapping")
    return data


def _flavor_manifest(path: Path, flavors: dict[str, Any]) -> dict[str, Any]:
    """Artifact and runtime from the first flavor modelserve serves."""
    for name in _FLAVORS:
        conf = flavors.get(name)
        if isinstance(conf, dict):
            return {"_flavor": name, **_FLAVOR_READERS[name](path, conf)}
    raise ModelLoadError(_unsupported(path, flavors))


def _sklearn(path: Path, conf: dict[str, Any]) -> dict[str, Any]:
    artifact = _file(path, conf, "pickled_model")
    fmt = str(conf.get("serialization_format", "cloudpickle"))
    if fmt not in _SKLEARN_FORMATS:
        raise ModelLoadError(
            f"{path}: unknown sklearn serialization_format {fmt!r} "
            f"(modelserve reads {', '.join(_SKLEARN_FORMATS)})"
        )
    if fmt == "cloudpickle":
        _need_cloudpickle(path)
    if fmt == "skops" and not artifact.endswith(".skops"):
        # The sklearn runtime picks skops' safe loader by the file's extension.
        raise ModelLoadError(
            f"{path}: serialization_format is skops but the model file {artifact} does not "
            "end in .skops; rename it and its pickled_model entry"
        )
    out: dict[str, Any] = {"artifact": artifact, "runtime": "auto"}
    trusted = conf.get("skops_trusted_types")
    if fmt == "skops" and isinstance(trusted, list):
        out["trusted_types"] = [str(t) for t in trusted]
    return out


def _xgboost(path: Path, conf: dict[str, Any]) -> dict[str, Any]:
    artifact = _file(path, conf, "data")
    fmt = str(conf.get("model_format", "xgb"))
    if fmt not in _XGBOOST_FORMATS:
        raise ModelLoadError(
            f"{path}: xgboost model_format {fmt!r} is not supported "
            f"(modelserve reads {', '.join(_XGBOOST_FORMATS)}); log it with model_format='json'"
        )
    return {"artifact": artifact, "runtime": "xgboost"}


def _lightgbm(path: Path, conf: dict[str, Any]) -> dict[str, Any]:
    artifact = _file(path, conf, "data")
    if artifact.endswith(".pkl"):
        # mlflow.lightgbm cloudpickles the scikit-learn wrappers (LGBMClassifier...): a
        # scikit-learn artifact, served by runtime: auto like any pickled LGBM model.
        _need_cloudpickle(path)
        return {"artifact": artifact, "runtime": "auto"}
    return {"artifact": artifact, "runtime": "lightgbm"}


def _onnx(path: Path, conf: dict[str, Any]) -> dict[str, Any]:
    return {"artifact": _file(path, conf, "data"), "runtime": "onnx"}


_FLAVOR_READERS = {"sklearn": _sklearn, "xgboost": _xgboost, "lightgbm": _lightgbm, "onnx": _onnx}


def _file(path: Path, conf: dict[str, Any], key: str) -> str:
    value = conf.get(key)
    if not isinstance(value, str) or not value:
        raise ModelLoadError(f"{path}: the flavor names no model file under {key!r}")
    return value


def _need_cloudpickle(path: Path) -> None:
    # A cloudpickled object may refer to cloudpickle's own helpers; joblib reads it as a
    # pickle once the module can be imported.
    if importlib.util.find_spec("cloudpickle") is None:
        raise ModelLoadError(
            f"{path}: the model was saved with cloudpickle, which is not installed: "
            "pip install cloudpickle"
        )


def _unsupported(path: Path, flavors: dict[str, Any]) -> str:
    pyfunc = flavors.get("python_function")
    what = f"flavors {', '.join(sorted(flavors))}"
    if isinstance(pyfunc, dict):
        loader = pyfunc.get("loader_module")
        python_model = pyfunc.get("python_model")
        if python_model:
            what = (
                f"a custom python_function model (python_model {python_model}, loaded by {loader})"
            )
        elif loader and not str(loader).startswith("mlflow."):
            what = f"a custom python_function model (loader_module {loader})"
    return (
        f"{path} is {what}, which needs MLflow and its custom Python code to run; modelserve "
        "serves MLflow models of the sklearn, xgboost, lightgbm and onnx flavors: log the "
        "model with mlflow.sklearn, mlflow.xgboost or mlflow.lightgbm, or export it to ONNX "
        "and serve the .onnx file"
    )


def _signature(path: Path, signature: Any) -> tuple[list[dict[str, Any]] | None, str | None]:
    """Manifest inputs from a column-based signature (``None`` for tensors or none), and the
    task when the outputs make it certain."""
    if not isinstance(signature, dict):
        return None, None
    specs = _schema(path, signature.get("inputs"), "inputs")
    inputs: list[dict[str, Any]] | None = None
    if specs and not any(s.get("type") == "tensor" for s in specs):
        inputs = []
        for i, spec in enumerate(specs):
            name = str(spec.get("name", f"x{i}"))
            kind = _COLUMN_TYPES.get(str(spec.get("type")))
            if kind is None:
                raise ModelLoadError(
                    f"{path}: input {name!r} has the MLflow type {spec.get('type')!r}, which "
                    "modelserve cannot take (it takes double, float, long, integer, string and "
                    "boolean columns): convert the column before the model, or describe the "
                    "inputs in a model.yaml beside MLmodel"
                )
            inputs.append({"name": name, "type": kind})
    outputs = _schema(path, signature.get("outputs"), "outputs")
    task = None
    # A string or boolean output can only be a label. A number may be a regression value,
    # an integer label or a probability: the model itself decides then.
    if len(outputs) == 1 and outputs[0].get("type") in ("string", "boolean"):
        task = "classification"
    return inputs, task


def _schema(path: Path, text: Any, key: str) -> list[dict[str, Any]]:
    if text is None:
        return []
    try:
        specs = json.loads(text) if isinstance(text, str) else text
    except json.JSONDecodeError as exc:
        raise ModelLoadError(f"{path}: signature {key} is not valid JSON: {exc}") from exc
    if not isinstance(specs, list) or not all(isinstance(s, dict) for s in specs):
        raise ModelLoadError(f"{path}: signature {key} must be a list of column specs")
    return specs


def _attach_example(folder: Path, info: Any, inputs: list[dict[str, Any]]) -> None:
    """Give each input the first example row's value as its ``sample``.

    MLflow writes a DataFrame example in pandas' ``split`` orient without the index
    (``{"columns": [...], "data": [[...]]}``), ``values`` orient when the columns were
    unnamed, wrapped as ``{"inputs": ..., "params": ...}`` when params were given; records
    (``[{...}]``) are read too. A missing or unreadable example is not an error: it only
    loses the examples.
    """
    name = info.get("artifact_path") if isinstance(info, dict) else None
    if not isinstance(name, str):
        return
    try:
        example = json.loads((folder / name).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return
    row = _first_row(example, [str(f["name"]) for f in inputs])
    for feature in inputs:
        value = row.get(feature["name"])
        if value is None or (isinstance(value, float) and not math.isfinite(value)):
            continue
        if feature["type"] == "number" and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        feature["sample"] = value


def _first_row(example: Any, names: list[str]) -> dict[str, Any]:
    if isinstance(example, dict) and "inputs" in example and "data" not in example:
        example = example["inputs"]  # {"inputs": ..., "params": ...} or tf-serving
    if isinstance(example, dict) and isinstance(example.get("data"), list) and example["data"]:
        first = example["data"][0]
        columns = example.get("columns", names)
        if isinstance(first, list) and isinstance(columns, list) and len(first) == len(columns):
            return {str(c): v for c, v in zip(columns, first, strict=True)}
        return {}
    if isinstance(example, list) and example:
        first = example[0]
        if isinstance(first, dict):
            return {str(k): v for k, v in first.items()}
        if isinstance(first, list) and len(first) == len(names):
            return dict(zip(names, first, strict=True))
    if isinstance(example, dict) and all(isinstance(v, list) for v in example.values()):
        return {str(k): v[0] for k, v in example.items() if v}
    return {}
