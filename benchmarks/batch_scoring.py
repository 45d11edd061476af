"""Rows per second of ``modelserve predict MODEL rows.csv -o out.csv`` against the in-process
limit: the same model's runtime called on the same rows, already in one numpy array.

The file is ``--rows`` breast-cancer rows (the dataset resampled with a seeded ±5% jitter),
scored with the ``breast-cancer`` demo model (StandardScaler + 100-tree forest, compiled to
ONNX by ``runtime: auto``). The command runs as a subprocess, as a user runs it; its rate is
the one it reports (reading, validating, scoring and writing every row, model loading
excluded), and the wall time of the whole command is shown too. Best of ``--repeat`` runs.

Run it under the shared load lock (a few minutes at most)::

    flock /tmp/modelserve-load.lock python benchmarks/batch_scoring.py --rows 200000
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
MODEL = "breast-cancer"
_RATE = re.compile(r"\(([\d,]+) rows/s\)")


def make_rows(path: Path, rows: int, names: list[str]) -> pd.DataFrame:
    from sklearn.datasets import load_breast_cancer

    data = load_breast_cancer().data
    rng = np.random.default_rng(0)
    picked = data[rng.integers(0, len(data), rows)] * rng.uniform(0.95, 1.05, (rows, data.shape[1]))
    frame = pd.DataFrame(picked, columns=names)
    if path.suffix == ".parquet":
        frame.to_parquet(path, index=False)
    else:
        frame.to_csv(path, index=False)
    return frame


def in_process_rate(
    models: Path, x: np.ndarray, repeat: int, chunk_rows: int
) -> tuple[float, float]:
    """(rows/s of one call on every row, rows/s of one call per ``chunk_rows`` rows)."""
    from modelserve.service import InferenceService
    from modelserve.settings import ServerSettings

    service = InferenceService(ServerSettings(profile="testing", model_path=models))
    service.load()
    runtime = service.resolve(MODEL).runtime
    runtime.predict({"input": x[:100]})  # warm-up
    whole, chunked = [], []
    for _ in range(repeat):
        start = time.perf_counter()
        runtime.predict({"input": x})
        whole.append(time.perf_counter() - start)
        start = time.perf_counter()
        for first in range(0, len(x), chunk_rows):
            runtime.predict({"input": x[first : first + chunk_rows]})
        chunked.append(time.perf_counter() - start)
    return len(x) / min(whole), len(x) / min(chunked)


def command_rate(
    models: Path, source: Path, repeat: int, chunk_rows: int
) -> tuple[float, float, str]:
    """(rows/s the command reports, its wall time in s, the command line), best of ``repeat``."""
    out = source.with_name(f"out{source.suffix}")
    args = [
        sys.executable, "-m", "modelserve", "predict", str(models), str(source),
        "-o", str(out), "--model", MODEL, "--chunk-rows", str(chunk_rows), "-q",
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    best_rate, best_wall = 0.0, float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        done = subprocess.run(
            args, env=env, capture_output=True, text=True, timeout=600, check=True
        )
        wall = time.perf_counter() - start
        found = _RATE.search(done.stderr)
        if found is None:
            raise SystemExit(f"no rate in the command's report: {done.stderr!r}")
        best_rate = max(best_rate, float(found.group(1).replace(",", "")))
        best_wall = min(best_wall, wall)
    shown = f"modelserve predict MODELS {source.name} -o {out.name} --model {MODEL} -q"
    return best_rate, best_wall, shown


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--chunk-rows", type=int, default=10_000)
    parser.add_argument("--formats", default="csv,parquet", help="input formats to time")
    args = parser.parse_args()

    sys.path.insert(0, str(ROOT / "src"))
    import onnxruntime

    from modelserve.demo import train_breast_cancer

    with tempfile.TemporaryDirectory(prefix="modelserve-batch-") as tmp:
        work = Path(tmp)
        models = work / "models"
        train_breast_cancer(models)
        from modelserve.service import InferenceService
        from modelserve.settings import ServerSettings

        probe = InferenceService(ServerSettings(profile="testing", model_path=models))
        probe.load()  # compiles (and caches) the ONNX graph once, outside every timing
        names = probe.resolve(MODEL).signature.feature_names
        frame = make_rows(work / "rows.csv", args.rows, names)
        x = frame.to_numpy(dtype=np.float64)
        whole, chunked = in_process_rate(models, x, args.repeat, args.chunk_rows)
        print(
            f"Machine: {os.cpu_count()} cores ({platform.machine()}); Python "
            f"{platform.python_version()}; onnxruntime {onnxruntime.__version__} (intra-op "
            f"threads 1); {args.rows:,} rows x {len(names)} features; best of {args.repeat}."
        )
        print()
        print("| measured | rows/s | vs in-process (one call) | wall s |")
        print("|---|---:|---:|---:|")
        print(f"| in-process runtime, one call on all rows | {whole:,.0f} | 1.00 | |")
        print(
            f"| in-process runtime, one call per {args.chunk_rows:,} rows | {chunked:,.0f} | "
            f"{chunked / whole:.2f} | |"
        )
        for fmt in args.formats.split(","):
            source = work / f"rows.{fmt}"
            if not source.exists():
                make_rows(source, args.rows, names)
            rate, wall, shown = command_rate(models, source, args.repeat, args.chunk_rows)
            print(f"| `{shown}` | {rate:,.0f} | {rate / whole:.2f} | {wall:.1f} |")


if __name__ == "__main__":
    main()
