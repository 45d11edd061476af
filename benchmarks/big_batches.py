"""Rows/s of 10,000-row requests in every body format, against the runtime called directly.

The breast-cancer demo forest (30 features, compiled to ONNX by ``runtime: auto``) answers
one 10,000-row request per call, in each format ``/predict_batch`` and V2 infer take:

- ``json rows``: ``{"instances": [[...], ...]}`` answered with one object per row;
- ``json columns``: the same body with ``"format": "columns"`` (one array per output);
- ``arrow`` / ``parquet`` / ``numpy``: binary bodies answered in the same format (``Accept``);
- ``v2 json`` / ``v2 binary``: one ``[10000, 30]`` FP64 tensor, JSON or binary tensor data.

Two settings, each against **the runtime limit** (the served version's runtime called on the
same float64 array, no HTTP, no codec):

- **in-process**: the app's WSGI entry called directly (parse, validate, model, encode; no
  socket);
- **server**: ``python -m modelserve serve`` (granian, defaults) pinned to core 0, this
  process (one keep-alive connection, one request at a time) pinned to core 1.

Each timing is the fastest of ``--repeat`` calls, formats interleaved, so background load
on a shared machine inflates no format more than another. Another engineer may be
load-testing, so take the lock::

    flock /tmp/modelserve-load.lock python -m benchmarks.big_batches [--repeat 15] [--no-server]
"""

from __future__ import annotations

import argparse
import http.client
import io
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from benchmarks.run import ROOT
from benchmarks.run import V2_INFER
from benchmarks.run import Server
from benchmarks.run import binary_bodies

ROWS = 10_000


@dataclass(frozen=True)
class Workload:
    """One request: where it goes, its body and headers."""

    name: str
    path: str
    body: bytes
    headers: dict[str, str]


def _workloads(x: np.ndarray, names: list[str]) -> list[Workload]:
    rows = x.tolist()
    binary = binary_bodies(x, names)
    tensor = {"name": "input", "shape": list(x.shape), "datatype": "FP64"}
    v2_json = orjson.dumps(
        {"inputs": [{**tensor, "data": x.reshape(-1)}]}, option=orjson.OPT_SERIALIZE_NUMPY
    )
    json_type = {"Content-Type": "application/json"}
    return [
        Workload("json rows", "/predict_batch", orjson.dumps({"instances": rows}), json_type),
        Workload(
            "json columns",
            "/predict_batch",
            orjson.dumps({"instances": rows, "format": "columns"}),
            json_type,
        ),
        *(
            Workload(name, "/predict_batch", *binary[name])
            for name in ("arrow", "parquet", "numpy")
        ),
        Workload("v2 json", V2_INFER, v2_json, json_type),
        Workload("v2 binary", V2_INFER, *binary["v2 binary"]),
    ]


def _wsgi_call(app: Any, w: Workload) -> Callable[[], int]:
    environ_base = {
        "REQUEST_METHOD": "POST",
        "PATH_INFO": w.path,
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "80",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "HTTP_HOST": "127.0.0.1",
        "wsgi.url_scheme": "http",
        "CONTENT_LENGTH": str(len(w.body)),
    }
    for key, value in w.headers.items():
        name = key.upper().replace("-", "_")
        environ_base[name if name == "CONTENT_TYPE" else f"HTTP_{name}"] = value
    status: list[str] = []

    def start_response(s: str, headers: Any, exc_info: Any = None) -> None:
        status.append(s)

    def call() -> int:
        status.clear()
        environ = {**environ_base, "wsgi.input": io.BytesIO(w.body)}
        b"".join(app(environ, start_response))
        return int(status[0].split()[0])

    return call


def _http_call(conn: http.client.HTTPConnection, w: Workload) -> Callable[[], int]:
    def call() -> int:
        conn.request("POST", w.path, body=w.body, headers=w.headers)
        answer = conn.getresponse()
        answer.read()
        return answer.status

    return call


def _fastest(calls: dict[str, Callable[[], int]], repeat: int) -> dict[str, float | None]:
    """The fastest call of each, rounds interleaved; ``None`` for a format refused (non-200)."""
    best: dict[str, float | None] = {}
    for name, call in calls.items():
        best[name] = float("inf") if call() == 200 else None  # warm-up and support check
    for _ in range(repeat):
        for name, call in calls.items():
            if best[name] is None:
                continue
            start = time.perf_counter()
            call()
            best[name] = min(best[name] or float("inf"), time.perf_counter() - start)
    return best


def _profile(call: Callable[[], int], calls: int = 20) -> None:
    from pyinstrument import Profiler

    call()
    profiler = Profiler(interval=0.0005)
    profiler.start()
    for _ in range(calls):
        call()
    profiler.stop()
    print(profiler.output_text(unicode=False, color=False))


def _report(title: str, best: dict[str, float | None], limit: float) -> None:
    print(f"\n{title}  (runtime limit {ROWS / limit:,.0f} rows/s, {limit * 1000:.1f} ms)")
    for name, seconds in best.items():
        if seconds is None:
            print(f"  {name:13} not supported")
            continue
        print(
            f"  {name:13} {ROWS / seconds:10,.0f} rows/s  {seconds * 1000:7.1f} ms  "
            f"{limit / seconds:5.2f}x the runtime"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--no-server", action="store_true", help="in-process only")
    parser.add_argument(
        "--profile",
        metavar="FORMAT",
        help="print a pyinstrument profile of 20 in-process calls of FORMAT and stop",
    )
    args = parser.parse_args()
    if str(ROOT / "src") not in sys.path:
        sys.path.insert(0, str(ROOT / "src"))
    from sklearn.datasets import load_breast_cancer

    from modelserve.app import create_app
    from modelserve.demo import train_breast_cancer
    from modelserve.settings import ServerSettings
    from modelserve.types import TABULAR_INPUT

    work = Path(tempfile.mkdtemp(prefix="modelserve-big-"))
    try:
        train_breast_cancer(work)
        x = np.resize(load_breast_cancer().data, (ROWS, 30)).astype(np.float64)
        flask_app = create_app(
            ServerSettings(
                profile="testing", model_path=work, default_model="breast-cancer", log_level="ERROR"
            )
        )
        service = flask_app.extensions["modelserve.handlers"].service
        sv = service.acquire("breast-cancer", None)
        names = list(sv.signature.feature_names)
        workloads = _workloads(x, names)

        def runtime_call() -> int:
            sv.runtime.predict({TABULAR_INPUT: x})
            return 200

        calls = {w.name: _wsgi_call(flask_app.wsgi_app, w) for w in workloads}
        if args.profile:
            _profile(calls[args.profile])
            return
        best = _fastest({"runtime": runtime_call, **calls}, args.repeat)
        limit = best.pop("runtime") or float("nan")
        _report("in-process (WSGI call, no socket)", best, limit)
        sv.leave()
        if args.no_server:
            return
        server = Server(
            "modelserve",
            [sys.executable, "-m", "modelserve", "serve", str(work), "--port", "{port}"],
            {"MODELSERVE_LOG_LEVEL": "WARNING", "MODELSERVE_SECRET_KEY": "benchmark"},
            "/health",
            ready_status=200,
            start_timeout=180,
        )
        try:
            os.sched_setaffinity(0, {1})
            conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
            http_calls = {w.name: _http_call(conn, w) for w in workloads}
            _report(
                "server (granian defaults, core 0; one connection from core 1)",
                _fastest(http_calls, args.repeat),
                limit,
            )
            conn.close()
        finally:
            server.stop()
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
