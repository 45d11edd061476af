"""`/predict` req/s with security on (a Redis-backed rate limit, optionally an API key) vs off.

Bounded and loopback-only: one server at a time on 127.0.0.1, one worker, pinned to core 0
with taskset when it exists; the load generator (wrk when installed, else a keep-alive Python
client) on core 1. The rate limit is set so high that no request is refused: what is measured
is the cost of counting every request in Redis (and of checking the key), not 429s.

Usage::

    python benchmarks/security_overhead.py [--seconds 10] [--connections 8]
        [--server granian|gunicorn] [--redis-url redis://127.0.0.1:6379/15] [--api-key KEY]

``--api-key`` needs the API keys of issue 16 (``MODELSERVE_API_KEY``): the key is set on the
server and sent as ``X-API-Key`` in the secured runs. Prints one JSON line per configuration
and the ratio of each to the baseline (the issue's target: at most 10% fewer req/s).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
LUA = ROOT / "benchmarks" / "wrk_report.lua"
ROW = {"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}
#: High enough that a run never reaches it: every request is counted, none refused.
NEVER_REACHED = "1000000000/minute"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _pinned(core: int, argv: list[str]) -> list[str]:
    if shutil.which("taskset") and (os.cpu_count() or 1) > 1:
        return ["taskset", "-c", str(core), *argv]
    return argv


def _start(models: Path, server: str, env: dict[str, str]) -> tuple[subprocess.Popen[bytes], str]:
    port = _free_port()
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("MODELSERVE_")}
    full_env.update(
        PYTHONPATH=f"{ROOT / 'src'}{os.pathsep}{full_env.get('PYTHONPATH', '')}",
        MODELSERVE_SECRET_KEY="benchmark-secret-key-not-for-production",
        MODELSERVE_POLL_INTERVAL="0",
        **env,
    )
    argv = [sys.executable, "-m", "modelserve", "serve", str(models), "--port", str(port)]
    argv += ["--workers", "1", "--threads", "8", "--server", server, "--default-model", "iris"]
    # The server logs a line per request: a pipe nobody reads would fill and stall it.
    log = tempfile.TemporaryFile("w+")
    proc = subprocess.Popen(_pinned(0, argv), env=full_env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            log.seek(0)
            raise RuntimeError(f"server exited {proc.returncode}: {log.read()[-2000:]}")
        try:
            with urllib.request.urlopen(url + "/health", timeout=2) as resp:
                if resp.status == 200:
                    return proc, url
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError("server not ready after 120 s")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _wrk(
    url: str, headers: dict[str, str], seconds: float, conns: int, body: Path
) -> dict[str, Any]:
    argv = ["wrk", "-t1", f"-c{conns}", f"-d{max(1, round(seconds))}s", "--latency", "-s", str(LUA)]
    for key, value in headers.items():
        argv += ["-H", f"{key}: {value}"]
    out = subprocess.run(
        _pinned(1, [*argv, url + "/predict"]),
        env={**os.environ, "BODY_FILE": str(body)},
        capture_output=True,
        text=True,
        timeout=seconds + 60,
        check=True,
    ).stdout
    match = re.search(r"WRK_JSON (\{.*\})", out)
    if match is None:
        raise RuntimeError(f"no summary from wrk: {out}")
    stats: dict[str, Any] = json.loads(match.group(1))
    return {
        "req_s": stats["requests"] / (stats["duration_us"] / 1e6),
        "p50_ms": stats["p50_us"] / 1000,
        "p99_ms": stats["p99_us"] / 1000,
        "non2xx": stats["non2xx"],
        "errors": stats["socket_errors"],
        "client": "wrk",
    }


def _python_client(
    url: str, headers: dict[str, str], seconds: float, conns: int, body: bytes
) -> dict[str, Any]:
    host, port = url.removeprefix("http://").split(":")
    counts = [0] * conns
    bad = [0] * conns
    deadline = time.monotonic() + seconds

    def run(i: int) -> None:
        conn = http.client.HTTPConnection(host, int(port), timeout=30)
        send = {"Content-Type": "application/json", **headers}
        while time.monotonic() < deadline:
            conn.request("POST", "/predict", body=body, headers=send)
            resp = conn.getresponse()
            resp.read()
            counts[i] += 1
            bad[i] += resp.status != 200

    threads = [threading.Thread(target=run, args=(i,)) for i in range(conns)]
    started = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - started
    return {"req_s": sum(counts) / elapsed, "non2xx": sum(bad), "client": "python"}


def measure(
    models: Path, args: argparse.Namespace, name: str, env: dict[str, str], headers: dict[str, str]
) -> dict[str, Any]:
    proc, url = _start(models, args.server, env)
    body = json.dumps(ROW).encode()
    try:
        with tempfile.NamedTemporaryFile("wb", suffix=".json", delete=False) as fh:
            fh.write(body)
        if shutil.which("wrk"):
            _wrk(url, headers, 2, args.connections, Path(fh.name))  # warm-up
            result = _wrk(url, headers, args.seconds, args.connections, Path(fh.name))
        else:
            _python_client(url, headers, 2, args.connections, body)
            result = _python_client(url, headers, args.seconds, args.connections, body)
        os.unlink(fh.name)
    finally:
        _stop(proc)
    return {"config": name, **result}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--server", choices=["granian", "gunicorn"], default="granian")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/15")
    parser.add_argument("--api-key", default=None)
    args = parser.parse_args()
    if not 0 < args.seconds <= 120:
        parser.error("--seconds must be in (0, 120]: this is a bounded benchmark")

    sys.path.insert(0, str(ROOT / "src"))
    from modelserve.demo import train_iris

    with tempfile.TemporaryDirectory(prefix="modelserve-bench-") as tmp:
        models = Path(tmp) / "models"
        train_iris(models)
        limited = {"MODELSERVE_RATE_LIMIT": NEVER_REACHED}
        redis_env = {**limited, "MODELSERVE_RATE_LIMIT_STORAGE": args.redis_url}
        key_env = {"MODELSERVE_API_KEY": args.api_key} if args.api_key else {}
        key_headers = {"X-API-Key": args.api_key} if args.api_key else {}
        configs = [
            ("baseline", {}, {}),
            ("limit (memory)", limited, {}),
            ("limit (redis)", redis_env, {}),
        ]
        if args.api_key:
            configs.append(("key + limit (redis)", {**redis_env, **key_env}, key_headers))
        results = [measure(models, args, name, env, hdr) for name, env, hdr in configs]
    base = results[0]["req_s"]
    for result in results:
        result["vs_baseline"] = round(result["req_s"] / base, 3)
        result["req_s"] = round(result["req_s"], 1)
        print(json.dumps(result))


if __name__ == "__main__":
    main()
