"""The models users bring: the same 100-tree forest fitted the notebook way, served as they are.

Three single-file models, each trained here from scikit-learn's breast-cancer data, pinned with
``modelserve validate --write-manifest`` and served with ``modelserve serve FILE`` on default
settings (no tuning flags):

- **numpy**: ``StandardScaler`` and the forest fitted on numpy arrays (the demo's shape);
- **pandas**: the tutorial's pair, the scaler fitted on a DataFrame and the forest on its
  output, served with ``--preprocessor scaler.pkl``;
- **category**: a ``ColumnTransformer`` pipeline fitted on a DataFrame with a string column
  (one-hot encoded) beside the scaled numbers.

Servers are started one at a time, pinned to core 0, with wrk on core 1, one breast-cancer row
per request at 64 and 1 connections, rounds interleaved so background load hits all alike.

    python -m benchmarks.frames [--rounds 3] [--duration 5] [--server granian]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from benchmarks.ab import predict_rate
from benchmarks.run import ROOT
from benchmarks.run import Server

SIZES = ("small", "medium", "large")


def _train(folder: Path) -> dict[str, tuple[list[str], Path, dict[str, Any]]]:
    """Write the three models; return name -> (serve args, body file, model facts)."""
    import joblib
    import numpy as np
    import pandas as pd
    from sklearn.compose import ColumnTransformer
    from sklearn.datasets import load_breast_cancer
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder
    from sklearn.preprocessing import StandardScaler

    data = load_breast_cancer(as_frame=True)
    frame: pd.DataFrame = data.frame.drop(columns=["target"])
    frame.columns = [c.replace(" ", "_") for c in frame.columns]
    y = data.target.to_numpy()
    out: dict[str, tuple[list[str], Path, dict[str, Any]]] = {}

    def forest() -> RandomForestClassifier:
        return RandomForestClassifier(n_estimators=100, random_state=0, n_jobs=1)

    numpy_dir = folder / "numpy"
    numpy_dir.mkdir()
    x = frame.to_numpy()
    joblib.dump(make_pipeline(StandardScaler(), forest()).fit(x, y), numpy_dir / "model.pkl")
    # Fitted on an array, its features are x0..x29 (what /models/model lists).
    unnamed = frame.set_axis([f"x{i}" for i in range(frame.shape[1])], axis=1)
    out["numpy"] = ([str(numpy_dir / "model.pkl")], _body(folder, "numpy", unnamed, 7), {})

    pandas_dir = folder / "pandas"
    pandas_dir.mkdir()
    scaler = StandardScaler().fit(frame)
    joblib.dump(scaler, pandas_dir / "scaler.pkl")
    joblib.dump(forest().fit(scaler.transform(frame), y), pandas_dir / "model.pkl")
    out["pandas"] = (
        [str(pandas_dir / "model.pkl"), "--preprocessor", str(pandas_dir / "scaler.pkl")],
        _body(folder, "pandas", frame, 7),
        {},
    )

    category_dir = folder / "category"
    category_dir.mkdir()
    mixed = frame.copy()
    mixed["size"] = np.array(SIZES, dtype=object)[
        np.digitize(frame["mean_radius"], np.quantile(frame["mean_radius"], [1 / 3, 2 / 3]))
    ]
    numbers = [c for c in mixed.columns if c != "size"]
    model = make_pipeline(
        ColumnTransformer(
            [("size", OneHotEncoder(), ["size"]), ("numbers", StandardScaler(), numbers)]
        ),
        forest(),
    ).fit(mixed, y)
    joblib.dump(model, category_dir / "model.pkl")
    out["category"] = ([str(category_dir / "model.pkl")], _body(folder, "category", mixed, 7), {})
    return out


def _body(folder: Path, name: str, frame: Any, row: int) -> Path:
    path = folder / f"{name}.json"
    record = frame.iloc[row].to_dict()
    path.write_text(
        json.dumps({k: (v if isinstance(v, str) else float(v)) for k, v in record.items()})
    )
    return path


def _pin(args: list[str]) -> None:
    """What the README tells a user to do before serving a pickle in production."""
    subprocess.run(
        [sys.executable, "-m", "modelserve", "validate", *args, "--write-manifest"],
        check=True,
        capture_output=True,
        env={"PYTHONPATH": str(ROOT / "src"), "PATH": "/usr/bin:/bin"},
    )


def _describe(url: str, name: str) -> str:
    import urllib.request

    with urllib.request.urlopen(f"{url}/models/{name}", timeout=10) as answer:
        runtime = json.load(answer)["runtime"]
    serving = "compiled" if runtime.get("compiled") else f"native ({runtime.get('reason')})"
    return f"{runtime.get('runtime')}, {serving}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=int, default=5)
    parser.add_argument("--server", choices=["granian", "gunicorn"], default="granian")
    parser.add_argument("--connections", type=int, nargs="+", default=[64, 1])
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is needed: apt-get install wrk")
    work = Path(tempfile.mkdtemp(prefix="modelserve-frames-"))
    try:
        variants = _train(work)
        for serve_args, _, _ in variants.values():
            _pin(serve_args)
        results: dict[tuple[str, int], list[float]] = {}
        described: dict[str, str] = {}
        for _ in range(args.rounds):
            for name, (serve_args, body, _) in variants.items():
                server = Server(
                    f"modelserve {name}",
                    [sys.executable, "-m", "modelserve", "serve", *serve_args]
                    + ["--port", "{port}", "--server", args.server],
                    # A secret key is no tuning flag (older checkouts refused to start without).
                    {"MODELSERVE_LOG_LEVEL": "WARNING", "MODELSERVE_SECRET_KEY": "benchmark"},
                    "/health",
                    ready_status=200,
                    start_timeout=180,
                )
                try:
                    described.setdefault(name, _describe(server.url, "model"))
                    for conns in args.connections:
                        rate = predict_rate(server, body, conns, args.duration, name)
                        results.setdefault((name, conns), []).append(rate)
                        print(f"{name:9} conns={conns:<3} {rate:9,.1f} req/s", flush=True)
                finally:
                    server.stop()
        print(f"\nforest /predict on {args.server}, defaults, {args.rounds} x {args.duration} s:")
        for conns in args.connections:
            base = statistics.median(results[("numpy", conns)]) or float("nan")
            for name in variants:
                median = statistics.median(results[(name, conns)])
                print(
                    f"  conns={conns:<3} {name:9} {median:9,.1f} req/s  "
                    f"{median / base:.2f}x numpy  [{described[name]}]"
                )
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
