"""Load benchmark (issue #12): modelserve on granian and on gunicorn vs the in-process model,
the tutorial's naive app, the lean app and the Flask floor (each on gunicorn and granian), and
peer model servers (Seldon MLServer and BentoML, see ``benchmarks/peers/README.md``).

Workloads: ``GET /health``; one-row ``/predict`` on the iris and breast-cancer models (64 and 1
connections); the same forest row as V2 infer; ``/predict_batch`` with 100 rows (8 connections)
and 10,000 rows (2 connections), the 10,000 rows also as Arrow, Parquet and ``.npy`` bodies
and as a V2 binary tensor (answered in the same format); base64 PNG digits on
``digits-onnx`` and ``digits``; and
``breast-cancer-custom``, the forest behind a custom Python transformer that ONNX cannot
compile. Every target answers each workload correctly once before it is timed. The report
ends with issue #12's targets (met / missed, with the numbers) from the same run.

Bounded and loopback-only: each server is pinned to core 0 with taskset, wrk to core 1, and
every load run stops after ``--duration`` seconds (after a 2 s warm-up). Writes one section
into BENCHMARKS.md between its markers. The first run installs the peers into their own venvs
under ``benchmarks/.cache/venvs/``.

Usage (from the repository root, after the README's dev install; another engineer may be
load-testing, so take the lock)::

    flock /tmp/modelserve-load.lock python -m benchmarks.run [--duration 5] [--quick]
        [--no-peers | --only peers|baselines] [--no-write]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict
from dataclasses import dataclass
from dataclasses import field
from functools import partial
from importlib.metadata import version
from pathlib import Path
from typing import TYPE_CHECKING
from typing import Any

import numpy as np
import orjson

from benchmarks._http import fetch
from benchmarks._timing import rate
from benchmarks.targets import BIG_BINARY
from benchmarks.targets import CUSTOM_ROW
from benchmarks.targets import DEFAULTS_NAME
from benchmarks.targets import FOREST_BIG
from benchmarks.targets import FOREST_BIG_ARROW
from benchmarks.targets import FOREST_BIG_NPY
from benchmarks.targets import FOREST_BIG_PARQUET
from benchmarks.targets import FOREST_BIG_V2
from benchmarks.targets import FRAME_ROW
from benchmarks.targets import ONNX_IN_PROCESS
from benchmarks.targets import SKLEARN_IN_PROCESS
from benchmarks.targets import evaluate
from benchmarks.targets import lean_name
from benchmarks.targets import modelserve_name
from benchmarks.targets import render_targets

if TYPE_CHECKING:
    from benchmarks.peers import PeerTarget

ROOT = Path(__file__).resolve().parents[1]
# This checkout's modelserve, as its servers get it (PYTHONPATH, see Server), even where another
# checkout is pip-installed in editable mode: the models are trained by the code that serves them.
if str(ROOT / "src") not in sys.path:
    sys.path.insert(0, str(ROOT / "src"))
CACHE = ROOT / "benchmarks" / ".cache"
LUA = ROOT / "benchmarks" / "wrk_report.lua"
MARK_START, MARK_END = "<!-- results:start -->", "<!-- results:end -->"
SERVER_CPU, LOAD_CPU = "0", "1"
PEER_PREFIXES = ("MLServer", "BentoML")


@dataclass
class Result:
    """One measured row of a table."""

    workload: str
    target: str
    connections: int
    req_per_s: float
    rows_per_s: float
    p50_ms: float | None = None
    p99_ms: float | None = None
    p999_ms: float | None = None
    cpu_ms_per_req: float | None = None
    errors: int = 0


# -- preparation ----------------------------------------------------------------------------

BIG_ROWS = 10_000
CUSTOM_MODEL = "breast-cancer-custom"
SERVICE_IN_PROCESS = "in-process modelserve service (no HTTP)"
IMAGE_MODELS = ("digits-onnx", "digits")


def prepare() -> dict[str, Any]:
    """Train the demo models (and one a Python step keeps off ONNX), compile the forest to
    ONNX for the lean app, write every request body."""
    from sklearn.datasets import load_breast_cancer
    from sklearn.datasets import load_iris

    from modelserve.demo import train_demo_models

    models = CACHE / "models"
    if models.exists():
        shutil.rmtree(models)
    train_demo_models(models)
    import joblib
    from skl2onnx import to_onnx

    forest_path = models / "breast-cancer" / "1" / "model.joblib"
    forest = joblib.load(forest_path)
    names = [f["name"] for f in _manifest_inputs(models / "breast-cancer")]
    onnx_model = to_onnx(
        forest,
        np.zeros((1, 30), dtype=np.float32),
        options={id(forest.steps[-1][1]): {"zipmap": False}},
    )
    onnx_path = CACHE / "forest.onnx"
    onnx_path.write_bytes(onnx_model.SerializeToString())
    custom_path = _custom_model(models)

    data = load_breast_cancer()
    cancer = data.data
    big = np.resize(cancer, (BIG_ROWS, cancer.shape[1]))
    iris = load_iris().data
    iris_names = [f["name"] for f in _manifest_inputs(models / "iris")]
    image, label = _digit_image()
    bodies = {
        "forest_row": dict(zip(names, cancer[7].tolist(), strict=True)),
        "forest_batch100": {"instances": cancer[:100].tolist()},
        "forest_batch10000": {"instances": big.tolist()},
        "forest_v2": {
            "inputs": [
                {"name": "input", "shape": [1, 30], "datatype": "FP64", "data": cancer[7].tolist()}
            ],
            "outputs": [{"name": "predict_proba"}],
        },
        "iris_row": dict(zip(iris_names, iris[60].tolist(), strict=True)),
        "digit_image": {"image": image},
    }
    paths = {}
    for key, body in bodies.items():
        path = CACHE / f"{key}.json"
        path.write_bytes(orjson.dumps(body))
        paths[key] = path
    for key, (raw, headers) in binary_bodies(big, names).items():
        path = CACHE / f"forest_batch10000_{key.replace(' ', '_')}.bin"
        path.write_bytes(raw)
        _headers_file(path).write_bytes(orjson.dumps(headers))
        paths[f"forest_batch10000 {key}"] = path
    custom = joblib.load(custom_path)
    frame_path, frame_expected = _frame_forest(names)
    return {
        "models": models,
        "forest_path": forest_path,
        "onnx_path": onnx_path,
        "custom_path": custom_path,
        "names": names,
        "bodies": paths,
        "cancer": cancer,
        "big": big,
        "image_label": label,
        "frame_forest_path": frame_path,
        "expected": {
            "frame_row": frame_expected,
            "forest_row": forest.predict_proba(cancer[7:8])[0],
            "custom_row": custom.predict_proba(cancer[7:8])[0],
            "iris_label": int(
                joblib.load(models / "iris" / "1" / "model.joblib").predict(
                    joblib.load(models / "iris" / "1" / "scaler.joblib").transform(iris[60:61])
                )[0]
            ),
        },
    }


ARROW = "application/vnd.apache.arrow.stream"
PARQUET = "application/vnd.apache.parquet"
NPY = "application/x-npy"
V2_INFER = "/v2/models/breast-cancer/infer"


def binary_bodies(x: np.ndarray, names: list[str]) -> dict[str, tuple[bytes, dict[str, str]]]:
    """The ``[rows, features]`` batch ``x`` as each binary body modelserve takes, with the
    request headers that ask for an answer in the same format: ``arrow`` (IPC stream),
    ``parquet`` and ``numpy`` (``.npy``) for ``/predict_batch``, ``v2 binary`` (one FP64
    tensor, binary tensor data in and out) for V2 infer."""
    import io

    import pyarrow as pa
    import pyarrow.ipc
    import pyarrow.parquet as pq

    from modelserve.codecs.v2 import encode_request

    table = pa.table({n: x[:, i] for i, n in enumerate(names)})
    sink = pa.BufferOutputStream()
    with pyarrow.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    parquet_sink = pa.BufferOutputStream()
    pq.write_table(table, parquet_sink)
    npy = io.BytesIO()
    np.save(npy, x)
    # One FP64 tensor as binary data, binary outputs asked for: as modelserve's client sends it.
    v2_body, v2_header = encode_request([("input", x.astype(np.float64), True)], binary_output=True)
    return {
        "arrow": (sink.getvalue().to_pybytes(), {"Content-Type": ARROW, "Accept": ARROW}),
        "parquet": (
            parquet_sink.getvalue().to_pybytes(),
            {"Content-Type": PARQUET, "Accept": PARQUET},
        ),
        "numpy": (npy.getvalue(), {"Content-Type": NPY, "Accept": NPY}),
        "v2 binary": (
            v2_body,
            {
                "Content-Type": "application/octet-stream",
                "Inference-Header-Content-Length": str(v2_header),
            },
        ),
    }


def _headers_file(body: Path) -> Path:
    return body.with_name(body.name + ".headers")


def body_headers(body: Path | None) -> dict[str, str]:
    """The request headers a body file is sent with: those :func:`prepare` wrote beside a
    binary body, else JSON's content type (no headers for a GET)."""
    if body is None:
        return {}
    sidecar = _headers_file(body)
    if sidecar.exists():
        headers: dict[str, str] = orjson.loads(sidecar.read_bytes())
        return headers
    return {"Content-Type": "application/json"}


