"""Which request threads and batching window answer most: the measurement behind the defaults.

Single-row ``/predict`` at 64 connections (and 1), the server pinned to one core, for a few
``MODELSERVE_THREADS`` / ``MODELSERVE_MAX_LATENCY_MS`` values, on the compiled forest (the
``breast-cancer`` demo: ONNX, not batched) and the uncompilable one (``breast-cancer-custom``:
scikit-learn, adaptive batching). Configurations are interleaved round by round so background
load hits all alike; read the ratios within one run, and the server's CPU time per request
(less sensitive to other processes on the machine than req/s).

    python -m benchmarks.defaults [--server granian] [--rounds 2] [--duration 4]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

from benchmarks.ab import _bodies
from benchmarks.ab import _server
from benchmarks.run import ROOT
from benchmarks.run import _custom_model
from benchmarks.run import wrk

#: (model, threads, max_latency_ms); None keeps the setting's default.
CONFIGS: list[tuple[str, int, float | None]] = [
    ("breast-cancer", 8, None),
    ("breast-cancer", 16, None),
    ("breast-cancer", 32, None),
    ("breast-cancer", 64, None),
    ("breast-cancer-custom", 16, 5.0),
    ("breast-cancer-custom", 32, 5.0),
    ("breast-cancer-custom", 64, 5.0),
    ("breast-cancer-custom", 32, 2.0),
    ("breast-cancer-custom", 32, 10.0),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--server", choices=["granian", "gunicorn"], default="granian")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--duration", type=int, default=4)
    parser.add_argument("--connections", type=int, nargs="+", default=[64])
    parser.add_argument("--only", choices=["breast-cancer", "breast-cancer-custom"])
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is needed: apt-get install wrk")
    sys.path.insert(0, str(ROOT / "src"))
    from modelserve.demo import train_breast_cancer

    work = Path(tempfile.mkdtemp(prefix="modelserve-defaults-"))
    configs = [c for c in CONFIGS if args.only in (None, c[0])]
    try:
        models = work / "models"
        train_breast_cancer(models)
        _custom_model(models)
        body = _bodies(models, work)
        results: dict[tuple[str, int, float | None, int], list[float]] = {}
        cpu: dict[tuple[str, int, float | None, int], list[float]] = {}
        for _ in range(args.rounds):
            for model, threads, latency in configs:
                env = {
                    "MODELSERVE_THREADS": str(threads),
                    "MODELSERVE_LOG_LEVEL": "WARNING",
                    # The custom model's transformer is unpickled from benchmarks/.
                    "PYTHONPATH": f"{ROOT / 'src'}:{ROOT}",
                }
                if latency is not None:
                    env["MODELSERVE_MAX_LATENCY_MS"] = str(latency)
                server = _server(ROOT, models, args.server, env)
                try:
                    for conns in args.connections:
                        path = f"/models/{model}/predict"
                        wrk(server, path, body, conns, 2)  # warm-up
                        stats = wrk(server, path, body, conns, args.duration)
                        ok = stats["requests"] - stats["non2xx"]
                        rate = ok / (stats["duration_us"] / 1e6)
                        cpu_ms = 1000 * stats["cpu_s"] / max(1, stats["requests"])
                        key = (model, threads, latency, conns)
                        results.setdefault(key, []).append(rate)
                        cpu.setdefault(key, []).append(cpu_ms)
                        print(
                            f"{model:21} threads={threads:<3} latency={latency} conns={conns:<3}"
                            f" {rate:9,.1f} req/s {cpu_ms:.3f} CPU ms/req"
                            f" non-2xx {stats['non2xx']}",
                            flush=True,
                        )
                finally:
                    server.stop()
        print(
            f"\n/predict on {args.server}, one core, medians of {args.rounds} x {args.duration} s"
        )
        for (model, threads, latency, conns), rates in results.items():
            print(
                f"  {model:21} threads={threads:<3} max_latency_ms={latency} conns={conns:<3}"
                f" {statistics.median(rates):9,.1f} req/s"
                f" {statistics.median(cpu[(model, threads, latency, conns)]):.3f} CPU ms/req"
            )
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
