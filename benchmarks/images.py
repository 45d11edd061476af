"""Image benchmark: images/s over HTTP vs the in-process forward pass, for torch and ONNX.

Bounded and loopback-only. The server (``modelserve serve``, 1 worker) runs pinned to core 0
with ``taskset``; wrk, the load generator, runs on core 1; the in-process measurements are
pinned to core 0 too, so every row is "what one core does". Each load run stops after
``--duration`` seconds. Prints a Markdown table.

Usage (from the repository root; another engineer may be load-testing, so take the lock)::

    flock /tmp/modelserve-load.lock python benchmarks/images.py [--duration 8]
"""

from __future__ import annotations

import argparse
import io
import os
import platform
import re
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from functools import partial
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"
sys.path.insert(0, str(SRC))
sys.path.insert(0, str(ROOT))

from benchmarks._timing import rate  # noqa: E402
from modelserve.demo import train_demo_models  # noqa: E402
from modelserve.demo_digits import load_split  # noqa: E402
from modelserve.demo_digits import render_digit  # noqa: E402
from modelserve.protocols.images import ImageProtocol  # noqa: E402
from modelserve.service import InferenceService  # noqa: E402
from modelserve.settings import ServerSettings  # noqa: E402

SERVER_CPU, LOAD_CPU = "0", "1"
MODELS = ("digits", "digits-onnx")
BATCH = 32
_WRK_LUA = """
local f = io.open("{body}", "rb")
wrk.method = "POST"
wrk.body = f:read("*all")
f:close()
wrk.headers["Content-Type"] = "multipart/form-data; boundary={boundary}"
"""


def png_files(n: int) -> list[bytes]:
    """``n`` held-out digits as 32x32 PNG files, as a client would upload them."""
    _, x_test, _, _ = load_split()
    out = []
    for values in x_test[:n]:
        buf = io.BytesIO()
        render_digit(values, 4).save(buf, "PNG")
        out.append(buf.getvalue())
    return out


def multipart(files: list[bytes], boundary: str) -> bytes:
    parts = [
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="{i}.png"'
            "\r\nContent-Type: image/png\r\n\r\n"
        ).encode()
        + data
        + b"\r\n"
        for i, data in enumerate(files)
    ]
    return b"".join(parts) + f"--{boundary}--\r\n".encode()


def in_process(models: Path, files: list[bytes], seconds: float) -> list[tuple[str, ...]]:
    """Forward pass alone, and decode + preprocess + forward, in this process on core 0."""
    os.sched_setaffinity(0, {int(SERVER_CPU)})
    service = InferenceService(ServerSettings(profile="testing", model_path=models))
    service.load()
    images = ImageProtocol(service)
    rows: list[tuple[str, ...]] = []
    for name in MODELS:
        mv = service.resolve(name)
        transform = mv.images
        assert transform is not None
        input_name = mv.signature.tensor_inputs[0].name
        for batch in (1, BATCH):
            x = transform.batch(files[:batch], 10**8)
            per_s = rate(partial(mv.runtime.predict, {input_name: x}), seconds)
            rows.append(
                (
                    name,
                    "in-process forward pass (preprocessed)",
                    str(batch),
                    f"{per_s * batch:,.0f}",
                    "",
                    "",
                )
            )
        for batch in (1, BATCH):
            blobs = files[:batch]
            per_s = rate(partial(images.infer, mv, blobs), seconds)
            rows.append(
                (
                    name,
                    "in-process decode + preprocess + forward",
                    str(batch),
                    f"{per_s * batch:,.0f}",
                    "",
                    "",
                )
            )
    os.sched_setaffinity(0, set(range(os.cpu_count() or 1)))
    return rows


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def start_server(models: Path, threads: int) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("MODELSERVE_")},
        "PYTHONPATH": str(SRC),
        "MODELSERVE_SECRET_KEY": uuid.uuid4().hex,
        "MODELSERVE_LOG_LEVEL": "WARNING",
    }
    cmd = ["taskset", "-c", SERVER_CPU, sys.executable, "-m", "modelserve", "serve", str(models)]
    cmd += ["--host", "127.0.0.1", "--port", str(port), "--workers", "1", "--threads", str(threads)]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                pass
            out = subprocess.run(["curl", "-sf", "-m", "2", url + "/health"], capture_output=True)
            if out.returncode == 0:
                return proc, url
        except OSError:
            pass
        time.sleep(0.2)
    proc.kill()
    raise RuntimeError("server did not become ready")