def _frame_forest(names: list[str]) -> tuple[Path, np.ndarray]:
    """The notebook's model: a scaler + the 100-tree forest fitted on a DataFrame whose columns
    are the demo's feature names (so the forest row's body fits it), in one pickle pinned
    with ``modelserve validate --write-manifest`` as the README says; served as a single file
    on default settings. Returns the file and its answer for row 7."""
    import joblib
    import pandas as pd
    from sklearn.datasets import load_breast_cancer
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x, y = load_breast_cancer(return_X_y=True)
    frame = pd.DataFrame(x, columns=names)
    model = make_pipeline(StandardScaler(), RandomForestClassifier(100, random_state=0)).fit(
        frame, y
    )
    folder = CACHE / "frame-forest"
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    path = folder / "model.pkl"
    joblib.dump(model, path)
    subprocess.run(
        [sys.executable, "-m", "modelserve", "validate", str(path), "--write-manifest"],
        check=True,
        capture_output=True,
        env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
    )
    return path, model.predict_proba(frame.iloc[7:8])[0]


def _custom_model(models: Path) -> Path:
    """``breast-cancer-custom``: a Python ``FunctionTransformer`` + the 100-tree forest.

    skl2onnx cannot compile the Python step, so every server runs it as scikit-learn. The
    function lives in ``benchmarks/custom_transform.py`` for the servers to unpickle.
    """
    import hashlib

    import joblib
    import yaml
    from sklearn.datasets import load_breast_cancer
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import FunctionTransformer

    from benchmarks.custom_transform import signed_log1p

    x, y = load_breast_cancer(return_X_y=True)
    pipeline = Pipeline(
        [
            ("log", FunctionTransformer(signed_log1p)),
            ("forest", RandomForestClassifier(n_estimators=100, random_state=0)),
        ]
    ).fit(x, y)
    folder = models / CUSTOM_MODEL
    path = folder / "1" / "model.joblib"
    path.parent.mkdir(parents=True, exist_ok=True)
    joblib.dump(pipeline, path)
    manifest = yaml.safe_load((models / "breast-cancer" / "model.yaml").read_text())
    manifest["sha256"] = {"1/model.joblib": hashlib.sha256(path.read_bytes()).hexdigest()}
    manifest["description"] = "breast-cancer with a custom Python transformer (no ONNX)."
    (folder / "model.yaml").write_text(yaml.safe_dump(manifest, sort_keys=False))
    return path


def _digit_image() -> tuple[str, int]:
    """A held-out digit as a base64 PNG (the images benchmark's pictures), and its label."""
    import base64

    from benchmarks.images import png_files
    from modelserve.demo_digits import load_split

    _, _, _, y_test = load_split()
    return base64.b64encode(png_files(1)[0]).decode(), int(y_test[0])


