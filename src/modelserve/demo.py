"""Train the demo models from datasets scikit-learn ships, into a model repository.

Nothing is downloaded: iris, breast cancer and digits come with scikit-learn itself. The
digits image models (:mod:`modelserve.demo_digits`) need the ``torch`` extra.
"""

from __future__ import annotations

import importlib.util
import logging
import re
from pathlib import Path

import joblib
import numpy as np

from .manifest import MANIFEST_NAME
from .manifest import FeatureSpec
from .manifest import Manifest
from .manifest import dump_manifest
from .repository import sha256_file

logger = logging.getLogger(__name__)

#: Every demo model, in the order `modelserve demo` trains them.
DEMO_MODELS = ("iris", "breast-cancer", "digits", "digits-onnx")


def _snake(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")


def _write(model_dir: Path, manifest: Manifest, files: dict[str, object]) -> None:
    version_dir = model_dir / "1"
    version_dir.mkdir(parents=True, exist_ok=True)
    pins = {}
    for filename, obj in files.items():
        joblib.dump(obj, version_dir / filename)
        pins[f"1/{filename}"] = sha256_file(version_dir / filename)
    manifest = manifest.model_copy(update={"sha256": pins})
    (model_dir / MANIFEST_NAME).write_text(dump_manifest(manifest), encoding="utf-8")


def train_iris(models_dir: Path) -> Path:
    """Logistic regression with a separate StandardScaler, as in the tutorial."""
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    data = load_iris()
    x, y = np.asarray(data.data, dtype=np.float64), np.asarray(data.target)
    scaler = StandardScaler().fit(x)
    model = LogisticRegression(max_iter=1000).fit(scaler.transform(x), y)
    names = [_snake(n.replace("(cm)", "")) for n in data.feature_names]
    manifest = Manifest(
        runtime="auto",
        artifact="model.joblib",
        preprocessor="scaler.joblib",
        task="classification",
        description="Iris species from flower measurements in cm (logistic regression + scaler).",
        inputs=[FeatureSpec(name=n, minimum=0.0, maximum=100.0) for n in names],
        class_names=[str(n) for n in data.target_names],
    )
    target = models_dir / "iris"
    _write(target, manifest, {"model.joblib": model, "scaler.joblib": scaler})
    return target


def train_breast_cancer(models_dir: Path) -> Path:
    """A 100-tree random forest behind a StandardScaler, in one Pipeline."""
    from sklearn.datasets import load_breast_cancer
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    data = load_breast_cancer()
    x, y = np.asarray(data.data, dtype=np.float64), np.asarray(data.target)
    model = make_pipeline(
        StandardScaler(), RandomForestClassifier(n_estimators=100, random_state=0)
    ).fit(x, y)
    manifest = Manifest(
        runtime="auto",
        artifact="model.joblib",
        task="classification",
        description="Breast tumour malignant/benign from 30 cell-nucleus measurements.",
        inputs=[FeatureSpec(name=_snake(n), minimum=0.0) for n in data.feature_names],
        class_names=[str(n) for n in data.target_names],
    )
    target = models_dir / "breast-cancer"
    _write(target, manifest, {"model.joblib": model})
    return target


def train_demo_models(models_dir: Path) -> list[Path]:
    """Train every demo model into ``models_dir`` (replacing earlier demo copies)."""
    models_dir.mkdir(parents=True, exist_ok=True)
    trained = [train_iris(models_dir), train_breast_cancer(models_dir)]
    if importlib.util.find_spec("torch") is None or importlib.util.find_spec("PIL") is None:
        logger.warning(
            "torch or Pillow is not installed: skipping the digits image models "
            "(pip install 'modelserve[torch,onnx,images]')"
        )
    else:
        from .demo_digits import train_digits

        trained += train_digits(models_dir)
    return trained
