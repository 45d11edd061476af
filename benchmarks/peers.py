"""Peer model servers for the load benchmark: Seldon MLServer and BentoML on the same artifacts.

Each peer is installed by the benchmark into its own venv under ``benchmarks/.cache/venvs/``
(never a dependency of modelserve) and serves the very joblib files that ``run.prepare()``
trains for modelserve. Their settings and service files are written into
``benchmarks/.cache/peers/`` from the templates in ``benchmarks/peers/``; nothing is fetched at
run time but the peers' own pip install (once; a marker file makes it idempotent).

``peer_targets(prep)`` returns one ``PeerTarget`` per configuration; ``benchmarks/run.py``
starts each under ``taskset`` like its own servers, checks one answer per workload, then loads
it with the same wrk settings. See ``benchmarks/peers/README.md``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks._http import fetch

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / "benchmarks" / ".cache"
TEMPLATES = ROOT / "benchmarks" / "peers"
VENVS = CACHE / "venvs"
PEERS = CACHE / "peers"
MARKER = ".modelserve-requirements.json"

MLSERVER_VERSION = "1.7.1"
BENTOML_VERSION = "1.4.40"
#: MLServer 1.7.1's worker dies at start with a newer uvloop.
MLSERVER_REQUIREMENTS = [
    f"mlserver=={MLSERVER_VERSION}",
    f"mlserver-sklearn=={MLSERVER_VERSION}",
    "uvloop==0.21.0",
]
BENTOML_REQUIREMENTS = [f"bentoml=={BENTOML_VERSION}"]
#: Adaptive batching: MLServer waits up to 5 ms for up to 64 requests.
MLSERVER_BATCHING = {"max_batch_size": 64, "max_batch_time": 0.005}
#: BentoML's max_latency_ms is a deadline: a request its dispatcher cannot serve in time is
#: refused with 503. 10 ms is the configuration asked for; with a ~6 ms forest call on one core
#: it refuses most requests at 64 connections, so a 1 s deadline shows the batcher unhindered.
BENTOML_BATCHINGS = [
    {"max_batch_size": 64, "max_latency_ms": 10},
    {"max_batch_size": 64, "max_latency_ms": 1000},
]

FOREST_ROW, IRIS_ROW, FOREST_BATCH = "forest /predict", "iris /predict", "forest /predict_batch 100"
#: The forest behind a custom Python transformer (``benchmarks/custom_transform.py``).
CUSTOM_ROW = "custom forest /predict"
CUSTOM_MODEL = "breast-cancer-custom"
#: (workload, connections) in order; the same runs as modelserve's own.
PLAIN_RUNS = [(FOREST_ROW, 64), (FOREST_ROW, 1), (IRIS_ROW, 64), (FOREST_BATCH, 8)]
#: Batching is for many single rows: a 100-row request is more than one batch may hold
#: (BentoML answers 503 to it), so batching targets run the one-row workloads only.
BATCHING_RUNS = [(FOREST_ROW, 64), (FOREST_ROW, 1), (IRIS_ROW, 64)]
#: MLServer's batcher counts requests, not rows, so a [100,30] tensor goes through it whole:
#: batched MLServer also runs the 100-row batch (the targets compare with it) and the model
#: with a custom transformer.
MLSERVER_BATCHING_RUNS = [*BATCHING_RUNS, (FOREST_BATCH, 8), (CUSTOM_ROW, 64)]


class PeerError(RuntimeError):
    """A peer could not be installed, prepared, or gave a wrong answer."""


# -- venvs ----------------------------------------------------------------------------------


def pinned_model_stack() -> list[str]:
    """The versions that trained the artifacts: a peer must unpickle them with the same ones."""
    from importlib.metadata import version

    return [f"scikit-learn=={version('scikit-learn')}", f"numpy=={version('numpy')}"]


def ensure_venv(name: str, requirements: list[str], timeout: float = 900.0) -> Path:
    """Create or reuse ``benchmarks/.cache/venvs/<name>`` with exactly ``requirements``.

    Idempotent: a marker file records the requirement list of the last successful install, and
    a venv whose marker matches is reused as is. Anything else is rebuilt from scratch with
    ``python -m venv`` and that venv's own pip, bounded by ``timeout`` seconds; a failure raises
    ``PeerError`` with the end of pip's log (the whole log is kept beside the venv).
    """
    venv = VENVS / name
    python = venv / "bin" / "python"
    marker = venv / MARKER
    wanted = json.dumps(requirements)
    if python.exists() and marker.exists() and marker.read_text() == wanted:
        return venv
    if venv.exists():
        shutil.rmtree(venv)
    VENVS.mkdir(parents=True, exist_ok=True)
    log_path = VENVS / f"{name}.install.log"
    print(f"  installing {name}: {' '.join(requirements)} (log: {log_path})", flush=True)
    base = getattr(sys, "_base_executable", sys.executable)
    try:
        with log_path.open("w") as log:
            subprocess.run(
                [base, "-m", "venv", str(venv)],
                stdout=log,
                stderr=subprocess.STDOUT,
                timeout=120,
                check=True,
            )
            subprocess.run(
                [str(python), "-m", "pip", "install", "--disable-pip-version-check", *requirements],
                stdout=log,
                stderr=subprocess.STDOUT,
                timeout=timeout,
                check=True,
                env={**os.environ, "PIP_NO_INPUT": "1"},
            )
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
        shutil.rmtree(venv, ignore_errors=True)
        tail = log_path.read_text(errors="replace")[-1500:]
        why = (
            f"timed out after {timeout:.0f} s"
            if isinstance(exc, subprocess.TimeoutExpired)
            else f"exit {exc.returncode}"
        )
        raise PeerError(f"installing {name} failed ({why}); see {log_path}:\n{tail}") from exc
    marker.write_text(wanted)
    return venv


# -- targets --------------------------------------------------------------------------------


@dataclass
class PeerWorkload:
    """One workload in a peer's own protocol, and what its answer must say."""

    path: str
    body: Path
    rows: int
    expected: np.ndarray  # class probabilities the artifact gives in-process, (rows, classes)


