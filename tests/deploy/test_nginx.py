"""deploy/nginx.conf, run by the real nginx in front of a real modelserve on loopback."""

from __future__ import annotations

import http.client
import io
import json
import os
import re
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import requests
from PIL import Image

from modelserve.settings import ServerSettings

from ..conftest import LiveServer
from ..conftest import free_port
from ..conftest import running_server
from .conftest import DEPLOY

NGINX_CONF = DEPLOY / "nginx.conf"
IRIS_ROW = {"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}
#: The app's error body (api/errors.py, error_body).
ERROR_KEYS = {"error", "type", "status"}


def _nginx_binary() -> str:
    # Debian puts it in /usr/sbin, which an unprivileged user's PATH may lack.
    binary = shutil.which("nginx", path=os.environ.get("PATH", "") + os.pathsep + "/usr/sbin")
    if binary is None:
        pytest.fail("nginx is not installed; apt-get install nginx", pytrace=False)
    return binary


@dataclass
class Nginx:
    url: str
    port: int
    proc: subprocess.Popen[bytes]
    workdir: Path

    def log(self) -> str:
        return "".join(
            (self.workdir / name).read_text(errors="replace")
            for name in ("error.log", "stdout.log")
            if (self.workdir / name).exists()
        )


def conf_for_test(upstream_port: int, listen_port: int, workdir: Path) -> str:
    """deploy/nginx.conf with only what a test run must change: the upstream's address, the
    listening port, the user the workers run as, and temporary folders this test owns."""
    text = NGINX_CONF.read_text(encoding="utf-8")
    upstream = "server modelserve:8080 "
    listen = "listen 80;"
    user = "\nuser nginx;\n"
    assert text.count(upstream) == 1 and text.count(listen) == 1 and text.count(user) == 1
    # As root (CI containers), the workers stay root: nobody else may write the temporary
    # folders made here. Unprivileged, nginx runs as whoever started it.
    text = text.replace(user, "\nuser root;\n" if os.geteuid() == 0 else "\n")
    text = text.replace(upstream, f"server 127.0.0.1:{upstream_port} ")
    text = text.replace(listen, f"listen 127.0.0.1:{listen_port};")
    temp = "".join(
        f"    {kind}_temp_path {workdir / kind};\n"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    return text.replace("http {\n", "http {\n" + temp, 1)


@pytest.fixture(scope="module")
def start_nginx(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    """Start nginx children with the templated conf (``start(upstream_port)``), stopped after."""
    binary = _nginx_binary()
    started: list[Nginx] = []

    def start(upstream_port: int) -> Nginx:
        workdir = tmp_path_factory.mktemp("nginx")
        port = free_port()
        conf = workdir / "nginx.conf"
        conf.write_text(conf_for_test(upstream_port, port, workdir), encoding="utf-8")
        directives = "daemon off; pid nginx.pid;"
        out = (workdir / "stdout.log").open("wb")
        proc = subprocess.Popen(
            [binary, "-p", str(workdir), "-e", str(workdir / "error.log"), "-c", str(conf)]
            + ["-g", directives],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        nginx = Nginx(f"http://127.0.0.1:{port}", port, proc, workdir)
        started.append(nginx)
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                return nginx
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"nginx did not start:\n{nginx.log()}")
                time.sleep(0.05)

    yield start
    for nginx in started:
        nginx.proc.terminate()  # SIGTERM: nginx's fast shutdown
        try:
            nginx.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            nginx.proc.kill()
            nginx.proc.wait()


@pytest.fixture(scope="module")
def app_server(demo_repo: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """modelserve as it runs behind this nginx (one trusted hop), on one gunicorn *sync*
    worker: one connection at a time, so a client that sends slowly straight to it blocks
    everyone else (what the slow-client test shows nginx prevents)."""
    root = tmp_path_factory.mktemp("nginx-models") / "models"
    for name in ("iris", "digits-onnx"):
        shutil.copytree(demo_repo / name, root / name)
    args = [str(root), "--server", "gunicorn", "--workers", "1", "--threads", "1"]
    args += ["--default-model", "iris", "--poll-interval", "0"]
    env = {"MODELSERVE_PROXY_HOPS": "1", "MODELSERVE_RATE_LIMIT_PREDICT": "3/minute"}
    env["MODELSERVE_GRACEFUL_TIMEOUT"] = "5"  # bounds the stop at teardown
    with running_server(args, env) as server:
        yield server


@pytest.fixture(scope="module")
def proxy(app_server: LiveServer, start_nginx: object) -> Nginx:
    nginx: Nginx = start_nginx(app_server.port)  # type: ignore[operator]
    return nginx


def noise_png(min_bytes: int) -> bytes:
    """An RGB PNG of random pixels stored uncompressed: at least ``min_bytes`` long."""
    side = int((min_bytes / 3) ** 0.5) + 8
    pixels = np.random.default_rng(0).integers(0, 256, (side, side, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, "PNG", compress_level=0)
    data = buf.getvalue()
    assert len(data) >= min_bytes
    return data


# -- the file itself ------------------------------------------------------------------------


def test_body_limit_is_the_apps_limit() -> None:
    text = NGINX_CONF.read_text(encoding="utf-8")
    (value,) = re.findall(r"^\s*client_max_body_size\s+(\d+)([kKmMgG]?);", text, re.M)
    number, unit = int(value[0]), value[1].lower()
    limit = number * {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3}[unit]
    assert limit == ServerSettings.model_fields["max_content_length"].default
    assert re.search(r"^\s*proxy_request_buffering\s+on;", text, re.M)
    # One hop appended, as MODELSERVE_PROXY_HOPS=1 expects.
    assert "proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;" in text


def test_every_own_error_is_the_apps_json_body() -> None:
    text = NGINX_CONF.read_text(encoding="utf-8")
    pages = dict(re.findall(r"^\s*error_page\s+(\d{3})\s+(@\w+);", text, re.M))
    assert set(pages) == {"413", "502", "504"}
    for status, location in pages.items():
        block = re.search(rf"location {location} \{{(.*?)\n\s*\}}", text, re.S)
        assert block is not None, location
        assert "default_type application/json;" in block.group(1)
        code, body = re.search(r"return (\d{3}) '(.*)';", block.group(1)).groups()  # type: ignore[union-attr]
        assert code == status
        payload = json.loads(body.replace("\\n", ""))
        assert set(payload) == ERROR_KEYS and payload["status"] == "error"


# -- nginx in front of a real server --------------------------------------------------------


def test_ten_megabyte_image_goes_through(proxy: Nginx) -> None:
    image = noise_png(10_000_000)
    r = requests.post(
        f"{proxy.url}/models/digits-onnx/predict_image",
        files={"image": ("noise.png", image, "image/png")},
        timeout=60,
    )
    assert r.status_code == 200, r.text
    assert r.json()["predicted_class"] in [str(d) for d in range(10)]
    assert "X-Request-ID" in r.headers  # the app answered, through nginx


def test_oversize_body_gets_nginxs_json_413_like_the_apps(
    proxy: Nginx, app_server: LiveServer
) -> None:
    body = b"\0" * (17 * 1024 * 1024)
    files = {"image": ("big.png", body, "image/png")}
    r = requests.post(f"{proxy.url}/models/digits-onnx/predict_image", files=files, timeout=60)
    assert r.status_code == 413
    assert r.headers["Content-Type"] == "application/json"
    assert "X-Request-ID" not in r.headers  # refused by nginx: the app never saw it
    direct = requests.post(
        f"{app_server.url}/models/digits-onnx/predict_image", files=files, timeout=60
    )
    assert direct.status_code == 413
    assert r.json() == direct.json()


def _slow_post(port: int, seconds: float, done: threading.Event) -> None:
    """POST /predict_batch sending its body in ten pieces over ``seconds``."""
    body = json.dumps({"instances": [list(IRIS_ROW.values())] * 200}).encode()
    head = (
        f"POST /models/iris/predict_batch HTTP/1.1\r\nHost: test\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        f"Connection: close\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(head)
        step = len(body) // 10 + 1
        for start in range(0, len(body), step):
            time.sleep(seconds / 10)
            sock.sendall(body[start : start + step])
        answer = sock.recv(65536)
    assert answer.startswith(b"HTTP/1.1 200"), answer[:200]
    done.set()


def _latencies_during_slow_client(url: str, port: int) -> list[float]:
    """Latencies of quick GETs to ``url`` made while a slow client sends a body to ``port``."""
    done = threading.Event()
    slow = threading.Thread(target=_slow_post, args=(port, 2.0, done), daemon=True)
    slow.start()
    time.sleep(0.3)  # the slow client is connected and has sent its head
    latencies = []
    with requests.Session() as session:
        while slow.is_alive() and len(latencies) < 100:
            started = time.monotonic()
            assert session.get(f"{url}/models/iris", timeout=30).status_code == 200
            latencies.append(time.monotonic() - started)
    slow.join(timeout=30)
    assert done.is_set(), "the slow client did not get its answer"
    return latencies


def test_slow_client_does_not_block_others(proxy: Nginx, app_server: LiveServer) -> None:
    # Straight to the single sync worker, the slow body holds everyone up: the test can fail.
    direct = _latencies_during_slow_client(app_server.url, app_server.port)
    assert max(direct) > 1.0, direct
    # Through nginx the body is buffered there: the others keep completing quickly.
    proxied = _latencies_during_slow_client(proxy.url, proxy.port)
    assert len(proxied) >= 5, proxied
    assert max(proxied) < 0.5, proxied


def _predict_from(proxy: Nginx, source: str, forwarded_for: str | None = None) -> int:
    """POST /predict to nginx from the loopback address ``source``; the status."""
    conn = http.client.HTTPConnection(
        "127.0.0.1", proxy.port, timeout=10, source_address=(source, 0)
    )
    headers = {"Content-Type": "application/json"}
    if forwarded_for is not None:
        headers["X-Forwarded-For"] = forwarded_for
    try:
        conn.request("POST", "/predict", body=json.dumps(IRIS_ROW), headers=headers)
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


def test_forwarded_for_is_the_client_address(proxy: Nginx) -> None:
    # Three predictions a minute per client; clients come from distinct loopback addresses.
    assert [_predict_from(proxy, "127.0.0.2") for _ in range(4)] == [200, 200, 200, 429]
    # Another address has its own budget: nginx's X-Forwarded-For reached the limits.
    assert _predict_from(proxy, "127.0.0.3") == 200
    # A client that claims to be someone else is still counted as itself: the app trusts one
    # hop (nginx's), not what the client wrote further left.
    assert _predict_from(proxy, "127.0.0.4", forwarded_for="127.0.0.3") == 200
    assert _predict_from(proxy, "127.0.0.3", forwarded_for="10.9.8.7") == 200
    assert _predict_from(proxy, "127.0.0.3", forwarded_for="10.9.8.6") == 200
    assert _predict_from(proxy, "127.0.0.3", forwarded_for="10.9.8.5") == 429
    access = proxy.log()
    assert '"remote_addr":"127.0.0.2"' in access and '"status":429' in access


def test_json_answers_are_gzipped(proxy: Nginx) -> None:
    r = requests.get(f"{proxy.url}/models/iris", headers={"Accept-Encoding": "gzip"}, timeout=10)
    assert r.status_code == 200
    assert r.headers["Content-Encoding"] == "gzip"
    assert r.json()["name"] == "iris"  # requests decompressed it


def test_unreachable_server_gets_json_502(start_nginx: object) -> None:
    nginx: Nginx = start_nginx(free_port())  # type: ignore[operator]
    r = requests.post(f"{nginx.url}/predict", json=IRIS_ROW, timeout=10)
    assert r.status_code == 502
    assert r.headers["Content-Type"] == "application/json"
    assert set(r.json()) == ERROR_KEYS and r.json()["type"] == "BadGateway"
