"""Profile where one request's time goes, in-process (no HTTP server, no load generator).

Calls the served app's WSGI entry point directly, 20,000 times with one breast-cancer row and
30 times with 10,000 rows, under pyinstrument, and prints both call trees. Uses the models
`python -m benchmarks.run` trained into benchmarks/.cache/models.

Usage: python -m benchmarks.profile_hot_path
"""

from __future__ import annotations

import io
import sys
from pathlib import Path
from typing import Any

import numpy as np
import orjson

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / "benchmarks" / ".cache"


def _environ(path: str, body: bytes) -> dict[str, Any]:
    return {
        "REQUEST_METHOD": "POST",
        "PATH_INFO": path,
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "80",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "HTTP_HOST": "127.0.0.1",
        "wsgi.url_scheme": "http",
        "CONTENT_TYPE": "application/json",
        "CONTENT_LENGTH": str(len(body)),
        "wsgi.input": io.BytesIO(body),
    }


def _start_response(*args: Any) -> None:
    pass


def main() -> None:
    from pyinstrument import Profiler
    from sklearn.datasets import load_breast_cancer

    from modelserve.app import create_app
    from modelserve.settings import ServerSettings

    models = CACHE / "models"
    if not (models / "breast-cancer").is_dir():
        sys.exit("run `python -m benchmarks.run` once first: it trains the models used here")
    names = [f["name"] for f in _inputs(models)]
    row = orjson.dumps(dict(zip(names, load_breast_cancer().data[7].tolist(), strict=True)))
    rows = np.tile(load_breast_cancer().data, (18, 1))[:10_000]
    batch = orjson.dumps({"instances": rows.tolist()})
    app = create_app(
        ServerSettings(
            profile="testing",
            model_path=models,
            default_model="breast-cancer",
            log_level="ERROR",
        )
    ).wsgi_app
    for label, path, body, calls in (
        ("one row, /predict", "/predict", row, 20_000),
        ("10,000 rows, /predict_batch", "/predict_batch", batch, 30),
    ):
        for _ in range(3):
            b"".join(app(_environ(path, body), _start_response))
        profiler = Profiler(interval=0.0002)
        profiler.start()
        for _ in range(calls):
            b"".join(app(_environ(path, body), _start_response))
        profiler.stop()
        print(f"===== {label}: {calls} calls")
        print(profiler.output_text(unicode=False, color=False))


def _inputs(models: Path) -> list[dict[str, Any]]:
    import yaml

    data: list[dict[str, Any]] = yaml.safe_load(
        (models / "breast-cancer" / "model.yaml").read_text()
    )["inputs"]
    return data


if __name__ == "__main__":
    main()