@dataclass
class PeerTarget:
    """One peer configuration: how to start it, where it is ready, what to send it."""

    name: str
    argv: list[str]
    env: dict[str, str]
    ready_path: str
    workloads: dict[str, PeerWorkload]
    runs: list[tuple[str, int]]
    parse: Callable[[bytes], np.ndarray]  # an answer's body -> probabilities (rows, classes)
    cwd: Path
    log_path: Path
    ready_status: int = 200
    start_timeout: float = 120.0
    stop_timeout: float = 5.0  # MLServer 1.7.1 hangs after a clean SIGTERM shutdown
    error: str | None = None  # set when the peer could not be installed or prepared

    def check(self, base_url: str) -> None:
        """One request per workload: a 200 whose probabilities match the in-process model."""
        for workload, spec in self.workloads.items():
            request = urllib.request.Request(
                base_url + spec.path,
                data=spec.body.read_bytes(),
                headers={"Content-Type": "application/json"},
                method="POST",
            )
            body = fetch(request, 60, f"{self.name}, {workload}", PeerError)
            try:
                got = self.parse(body)
            except (ValueError, KeyError, IndexError, TypeError) as exc:
                raise PeerError(
                    f"{self.name}, {workload}: unreadable answer {body[:300]!r}"
                ) from exc
            if got.shape != spec.expected.shape or not np.allclose(got, spec.expected, atol=1e-6):
                raise PeerError(
                    f"{self.name}, {workload}: answered {got.tolist()[:2]}..., "
                    f"expected {spec.expected.tolist()[:2]}..."
                )


def _v2_body(x: np.ndarray) -> dict[str, Any]:
    """An Open Inference Protocol (V2) request: one FP64 tensor, asking for probabilities."""
    return {
        "inputs": [
            {
                "name": "input-0",
                "shape": list(x.shape),
                "datatype": "FP64",
                "data": x.ravel().tolist(),
            }
        ],
        "outputs": [{"name": "predict_proba"}],
    }


def _v2_parse(body: bytes) -> np.ndarray:
    out = json.loads(body)["outputs"][0]
    return np.asarray(out["data"], dtype=np.float64).reshape(out["shape"])


def _bentoml_parse(body: bytes) -> np.ndarray:
    return np.asarray(json.loads(body), dtype=np.float64)


def _write_json(path: Path, data: object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))
    return path


