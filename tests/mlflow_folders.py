"""Write MLflow model folders as MLflow 2.x writes them, without MLflow installed.

Checked against MLflow's own source (mlflow/mlflow on GitHub, 2.x branch):

- ``mlflow/models/model.py``: ``Model.save`` dumps ``to_dict()`` with ``yaml.safe_dump`` (keys
  sorted): ``artifact_path`` and ``run_id`` (``log_model`` only), ``flavors``,
  ``mlflow_version``, ``model_size_bytes``, ``model_uuid``, ``saved_input_example_info``,
  ``signature``, ``utc_time_created``.
- ``mlflow/pyfunc/__init__.py`` ``add_to_model``: the ``python_function`` flavor holds
  ``loader_module``, ``python_version``, ``code``, ``data``, ``env: {conda: conda.yaml,
  virtualenv: python_env.yaml}`` plus the caller's keys (``model_path``, ``predict_fn`` for
  sklearn).
- ``mlflow/sklearn/__init__.py``: ``model.pkl`` written with pickle or cloudpickle (the
  default); flavor keys ``pickled_model``, ``sklearn_version``, ``serialization_format``,
  ``code``.
- ``mlflow/xgboost/__init__.py``: ``xgb_model.save_model("model.<model_format>")``,
  ``model_format="xgb"`` by default; flavor keys ``xgb_version``, ``data``, ``model_class``,
  ``model_format``, ``code``. XGBoost >= 2 writes UBJSON for the unknown ``.xgb`` extension
  (with a warning), so this writes ``.ubj`` and renames it: the same bytes.
- ``mlflow/lightgbm/__init__.py``: ``model.lgb`` from ``Booster.save_model`` for a Booster,
  else ``model.pkl`` written with cloudpickle; flavor keys ``lgb_version``, ``data``,
  ``model_class``, ``code``.
- ``mlflow/types/schema.py``: ``ColSpec.to_dict`` is ``{"type", "name", "required"}``,
  ``TensorSpec`` is ``{"type": "tensor", "tensor-spec": {"dtype", "shape"}}``; the signature
  stores ``inputs``/``outputs`` as JSON strings and ``params: null``.
- ``mlflow/models/utils.py`` ``_Example``: a DataFrame example is saved as
  ``input_example.json`` in split orient without the index, and as
  ``serving_input_payload.json`` (``{"dataframe_split": ...}``); ``saved_input_example_info``
  is ``{artifact_path, serving_input_path, type: dataframe, pandas_orient: split}``.
"""

from __future__ import annotations

import json
import pickle
import platform
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import yaml

#: pandas dtype kind -> MLflow column type (``mlflow.types.utils._infer_pandas_column``).
_DTYPES = {"f8": "double", "f4": "float", "i8": "long", "i4": "integer", "b1": "boolean"}


def column_specs(frame: Any) -> list[dict[str, Any]]:
    """``Schema.to_dict()`` of a DataFrame, as ``infer_signature`` builds it."""
    from pandas.api.types import is_bool_dtype
    from pandas.api.types import is_string_dtype

    out = []
    for name, dtype in frame.dtypes.items():
        if is_bool_dtype(dtype):
            kind = "boolean"
        elif is_string_dtype(dtype):
            kind = "string"
        else:
            kind = _DTYPES[np.dtype(dtype).str[1:]]
        out.append({"type": kind, "name": str(name), "required": True})
    return out


def tensor_spec(values: np.ndarray) -> list[dict[str, Any]]:
    """``Schema.to_dict()`` of a numpy array: one tensor with a variable first dimension."""
    shape = [-1, *values.shape[1:]]
    return [{"type": "tensor", "tensor-spec": {"dtype": values.dtype.name, "shape": shape}}]


def output_specs(predictions: np.ndarray) -> list[dict[str, Any]]:
    """Outputs inferred from a Series of predictions (no name)."""
    kind = "string" if predictions.dtype.kind in "OU" else _DTYPES[predictions.dtype.str[1:]]
    return [{"type": kind, "required": True}]


