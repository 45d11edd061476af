"""The architecture's one-way layers, checked on the source: nothing below api/ knows HTTP."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "modelserve"
WEB = ("flask", "werkzeug")
#: Modules that may import Flask: the transport and the wiring above it.
TRANSPORT = {"app.py", "server.py", "cli.py", "__init__.py", "__main__.py"}


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            prefix = "." * node.level
            found.add(prefix + (node.module or ""))
    return found


def core_modules() -> list[Path]:
    return [
        p
        for p in PACKAGE.rglob("*.py")
        if "api" not in p.relative_to(PACKAGE).parts
        and "web" not in p.relative_to(PACKAGE).parts
        and str(p.relative_to(PACKAGE)) not in TRANSPORT
    ]


def test_nothing_below_api_imports_flask() -> None:
    offenders = {
        str(p.relative_to(PACKAGE)): sorted(
            m for m in imported_modules(p) if m.split(".")[0] in WEB
        )
        for p in core_modules()
    }
    assert {k: v for k, v in offenders.items() if v} == {}
    assert len(core_modules()) > 10  # the walk really found the package


def test_runtimes_and_codecs_do_not_import_upwards() -> None:
    upward = ("service", "repository", "api", "app", "cli", "batching")
    for folder in ("runtimes", "codecs"):
        for path in (PACKAGE / folder).glob("*.py"):
            bad = [
                m
                for m in imported_modules(path)
                if m.lstrip(".").split(".")[0] in upward and m.startswith("..")
            ]
            assert bad == [], f"{folder}/{path.name} imports {bad}"


def test_errors_and_settings_are_leaves() -> None:
    for name in ("errors.py", "types.py"):
        relative = [m for m in imported_modules(PACKAGE / name) if m.startswith(".")]
        assert relative == [], f"{name} imports {relative}"
    # threads.py: the defaults that depend on the machine (CPUs, container quota).
    assert {m for m in imported_modules(PACKAGE / "settings.py") if m.startswith(".")} == {
        ".errors",
        ".threads",
    }
    assert [m for m in imported_modules(PACKAGE / "threads.py") if m.startswith(".")] == []


def test_the_core_does_not_import_what_sits_on_it() -> None:
    """service/serving/repository are under the protocols, the admin and the listings."""
    above = ("protocols", "admin", "listing", "api", "app", "cli", "server")
    for name in ("service.py", "serving.py", "repository.py"):
        bad = [
            m
            for m in imported_modules(PACKAGE / name)
            if m.startswith(".") and m.lstrip(".").split(".")[0] in above
        ]
        assert bad == [], f"{name} imports {bad}"


def test_no_url_paths_in_the_core() -> None:
    """Routes are the transport's business: the core's messages never name a URL path."""
    for name in ("service.py", "serving.py", "repository.py", "errors.py"):
        tree = ast.parse((PACKAGE / name).read_text(encoding="utf-8"))
        paths = [
            node.value
            for node in ast.walk(tree)
            if isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and any(p in node.value for p in ("/predict", "/v2", "/models/", "/health"))
        ]
        assert paths == [], f"{name} names URL paths: {paths}"


def test_no_assert_in_production_code() -> None:
    """``python -O`` drops asserts: a check that matters must be a real one."""
    offenders = [
        str(p.relative_to(PACKAGE))
        for p in PACKAGE.rglob("*.py")
        if any(isinstance(node, ast.Assert) for node in ast.walk(ast.parse(p.read_text())))
    ]
    assert offenders == []


def test_jobs_sit_below_the_transport() -> None:
    """The batch jobs are core: the API and the CLI call them, never the other way round."""
    above = ("api", "app", "cli", "server")
    for path in (PACKAGE / "jobs").glob("*.py"):
        bad = [
            m
            for m in imported_modules(path)
            if m.startswith("..") and m.lstrip(".").split(".")[0] in above
        ]
        assert bad == [], f"jobs/{path.name} imports {bad}"
