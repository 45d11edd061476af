"""Microseconds per forest ``/predict`` through the WSGI app, in this process, no HTTP.

Points at where a slower checkout spends its time without a server's noise: one WSGI call per
request with a prepared environ, best of 7 x 3,000 after 2,000 warm-up calls. Pin it to a
core to compare checkouts (``taskset -c 0``):

    taskset -c 0 python benchmarks/request_cost.py /path/to/checkout [--secure] [--profile]

``--secure`` measures the configuration users run in production: an API key sent with every
request, a Redis-counted rate limit (``--redis-url``), Prometheus metrics and the JSON request
line on stderr, sent to a file as the benchmark servers' is. ``--profile`` prints a
pyinstrument call tree of the timed calls as well; ``--env NAME=VALUE`` sets a setting.
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

#: The key the secure configuration sends; only ever used against this in-process app.
BENCH_KEY = "ms_request-cost-benchmark-key-0123456789"


def _secure_env(redis_url: str, folder: Path) -> dict[str, str]:
    return {
        "MODELSERVE_API_KEY": BENCH_KEY,
        "MODELSERVE_RATE_LIMIT": "100000000/minute",
        "MODELSERVE_RATE_LIMIT_STORAGE": redis_url,
        "MODELSERVE_LOG_FORMAT": "json",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkout", nargs="?", type=Path, default=Path(__file__).parents[1])
    parser.add_argument("--secure", action="store_true", help="key + Redis limit + request log")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/15")
    parser.add_argument("--profile", action="store_true", help="print a pyinstrument tree")
    parser.add_argument("--calls", type=int, default=3000, help="calls per timed round")
    parser.add_argument("--env", action="append", default=[], metavar="NAME=VALUE")
    args = parser.parse_args()
    tree = args.checkout.resolve()
    sys.path.insert(0, str(tree / "src"))
    import yaml
    from sklearn.datasets import load_breast_cancer

    from modelserve.app import create_app
    from modelserve.demo import train_breast_cancer
    from modelserve.settings import ServerSettings

    folder = Path(tempfile.mkdtemp())
    root = folder / "models"
    train_breast_cancer(root)
    extra_headers: dict[str, str] = {}
    os.environ.update(_secure_env(args.redis_url, folder) if args.secure else {})
    os.environ.update(dict(item.split("=", 1) for item in args.env))
    if args.secure:
        log = os.open(folder / "stderr.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND)
        os.dup2(log, 2)  # the request lines: written, as a server writes them, but not shown
        extra_headers["HTTP_X_API_KEY"] = BENCH_KEY
        settings = ServerSettings(profile="production", model_path=root, trust_pickles=True)
    else:
        logging.disable(logging.WARNING)  # request lines are INFO: not part of what is timed
        settings = ServerSettings(profile="testing", model_path=root, log_level="WARNING")
    app = create_app(settings)
    manifest = yaml.safe_load((root / "breast-cancer" / "model.yaml").read_text())
    names = [f["name"] for f in manifest["inputs"]]
    body = json.dumps(dict(zip(names, load_breast_cancer().data[7].tolist(), strict=True)))
    raw = body.encode()
    statuses: list[str] = []

    def start_response(status: str, headers: list[Any], exc_info: Any = None) -> Any:
        statuses.append(status)
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
            **extra_headers,
        }
        out = app(environ, start_response)
        b"".join(out)
        getattr(out, "close", lambda: None)()

    for _ in range(2000):
        once()
    if not statuses[-1].startswith("200"):
        sys.exit(f"/predict answered {statuses[-1]}")
    if args.profile:
        from pyinstrument import Profiler

        profiler = Profiler(interval=0.0001)
        profiler.start()
        for _ in range(args.calls * 3):
            once()
        profiler.stop()
        print(profiler.output_text(unicode=False, color=False))
    best = best_cpu = float("inf")
    for _ in range(7):
        started, cpu = time.perf_counter(), time.process_time()
        for _ in range(args.calls):
            once()
        best = min(best, (time.perf_counter() - started) / args.calls)
        best_cpu = min(best_cpu, (time.process_time() - cpu) / args.calls)
    what = "secure defaults" if args.secure else "no key, no limit"
    # CPU time leaves out the waits on Redis, which a loaded server fills with other requests.
    print(
        f"{tree} ({what}): {best * 1e6:.1f} us per /predict (WSGI call, in-process), "
        f"{best_cpu * 1e6:.1f} us CPU"
    )


if __name__ == "__main__":
    main()
