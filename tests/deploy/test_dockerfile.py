"""The Dockerfile and .dockerignore: lint rules, and its build and start steps run for real
outside a container (Docker does not run here)."""

from __future__ import annotations

import fnmatch
import os
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import requests
import yaml

from ..conftest import SRC
from ..conftest import LiveServer
from ..conftest import running_server
from .conftest import ROOT
from .dockerfile import Instruction
from .dockerfile import parse
from .dockerfile import problems

DOCKERFILE = ROOT / "Dockerfile"


def test_dockerfile_follows_the_rules() -> None:
    assert problems(parse(DOCKERFILE)) == []


def test_the_rules_find_what_they_check(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text(
        "FROM python:latest\n"
        "ADD https://example.com/x.tar.gz /x\n"
        "RUN apt-get update && apt-get install -y curl\n"
        "RUN pip install flask\n"
        "CMD modelserve serve /models\n",
        encoding="utf-8",
    )
    found = "\n".join(problems(parse(bad)))
    for expected in (
        "not a multi-stage build",
        "pin the base image",
        "ADD of a URL",
        "--no-install-recommends",
        "apt lists not removed",
        "--no-cache-dir",
        "runs as root",
        "CMD in shell form",
        "no HEALTHCHECK",
    ):
        assert expected in found, expected


def test_cpu_torch_and_real_extras() -> None:
    build = parse(DOCKERFILE)[0]
    runs = [i.args for i in build.all("RUN")]
    torch = [n for n, r in enumerate(runs) if "torch==2.13.0" in r]
    project = [n for n, r in enumerate(runs) if re.search(r"pip install .*\"\.\[", r)]
    assert len(torch) == 1 and len(project) == 1 and torch[0] < project[0]
    assert "--index-url https://download.pytorch.org/whl/cpu" in runs[torch[0]]
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    extras = set(pyproject["project"]["optional-dependencies"])
    assert set(build.arg_defaults()["EXTRAS"].split(",")) <= extras


def test_pid1_port_and_healthcheck_agree() -> None:
    final = parse(DOCKERFILE)[-1]
    (entrypoint,) = final.all("ENTRYPOINT")
    # tini forwards SIGTERM to modelserve's main process only (-g would skip the drain).
    assert entrypoint.exec_form() == ["tini", "--", "modelserve"]
    assert any("install -y --no-install-recommends tini" in i.args for i in final.all("RUN"))
    env = final.env()
    (expose,) = final.all("EXPOSE")
    assert expose.args == env["MODELSERVE_PORT"] == "8080"
    assert env["MODELSERVE_HOST"] == "0.0.0.0"
    (check,) = final.all("HEALTHCHECK")
    command = check.exec_form()
    assert command is not None and command[0] == "python"
    assert "/v2/health/ready" in command[-1] and "curl" not in check.args


def test_dockerignore_keeps_what_the_build_copies() -> None:
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]

    def ignored(path: str) -> bool:
        return any(fnmatch.fnmatch(path, p) or path.startswith(p + "/") for p in patterns)

    sources = [src for stage in parse(DOCKERFILE) for src in _copied(stage.all("COPY"))]
    assert {"pyproject.toml", "src", "models", "README.md"} <= set(sources)
    assert not [s for s in sources if ignored(s)]
    for heavy in (".git", "tests", "benchmarks", ".venv", ".env", "secrets"):
        assert ignored(heavy), heavy


def _copied(copies: list[Instruction]) -> list[str]:
    """The build-context paths ``COPY`` instructions take (not those from other stages)."""
    out = []
    for ins in copies:
        words = ins.args.split()
        if any(w.startswith("--from") for w in words):
            continue
        out += [w.rstrip("/") for w in words[:-1] if not w.startswith("--")]
    return out


def test_the_build_stage_copies_enough_to_build_modelserve(tmp_path: Path) -> None:
    # The files the build stage copies, and nothing else, make a wheel with the CLI.
    context = tmp_path / "context"
    for name in _copied(parse(DOCKERFILE)[0].all("COPY")):
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, context / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            context.mkdir(exist_ok=True)
            shutil.copy(source, context / name)
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index"]
        + ["-q", "-w", str(tmp_path / "wheel"), str(context)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert built.returncode == 0, built.stderr
    (wheel,) = (tmp_path / "wheel").glob("modelserve-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        (entry_points,) = [n for n in names if n.endswith("entry_points.txt")]
        assert "modelserve = modelserve.cli:main" in archive.read(entry_points).decode()
    assert "modelserve/cli.py" in names and "modelserve/py.typed" in names


def _shim(tmp_path: Path) -> dict[str, str]:
    """An environment in which ``modelserve`` is this checkout's CLI (as in the image)."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    shim = bindir / "modelserve"
    shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m modelserve "$@"\n', encoding="utf-8")
    shim.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODELSERVE_")}
    env.update(PATH=f"{bindir}{os.pathsep}{env['PATH']}", PYTHONPATH=str(SRC))
    return env


def test_build_step_start_command_and_healthcheck_outside_a_container(
    demo_repo: Path, tmp_path: Path
) -> None:
    stages = parse(DOCKERFILE)
    final = stages[-1]
    models = tmp_path / "models"  # what `COPY models/ /models/` puts in the image
    for name in ("iris", "digits-onnx"):
        shutil.copytree(demo_repo / name, models / name)

    # The models stage's RUN, with /models pointing here.
    (optimize,) = [i for i in stages[1].all("RUN") if "modelserve optimize" in i.args]
    script = optimize.args.replace("/models", str(models))
    done = subprocess.run(
        ["bash", "-c", script], env=_shim(tmp_path), capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    manifest = yaml.safe_load((models / "iris" / "2" / "model.yaml").read_text(encoding="utf-8"))
    assert manifest["runtime"] == "onnx"
    assert f"{models / 'digits-onnx'} served as it is" in done.stdout  # not scikit-learn
    assert not (models / "digits-onnx" / "2").exists()

    # ENTRYPOINT + CMD without tini, the models folder here, the image's environment.
    (entrypoint,) = final.all("ENTRYPOINT")
    (cmd,) = final.all("CMD")
    command = (entrypoint.exec_form() or [])[2:] + (cmd.exec_form() or [])
    assert command[:2] == ["modelserve", "serve"]
    args = [str(models) if a == "/models" else a for a in command[2:]]
    env = {k: v for k, v in final.env().items() if k.startswith("MODELSERVE_")}
    env["MODELSERVE_HOST"] = "127.0.0.1"  # all interfaces in a container, loopback here
    (check,) = final.all("HEALTHCHECK")
    healthcheck = check.exec_form() or []

    def healthy(server: LiveServer) -> int:
        probe_env = {**os.environ, "MODELSERVE_PORT": str(server.port)}
        return subprocess.run(healthcheck, env=probe_env, capture_output=True).returncode

    with running_server(args, env) as server:
        meta = requests.get(f"{server.url}/models/iris", timeout=10).json()
        assert (meta["version"], meta["runtime"]["runtime"]) == ("2", "onnx")  # compiled
        assert healthy(server) == 0
    assert server.proc.returncode == 0, server.output()  # SIGTERM: a clean stop
    assert healthy(server) != 0  # nothing answers: the check fails