def _manifest_inputs(model_dir: Path) -> list[dict[str, Any]]:
    import yaml

    inputs: list[dict[str, Any]] = yaml.safe_load((model_dir / "model.yaml").read_text())["inputs"]
    return inputs


# -- in-process limits ----------------------------------------------------------------------


def in_process(prep: dict[str, Any], seconds: float) -> list[Result]:
    """The model alone and modelserve's service without HTTP, on the server's core."""
    import joblib
    import onnxruntime as ort

    from modelserve.protocols.seed import SeedProtocol
    from modelserve.service import InferenceService
    from modelserve.settings import ServerSettings

    os.sched_setaffinity(0, {int(SERVER_CPU)})
    forest = joblib.load(prep["forest_path"])
    custom = joblib.load(prep["custom_path"])
    row, batch, big = prep["cancer"][7:8], prep["cancer"][:100], prep["big"]
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(
        str(prep["onnx_path"]), options, providers=["CPUExecutionProvider"]
    )
    name = session.get_inputs()[0].name
    service = InferenceService(
        ServerSettings(profile="testing", model_path=prep["models"], log_level="WARNING")
    )
    service.load()
    seed = SeedProtocol(service)
    row_body = prep["bodies"]["forest_row"].read_bytes()
    batch_body = prep["bodies"]["forest_batch100"].read_bytes()
    big32 = big.astype(np.float32)
    out = []
    r = rate(lambda: forest.predict_proba(row), seconds)
    out.append(Result("forest /predict", SKLEARN_IN_PROCESS, 1, r, r))
    r = rate(lambda: session.run(None, {name: row.astype(np.float32)}), seconds)
    out.append(Result("forest /predict", ONNX_IN_PROCESS, 1, r, r))
    r = rate(lambda: seed.predict_one("breast-cancer", None, row_body), seconds)
    out.append(Result("forest /predict", SERVICE_IN_PROCESS, 1, r, r))
    r = rate(lambda: forest.predict_proba(batch), seconds)
    out.append(Result("forest /predict_batch 100", SKLEARN_IN_PROCESS, 1, r, r * 100))
    r = rate(lambda: seed.predict_batch("breast-cancer", None, batch_body), seconds)
    out.append(Result("forest /predict_batch 100", SERVICE_IN_PROCESS, 1, r, r * 100))
    r = rate(lambda: forest.predict_proba(big), seconds)
    out.append(Result(FOREST_BIG, SKLEARN_IN_PROCESS, 1, r, r * BIG_ROWS))
    r = rate(lambda: session.run(None, {name: big32}), seconds)
    out.append(Result(FOREST_BIG, ONNX_IN_PROCESS, 1, r, r * BIG_ROWS))
    big_body = prep["bodies"]["forest_batch10000"].read_bytes()
    r = rate(lambda: seed.predict_batch("breast-cancer", None, big_body), seconds)
    out.append(Result(FOREST_BIG, SERVICE_IN_PROCESS, 1, r, r * BIG_ROWS))
    for workload, key, content_type in (
        (FOREST_BIG_ARROW, "arrow", ARROW),
        (FOREST_BIG_PARQUET, "parquet", PARQUET),
        (FOREST_BIG_NPY, "numpy", NPY),
    ):
        raw = prep["bodies"][f"forest_batch10000 {key}"].read_bytes()
        r = rate(
            partial(seed.predict_batch, "breast-cancer", None, raw, content_type, content_type),
            seconds,
        )
        out.append(Result(workload, SERVICE_IN_PROCESS, 1, r, r * BIG_ROWS))
    r = rate(lambda: custom.predict_proba(row), seconds)
    out.append(Result(CUSTOM_ROW, SKLEARN_IN_PROCESS, 1, r, r))
    out += _in_process_images(service, seconds)
    os.sched_setaffinity(0, set(range(os.cpu_count() or 1)))
    return out


def _in_process_images(service: Any, seconds: float) -> list[Result]:
    """Per image model: the forward pass alone, and decode + preprocess + forward (1 image)."""
    from benchmarks.images import png_files
    from modelserve.protocols.images import ImageProtocol

    files = png_files(1)
    images = ImageProtocol(service)
    out = []
    for model in IMAGE_MODELS:
        sv = service.resolve(model)
        input_name = sv.signature.tensor_inputs[0].name
        x = sv.images.batch(files, 10**8)
        r = rate(partial(sv.runtime.predict, {input_name: x}), seconds)
        out.append(Result(_image_workload(model), "in-process forward pass", 1, r, r))
        r = rate(partial(images.infer, sv, files), seconds)
        out.append(
            Result(_image_workload(model), "in-process decode + preprocess + forward", 1, r, r)
        )
    return out


def _image_workload(model: str) -> str:
    return f"{model} image base64"