def save_model(
    path: Path,
    model: Any,
    flavor: str = "sklearn",
    *,
    serialization_format: str = "cloudpickle",
    inputs: list[dict[str, Any]] | None = None,
    outputs: list[dict[str, Any]] | None = None,
    example: Any = None,
    run_id: str | None = "0b5c6d2e4f7a4b1c9d8e7f6a5b4c3d2e",
) -> Path:
    """Write ``path`` as ``mlflow.<flavor>.log_model(model, "model", ...)`` does.

    :param example: a DataFrame input example (its first rows are saved).
    """
    import sklearn

    path.mkdir(parents=True)
    flavors: dict[str, Any] = {}
    pyfunc: dict[str, Any] = {
        "env": {"conda": "conda.yaml", "virtualenv": "python_env.yaml"},
        "python_version": platform.python_version(),
    }
    requirements = [f"mlflow=={_MLFLOW_VERSION}"]
    if flavor == "sklearn":
        _dump(model, path / "model.pkl", serialization_format)
        flavors["sklearn"] = {
            "code": None,
            "pickled_model": "model.pkl",
            "serialization_format": serialization_format,
            "sklearn_version": sklearn.__version__,
        }
        pyfunc.update(loader_module="mlflow.sklearn", model_path="model.pkl", predict_fn="predict")
        requirements.append(f"scikit-learn=={sklearn.__version__}")
    elif flavor == "xgboost":
        import xgboost

        model.save_model(path / "model.ubj")
        (path / "model.ubj").rename(path / "model.xgb")
        flavors["xgboost"] = {
            "code": None,
            "data": "model.xgb",
            "model_class": f"{type(model).__module__}.{type(model).__qualname__}",
            "model_format": "xgb",
            "xgb_version": xgboost.__version__,
        }
        pyfunc.update(loader_module="mlflow.xgboost", data="model.xgb")
        requirements.append(f"xgboost=={xgboost.__version__}")
    elif flavor == "lightgbm":
        import lightgbm

        if isinstance(model, lightgbm.Booster):
            data = "model.lgb"
            model.save_model(path / data)
        else:
            data = "model.pkl"
            _dump(model, path / data, "cloudpickle")
        flavors["lightgbm"] = {
            "code": None,
            "data": data,
            "lgb_version": lightgbm.__version__,
            "model_class": f"{type(model).__module__}.{type(model).__qualname__}",
        }
        pyfunc.update(loader_module="mlflow.lightgbm", data=data)
        requirements.append(f"lightgbm=={lightgbm.__version__}")
    elif flavor == "pyfunc":
        # mlflow.pyfunc.log_model(python_model=MyModel()): the class is cloudpickled.
        _dump(model, path / "python_model.pkl", "cloudpickle")
        pyfunc.update(
            loader_module="mlflow.pyfunc.model",
            python_model="python_model.pkl",
            cloudpickle_version=_cloudpickle_version(),
            code=None,
            streamable=False,
        )
    else:
        raise ValueError(flavor)
    flavors["python_function"] = pyfunc
    mlmodel: dict[str, Any] = {
        "flavors": flavors,
        "mlflow_version": _MLFLOW_VERSION,
        "model_uuid": uuid.uuid4().hex,
        "utc_time_created": "2024-10-01 12:00:00.000000",
    }
    if run_id is not None:
        mlmodel.update(artifact_path="model", run_id=run_id)
    if inputs is not None:
        mlmodel["signature"] = {
            "inputs": json.dumps(inputs),
            "outputs": json.dumps(outputs) if outputs is not None else None,
            "params": None,
        }
    if example is not None:
        split = example.head(5).to_dict(orient="split")
        del split["index"]
        (path / "input_example.json").write_text(json.dumps(split, default=_jsonable))
        serving = json.dumps({"dataframe_split": split}, default=_jsonable, indent=2)
        (path / "serving_input_payload.json").write_text(serving)
        mlmodel["saved_input_example_info"] = {
            "artifact_path": "input_example.json",
            "pandas_orient": "split",
            "serving_input_path": "serving_input_payload.json",
            "type": "dataframe",
        }
    conda = {
        "channels": ["conda-forge"],
        "dependencies": [f"python={platform.python_version()}", "pip", {"pip": requirements}],
        "name": "mlflow-env",
    }
    (path / "conda.yaml").write_text(yaml.safe_dump(conda, default_flow_style=False))
    python_env = {"python": platform.python_version(), "build_dependencies": ["pip"]}
    python_env["dependencies"] = ["-r requirements.txt"]
    (path / "python_env.yaml").write_text(yaml.safe_dump(python_env, sort_keys=False))
    (path / "requirements.txt").write_text("\n".join(requirements))
    mlmodel["model_size_bytes"] = sum(p.stat().st_size for p in path.iterdir())
    (path / "MLmodel").write_text(yaml.safe_dump(mlmodel, default_flow_style=False))
    return path


_MLFLOW_VERSION = "2.17.0"


def _dump(model: Any, path: Path, serialization_format: str) -> None:
    with path.open("wb") as fh:
        if serialization_format == "cloudpickle":
            import cloudpickle

            cloudpickle.dump(model, fh)
        else:
            pickle.dump(model, fh, protocol=pickle.DEFAULT_PROTOCOL)


def _cloudpickle_version() -> str:
    import cloudpickle

    return str(cloudpickle.__version__)


def _jsonable(value: Any) -> Any:
    # NumpyEncoder: numpy scalars become Python numbers.
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(type(value).__name__)