def _artifacts(prep: dict[str, Any]) -> dict[str, Path]:
    """The forest is modelserve's own file; iris becomes one Pipeline of its scaler and model."""
    import joblib
    from sklearn.pipeline import Pipeline

    iris_dir = prep["models"] / "iris" / "1"
    pipeline = Pipeline(
        [
            ("scaler", joblib.load(iris_dir / "scaler.joblib")),
            ("model", joblib.load(iris_dir / "model.joblib")),
        ]
    )
    iris_path = PEERS / "models" / "iris" / "model.joblib"
    iris_path.parent.mkdir(parents=True, exist_ok=True)
    joblib.dump(pipeline, iris_path)
    artifacts = {"breast-cancer": Path(prep["forest_path"]), "iris": iris_path}
    if prep.get("custom_path") is not None:
        artifacts[CUSTOM_MODEL] = Path(prep["custom_path"])
    return artifacts


def _inputs(prep: dict[str, Any], artifacts: dict[str, Path]) -> dict[str, tuple[np.ndarray, Any]]:
    """Each workload's rows (the same rows as modelserve's bodies) and its model."""
    import joblib
    from sklearn.datasets import load_iris

    cancer = np.asarray(prep["cancer"], dtype=np.float64)
    iris = np.asarray(load_iris().data, dtype=np.float64)
    forest = joblib.load(artifacts["breast-cancer"])
    iris_model = joblib.load(artifacts["iris"])
    inputs = {
        FOREST_ROW: (cancer[7:8], forest),
        IRIS_ROW: (iris[60:61], iris_model),
        FOREST_BATCH: (cancer[:100], forest),
    }
    if CUSTOM_MODEL in artifacts:
        inputs[CUSTOM_ROW] = (cancer[7:8], joblib.load(artifacts[CUSTOM_MODEL]))
    return inputs


def _mlserver_targets(
    artifacts: dict[str, Path], inputs: dict[str, tuple[np.ndarray, Any]]
) -> list[PeerTarget]:
    venv = ensure_venv(f"mlserver-{MLSERVER_VERSION}", MLSERVER_REQUIREMENTS + pinned_model_stack())
    models = {
        FOREST_ROW: "breast-cancer",
        IRIS_ROW: "iris",
        FOREST_BATCH: "breast-cancer",
        CUSTOM_ROW: CUSTOM_MODEL,
    }
    bodies = PEERS / "bodies" / "mlserver"
    workloads = {}
    for workload, (x, model) in inputs.items():
        slug = workload.replace(" /", "_").replace(" ", "_").replace("/", "")
        workloads[workload] = PeerWorkload(
            path=f"/v2/models/{models[workload]}/infer",
            body=_write_json(bodies / f"{slug}.json", _v2_body(x)),
            rows=len(x),
            expected=np.asarray(model.predict_proba(x)),
        )
    settings = json.loads((TEMPLATES / "mlserver_settings.json").read_text())
    model_template = json.loads((TEMPLATES / "mlserver_model_settings.json").read_text())
    targets = []
    for label, batching, runs in (
        ("plain", None, PLAIN_RUNS),
        (
            f"batching {MLSERVER_BATCHING['max_batch_size']}, "
            f"{MLSERVER_BATCHING['max_batch_time'] * 1000:g} ms",
            MLSERVER_BATCHING,
            [r for r in MLSERVER_BATCHING_RUNS if r[0] in workloads],
        ),
    ):
        folder = PEERS / ("mlserver-batching" if batching else "mlserver-plain")
        if folder.exists():
            shutil.rmtree(folder)
        _write_json(folder / "settings.json", settings)
        for name, artifact in artifacts.items():
            model_settings = {**model_template, "name": name, **(batching or {})}
            model_settings["parameters"] = {**model_template["parameters"], "uri": str(artifact)}
            _write_json(folder / name / "model-settings.json", model_settings)
        targets.append(
            PeerTarget(
                name=f"MLServer {MLSERVER_VERSION} ({label})",
                argv=[str(venv / "bin" / "mlserver"), "start", str(folder)],
                env={
                    # Ports stay out of settings.json: a value there would beat these variables.
                    "MLSERVER_HTTP_PORT": "{port}",
                    "MLSERVER_GRPC_PORT": "{port1}",
                    "MLSERVER_METRICS_PORT": "{port2}",
                    # Only the repository root, for benchmarks.custom_transform (the custom
                    # model's Python step); none of modelserve's own packages.
                    "PYTHONPATH": str(ROOT),
                },
                ready_path="/v2/health/ready",
                workloads={w: workloads[w] for w, _ in runs},
                runs=runs,
                parse=_v2_parse,
                cwd=folder,
                log_path=folder / "server.log",
            )
        )
    return targets