# -- servers under load ---------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Server:
    """A server process pinned to the server core; stopped on exit.

    ``{port}`` in ``argv`` or in an ``env`` value is the port the server must listen on;
    ``{port1}``, ``{port2}``, ... are further free ports (for servers that open several, like
    MLServer's gRPC and metrics ports). By default any HTTP answer on ``ready_path`` means ready;
    ``ready_status`` asks for that exact status instead. ``log_path`` sends the server's stdout
    and stderr to a file (a chatty server cannot block on a full pipe); without it stderr is kept
    in a pipe for the error message, as before.
    """

    def __init__(
        self,
        name: str,
        argv: list[str],
        env: dict[str, str],
        ready_path: str,
        *,
        ready_status: int | None = None,
        start_timeout: float = 60.0,
        stop_timeout: float = 30.0,
        log_path: Path | None = None,
        cwd: Path | None = None,
    ) -> None:
        self.name = name
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.stop_timeout = stop_timeout
        self.log_path = log_path
        ports = {"port": self.port}

        def expand(text: str) -> str:
            def port(match: re.Match[str]) -> str:
                key = match.group(1)
                if key not in ports:
                    ports[key] = _free_port()
                return str(ports[key])

            return re.sub(r"\{(port\d*)\}", port, text)

        full_env = {
            **os.environ,
            "PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}{ROOT}",
            **{k: expand(v) for k, v in env.items()},
        }
        argv = [expand(a) for a in argv]
        if log_path is None:
            # A file, never a pipe: a server that logs every request would fill a pipe nobody
            # reads and stall (modelserve logs one line per request by default).
            handle, name = tempfile.mkstemp(prefix="server-", suffix=".log")
            os.close(handle)
            self.log_path = log_path = Path(name)
        self._log = log_path.open("wb")
        self.proc = subprocess.Popen(
            ["taskset", "-c", SERVER_CPU, *argv],
            env=full_env,
            cwd=cwd,
            stdout=self._log,
            stderr=self._log,
            start_new_session=True,
        )
        self._wait(ready_path, ready_status, start_timeout)

    def _error_text(self) -> str:
        if self.log_path is not None:
            return self.log_path.read_text(errors="replace")[-2000:]
        return self.proc.stderr.read().decode()[-2000:] if self.proc.stderr else ""

    def _wait(self, path: str, status: int | None = None, timeout: float = 60.0) -> None:
        import urllib.error
        import urllib.request

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self.stop()  # its children, if any, and the log file
                raise RuntimeError(f"{self.name} exited: {self._error_text()}")
            try:
                with urllib.request.urlopen(self.url + path, timeout=2) as answer:
                    if status is None or answer.status == status:
                        return
            except urllib.error.HTTPError as exc:
                if status is None or exc.code == status:
                    return  # it answers: a 405 on GET /predict means the app is up
                time.sleep(0.2)
            except OSError:
                time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"{self.name} did not start in {timeout:.0f} s: {self._error_text()}")

    def _processes(self) -> dict[int, tuple[int, int]]:
        """pid -> (user + system ticks, 1 if in the server's tree) for every live process.

        The tree is the server's process group plus every descendant: BentoML's workers start
        in sessions of their own, so the process group alone misses them.
        """
        stats: dict[int, list[str]] = {}
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                stats[int(stat.parent.name)] = stat.read_text().rsplit(")", 1)[1].split()
            except (OSError, ValueError):
                continue
        root = self.proc.pid

        def inside(pid: int) -> bool:
            seen = set()
            while pid in stats and pid not in seen:
                seen.add(pid)
                fields = stats[pid]
                if pid == root or int(fields[2]) == root:  # the server, or its process group
                    return True
                pid = int(fields[1])  # parent
            return False

        return {
            pid: (int(fields[11]) + int(fields[12]), int(inside(pid)))
            for pid, fields in stats.items()
        }

    def cpu_seconds(self) -> float:
        """User + system CPU of the server's process group and all its descendants."""
        tick = os.sysconf("SC_CLK_TCK")
        return sum(t for t, mine in self._processes().values() if mine) / tick

    def stop(self) -> None:
        """SIGTERM to the process group, SIGKILL after ``stop_timeout``; then any descendant
        that lives in a group of its own and outlived its parent's shutdown is killed too."""
        strays = [pid for pid, (_, mine) in self._processes().items() if mine]
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=self.stop_timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=30)
        except ProcessLookupError:
            pass
        finally:
            for pid in strays:
                if pid != self.proc.pid:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
            if self._log is not None:
                self._log.close()


def wrk(
    server: Server, path: str, body: Path | None, connections: int, seconds: int
) -> dict[str, Any]:
    """One bounded wrk run: POST ``body`` (with :func:`body_headers`), or GET when ``body``
    is None."""
    cpu_before = server.cpu_seconds()
    proc = subprocess.run(
        [
            "taskset",
            "-c",
            LOAD_CPU,
            "wrk",
            "-t1",
            f"-c{connections}",
            f"-d{seconds}s",
            "--timeout",
            "10s",
            "-s",
            str(LUA),
            server.url + path,
        ],
        env={
            **os.environ,
            "BODY_FILE": "" if body is None else str(body),
            # One "Name: value" per line, read by wrk_report.lua.
            "BODY_HEADERS": "\n".join(f"{k}: {v}" for k, v in body_headers(body).items()),
        },
        capture_output=True,
        text=True,
        timeout=seconds + 60,
    )
    match = re.search(r"WRK_JSON (\{.*\})", proc.stdout)
    if not match:
        raise RuntimeError(f"wrk failed: {proc.stdout}\n{proc.stderr}")
    stats: dict[str, Any] = json.loads(match.group(1))
    stats["cpu_s"] = server.cpu_seconds() - cpu_before
    return stats


def load_result(
    workload: str, target: str, rows: int, connections: int, stats: dict[str, Any]
) -> Result:
    seconds = stats["duration_us"] / 1e6
    ok = stats["requests"] - stats["non2xx"]
    return Result(
        workload=workload,
        target=target,
        connections=connections,
        req_per_s=ok / seconds,
        rows_per_s=ok * rows / seconds,
        p50_ms=stats["p50_us"] / 1000,
        p99_ms=stats["p99_us"] / 1000,
        p999_ms=stats["p999_us"] / 1000,
        cpu_ms_per_req=1000 * stats["cpu_s"] / max(stats["requests"], 1),
        errors=stats["non2xx"] + stats["socket_errors"],
    )


Run = tuple[str, str, "Path | None", int, int]  # workload, URL path, body (None: GET), rows, conns


