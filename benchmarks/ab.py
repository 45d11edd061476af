"""A/B: the same forest ``/predict`` load against two checkouts of modelserve, interleaved.

A refactor must not cost throughput; comparing with numbers recorded on another day (another
machine load) cannot show that. This runs both checkouts in one session, alternating A, B, A,
B so that background load hits both alike, with the server pinned to core 0 and wrk to core 1,
every run bounded and on loopback.

    python -m benchmarks.ab /path/to/old/checkout [--rounds 3] [--duration 5]

``--b`` names another checkout for B (default: this one); ``--a-env``/``--b-env NAME=VALUE``
set server variables for one side only (the same checkout with a feature off and on), and
``--a-header``/``--b-header "Name: value"`` send a header with one side's requests (an API
key).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

from benchmarks.run import ROOT
from benchmarks.run import Server
from benchmarks.run import wrk


def _bodies(models: Path, folder: Path) -> Path:
    """The forest row the benchmark uses (breast cancer row 7, named features)."""
    import yaml
    from sklearn.datasets import load_breast_cancer

    manifest = yaml.safe_load((models / "breast-cancer" / "model.yaml").read_text())
    names = [f["name"] for f in manifest["inputs"]]
    row = dict(zip(names, load_breast_cancer().data[7].tolist(), strict=True))
    path = folder / "forest_row.json"
    path.write_text(json.dumps(row))
    return path


def _server(checkout: Path, models: Path, server: str, env: dict[str, str]) -> Server:
    return Server(
        f"modelserve@{checkout.name}",
        [sys.executable, "-m", "modelserve", "serve", str(models), "--port", "{port}"]
        + ["--server", server, "--default-model", "breast-cancer", "--poll-interval", "0"],
        # A secret key is no tuning flag (older checkouts refused to start without one).
        {"PYTHONPATH": str(checkout / "src"), "MODELSERVE_SECRET_KEY": "benchmark", **env},
        "/health",
        ready_status=200,
        start_timeout=120,
    )


def predict_rate(
    server: Server, body: Path, conns: int, seconds: int, label: str, path: str = "/predict"
) -> float:
    """Successful ``/predict`` answers per second in one bounded wrk run (after a 2 s warm-up);
    non-2xx answers are reported and not counted."""
    wrk(server, path, body, conns, 2)
    stats = wrk(server, path, body, conns, seconds)
    if stats["non2xx"]:
        print(f"  {label}: {stats['non2xx']} non-2xx answers", flush=True)
    ok: int = stats["requests"] - stats["non2xx"]
    return ok / (float(stats["duration_us"]) / 1e6)


def _pairs(items: list[str]) -> dict[str, str]:
    return dict(item.split("=", 1) for item in items)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("baseline", type=Path, help="the other checkout (its src/ is used)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=int, default=5)
    parser.add_argument("--server", choices=["granian", "gunicorn"], default="granian")
    parser.add_argument("--connections", type=int, nargs="+", default=[64, 1])
    parser.add_argument("--b", type=Path, default=ROOT, help="B's checkout [this one]")
    parser.add_argument("--a-env", action="append", default=[], metavar="NAME=VALUE")
    parser.add_argument("--b-env", action="append", default=[], metavar="NAME=VALUE")
    parser.add_argument("--a-header", default="", help='"Name: value" sent with A\'s requests')
    parser.add_argument("--b-header", default="", help='"Name: value" sent with B\'s requests')
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is needed: apt-get install wrk")
    sys.path.insert(0, str(ROOT / "src"))
    from modelserve.demo import train_breast_cancer

    work = Path(tempfile.mkdtemp(prefix="modelserve-ab-"))
    try:
        models = work / "models"
        train_breast_cancer(models)
        body = _bodies(models, work)
        sides = {
            "A (baseline)": (args.baseline.resolve(), _pairs(args.a_env), args.a_header),
            "B (this checkout)": (args.b.resolve(), _pairs(args.b_env), args.b_header),
        }
        results: dict[tuple[str, int], list[float]] = {}
        for _ in range(args.rounds):
            for label, (checkout, env, header) in sides.items():
                server = _server(checkout, models, args.server, env)
                os.environ["EXTRA_HEADER"] = header  # read by wrk_report.lua
                try:
                    for conns in args.connections:
                        rate = predict_rate(server, body, conns, args.duration, label)
                        results.setdefault((label, conns), []).append(rate)
                        print(f"{label:18} conns={conns:<3} {rate:9,.1f} req/s", flush=True)
                finally:
                    server.stop()
        print(f"\nforest /predict on {args.server}, {args.rounds} rounds of {args.duration} s:")
        for label, (checkout, env, header) in sides.items():
            print(f"  {label}: {checkout} {env or ''} {header and '+ ' + header.split(':')[0]}")
        for conns in args.connections:
            a = results[("A (baseline)", conns)]
            b = results[("B (this checkout)", conns)]
            print(
                f"  conns={conns:<3} A median {statistics.median(a):9,.1f}  "
                f"B median {statistics.median(b):9,.1f}  "
                f"B/A {statistics.median(b) / statistics.median(a):.3f}"
            )
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