def _bentoml_targets(
    artifacts: dict[str, Path], inputs: dict[str, tuple[np.ndarray, Any]]
) -> list[PeerTarget]:
    venv = ensure_venv(f"bentoml-{BENTOML_VERSION}", BENTOML_REQUIREMENTS + pinned_model_stack())
    routes = {FOREST_ROW: "/forest", IRIS_ROW: "/iris", FOREST_BATCH: "/forest"}
    bodies = PEERS / "bodies" / "bentoml"
    workloads = {}
    for workload, (x, model) in inputs.items():
        if workload not in routes:
            continue  # the custom model is MLServer's comparison only
        slug = workload.replace(" /", "_").replace(" ", "_").replace("/", "")
        workloads[workload] = PeerWorkload(
            path=routes[workload],
            body=_write_json(bodies / f"{slug}.json", {"instances": x.tolist()}),
            rows=len(x),
            expected=np.asarray(model.predict_proba(x)),
        )
    targets = []
    configurations: list[tuple[str, dict[str, int] | None, list[tuple[str, int]]]] = [
        ("plain", None, PLAIN_RUNS)
    ]
    for options in BENTOML_BATCHINGS:
        size, ms = options["max_batch_size"], options["max_latency_ms"]
        configurations.append((f"batching {size}, {ms} ms", options, BATCHING_RUNS))
    for label, batching, runs in configurations:
        folder = PEERS / (
            f"bentoml-batching-{batching['max_latency_ms']}ms" if batching else "bentoml-plain"
        )
        if folder.exists():
            shutil.rmtree(folder)
        folder.mkdir(parents=True)
        shutil.copyfile(TEMPLATES / "bentoml_service.py", folder / "service.py")
        config = {
            "forest": str(artifacts["breast-cancer"]),
            "iris": str(artifacts["iris"]),
            "batching": batching,
        }
        _write_json(folder / "config.json", config)
        targets.append(
            PeerTarget(
                name=f"BentoML {BENTOML_VERSION} ({label})",
                argv=[
                    str(venv / "bin" / "bentoml"),
                    "serve",
                    "service:Models",
                    "--working-dir",
                    str(folder),
                    "--host",
                    "127.0.0.1",
                    "--port",
                    "{port}",
                ],
                env={
                    "BENTOML_HOME": str(PEERS / "bentoml-home"),
                    "BENTOML_DO_NOT_TRACK": "True",
                    "PYTHONPATH": "",
                },
                ready_path="/readyz",
                workloads={w: workloads[w] for w, _ in runs},
                runs=runs,
                parse=_bentoml_parse,
                cwd=folder,
                log_path=folder / "server.log",
            )
        )
    return targets


def _broken(name: str, error: str) -> PeerTarget:
    """A placeholder target that run.py reports instead of timing."""
    return PeerTarget(
        name=name,
        argv=[],
        env={},
        ready_path="",
        workloads={},
        runs=[],
        parse=_bentoml_parse,
        cwd=PEERS,
        log_path=PEERS / "unused.log",
        error=error,
    )


def peer_targets(prep: dict[str, Any]) -> list[PeerTarget]:
    """Install (once) and prepare every peer; return their targets, MLServer first.

    A peer that cannot be installed or prepared comes back as one target with ``error`` set,
    so the run reports it and goes on with the others.
    """
    PEERS.mkdir(parents=True, exist_ok=True)
    artifacts = _artifacts(prep)
    inputs = _inputs(prep, artifacts)
    targets: list[PeerTarget] = []
    for name, build in (
        (f"MLServer {MLSERVER_VERSION}", _mlserver_targets),
        (f"BentoML {BENTOML_VERSION}", _bentoml_targets),
    ):
        try:
            targets += build(artifacts, inputs)
        except (PeerError, OSError, subprocess.SubprocessError) as exc:
            targets.append(_broken(name, str(exc)))
    return targets