def under_load(
    prep: dict[str, Any],
    seconds: int,
    quick: bool,
    *,
    peers: bool = True,
    only: str | None = None,
    problems: list[str] | None = None,
    facts: dict[str, Any] | None = None,
) -> list[Result]:
    """Every server target under wrk; with ``peers``, MLServer and BentoML too (``peers.py``).

    ``only`` is ``"peers"`` or ``"baselines"`` (modelserve and the apps in ``baselines/``).
    Every target answers each of its workloads correctly once before it is timed; a target that
    will not start or answer correctly is reported in ``problems`` (and printed), never timed.
    ``facts["runtimes"]`` receives each modelserve target's ``runtime`` of breast-cancer.
    """
    facts = {} if facts is None else facts
    targets = [] if only == "peers" else own_targets(prep, facts)
    if peers and only != "baselines":
        from benchmarks.peers import peer_targets

        print("  preparing peers (first run installs them into benchmarks/.cache/venvs) ...")
        targets += [_peer_load_target(t) for t in peer_targets(prep)]
    problems = [] if problems is None else problems
    results = []
    for target in targets:
        name = target.name
        runs = target.runs[:1] if quick else target.runs
        try:
            if target.error is not None:
                raise RuntimeError(target.error)
            server = Server(name, target.argv, target.env, target.ready_path, **target.options)
        except RuntimeError as exc:
            problems.append(f"{name}: not measured: {exc}")
            print(f"  {name}: NOT MEASURED: {exc}", flush=True)
            continue
        measured = 0
        os.environ["EXTRA_HEADER"] = target.header  # read by wrk_report.lua
        try:
            if target.check is not None:
                target.check(server.url)  # one correct answer per workload before any load
            for workload, path, body, rows, conns in runs:
                wrk(server, path, body, conns, 2)  # warm-up
                stats = wrk(server, path, body, conns, seconds)
                result = load_result(workload, name, rows, conns, stats)
                print(
                    f"  {workload:30} {name:44} c={conns:<3} {result.req_per_s:9.1f} req/s"
                    + (f"  ({result.errors} errors)" if result.errors else ""),
                    flush=True,
                )
                results.append(result)
                measured += 1
        except RuntimeError as exc:
            what = f"stopped after {measured} run(s)" if measured else "not measured"
            problems.append(f"{name}: {what}: {exc}")
            print(f"  {name}: {what.upper()}: {exc}", flush=True)
        finally:
            os.environ.pop("EXTRA_HEADER", None)
            server.stop()
    return results


# -- our own targets: modelserve and the baselines -------------------------------------------


class CheckError(RuntimeError):
    """A target answered a workload wrongly before it was timed."""


Validator = Callable[[Any], None]  # given the parsed JSON answer; raises AssertionError


def _http_check(
    name: str,
    probes: list[tuple[str, str, Path | None, Validator]],
    headers: dict[str, str] | None = None,
) -> Callable[[str], None]:
    """A check that sends each probe once (with ``headers``) and wants a 2xx whose JSON the
    validator accepts."""
    import urllib.error
    import urllib.request

    def check(base_url: str) -> None:
        for workload, path, body, validate in probes:
            request = urllib.request.Request(
                base_url + path,
                data=None if body is None else body.read_bytes(),
                headers={**(headers or {}), **body_headers(body)},
                method="GET" if body is None else "POST",
            )
            raw = fetch(request, 120, f"{name}, {workload}", CheckError)
            try:
                validate(raw)
            except (AssertionError, ValueError, KeyError, IndexError, TypeError) as exc:
                raise CheckError(
                    f"{name}, {workload}: wrong answer ({exc!r}): {raw[:300]!r}"
                ) from exc

    return check


def _any_ok(raw: bytes) -> None:
    """The floor answers "ok" (not JSON): any 2xx will do."""


def _json_ok(raw: bytes) -> None:
    orjson.loads(raw)


def _probability(expected: np.ndarray) -> Validator:
    """One row's answer: its probabilities close to the in-process model's.

    The tolerance allows an ONNX-compiled forest (float32 thresholds) to differ slightly.
    """

    def validate(raw: bytes) -> None:
        got = np.asarray(orjson.loads(raw)["probability"], dtype=np.float64)
        assert got.shape == expected.shape and np.allclose(got, expected, atol=0.05), got

    return validate


def _label(expected: int, key: str = "prediction") -> Validator:
    def validate(raw: bytes) -> None:
        got = orjson.loads(raw)[key]
        assert int(got) == expected, f"{key} {got} != {expected}"

    return validate


def _batch(rows: int) -> Validator:
    def validate(raw: bytes) -> None:
        predictions = orjson.loads(raw)["predictions"]
        assert len(predictions) == rows, f"{len(predictions)} predictions for {rows} rows"
        assert "probability" in predictions[0]

    return validate


def _table(rows: int, content_type: str) -> Validator:
    """A binary batch answer: ``rows`` predictions (and, in Arrow and Parquet, a
    probability column per class)."""

    def validate(raw: bytes) -> None:
        import io

        if content_type == NPY:
            got = np.load(io.BytesIO(raw), allow_pickle=False)
            assert got.shape == (rows,), f"{got.shape} predictions for {rows} rows"
            return
        import pyarrow as pa
        import pyarrow.ipc
        import pyarrow.parquet as pq

        table = (
            pyarrow.ipc.open_stream(raw).read_all()
            if content_type == ARROW
            else pq.read_table(pa.BufferReader(raw))
        )
        assert table.num_rows == rows, f"{table.num_rows} rows for {rows}"
        assert any(n.startswith("probability_") for n in table.column_names), table.column_names

    return validate


def _v2_binary(rows: int) -> Validator:
    """A V2 answer with binary tensor data: a JSON header whose outputs have ``rows`` rows and
    fill the bytes after it exactly."""

    def validate(raw: bytes) -> None:
        text = raw.decode("latin-1")
        header, end = json.JSONDecoder().raw_decode(text)
        outputs = header["outputs"]
        assert outputs and all(o["shape"][0] == rows for o in outputs), outputs
        sizes = sum(o["parameters"]["binary_data_size"] for o in outputs)
        assert sizes == len(raw) - end, f"{sizes} bytes of tensors, {len(raw) - end} sent"

    return validate


def _v2_proba(expected: np.ndarray) -> Validator:
    def validate(raw: bytes) -> None:
        out = {o["name"]: o for o in orjson.loads(raw)["outputs"]}["predict_proba"]
        got = np.asarray(out["data"], dtype=np.float64).reshape(out["shape"])
        assert got.shape == (1, *expected.shape) and np.allclose(got[0], expected, atol=0.05)

    return validate


def _health(raw: bytes) -> None:
    assert isinstance(orjson.loads(raw), dict)


