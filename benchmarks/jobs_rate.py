"""Rows per second of a batch job against the in-process limit, on the demo's breast-cancer
forest (StandardScaler + 100 trees, 30 features).

Three ways to score one CSV file of N rows into a CSV of predictions:

- **in-process, pandas + scikit-learn**: what a user would write: ``pd.read_csv`` in chunks,
  ``predict`` and ``predict_proba`` of the pipeline loaded with joblib, ``to_csv``; no
  validation, no HTTP;
- **in-process, modelserve pipeline**: the jobs' own chunk loop without HTTP or store
  (``ChunkScorer.read`` -> ``ChunkScorer.score`` -> ``write_chunk``), on the compiled runtime
  when modelserve compiles the model;
- **job**: ``POST /jobs`` to a real ``modelserve serve`` (embedded backend, defaults) or to a
  server plus one ``modelserve worker`` (Celery, Redis broker, SQLite store), timed from the
  first upload byte to ``succeeded``, and then the download of the result.

    flock /tmp/modelserve-load.lock python -m benchmarks.jobs_rate \\
        [--rows 500000] [--rounds 3] [--celery]
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd
import requests

ROOT = Path(__file__).resolve().parents[1]
MODEL = "breast-cancer"


def _port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _input(folder: Path, rows: int, features: list[str]) -> Path:
    from sklearn.datasets import load_breast_cancer

    x = load_breast_cancer().data
    picked = x[np.random.default_rng(0).integers(0, len(x), rows)]
    frame = pd.DataFrame(picked, columns=features)
    frame.insert(0, "id", np.arange(rows))
    path = folder / "input.csv"
    frame.to_csv(path, index=False)
    return path


def plain_pandas(
    models: Path, source: Path, target: Path, chunk: int, features: list[str]
) -> float:
    model = joblib.load(next((models / MODEL).glob("*/model.joblib")))
    start = time.perf_counter()
    header = True
    with target.open("w") as out:
        for frame in pd.read_csv(source, chunksize=chunk):
            x = frame[features].to_numpy()
            answer = pd.DataFrame({"id": frame["id"], "prediction": model.predict(x)})
            proba = model.predict_proba(x)
            for j in range(proba.shape[1]):
                answer[f"probability_{j}"] = proba[:, j]
            answer.to_csv(out, header=header, index=False)
            header = False
    return time.perf_counter() - start


def modelserve_pipeline(models: Path, source: Path, folder: Path, chunk: int) -> float:
    from modelserve.jobs.formats import write_chunk
    from modelserve.jobs.scoring import ChunkScorer
    from modelserve.service import InferenceService
    from modelserve.settings import ServerSettings

    service = InferenceService(ServerSettings(model_path=models, log_level="WARNING"))
    service.load()
    scorer = ChunkScorer(service, MODEL, id_column="id")
    start = time.perf_counter()
    first = 0
    for n, frame in enumerate(scorer.read(source, "csv", chunk)):
        scored = scorer.score(frame, first)
        write_chunk(folder / f"chunk-{n}.csv", "csv", scored.predictions)
        first += len(frame)
    return time.perf_counter() - start


def _wait(url: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if requests.get(url + "/health", timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not start")


class JobServer:
    """A real server (and, for Celery, one worker) that scores submitted files as jobs."""

    def __init__(self, models: Path, folder: Path, chunk: int, celery: bool) -> None:
        port = _port()
        self.url = f"http://127.0.0.1:{port}"
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("MODELSERVE_")},
            "PYTHONPATH": str(ROOT / "src"),
            "MODELSERVE_LOG_LEVEL": "WARNING",
            "MODELSERVE_JOBS_DIR": str(folder / "jobs"),
            "MODELSERVE_JOBS_CHUNK_ROWS": str(chunk),
        }
        if celery:
            env.update(
                MODELSERVE_JOBS_BACKEND="celery",
                MODELSERVE_JOBS_BROKER_URL="redis://127.0.0.1:6379/9",
                MODELSERVE_JOBS_QUEUE=f"modelserve-bench-{port}",
                MODELSERVE_JOBS_STORE_URL=str(folder / "jobs.db"),
            )
        commands = [["serve", str(models), "--port", str(port)]]
        if celery:
            commands.append(["worker", str(models)])
        self.procs = [
            subprocess.Popen(
                [sys.executable, "-m", "modelserve", *command],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
            for command in commands
        ]
        _wait(self.url)
        self.runtime = requests.get(f"{self.url}/models/{MODEL}", timeout=10).json()["runtime"]

    def score(self, source: Path) -> tuple[float, float, dict[str, Any]]:
        """Seconds from the first upload byte to ``succeeded``, seconds of the download, and
        the finished job."""
        start = time.perf_counter()
        with source.open("rb") as fh:
            resp = requests.post(
                f"{self.url}/models/{MODEL}/jobs",
                files={"file": ("input.csv", fh)},
                data={"id_column": "id"},
                timeout=600,
            )
        resp.raise_for_status()
        uploaded = time.perf_counter() - start
        job_id = resp.json()["id"]
        while True:
            state: dict[str, Any] = requests.get(f"{self.url}/jobs/{job_id}", timeout=10).json()
            if state["state"] not in ("queued", "running"):
                break
            time.sleep(0.05)
        elapsed = time.perf_counter() - start
        if state["state"] != "succeeded":
            raise RuntimeError(f"job ended {state}")
        start = time.perf_counter()
        with requests.get(f"{self.url}/jobs/{job_id}/result", stream=True, timeout=600) as got:
            state["result_bytes"] = sum(len(block) for block in got.iter_content(1 << 20))
        state["upload_seconds"] = uploaded
        return elapsed, time.perf_counter() - start, state

    def stop(self) -> None:
        for proc in self.procs:
            proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=500_000)
    parser.add_argument("--chunk", type=int, default=50_000)
    parser.add_argument("--celery", action="store_true", help="Also time the Celery backend.")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT / "src"))
    from modelserve.demo import train_breast_cancer
    from modelserve.service import InferenceService
    from modelserve.settings import ServerSettings

    work = Path(tempfile.mkdtemp(prefix="modelserve-jobs-bench-"))
    try:
        models = work / "models"
        train_breast_cancer(models)
        service = InferenceService(ServerSettings(model_path=models, log_level="WARNING"))
        service.load()
        features = list(service.resolve(MODEL).signature.feature_names)
        source = _input(work, args.rows, features)
        mb = source.stat().st_size / 1e6
        print(f"{args.rows:,} rows, {mb:.0f} MB CSV, chunks of {args.chunk:,} rows", flush=True)
        servers = {"embedded": JobServer(models, work / "embedded", args.chunk, False)}
        if args.celery:
            servers["celery"] = JobServer(models, work / "celery", args.chunk, True)
            time.sleep(5)  # the worker loads its models and connects to the broker
        print(f"served runtime: {servers['embedded'].runtime}", flush=True)
        times: dict[str, list[float]] = {}
        try:
            # Rounds interleaved, best of each kept: other load on the machine hits all alike.
            for _ in range(args.rounds):
                times.setdefault("pandas", []).append(
                    plain_pandas(models, source, work / "plain.csv", args.chunk, features)
                )
                out = work / "pipeline"
                shutil.rmtree(out, ignore_errors=True)
                out.mkdir()
                times.setdefault("pipeline", []).append(
                    modelserve_pipeline(models, source, out, args.chunk)
                )
                for name, server in servers.items():
                    elapsed, download, state = server.score(source)
                    times.setdefault(name, []).append(elapsed)
                    own = args.rows / state["rows_per_second"]
                    times.setdefault(f"{name} run", []).append(own)
                    print(
                        f"  job {name}: {elapsed:.2f} s (upload {state['upload_seconds']:.2f} s; "
                        f"the job's own rows/s {state['rows_per_second']:,.0f}); download "
                        f"{state['result_bytes'] / 1e6:.0f} MB in {download:.2f} s",
                        flush=True,
                    )
        finally:
            for server in servers.values():
                server.stop()
        best = {name: min(values) for name, values in times.items()}
        print(f"best of {args.rounds} rounds, rows/s:")
        for name, seconds in best.items():
            rate = args.rows / seconds
            print(
                f"  {name:9} {seconds:6.2f} s {rate:10,.0f} rows/s  "
                f"{best['pandas'] / seconds:.2f}x pandas  "
                f"{best['pipeline'] / seconds:.2f}x pipeline"
            )
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