def wrk(
    url: str, body: bytes, boundary: str, conns: int, seconds: float, tmp: Path
) -> dict[str, float]:
    body_path = tmp / f"body-{uuid.uuid4().hex}.bin"
    body_path.write_bytes(body)
    lua = tmp / "post.lua"
    lua.write_text(_WRK_LUA.format(body=body_path, boundary=boundary))
    cmd = ["taskset", "-c", LOAD_CPU, "wrk", "-t1", f"-c{conns}", f"-d{seconds:.0f}s", "--latency"]
    cmd += ["-s", str(lua), url]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    result = {"req_per_s": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))}  # type: ignore[union-attr]
    for pct in ("50", "99"):
        match = re.search(rf"\s{pct}%\s+([\d.]+)(us|ms|s)", out)
        if match:
            value, unit = float(match.group(1)), match.group(2)
            result[f"p{pct}_ms"] = (
                value / 1000 if unit == "us" else value * 1000 if unit == "s" else value
            )
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    result["errors"] = float(errors.group(1)) if errors else 0.0
    return result


def over_http(models: Path, files: list[bytes], seconds: float, tmp: Path) -> list[tuple[str, ...]]:
    threads = 4
    proc, url = start_server(models, threads)
    rows: list[tuple[str, ...]] = []
    try:
        for name in MODELS:
            for batch, conns in ((1, 1), (1, 8), (BATCH, 4)):
                boundary = uuid.uuid4().hex
                body = multipart(files[:batch], boundary)
                target = f"{url}/models/{name}/predict_image"
                # Warm up, then measure.
                wrk(target, body, boundary, conns, 2, tmp)
                r = wrk(target, body, boundary, conns, seconds, tmp)
                assert r["errors"] == 0, f"{name}: {r['errors']:.0f} failed requests"
                rows.append(
                    (
                        name,
                        f"HTTP /models/{name}/predict_image "
                        f"(gunicorn 1x{threads}), {conns} conn(s)",
                        str(batch),
                        f"{r['req_per_s'] * batch:,.0f}",
                        f"{r.get('p50_ms', float('nan')):.2f}",
                        f"{r.get('p99_ms', float('nan')):.2f}",
                    )
                )
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=8.0, help="seconds per measurement")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="modelserve-bench-") as tmpdir:
        tmp = Path(tmpdir)
        models = tmp / "models"
        train_demo_models(models)
        files = png_files(BATCH)
        rows = in_process(models, files, min(args.duration, 5.0))
        rows += over_http(models, files, args.duration, tmp)
    import onnxruntime
    import torch

    print(
        f"Run {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} · "
        "`flock /tmp/modelserve-load.lock python benchmarks/images.py "
        f"--duration {args.duration:g}`\n"
    )
    print(
        f"Machine: {os.cpu_count()} cores ({platform.processor() or platform.machine()}); "
        f"Python {platform.python_version()}; torch {torch.__version__}, "
        f"onnxruntime {onnxruntime.__version__}. Server and in-process runs on core 0, "
        "wrk (1 thread) on core 1; 32x32 PNG digits; torch/ONNX intra-op threads 1.\n"
    )
    print("| model | measured | images/request | images/s | p50 ms | p99 ms |")
    print("|---|---|---:|---:|---:|---:|")
    for row in rows:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