def modelserve_runs(prep: dict[str, Any]) -> list[tuple[Run, Validator]]:
    """modelserve's workloads, each with what its answer must say."""
    b, expected = prep["bodies"], prep["expected"]
    forest = _probability(expected["forest_row"])
    image = _label(prep["image_label"], "class_index")
    return [
        (("forest /predict", "/predict", b["forest_row"], 1, 64), forest),
        (("forest /predict", "/predict", b["forest_row"], 1, 1), forest),
        (("/health", "/health", None, 1, 64), _health),
        (
            ("iris /predict", "/models/iris/predict", b["iris_row"], 1, 64),
            _label(expected["iris_label"]),
        ),
        (
            ("iris /predict", "/models/iris/predict", b["iris_row"], 1, 1),
            _label(expected["iris_label"]),
        ),
        (
            ("forest V2 infer", "/v2/models/breast-cancer/infer", b["forest_v2"], 1, 64),
            _v2_proba(expected["forest_row"]),
        ),
        (
            ("forest /predict_batch 100", "/predict_batch", b["forest_batch100"], 100, 8),
            _batch(100),
        ),
        (
            (FOREST_BIG, "/predict_batch", b["forest_batch10000"], BIG_ROWS, 2),
            _batch(BIG_ROWS),
        ),
        *(
            (
                (workload, "/predict_batch", b[f"forest_batch10000 {key}"], BIG_ROWS, 2),
                _table(BIG_ROWS, content_type),
            )
            for workload, key, content_type in (
                (FOREST_BIG_ARROW, "arrow", ARROW),
                (FOREST_BIG_PARQUET, "parquet", PARQUET),
                (FOREST_BIG_NPY, "numpy", NPY),
            )
        ),
        (
            (FOREST_BIG_V2, V2_INFER, b["forest_batch10000 v2 binary"], BIG_ROWS, 2),
            _v2_binary(BIG_ROWS),
        ),
        (
            (CUSTOM_ROW, f"/models/{CUSTOM_MODEL}/predict", b["forest_row"], 1, 64),
            _probability(expected["custom_row"]),
        ),
        *(
            (
                (
                    _image_workload(model),
                    f"/models/{model}/predict_image_base64",
                    b["digit_image"],
                    1,
                    8,
                ),
                image,
            )
            for model in IMAGE_MODELS
        ),
    ]


def _modelserve_target(prep: dict[str, Any], server: str, facts: dict[str, Any]) -> LoadTarget:
    name = modelserve_name(server)
    pairs = modelserve_runs(prep)
    runs = [run for run, _ in pairs]
    probes = _unique_probes(name, pairs)
    http_check = _http_check(name, probes)

    def check(base_url: str) -> None:
        http_check(base_url)
        try:
            with urlopen_json(base_url + "/models/breast-cancer") as info:
                facts.setdefault("runtimes", {})[name] = info.get("runtime")
        except (OSError, ValueError) as exc:
            raise CheckError(f"{name}: GET /models/breast-cancer: {exc}") from exc

    return LoadTarget(
        name,
        [
            sys.executable,
            "-m",
            "modelserve",
            "serve",
            str(prep["models"]),
            "--host",
            "127.0.0.1",
            "--port",
            "{port}",
            "--server",
            server,
            "--workers",
            "1",
            "--threads",
            "64",
            "--default-model",
            "breast-cancer",
        ],
        {"MODELSERVE_SECRET_KEY": "benchmark-only-secret", "MODELSERVE_LOG_LEVEL": "WARNING"},
        runs,
        ready_path="/health",
        options={"ready_status": 200, "start_timeout": 60.0},
        check=check,
    )


#: The key the round-two row sends, the limit it counts (high enough never to refuse: the cost
#: of counting, not of refusing) and where: a database of its own on the local Redis.
DEFAULTS_KEY = "ms_benchmark-defaults-key-0123456789abcdef"
DEFAULTS_LIMIT = "1000000000/minute"
DEFAULTS_REDIS = "redis://127.0.0.1:6379/15"


def _redis_problem(url: str) -> str | None:
    """Why the Redis at ``url`` cannot count the limit, or ``None``."""
    try:
        import redis
    except ImportError:
        return "redis-py is not installed (pip install 'modelserve[redis]')"
    try:
        redis.Redis.from_url(url, socket_connect_timeout=2).ping()
    except redis.RedisError as exc:
        return f"no Redis at {url} for the rate limit: {exc}"
    return None


def _defaults_target(prep: dict[str, Any]) -> LoadTarget:
    """Round two (#21): what users run. The DataFrame-fitted forest served as one file with no
    tuning flag (threads and batching from the machine), an API key on every request, a
    Redis-counted rate limit, metrics and the JSON request line on (to the server's log)."""
    name = DEFAULTS_NAME
    forest = _probability(prep["expected"]["frame_row"])
    body = prep["bodies"]["forest_row"]
    pairs: list[tuple[Run, Validator]] = [
        ((FRAME_ROW, "/predict", body, 1, 64), forest),
        ((FRAME_ROW, "/predict", body, 1, 1), forest),
    ]
    return LoadTarget(
        name,
        [sys.executable, "-m", "modelserve", "serve", str(prep["frame_forest_path"])]
        + ["--host", "127.0.0.1", "--port", "{port}", "--server", "granian"],
        {
            "MODELSERVE_SECRET_KEY": "benchmark-only-secret",
            "MODELSERVE_API_KEY": DEFAULTS_KEY,
            "MODELSERVE_RATE_LIMIT": DEFAULTS_LIMIT,
            "MODELSERVE_RATE_LIMIT_STORAGE": DEFAULTS_REDIS,
        },
        [run for run, _ in pairs],
        ready_path="/health",
        options={"ready_status": 200, "start_timeout": 120.0},
        check=_http_check(name, _unique_probes(name, pairs), {"X-API-Key": DEFAULTS_KEY}),
        error=_redis_problem(DEFAULTS_REDIS),
        header=f"X-API-Key: {DEFAULTS_KEY}",
    )


