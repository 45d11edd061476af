"""The benchmark's peer plumbing, without installing or starting any peer."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from benchmarks import peers
from benchmarks import run


def test_ensure_venv_reuses_a_venv_with_the_same_requirements(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(peers, "VENVS", tmp_path)
    venv = tmp_path / "peer"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").touch()
    (venv / peers.MARKER).write_text(json.dumps(["a==1", "b==2"]))

    def no_install(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("installed again")

    monkeypatch.setattr(subprocess, "run", no_install)
    assert peers.ensure_venv("peer", ["a==1", "b==2"]) == venv


def test_ensure_venv_reports_a_failed_install_and_leaves_no_venv(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(peers, "VENVS", tmp_path)
    venv = tmp_path / "peer"
    (venv / "bin").mkdir(parents=True)
    (venv / peers.MARKER).write_text(json.dumps(["a==1"]))  # an older list: rebuilt

    def fake_run(argv: list[str], **kwargs: Any) -> None:
        if "pip" in argv:
            kwargs["stdout"].write("ERROR: No matching distribution found for a==2\n")
            raise subprocess.CalledProcessError(1, argv)
        Path(argv[-1], "bin").mkdir(parents=True)

    monkeypatch.setattr(subprocess, "run", fake_run)
    with pytest.raises(peers.PeerError, match=r"(?s)installing peer failed \(exit 1\).*a==2"):
        peers.ensure_venv("peer", ["a==2"])
    assert not venv.exists()
    assert (tmp_path / "peer.install.log").exists()


def test_v2_request_and_answer_round_trip() -> None:
    x = np.arange(60, dtype=np.float64).reshape(2, 30)
    body = peers._v2_body(x)
    assert body["inputs"][0]["shape"] == [2, 30]
    assert body["inputs"][0]["datatype"] == "FP64"
    assert body["outputs"] == [{"name": "predict_proba"}]
    answer = {"outputs": [{"name": "predict_proba", "shape": [2, 2], "data": [0.9, 0.1, 0, 1]}]}
    got = peers._v2_parse(json.dumps(answer).encode())
    assert got.tolist() == [[0.9, 0.1], [0.0, 1.0]]


def test_server_fills_port_placeholders_and_waits_for_the_status(tmp_path: Path) -> None:
    script = (
        "import http.server, os, sys\n"
        "class H(http.server.BaseHTTPRequestHandler):\n"
        "    def do_GET(self):\n"
        "        self.send_response(200 if self.path == '/ready' else 404)\n"
        "        self.end_headers()\n"
        "        self.wfile.write(os.environ['OTHER'].encode())\n"
        "http.server.HTTPServer(('127.0.0.1', int(sys.argv[1])), H).serve_forever()\n"
    )
    server = run.Server(
        "stub",
        [sys.executable, "-c", script, "{port}"],
        {"OTHER": "{port1}"},
        "/ready",
        ready_status=200,
        start_timeout=30,
        stop_timeout=5,
        log_path=tmp_path / "stub.log",
    )
    try:
        with urllib.request.urlopen(server.url + "/ready", timeout=5) as answer:
            other = int(answer.read())
        assert other != server.port and 0 < other < 65536
        assert server.cpu_seconds() >= 0
    finally:
        server.stop()
    assert server.proc.returncode is not None
