"""Microseconds per forest ``/predict`` through the WSGI app, in this process, no HTTP.

Points at where a slower checkout spends its time without a server's noise: one WSGI call per
request with a prepared environ, best of 7 x 3,000 after 2,000 warm-up calls. Pin it to a
core to compare checkouts (``taskset -c 0``):

    taskset -c 0 python benchmarks/request_cost.py /path/to/checkout
"""

from __future__ import annotations

import io
import json
import logging
import sys
import tempfile
import time
from pathlib import Path
from typing import Any


def main() -> None:
    tree = Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).resolve().parents[1])
    sys.path.insert(0, str(tree / "src"))
    logging.disable(logging.WARNING)  # request lines are INFO: not part of what is timed
    import yaml
    from sklearn.datasets import load_breast_cancer

    from modelserve.app import create_app
    from modelserve.demo import train_breast_cancer
    from modelserve.settings import ServerSettings

    root = Path(tempfile.mkdtemp()) / "models"
    train_breast_cancer(root)
    app = create_app(ServerSettings(profile="testing", model_path=root, log_level="WARNING"))
    manifest = yaml.safe_load((root / "breast-cancer" / "model.yaml").read_text())
    names = [f["name"] for f in manifest["inputs"]]
    body = json.dumps(dict(zip(names, load_breast_cancer().data[7].tolist(), strict=True)))
    raw = body.encode()

    def start_response(status: str, headers: list[Any], exc_info: Any = None) -> Any:
        return lambda data: None

    def once() -> None:
        environ = {
            "REQUEST_METHOD": "POST",
            "PATH_INFO": "/predict",
            "SERVER_NAME": "bench",
            "SERVER_PORT": "80",
            "SERVER_PROTOCOL": "HTTP/1.1",
            "REMOTE_ADDR": "127.0.0.1",
            "CONTENT_TYPE": "application/json",
            "CONTENT_LENGTH": str(len(raw)),
            "wsgi.url_scheme": "http",
            "wsgi.input": io.BytesIO(raw),
            "wsgi.errors": sys.stderr,
        }
        out = app(environ, start_response)
        b"".join(out)
        getattr(out, "close", lambda: None)()

    for _ in range(2000):
        once()
    best = float("inf")
    for _ in range(7):
        started = time.perf_counter()
        for _ in range(3000):
            once()
        best = min(best, (time.perf_counter() - started) / 3000)
    print(f"{tree}: {best * 1e6:.1f} us per /predict (WSGI call, in-process)")


if __name__ == "__main__":
    main()
