"""Issue #12's targets, computed from the rows of one benchmark run (no servers, no I/O).

``evaluate(results, runtimes)`` returns one ``Target`` per goal and WSGI server: the measured
ratio, the bound it must meet, met / missed / not measured, and the numbers behind it.
``render_targets`` turns them into the report's Markdown lines.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from collections.abc import Mapping
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from typing import Protocol

SERVERS = ("granian", "gunicorn")
FOREST_ROW = "forest /predict"
FOREST_BATCH = "forest /predict_batch 100"
FOREST_BIG = "forest /predict_batch 10000"
#: The same 10,000 rows in each binary body (#21, round four), answered in the same format;
#: V2 is one ``[10000, 30]`` FP64 tensor with binary tensor data in and out.
FOREST_BIG_ARROW = "forest /predict_batch 10000 Arrow"
FOREST_BIG_PARQUET = "forest /predict_batch 10000 Parquet"
FOREST_BIG_NPY = "forest /predict_batch 10000 .npy"
FOREST_BIG_V2 = "forest V2 infer 10000 binary"
BIG_BINARY = (FOREST_BIG_ARROW, FOREST_BIG_PARQUET, FOREST_BIG_NPY, FOREST_BIG_V2)
CUSTOM_ROW = "custom forest /predict"
#: Round two (#21): the DataFrame-fitted forest as one file, served on default settings with
#: an API key, a Redis-counted rate limit, metrics and request lines on.
FRAME_ROW = "DataFrame forest /predict"
DEFAULTS_NAME = "modelserve defaults + key + Redis limit + metrics (granian)"
SKLEARN_IN_PROCESS = "in-process sklearn predict_proba"
ONNX_IN_PROCESS = "in-process ONNX session.run"


class Row(Protocol):
    """What a target reads from a measured row (``benchmarks.run.Result``)."""

    workload: str
    target: str
    connections: int
    req_per_s: float
    rows_per_s: float
    p50_ms: float | None
    p99_ms: float | None
    errors: int


def modelserve_name(server: str) -> str:
    return f"modelserve ({server} 1x64)"


def lean_name(server: str) -> str:
    return {
        "gunicorn": "lean app: Flask+orjson+ONNX (gunicorn 2x8)",
        "granian": "lean app: Flask+orjson+ONNX (granian 1x8)",
    }[server]


@dataclass
class Target:
    """One goal: ``ratio`` must be at least (``at_least``) or at most ``bound``."""

    server: str
    goal: str
    bound: float
    at_least: bool
    ratio: float | None  # None: a side was not measured
    detail: str
    errors: int = 0  # non-2xx and socket errors on modelserve's side

    @property
    def met(self) -> bool | None:
        if self.ratio is None:
            return None
        ok = self.ratio >= self.bound if self.at_least else self.ratio <= self.bound
        return ok and self.errors == 0

    @property
    def verdict(self) -> str:
        return {True: "met", False: "MISSED", None: "not measured"}[self.met]


def runtime_is_compiled(runtime: Any) -> bool:
    """Whether ``GET /models/<name>`` → ``runtime`` says the model runs as ONNX.

    ``runtime`` is what modelserve answers there: a dict like ``{"runtime": "sklearn", ...}``,
    with a key such as ``"compiled"`` or ``"onnx"`` (or ``"runtime"`` / ``"serving": "onnx"``)
    once compiled. ``"compiled": False`` says it is not, whatever else is there.
    """
    if isinstance(runtime, str):
        return "onnx" in runtime.lower()
    if not isinstance(runtime, Mapping):
        return False
    if runtime.get("compiled") is False:
        return False
    for key, value in runtime.items():
        if key in ("compiled", "onnx") and value not in (None, False, "", {}, []):
            return True
        if key in ("runtime", "serving", "backend", "compiled_to") and "onnx" in str(value).lower():
            return True
    return False


def find(rows: Iterable[Row], workload: str, target: str, connections: int) -> Row | None:
    for row in rows:
        if (row.workload, row.target, row.connections) == (workload, target, connections):
            return row
    return None


def mlserver_batched_name(rows: Iterable[Row]) -> str | None:
    for row in rows:
        if row.target.startswith("MLServer") and "batching" in row.target:
            return row.target
    return None


def _peer_note(row: Row) -> str:
    return f"; {row.errors:,} errors there" if row.errors else ""


def _ratio_target(
    server: str,
    goal: str,
    bound: float,
    ours: Row | None,
    other: Row | None,
    metric: str,
    unit: str,
    *,
    at_least: bool = True,
    other_label: str = "",
) -> Target:
    if ours is None or other is None:
        missing = "modelserve" if ours is None else (other_label or "the reference")
        return Target(server, goal, bound, at_least, None, f"{missing} not measured")
    a, b = getattr(ours, metric), getattr(other, metric)
    ratio = a / b if a is not None and b else None
    detail = f"{a:,.2f} vs {b:,.2f} {unit}" if a is not None and b is not None else "no data"
    return Target(
        server,
        goal,
        bound,
        at_least,
        ratio,
        detail + _peer_note(other) + (f"; {ours.errors:,} errors here" if ours.errors else ""),
        ours.errors,
    )


def evaluate(rows: Sequence[Row], runtimes: Mapping[str, Any] | None = None) -> list[Target]:
    """Every target for each WSGI server, from the rows of one run.

    ``runtimes`` maps a modelserve target's name to what its ``GET /models/breast-cancer``
    said under ``runtime``; it picks the in-process rate the 10,000-row target compares with.
    """
    runtimes = runtimes or {}
    mlb = mlserver_batched_name(rows)
    out: list[Target] = []
    for server in SERVERS:
        ms, lean = modelserve_name(server), lean_name(server)

        def ours(workload: str, conns: int, ms: str = ms) -> Row | None:
            return find(rows, workload, ms, conns)

        def peer(workload: str, conns: int) -> Row | None:
            return find(rows, workload, mlb, conns) if mlb else None

        out.append(
            _ratio_target(
                server,
                "forest /predict, 64 conns: req/s ≥ 4x MLServer-batched",
                4.0,
                ours(FOREST_ROW, 64),
                peer(FOREST_ROW, 64),
                "req_per_s",
                "req/s",
                other_label="MLServer-batched",
            )
        )
        out.append(
            _ratio_target(
                server,
                f"forest /predict, 64 conns: req/s ≥ 0.75x the lean app ({server})",
                0.75,
                ours(FOREST_ROW, 64),
                find(rows, FOREST_ROW, lean, 64),
                "req_per_s",
                "req/s",
                other_label="the lean app",
            )
        )
        out.append(
            _ratio_target(
                server,
                "forest /predict, 64 conns: p99 ≤ 0.5x MLServer-batched's",
                0.5,
                ours(FOREST_ROW, 64),
                peer(FOREST_ROW, 64),
                "p99_ms",
                "ms",
                at_least=False,
                other_label="MLServer-batched",
            )
        )
        out.append(
            _ratio_target(
                server,
                f"forest /predict, 1 conn: p50 ≤ 1.5x the lean app's ({server})",
                1.5,
                ours(FOREST_ROW, 1),
                find(rows, FOREST_ROW, lean, 1),
                "p50_ms",
                "ms",
                at_least=False,
                other_label="the lean app",
            )
        )
        out.append(
            _ratio_target(
                server,
                "forest /predict_batch 100, 8 conns: rows/s ≥ 4x MLServer-batched ([100,30] V2)",
                4.0,
                ours(FOREST_BATCH, 8),
                peer(FOREST_BATCH, 8),
                "rows_per_s",
                "rows/s",
                other_label="MLServer-batched",
            )
        )
        compiled = runtime_is_compiled(runtimes.get(ms))
        reference = ONNX_IN_PROCESS if compiled else SKLEARN_IN_PROCESS
        served = json.dumps(runtimes[ms], sort_keys=True) if ms in runtimes else "unknown"
        # JSON rows and each binary body, against the same in-process rate; the JSON row
        # says which runtime served it.
        for workload in (FOREST_BIG, *BIG_BINARY):
            served_by = f" (runtime {served})" if workload == FOREST_BIG else ""
            out.append(
                _ratio_target(
                    server,
                    f"{workload}, 2 conns: rows/s ≥ 0.7x {reference}{served_by}",
                    0.7,
                    ours(workload, 2),
                    find(rows, FOREST_BIG, reference, 1),
                    "rows_per_s",
                    "rows/s",
                    other_label=reference,
                )
            )
        out.append(
            _ratio_target(
                server,
                # #12 asked for 1x; #21 for 1.5x ("uncompilable model with batching").
                "custom-transformer forest /predict, 64 conns: req/s ≥ 1.5x MLServer-batched",
                1.5,
                ours(CUSTOM_ROW, 64),
                peer(CUSTOM_ROW, 64),
                "req_per_s",
                "req/s",
                other_label="MLServer-batched",
            )
        )
    out += _round_two(rows, mlb)
    return out


def _round_two(rows: Sequence[Row], mlb: str | None) -> list[Target]:
    """Issue #21: the defaults users run (key, limit, metrics on a DataFrame-fitted forest)
    against the lean app and MLServer-batched, beside the tuned rows above."""
    ours = find(rows, FRAME_ROW, DEFAULTS_NAME, 64)
    lean = lean_name("granian")
    return [
        _ratio_target(
            "granian",
            "#21 defaults + key + limit + metrics, DataFrame forest /predict, 64 conns: "
            "req/s ≥ 0.75x lean (granian)",
            0.75,
            ours,
            find(rows, FOREST_ROW, lean, 64),
            "req_per_s",
            "req/s",
            other_label="the lean app",
        ),
        _ratio_target(
            "granian",
            "#21 defaults + key + limit + metrics, DataFrame forest /predict, 64 conns: "
            "p99 ≤ 0.5x batched MLServer's",
            0.5,
            ours,
            find(rows, FOREST_ROW, mlb, 64) if mlb else None,
            "p99_ms",
            "ms",
            at_least=False,
            other_label="MLServer-batched",
        ),
        _ratio_target(
            "granian",
            "#21 defaults + key + limit + metrics, DataFrame forest /predict, lone request: "
            "p50 ≤ 1.5x lean's (granian)",
            1.5,
            find(rows, FRAME_ROW, DEFAULTS_NAME, 1),
            find(rows, FOREST_ROW, lean, 1),
            "p50_ms",
            "ms",
            at_least=False,
            other_label="the lean app",
        ),
        _ratio_target(
            "granian",
            "#21 defaults + key + limit + metrics, DataFrame forest /predict, 64 conns: "
            "req/s ≥ 4x batched MLServer",
            4.0,
            ours,
            find(rows, FOREST_ROW, mlb, 64) if mlb else None,
            "req_per_s",
            "req/s",
            other_label="MLServer-batched",
        ),
    ]


def format_ratio(ratio: float, bound: float) -> str:
    """Two decimals, or three where two would round onto the bound (0.747 is not 0.75)."""
    text = f"{ratio:.2f}"
    return f"{ratio:.3f}" if float(text) == bound and ratio != bound else text


def render_targets(targets: list[Target]) -> list[str]:
    """Markdown lines: a heading, then one bullet per target with its verdict and numbers."""
    if not targets:
        return []
    met = sum(t.met is True for t in targets)
    lines = [f"**Targets** (issues #12, #21, from this run): {met} of {len(targets)} met", ""]
    for t in targets:
        sign = "≥" if t.at_least else "≤"
        ratio = "n/a" if t.ratio is None else f"{format_ratio(t.ratio, t.bound)}x"
        lines.append(
            f"- {t.verdict}: {t.server}: {t.goal}: {ratio} {sign} {t.bound:g}x ({t.detail})"
        )
    return lines
