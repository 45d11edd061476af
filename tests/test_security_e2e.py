"""Authentication on real servers (granian and gunicorn, 2 workers) started by the real command
line: revocation reaches every worker; the README's first command needs no secret key."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import joblib
import pytest
import requests

from modelserve.keys import create_key

from . import models
from .conftest import SRC
from .conftest import LiveServer

pytestmark = pytest.mark.e2e


def _fresh_status(url: str, key: str, row: dict[str, float]) -> int:
    """One request on its own connection, so that successive ones spread over the workers."""
    headers = {"Connection": "close", "X-API-Key": key}
    return requests.post(url + "/predict", json=row, headers=headers, timeout=10).status_code


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODELSERVE_")}
    env["PYTHONPATH"] = f"{SRC}{os.pathsep}{env.get('PYTHONPATH', '')}"
    return subprocess.run(
        [sys.executable, "-m", "modelserve", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize("server_name", ["granian", "gunicorn"])
def test_a_revoked_key_stops_working_in_every_worker(
    repo: Path, tmp_path: Path, live_server: Callable[..., LiveServer], server_name: str
) -> None:
    keys_file = tmp_path / "keys.toml"
    created = _cli("keys", "create", "ci", "--scope", "predict", "--keys-file", str(keys_file))
    assert created.returncode == 0, created.stderr
    key = created.stdout.strip()
    other = create_key(keys_file, "other", ["predict"])
    server = live_server(
        [str(repo), "--workers", "2", "--server", server_name, "--default-model", "iris"],
        {"MODELSERVE_KEYS_FILE": str(keys_file)},
    )
    row = models.features_of(models.iris(), models.iris().x[0])
    assert [_fresh_status(server.url, key, row) for _ in range(10)] == [200] * 10
    assert _fresh_status(server.url, "ms_wrong", row) == 401

    revoked = _cli("keys", "revoke", "ci", "--keys-file", str(keys_file))
    assert revoked.returncode == 0, revoked.stderr
    start = time.monotonic()
    while _fresh_status(server.url, key, row) != 401:
        assert time.monotonic() - start < 5, "the revoked key still works after 5 s"
    # Past the workers' re-read interval (1 s), no worker accepts it any more.
    time.sleep(1.5)
    assert [_fresh_status(server.url, key, row) for _ in range(30)] == [401] * 30
    assert [_fresh_status(server.url, other, row) for _ in range(10)] == [200] * 10
    output = server.stop()
    assert "authentication is OFF" not in output


@pytest.mark.parametrize("server_name", ["granian", "gunicorn"])
def test_the_readme_first_command_starts_without_a_secret_key(
    tmp_path: Path, live_server: Callable[..., LiveServer], server_name: str
) -> None:
    """The README's two commands, ``modelserve validate trained_model.pkl --preprocessor
    scaler.pkl --write-manifest`` (pins the pickles) then ``modelserve serve`` with the same
    arguments: no secret key set (LiveServer sets none), two workers; the server says once
    that predictions are open."""
    trained = models.iris()
    joblib.dump(trained.model, tmp_path / "trained_model.pkl")
    joblib.dump(trained.preprocessor, tmp_path / "scaler.pkl")
    args = [str(tmp_path / "trained_model.pkl"), "--preprocessor", str(tmp_path / "scaler.pkl")]
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    subprocess.run(
        [sys.executable, "-m", "modelserve", "validate", *args, "--write-manifest"],
        check=True,
        capture_output=True,
        env=env,
    )
    server = live_server([*args, "--workers", "2", "--server", server_name])
    assert "MODELSERVE_SECRET_KEY" not in os.environ
    x = trained.x[[5, 75, 145]]
    resp = requests.post(server.url + "/predict_batch", json={"instances": x.tolist()}, timeout=5)
    assert resp.status_code == 200, resp.text
    assert resp.headers["X-Content-Type-Options"] == "nosniff"
    unload = requests.post(server.url + "/v2/repository/models/trained_model/unload", timeout=5)
    assert unload.status_code == 403 and unload.json()["type"] == "Forbidden"
    output = server.stop()
    assert output.count("authentication is OFF") == 1, output
    assert output.count("random secret key") == 1, output