@contextlib.contextmanager
def urlopen_json(url: str) -> Any:
    import urllib.request

    with urllib.request.urlopen(url, timeout=30) as answer:
        yield orjson.loads(answer.read())


def _unique_probes(
    name: str, pairs: list[tuple[Run, Validator]]
) -> list[tuple[str, str, Path | None, Validator]]:
    seen: set[tuple[str, str]] = set()
    probes = []
    for (workload, path, body, _, _), validate in pairs:
        if (workload, path) not in seen:
            seen.add((workload, path))
            probes.append((workload, path, body, validate))
    return probes


def _baseline_target(
    name: str, argv: list[str], env: dict[str, str], pairs: list[tuple[Run, Validator]]
) -> LoadTarget:
    return LoadTarget(
        name,
        argv,
        env,
        [run for run, _ in pairs],
        check=_http_check(name, _unique_probes(name, pairs)),
    )


def own_targets(prep: dict[str, Any], facts: dict[str, Any]) -> list[LoadTarget]:
    """modelserve on each WSGI server, then the baselines (naive, lean and floor apps)."""
    gunicorn = [
        sys.executable,
        "-m",
        "gunicorn",
        "--bind",
        "127.0.0.1:{port}",
        "--log-level",
        "warning",
    ]
    gthread = ["--worker-class", "gthread", "--workers", "2", "--threads", "8"]
    granian = [
        sys.executable,
        "-m",
        "granian",
        "--interface",
        "wsgi",
        "--host",
        "127.0.0.1",
        "--port",
        "{port}",
        "--workers",
        "1",
        "--blocking-threads",
        "8",
        "--no-ws",
        "--log-level",
        "warning",
    ]
    b, expected = prep["bodies"], prep["expected"]
    forest = _probability(expected["forest_row"])
    row64: Run = ("forest /predict", "/predict", b["forest_row"], 1, 64)
    row1: Run = ("forest /predict", "/predict", b["forest_row"], 1, 1)
    lean_env = {"BENCH_ONNX": str(prep["onnx_path"]), "BENCH_FEATURES": ",".join(prep["names"])}
    lean_app, hello_app = "benchmarks.baselines.lean_app:app", "benchmarks.baselines.hello_app:app"
    floor_runs: list[tuple[Run, Validator]] = [
        (row64, _any_ok),  # first: what --quick measures
        (("/health", "/health", None, 1, 64), _any_ok),
    ]
    return [
        _modelserve_target(prep, "granian", facts),
        _defaults_target(prep),
        _modelserve_target(prep, "gunicorn", facts),
        _baseline_target(
            "naive tutorial app (gunicorn 4 sync)",
            [*gunicorn, "--workers", "4", "benchmarks.baselines.naive_app:app"],
            {"BENCH_MODEL": str(prep["forest_path"])},
            [
                (row64, forest),
                (row1, forest),
                (
                    ("forest /predict_batch 100", "/predict_batch", b["forest_batch100"], 100, 8),
                    _batch(100),
                ),
            ],
        ),
        _baseline_target(
            lean_name("gunicorn"),
            [*gunicorn, *gthread, lean_app],
            lean_env,
            [(row64, forest), (row1, forest)],
        ),
        _baseline_target(
            lean_name("granian"), [*granian, lean_app], lean_env, [(row64, forest), (row1, forest)]
        ),
        _baseline_target(
            "Flask hello floor (gunicorn 2x8)", [*gunicorn, *gthread, hello_app], {}, floor_runs
        ),
        _baseline_target("Flask hello floor (granian 1x8)", [*granian, hello_app], {}, floor_runs),
    ]


@dataclass
class LoadTarget:
    """One server configuration and the wrk runs to make against it."""

    name: str
    argv: list[str]
    env: dict[str, str]
    runs: list[Run]  # workload, URL path, body (None: GET), rows, connections
    ready_path: str = "/predict"
    options: dict[str, Any] = field(default_factory=dict)  # more keyword arguments for Server
    check: Callable[[str], None] | None = None  # given the base URL; raises on a wrong answer
    error: str | None = None  # the target could not be prepared: report, do not start
    header: str = ""  # "Name: value" sent with every timed request (an API key)


def _peer_load_target(peer: PeerTarget) -> LoadTarget:
    runs: list[Run] = []
    for workload, conns in peer.runs:
        spec = peer.workloads[workload]
        runs.append((workload, spec.path, spec.body, spec.rows, conns))
    return LoadTarget(
        name=peer.name,
        argv=peer.argv,
        env=peer.env,
        runs=runs,
        ready_path=peer.ready_path,
        options={
            "ready_status": peer.ready_status,
            "start_timeout": peer.start_timeout,
            "stop_timeout": peer.stop_timeout,
            "log_path": peer.log_path,
            "cwd": peer.cwd,
        },
        check=peer.check,
        error=peer.error,
    )


# -- report ---------------------------------------------------------------------------------


def _fmt(value: float | None, digits: int = 1) -> str:
    return "" if value is None else f"{value:,.{digits}f}"


