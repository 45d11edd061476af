"""Load benchmark: modelserve vs the in-process model, the tutorial's naive app, the lean app,
and peer model servers (Seldon MLServer and BentoML, see ``benchmarks/peers/README.md``).

Bounded and loopback-only: each server is pinned to core 0 with taskset, wrk to core 1, and
every load run stops after ``--duration`` seconds. Writes the tables into BENCHMARKS.md. The
first run installs the peers into their own venvs under ``benchmarks/.cache/venvs/``.

Usage (from the repository root, after the README's dev install)::

    python -m benchmarks.run [--duration 8] [--quick] [--no-peers | --only peers|baselines]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict
from dataclasses import dataclass
from dataclasses import field
from importlib.metadata import version
from pathlib import Path
from typing import TYPE_CHECKING
from typing import Any

import numpy as np
import orjson

if TYPE_CHECKING:
    from benchmarks.peers import PeerTarget

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / "benchmarks" / ".cache"
LUA = ROOT / "benchmarks" / "wrk_report.lua"
MARK_START, MARK_END = "<!-- results:start -->", "<!-- results:end -->"
SERVER_CPU, LOAD_CPU = "0", "1"
PEER_PREFIXES = ("MLServer", "BentoML")


@dataclass
class Result:
    """One measured row of a table."""

    workload: str
    target: str
    connections: int
    req_per_s: float
    rows_per_s: float
    p50_ms: float | None = None
    p99_ms: float | None = None
    p999_ms: float | None = None
    cpu_ms_per_req: float | None = None
    errors: int = 0


# -- preparation ----------------------------------------------------------------------------


def prepare() -> dict[str, Any]:
    """Train the demo models, compile the forest to ONNX, write request bodies."""
    from sklearn.datasets import load_breast_cancer
    from sklearn.datasets import load_iris

    from modelserve.demo import train_demo_models

    models = CACHE / "models"
    if models.exists():
        shutil.rmtree(models)
    train_demo_models(models)
    import joblib
    from skl2onnx import to_onnx

    forest_path = models / "breast-cancer" / "1" / "model.joblib"
    forest = joblib.load(forest_path)
    names = [f["name"] for f in _manifest_inputs(models / "breast-cancer")]
    onnx_model = to_onnx(
        forest,
        np.zeros((1, 30), dtype=np.float32),
        options={id(forest.steps[-1][1]): {"zipmap": False}},
    )
    onnx_path = CACHE / "forest.onnx"
    onnx_path.write_bytes(onnx_model.SerializeToString())

    cancer = load_breast_cancer().data
    iris = load_iris().data
    iris_names = [f["name"] for f in _manifest_inputs(models / "iris")]
    bodies = {
        "forest_row": dict(zip(names, cancer[7].tolist(), strict=True)),
        "forest_batch100": {"instances": cancer[:100].tolist()},
        "iris_row": dict(zip(iris_names, iris[60].tolist(), strict=True)),
    }
    paths = {}
    for key, body in bodies.items():
        path = CACHE / f"{key}.json"
        path.write_bytes(orjson.dumps(body))
        paths[key] = path
    return {
        "models": models,
        "forest_path": forest_path,
        "onnx_path": onnx_path,
        "names": names,
        "bodies": paths,
        "cancer": cancer,
    }


def _manifest_inputs(model_dir: Path) -> list[dict[str, Any]]:
    import yaml

    inputs: list[dict[str, Any]] = yaml.safe_load((model_dir / "model.yaml").read_text())["inputs"]
    return inputs


# -- in-process limits ----------------------------------------------------------------------


def _rate(fn: Callable[[], object], seconds: float) -> float:
    fn()
    n, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        fn()
        n += 1
    return n / elapsed


def in_process(prep: dict[str, Any], seconds: float) -> list[Result]:
    """The model alone and modelserve's service without HTTP, on the server's core."""
    import joblib
    import onnxruntime as ort

    from modelserve.service import InferenceService
    from modelserve.settings import ServerSettings

    os.sched_setaffinity(0, {int(SERVER_CPU)})
    forest = joblib.load(prep["forest_path"])
    row, batch = prep["cancer"][7:8], prep["cancer"][:100]
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(
        str(prep["onnx_path"]), options, providers=["CPUExecutionProvider"]
    )
    name = session.get_inputs()[0].name
    service = InferenceService(
        ServerSettings(profile="testing", model_path=prep["models"], log_level="WARNING")
    )
    service.load()
    row_body = prep["bodies"]["forest_row"].read_bytes()
    batch_body = prep["bodies"]["forest_batch100"].read_bytes()
    out = []
    r = _rate(lambda: forest.predict_proba(row), seconds)
    out.append(Result("forest /predict", "in-process sklearn predict_proba", 1, r, r))
    r = _rate(lambda: session.run(None, {name: row.astype(np.float32)}), seconds)
    out.append(Result("forest /predict", "in-process ONNX session.run", 1, r, r))
    r = _rate(lambda: service.predict_one("breast-cancer", None, row_body), seconds)
    out.append(Result("forest /predict", "in-process modelserve service (no HTTP)", 1, r, r))
    r = _rate(lambda: forest.predict_proba(batch), seconds)
    out.append(
        Result("forest /predict_batch 100", "in-process sklearn predict_proba", 1, r, r * 100)
    )
    r = _rate(lambda: service.predict_batch("breast-cancer", None, batch_body), seconds)
    out.append(
        Result(
            "forest /predict_batch 100", "in-process modelserve service (no HTTP)", 1, r, r * 100
        )
    )
    os.sched_setaffinity(0, set(range(os.cpu_count() or 1)))
    return out


# -- servers under load ---------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Server:
    """A server process pinned to the server core; stopped on exit.

    ``{port}`` in ``argv`` or in an ``env`` value is the port the server must listen on;
    ``{port1}``, ``{port2}``, ... are further free ports (for servers that open several, like
    MLServer's gRPC and metrics ports). By default any HTTP answer on ``ready_path`` means ready;
    ``ready_status`` asks for that exact status instead. ``log_path`` sends the server's stdout
    and stderr to a file (a chatty server cannot block on a full pipe); without it stderr is kept
    in a pipe for the error message, as before.
    """

    def __init__(
        self,
        name: str,
        argv: list[str],
        env: dict[str, str],
        ready_path: str,
        *,
        ready_status: int | None = None,
        start_timeout: float = 60.0,
        stop_timeout: float = 30.0,
        log_path: Path | None = None,
        cwd: Path | None = None,
    ) -> None:
        self.name = name
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.stop_timeout = stop_timeout
        self.log_path = log_path
        ports = {"port": self.port}

        def expand(text: str) -> str:
            def port(match: re.Match[str]) -> str:
                key = match.group(1)
                if key not in ports:
                    ports[key] = _free_port()
                return str(ports[key])

            return re.sub(r"\{(port\d*)\}", port, text)

        full_env = {
            **os.environ,
            "PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}{ROOT}",
            **{k: expand(v) for k, v in env.items()},
        }
        argv = [expand(a) for a in argv]
        self._log = log_path.open("wb") if log_path else None
        self.proc = subprocess.Popen(
            ["taskset", "-c", SERVER_CPU, *argv],
            env=full_env,
            cwd=cwd,
            stdout=self._log or subprocess.DEVNULL,
            stderr=self._log or subprocess.PIPE,
            start_new_session=True,
        )
        self._wait(ready_path, ready_status, start_timeout)

    def _error_text(self) -> str:
        if self.log_path is not None:
            return self.log_path.read_text(errors="replace")[-2000:]
        return self.proc.stderr.read().decode()[-2000:] if self.proc.stderr else ""

    def _wait(self, path: str, status: int | None = None, timeout: float = 60.0) -> None:
        import urllib.error
        import urllib.request

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self.stop()  # its children, if any, and the log file
                raise RuntimeError(f"{self.name} exited: {self._error_text()}")
            try:
                with urllib.request.urlopen(self.url + path, timeout=2) as answer:
                    if status is None or answer.status == status:
                        return
            except urllib.error.HTTPError as exc:
                if status is None or exc.code == status:
                    return  # it answers: a 405 on GET /predict means the app is up
                time.sleep(0.2)
            except OSError:
                time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"{self.name} did not start in {timeout:.0f} s: {self._error_text()}")

    def _processes(self) -> dict[int, tuple[int, int]]:
        """pid -> (user + system ticks, 1 if in the server's tree) for every live process.

        The tree is the server's process group plus every descendant: BentoML's workers start
        in sessions of their own, so the process group alone misses them.
        """
        stats: dict[int, list[str]] = {}
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                stats[int(stat.parent.name)] = stat.read_text().rsplit(")", 1)[1].split()
            except (OSError, ValueError):
                continue
        root = self.proc.pid

        def inside(pid: int) -> bool:
            seen = set()
            while pid in stats and pid not in seen:
                seen.add(pid)
                fields = stats[pid]
                if pid == root or int(fields[2]) == root:  # the server, or its process group
                    return True
                pid = int(fields[1])  # parent
            return False

        return {
            pid: (int(fields[11]) + int(fields[12]), int(inside(pid)))
            for pid, fields in stats.items()
        }

    def cpu_seconds(self) -> float:
        """User + system CPU of the server's process group and all its descendants."""
        tick = os.sysconf("SC_CLK_TCK")
        return sum(t for t, mine in self._processes().values() if mine) / tick

    def stop(self) -> None:
        """SIGTERM to the process group, SIGKILL after ``stop_timeout``; then any descendant
        that lives in a group of its own and outlived its parent's shutdown is killed too."""
        strays = [pid for pid, (_, mine) in self._processes().items() if mine]
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=self.stop_timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=30)
        except ProcessLookupError:
            pass
        finally:
            for pid in strays:
                if pid != self.proc.pid:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
            if self._log is not None:
                self._log.close()


def wrk(server: Server, path: str, body: Path, connections: int, seconds: int) -> dict[str, Any]:
    cpu_before = server.cpu_seconds()
    proc = subprocess.run(
        [
            "taskset",
            "-c",
            LOAD_CPU,
            "wrk",
            "-t1",
            f"-c{connections}",
            f"-d{seconds}s",
            "--timeout",
            "10s",
            "-s",
            str(LUA),
            server.url + path,
        ],
        env={**os.environ, "BODY_FILE": str(body)},
        capture_output=True,
        text=True,
        timeout=seconds + 60,
    )
    match = re.search(r"WRK_JSON (\{.*\})", proc.stdout)
    if not match:
        raise RuntimeError(f"wrk failed: {proc.stdout}\n{proc.stderr}")
    stats: dict[str, Any] = json.loads(match.group(1))
    stats["cpu_s"] = server.cpu_seconds() - cpu_before
    return stats


def load_result(
    workload: str, target: str, rows: int, connections: int, stats: dict[str, Any]
) -> Result:
    seconds = stats["duration_us"] / 1e6
    ok = stats["requests"] - stats["non2xx"]
    return Result(
        workload=workload,
        target=target,
        connections=connections,
        req_per_s=ok / seconds,
        rows_per_s=ok * rows / seconds,
        p50_ms=stats["p50_us"] / 1000,
        p99_ms=stats["p99_us"] / 1000,
        p999_ms=stats["p999_us"] / 1000,
        cpu_ms_per_req=1000 * stats["cpu_s"] / max(stats["requests"], 1),
        errors=stats["non2xx"] + stats["socket_errors"],
    )


def under_load(
    prep: dict[str, Any],
    seconds: int,
    quick: bool,
    *,
    peers: bool = True,
    only: str | None = None,
    problems: list[str] | None = None,
) -> list[Result]:
    """Every server target under wrk; with ``peers``, MLServer and BentoML too (``peers.py``).

    ``only`` is ``"peers"`` or ``"baselines"`` (modelserve and the apps in ``baselines/``).
    A peer that will not install, start or answer correctly is reported in ``problems`` (and
    printed), never timed; one of our own servers failing stops the run.
    """
    gunicorn = [
        sys.executable,
        "-m",
        "gunicorn",
        "--bind",
        "127.0.0.1:{port}",
        "--log-level",
        "warning",
    ]
    gthread = ["--worker-class", "gthread", "--workers", "2", "--threads", "8"]
    bodies = prep["bodies"]
    tuples: list[tuple[str, list[str], dict[str, str], list[tuple[str, str, str, int, int]]]] = [
        (
            "modelserve (gunicorn 2x8)",
            [
                sys.executable,
                "-m",
                "modelserve",
                "serve",
                str(prep["models"]),
                "--port",
                "{port}",
                "--workers",
                "2",
                "--threads",
                "8",
                "--default-model",
                "breast-cancer",
            ],
            {"MODELSERVE_SECRET_KEY": "benchmark-only-secret", "MODELSERVE_LOG_LEVEL": "WARNING"},
            [
                ("forest /predict", "/predict", "forest_row", 1, 64),
                ("forest /predict", "/predict", "forest_row", 1, 1),
                ("iris /predict", "/models/iris/predict", "iris_row", 1, 64),
                ("forest /predict_batch 100", "/predict_batch", "forest_batch100", 100, 8),
            ],
        ),
        (
            "naive tutorial app (gunicorn 4 sync)",
            [*gunicorn, "--workers", "4", "benchmarks.baselines.naive_app:app"],
            {"BENCH_MODEL": str(prep["forest_path"])},
            [
                ("forest /predict", "/predict", "forest_row", 1, 64),
                ("forest /predict", "/predict", "forest_row", 1, 1),
                ("forest /predict_batch 100", "/predict_batch", "forest_batch100", 100, 8),
            ],
        ),
        (
            "lean app: Flask+orjson+ONNX (gunicorn 2x8)",
            [*gunicorn, *gthread, "benchmarks.baselines.lean_app:app"],
            {"BENCH_ONNX": str(prep["onnx_path"]), "BENCH_FEATURES": ",".join(prep["names"])},
            [
                ("forest /predict", "/predict", "forest_row", 1, 64),
                ("forest /predict", "/predict", "forest_row", 1, 1),
            ],
        ),
        (
            "Flask hello floor (gunicorn 2x8)",
            [*gunicorn, *gthread, "benchmarks.baselines.hello_app:app"],
            {},
            [("forest /predict", "/predict", "forest_row", 1, 64)],
        ),
    ]
    targets = [
        LoadTarget(name, argv, env, [(w, path, bodies[b], rows, c) for w, path, b, rows, c in runs])
        for name, argv, env, runs in tuples
    ]
    if only == "peers":
        targets = []
    if peers and only != "baselines":
        from benchmarks.peers import peer_targets

        print("  preparing peers (first run installs them into benchmarks/.cache/venvs) ...")
        targets += [_peer_load_target(t) for t in peer_targets(prep)]
    problems = [] if problems is None else problems
    results = []
    for target in targets:
        name = target.name
        runs = target.runs[:1] if quick else target.runs
        try:
            if target.error is not None:
                raise RuntimeError(target.error)
            server = Server(name, target.argv, target.env, target.ready_path, **target.options)
        except RuntimeError as exc:
            if target.check is None:
                raise
            problems.append(f"{name}: not measured: {exc}")
            print(f"  {name}: NOT MEASURED: {exc}", flush=True)
            continue
        measured = 0
        try:
            if target.check is not None:
                target.check(server.url)  # one correct answer per workload before any load
            for workload, path, body, rows, conns in runs:
                wrk(server, path, body, conns, 2)  # warm-up
                stats = wrk(server, path, body, conns, seconds)
                result = load_result(workload, name, rows, conns, stats)
                print(
                    f"  {workload:28} {name:42} c={conns:<3} {result.req_per_s:9.1f} req/s",
                    flush=True,
                )
                results.append(result)
                measured += 1
        except RuntimeError as exc:
            if target.check is None:
                raise
            what = f"stopped after {measured} run(s)" if measured else "not measured"
            problems.append(f"{name}: {what}: {exc}")
            print(f"  {name}: {what.upper()}: {exc}", flush=True)
        finally:
            server.stop()
    return results


@dataclass
class LoadTarget:
    """One server configuration and the wrk runs to make against it."""

    name: str
    argv: list[str]
    env: dict[str, str]
    runs: list[tuple[str, str, Path, int, int]]  # workload, URL path, body, rows, connections
    ready_path: str = "/predict"
    options: dict[str, Any] = field(default_factory=dict)  # more keyword arguments for Server
    check: Callable[[str], None] | None = None  # given the base URL; raises on a wrong answer
    error: str | None = None  # the target could not be prepared: report, do not start


def _peer_load_target(peer: PeerTarget) -> LoadTarget:
    runs = []
    for workload, conns in peer.runs:
        spec = peer.workloads[workload]
        runs.append((workload, spec.path, spec.body, spec.rows, conns))
    return LoadTarget(
        name=peer.name,
        argv=peer.argv,
        env=peer.env,
        runs=runs,
        ready_path=peer.ready_path,
        options={
            "ready_status": peer.ready_status,
            "start_timeout": peer.start_timeout,
            "stop_timeout": peer.stop_timeout,
            "log_path": peer.log_path,
            "cwd": peer.cwd,
        },
        check=peer.check,
        error=peer.error,
    )


# -- report ---------------------------------------------------------------------------------


def _fmt(value: float | None, digits: int = 1) -> str:
    return "" if value is None else f"{value:,.{digits}f}"


def render(
    results: list[Result], command: str, seconds: int, problems: list[str] | None = None
) -> str:
    cpu = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    pkgs = ", ".join(
        f"{p} {version(p)}"
        for p in ("flask", "gunicorn", "numpy", "scikit-learn", "onnxruntime", "orjson")
    )
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    lines = [
        f"Run {when} · `{command}` · {seconds} s per load run",
        "",
        f"Machine: {os.cpu_count()} cores ({cpu}); Python {platform.python_version()}; {pkgs}.",
        f"Servers pinned to core {SERVER_CPU}, wrk (1 thread) to core {LOAD_CPU}, loopback only.",
        *(
            [
                "Peers (MLServer, BentoML): one process or worker each, in their own venvs, on "
                "the same artifacts; see benchmarks/peers/README.md."
            ]
            if any(r.target.startswith(PEER_PREFIXES) for r in results) or problems
            else []
        ),
        "",
        "| workload | target | conns | req/s | rows/s | p50 ms | p99 ms | p99.9 ms "
        "| CPU ms/req | errors |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        cells = [
            r.workload,
            r.target,
            str(r.connections),
            _fmt(r.req_per_s),
            _fmt(r.rows_per_s, 0),
            _fmt(r.p50_ms, 2),
            _fmt(r.p99_ms, 2),
            _fmt(r.p999_ms, 2),
            _fmt(r.cpu_ms_per_req, 2),
            str(r.errors),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    by = {(r.workload, r.target, r.connections): r for r in results}
    ours_name = "modelserve (gunicorn 2x8)"
    others = {
        "naive": "naive tutorial app (gunicorn 4 sync)",
        "lean ONNX app": "lean app: Flask+orjson+ONNX (gunicorn 2x8)",
    }
    ratios = []
    for workload, conns in (("forest /predict", 64), ("forest /predict_batch 100", 8)):
        ours = by.get((workload, ours_name, conns))
        for label, target in others.items():
            other = by.get((workload, target, conns))
            if ours and other:
                ratio = ours.req_per_s / other.req_per_s
                ratios.append(f"- {workload}, {conns} conns: modelserve / {label} = {ratio:.2f}x")
    peer_names = list(
        dict.fromkeys(r.target for r in results if r.target.startswith(PEER_PREFIXES))
    )
    for workload, conns in (("forest /predict", 64), ("iris /predict", 64)):
        ours = by.get((workload, ours_name, conns))
        for target in peer_names:
            other = by.get((workload, target, conns))
            if ours and other and other.req_per_s:
                ratio = ours.req_per_s / other.req_per_s
                refused = f" ({other.errors:,} errors there)" if other.errors else ""
                ratios.append(
                    f"- {workload}, {conns} conns: modelserve / {target} = {ratio:.2f}x{refused}"
                )
    if ratios:
        lines += ["", *ratios]
    if problems:
        lines += ["", *(f"- Peer problem: {p.splitlines()[0][:300]}" for p in problems)]
    return "\n".join(lines) + "\n"


def write_report(report: str) -> None:
    path = ROOT / "BENCHMARKS.md"
    text = path.read_text() if path.exists() else f"# Benchmarks\n\n{MARK_START}\n{MARK_END}\n"
    if MARK_START not in text:
        text += f"\n{MARK_START}\n{MARK_END}\n"
    head, rest = text.split(MARK_START, 1)
    _, tail = rest.split(MARK_END, 1)
    path.write_text(f"{head}{MARK_START}\n{report}{MARK_END}{tail}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=int, default=8, help="seconds per load run")
    parser.add_argument("--quick", action="store_true", help="one load run per server")
    parser.add_argument(
        "--no-write", action="store_true", help="print, do not update BENCHMARKS.md"
    )
    parser.add_argument(
        "--no-peers", action="store_true", help="skip the peer servers (MLServer, BentoML)"
    )
    parser.add_argument(
        "--only",
        choices=["peers", "baselines"],
        help="only the peer servers, or only modelserve and baselines/ (no in-process rows "
        "with --only peers)",
    )
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is needed: apt-get install wrk")
    if (os.cpu_count() or 1) < 2:
        sys.exit("needs 2 cores: one for the server, one for the load generator")
    CACHE.mkdir(parents=True, exist_ok=True)
    print("preparing models ...", flush=True)
    prep = prepare()
    results = []
    if args.only != "peers":
        print("in-process ...", flush=True)
        results += in_process(prep, seconds=3.0)
    print("under load ...", flush=True)
    problems: list[str] = []
    results += under_load(
        prep, args.duration, args.quick, peers=not args.no_peers, only=args.only, problems=problems
    )
    (CACHE / "latest.json").write_text(json.dumps([asdict(r) for r in results], indent=2))
    command = "python -m benchmarks.run" + "".join(f" {a}" for a in sys.argv[1:])
    report = render(results, command, args.duration, problems)
    print(report)
    if not args.no_write:
        write_report(report)


if __name__ == "__main__":
    main()
