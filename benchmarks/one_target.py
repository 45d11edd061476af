"""One target of ``benchmarks.run``, started as the full run starts it, on some workloads.

For a quick check between steps (the full run gives the verdicts): the target's server is
pinned to core 0 and wrk to core 1, each workload gets a 2 s warm-up and one bounded run,
loopback only. Settings can be changed for the server (``NAME=VALUE``).

    python -m benchmarks.one_target "modelserve defaults" "/predict@64,/predict@1" \\
        MODELSERVE_THREADS=8 --duration 5

The target is the first whose name starts with the given text (``modelserve (granian``,
``lean app: Flask+orjson+ONNX (granian``, ...); a workload is picked when ``WORKLOAD@CONNS``
contains one of the comma-separated texts.
"""

from __future__ import annotations

import argparse
import os
import sys

from benchmarks import run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("target", help="the start of the target's name")
    parser.add_argument("workloads", help="comma-separated parts of WORKLOAD@CONNS")
    parser.add_argument("settings", nargs="*", metavar="NAME=VALUE")
    parser.add_argument("--duration", type=int, default=5, help="seconds per run")
    args = parser.parse_args()
    prep = run.prepare()
    targets = run.own_targets(prep, {})
    chosen = [t for t in targets if t.name.startswith(args.target)]
    if not chosen:
        sys.exit(f"no target starts with {args.target!r}: " + "; ".join(t.name for t in targets))
    target = chosen[0]
    target.env.update(dict(item.split("=", 1) for item in args.settings))
    wanted = args.workloads.split(",")
    server = run.Server(target.name, target.argv, target.env, target.ready_path, **target.options)
    os.environ["EXTRA_HEADER"] = target.header  # read by wrk_report.lua
    try:
        for workload, path, body, rows, conns in target.runs:
            if not any(part in f"{workload}@{conns}" for part in wanted):
                continue
            run.wrk(server, path, body, conns, 2)
            stats = run.wrk(server, path, body, conns, args.duration)
            r = run.load_result(workload, target.name, rows, conns, stats)
            print(
                f"{target.name} | {workload} | {conns} conns | {r.req_per_s:,.0f} req/s | "
                f"{r.rows_per_s:,.0f} rows/s | p50 {r.p50_ms} ms | p99 {r.p99_ms} ms | "
                f"CPU {r.cpu_ms_per_req or 0:.3f} ms/req | errors {r.errors}",
                flush=True,
            )
    finally:
        server.stop()


if __name__ == "__main__":
    main()