def render(
    results: list[Result],
    command: str,
    seconds: int,
    problems: list[str] | None = None,
    facts: dict[str, Any] | None = None,
) -> str:
    """The report: setup, one table of every row, the targets, comparisons and problems."""
    facts = facts or {}
    cpu = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    pkgs = ", ".join(
        f"{p} {_version(p)}"
        for p in (
            "flask",
            "gunicorn",
            "granian",
            "numpy",
            "scikit-learn",
            "onnxruntime",
            "torch",
            "orjson",
        )
    )
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    lines = [
        f"Run {when} · `{command}` · {seconds} s per load run (after a 2 s warm-up)",
        "",
        f"Machine: {os.cpu_count()} cores ({cpu}); Python {platform.python_version()}; {pkgs}.",
        f"Servers pinned to core {SERVER_CPU}, wrk (1 thread) to core {LOAD_CPU}, loopback only. "
        "modelserve: `--workers 1 --threads 64`, adaptive batching on (its defaults). "
        "Every target answered each workload correctly once before it was timed; `errors` are "
        "non-2xx answers plus socket errors.",
        *(
            [
                "Peers (MLServer, BentoML): one process or worker each, in their own venvs, on "
                "the same artifacts; see benchmarks/peers/README.md. MLServer answers the "
                "`forest /predict` and `/predict_batch 100` workloads with V2 infer on a "
                "`[1,30]` / `[100,30]` FP64 tensor."
            ]
            if any(r.target.startswith(PEER_PREFIXES) for r in results) or problems
            else []
        ),
        "",
        "| workload | target | conns | req/s | rows/s | p50 ms | p99 ms | p99.9 ms "
        "| CPU ms/req | errors |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        cells = [
            r.workload,
            r.target,
            str(r.connections),
            _fmt(r.req_per_s),
            _fmt(r.rows_per_s, 0),
            _fmt(r.p50_ms, 2),
            _fmt(r.p99_ms, 2),
            _fmt(r.p999_ms, 2),
            _fmt(r.cpu_ms_per_req, 2),
            str(r.errors),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    targets = render_targets(evaluate(results, facts.get("runtimes")))
    if targets:
        lines += ["", *targets]
    comparisons = compare(results)
    if comparisons:
        lines += ["", "**Comparisons**", "", *comparisons]
    if problems:
        lines += ["", *(f"- Problem: {p.splitlines()[0][:300]}" for p in problems)]
    return "\n".join(lines) + "\n"


def _version(package: str) -> str:
    try:
        return version(package)
    except Exception:  # not installed: say so rather than fail the report
        return "n/a"


def compare(results: list[Result]) -> list[str]:
    """Ratio lines beyond the targets: modelserve against the naive app, the peers' V2, the
    in-process image rates and the 10,000-row in-process rates."""
    by = {(r.workload, r.target, r.connections): r for r in results}
    peer_names = list(
        dict.fromkeys(r.target for r in results if r.target.startswith(PEER_PREFIXES))
    )
    naive = "naive tutorial app (gunicorn 4 sync)"
    out = []

    def line(text: str, ours: Result | None, other: Result | None, metric: str) -> None:
        if ours is None or other is None or not getattr(other, metric):
            return
        ratio = getattr(ours, metric) / getattr(other, metric)
        refused = f" ({other.errors:,} errors there)" if other.errors else ""
        out.append(f"- {text} = {ratio:.2f}x{refused}")

    for server in ("granian", "gunicorn"):
        ms = modelserve_name(server)
        for workload, conns in (("forest /predict", 64), ("forest /predict_batch 100", 8)):
            line(
                f"{workload}, {conns} conns: {ms} / naive (req/s)",
                by.get((workload, ms, conns)),
                by.get((workload, naive, conns)),
                "req_per_s",
            )
        for target in peer_names:
            if target.startswith("MLServer"):
                line(
                    f"forest V2 infer, 64 conns: {ms} / {target} (req/s)",
                    by.get(("forest V2 infer", ms, 64)),
                    by.get(("forest /predict", target, 64)),
                    "req_per_s",
                )
            for workload in ("forest /predict", "iris /predict"):
                line(
                    f"{workload}, 64 conns: {ms} / {target} (req/s)",
                    by.get((workload, ms, 64)),
                    by.get((workload, target, 64)),
                    "req_per_s",
                )
        for reference in (SKLEARN_IN_PROCESS, ONNX_IN_PROCESS):
            for workload in (FOREST_BIG, *BIG_BINARY):
                line(
                    f"{workload}, 2 conns: {ms} / {reference} on a 10,000-row array (rows/s)",
                    by.get((workload, ms, 2)),
                    by.get((FOREST_BIG, reference, 1)),
                    "rows_per_s",
                )
        for model in IMAGE_MODELS:
            workload = _image_workload(model)
            for reference in (
                "in-process forward pass",
                "in-process decode + preprocess + forward",
            ):
                line(
                    f"{workload}, 8 conns: {ms} / {reference} (images/s)",
                    by.get((workload, ms, 8)),
                    by.get((workload, reference, 1)),
                    "req_per_s",
                )
    return out


def write_report(report: str) -> None:
    path = ROOT / "BENCHMARKS.md"
    text = path.read_text() if path.exists() else f"# Benchmarks\n\n{MARK_START}\n{MARK_END}\n"
    if MARK_START not in text:
        text += f"\n{MARK_START}\n{MARK_END}\n"
    head, rest = text.split(MARK_START, 1)
    _, tail = rest.split(MARK_END, 1)
    path.write_text(f"{head}{MARK_START}\n{report}{MARK_END}{tail}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=int, default=5, help="seconds per load run")
    parser.add_argument("--quick", action="store_true", help="one load run per server")
    parser.add_argument(
        "--no-write", action="store_true", help="print, do not update BENCHMARKS.md"
    )
    parser.add_argument(
        "--no-peers", action="store_true", help="skip the peer servers (MLServer, BentoML)"
    )
    parser.add_argument(
        "--only",
        choices=["peers", "baselines"],
        help="only the peer servers, or only modelserve and baselines/ (no in-process rows "
        "with --only peers)",
    )
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is needed: apt-get install wrk")
    if (os.cpu_count() or 1) < 2:
        sys.exit("needs 2 cores: one for the server, one for the load generator")
    CACHE.mkdir(parents=True, exist_ok=True)
    print("preparing models ...", flush=True)
    prep = prepare()
    results = []
    if args.only != "peers":
        print("in-process ...", flush=True)
        results += in_process(prep, seconds=2.0)
    print("under load ...", flush=True)
    problems: list[str] = []
    facts: dict[str, Any] = {}
    results += under_load(
        prep,
        args.duration,
        args.quick,
        peers=not args.no_peers,
        only=args.only,
        problems=problems,
        facts=facts,
    )
    (CACHE / "latest.json").write_text(json.dumps([asdict(r) for r in results], indent=2))
    command = "python -m benchmarks.run" + "".join(f" {a}" for a in sys.argv[1:])
    report = render(results, command, args.duration, problems, facts)
    print(report)
    if not args.no_write:
        write_report(report)


if __name__ == "__main__":
    main()
