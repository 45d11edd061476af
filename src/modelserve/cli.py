"""The ``modelserve`` command line: serve, demo, validate, predict."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click
import orjson

from .errors import ModelServeError
from .settings import ServerSettings
from .settings import load_settings


def _fail(message: str, code: int = 1) -> None:
    click.echo(f"Error: {message}", err=True)
    sys.exit(code)


def _settings(**overrides: Any) -> ServerSettings:
    try:
        return load_settings(**overrides)
    except ModelServeError as exc:
        _fail(exc.message, 2)
        raise  # unreachable; for type checkers


# Resolved, so `modelserve serve .` names the model after the folder, not ''.
_path_arg = click.argument(
    "path",
    type=click.Path(exists=True, path_type=Path, dir_okay=True, file_okay=True, resolve_path=True),
)


def _serve(settings: ServerSettings, dev: bool) -> None:
    from . import server

    try:
        if dev:
            server.run_development(settings)
            return
        problems = server.preflight(settings)
    except ModelServeError as exc:
        _fail(exc.message, 2)
    if problems:
        _fail("no model can be served:\n  " + "\n  ".join(problems), 2)
    click.echo(
        f"modelserve: serving {settings.model_path} on http://{settings.host}:{settings.port} "
        f"({settings.workers} worker(s) x {settings.threads} thread(s), {settings.server})",
        err=True,
    )
    if settings.server == "granian":
        server.run_granian(settings)
    else:
        server.run_gunicorn(settings)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="modelserve")
def main() -> None:
    """Serve trained machine-learning models as a REST API."""


@main.command("serve")
@_path_arg
@click.option("--host", default=None, help="Address to bind [default: 127.0.0.1].")
@click.option("--port", type=int, default=None, help="Port to bind [default: 8000].")
@click.option("--workers", type=int, default=None, help="Worker processes [default: 1].")
@click.option(
    "--threads",
    type=int,
    default=None,
    help="Threads per worker [default: from the CPUs: 32 per CPU, 32..64].",
)
@click.option(
    "--timeout", type=int, default=None, help="Seconds per request before a worker restarts."
)
@click.option(
    "--preprocessor",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="Single-file mode: a fitted transformer applied before the model.",
)
@click.option("--default-model", default=None, help="The model /predict serves.")
@click.option(
    "--server",
    type=click.Choice(["gunicorn", "granian"]),
    default=None,
    help="Production WSGI server [default: granian].",
)
@click.option(
    "--poll-interval",
    type=float,
    default=None,
    help="Seconds between model repository scans for hot reload; 0 = off [default: 5].",
)
@click.option(
    "--trust-pickles",
    is_flag=True,
    default=None,
    help="Load pickle/joblib files whose sha256 is not pinned (they run code when loaded).",
)
@click.option(
    "--dev", is_flag=True, help="Flask's development server with the reloader (local only)."
)
def serve_command(
    path: Path,
    host: str | None,
    port: int | None,
    workers: int | None,
    threads: int | None,
    timeout: int | None,
    preprocessor: Path | None,
    default_model: str | None,
    server: str | None,
    poll_interval: float | None,
    trust_pickles: bool | None,
    dev: bool,
) -> None:
    """Serve PATH: a model repository folder, one model folder, or one model file.

    A production server (granian or gunicorn) unless --dev. Set MODELSERVE_KEYS_FILE or
    MODELSERVE_API_KEY to require API keys (see `modelserve keys`).
    """
    settings = _settings(
        model_path=path,
        host=host,
        port=port,
        workers=workers,
        threads=threads,
        timeout=timeout,
        preprocessor=preprocessor,
        default_model=default_model,
        server=server,
        poll_interval=poll_interval,
        trust_pickles=trust_pickles,
        profile="development" if dev else None,
    )
    _serve(settings, dev)


@main.command("demo")
@click.option(
    "--models-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("models"),
    show_default=True,
    help="Where to write the demo model repository.",
)
@click.option("--no-serve", is_flag=True, help="Only train and write the models.")
@click.option("--host", default=None, help="Address to bind [default: 127.0.0.1].")
@click.option("--port", type=int, default=None, help="Port to bind [default: 8000].")
def demo_command(models_dir: Path, no_serve: bool, host: str | None, port: int | None) -> None:
    """Train the demo models (iris, breast-cancer, digits, digits-onnx) and serve them."""
    from .demo import train_demo_models

    for path in train_demo_models(models_dir):
        click.echo(f"trained {path.name} -> {path}", err=True)
    if no_serve:
        return
    # The demo is local by definition: development profile (no secret needed), but the
    # production server and no debugger.
    settings = _settings(
        model_path=models_dir,
        host=host,
        port=port,
        profile="development",
        debug=False,
        default_model="iris",
    )
    _serve(settings, dev=False)


@main.command("validate")
@_path_arg
@click.option(
    "--preprocessor",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="Single-file mode: a fitted transformer applied before the model.",
)
@click.option(
    "--write-manifest",
    is_flag=True,
    help="Write the inferred signature and sha256 pins into model.yaml.",
)
@click.option(
    "--reference",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="CSV of reference data (header = feature names): write the drift reference "
    "profile (reference.json) of the model's default version.",
)
@click.option("--model", "model_name", default=None, help="The model --reference is for.")
def validate_command(
    path: Path,
    preprocessor: Path | None,
    write_manifest: bool,
    reference: Path | None,
    model_name: str | None,
) -> None:
    """Load every model under PATH, check hashes, and run a sample prediction on each."""
    from .validate import validate_repository

    settings = _settings(model_path=path, preprocessor=preprocessor, profile="testing")
    try:
        ok = validate_repository(settings, write_manifest, click.echo, reference, model_name)
    except ModelServeError as exc:
        _fail(exc.message, 2)
    sys.exit(0 if ok else 1)


@main.command("drift")
@_path_arg
@click.option(
    "--log",
    "log_url",
    default=None,
    help="The prediction log: sqlite:///PATH.db, postgresql://... or a file path "
    "[default: MODELSERVE_PREDICTION_LOG].",
)
@click.option("--table", default=None, help="The log's table [default: modelserve_predictions].")
@click.option("--model", "model_name", default=None, help="Which model, when PATH holds several.")
@click.option("--version", "version", type=int, default=None, help="Which version [default].")
@click.option("--window", type=float, default=3600.0, show_default=True, help="Seconds of traffic.")
@click.option(
    "--threshold", type=float, default=None, help="PSI that flags a feature [default: 0.2]."
)
@click.option("--json", "as_json", is_flag=True, help="Print the whole report as JSON.")
def drift_command(
    path: Path,
    log_url: str | None,
    table: str | None,
    model_name: str | None,
    version: int | None,
    window: float,
    threshold: float | None,
    as_json: bool,
) -> None:
    """Compare the traffic logged for a model of PATH with its reference profile.

    Prints the population stability index of each feature and of the predictions (the
    same report as GET /models/<name>/drift); exits 0 whatever it finds.
    """
    from .drift import drift_report
    from .predlog import PredictionStore
    from .service import InferenceService

    settings = _settings(
        model_path=path,
        profile="testing",
        prediction_log_table=table,
        drift_psi_threshold=threshold,
    )
    url = log_url or settings.prediction_log
    if not url:
        _fail("no prediction log: pass --log URL or set MODELSERVE_PREDICTION_LOG", 2)
        return
    if window <= 0:
        _fail("--window must be more than 0 seconds", 2)
    try:
        store = PredictionStore(url, settings.prediction_log_table)
    except ModelServeError as exc:
        _fail(exc.message, 2)
    try:
        service = InferenceService(settings)
        service.load()
        sv = service.resolve(model_name or service.default_name(), version)
        report = drift_report(sv.model, store, window, settings.drift_psi_threshold)
    except ModelServeError as exc:
        _fail(exc.message, 1)
    finally:
        store.close()
    if as_json:
        click.echo(orjson.dumps(report, option=orjson.OPT_INDENT_2).decode())
        return
    click.echo(
        f"{report['model']} v{report['version']}: {report['rows']} row(s) in "
        f"{report['records']} logged request(s) over the last {window:g} s "
        f"(threshold {report['threshold']:g})"
    )
    scored = [*report["features"], *([report["predictions"]] if report["predictions"] else [])]
    for item in scored:
        value = "n/a" if item["psi"] is None else f"{item['psi']:.4f}"
        flag = "  DRIFT" if item["drifted"] else ""
        click.echo(f"  {item['name']:<24} psi {value}{flag}")


@main.command("optimize")
@_path_arg
@click.option("--model", "model_name", default=None, help="Which model, when PATH holds several.")
def optimize_command(path: Path, model_name: str | None) -> None:
    """Compile a scikit-learn model under PATH to ONNX and write it as its next version.

    The answers are checked against scikit-learn first (labels equal, probabilities within
    tolerance); a model that cannot be compiled is left alone and the reason printed.
    """
    from .optimize import optimize_model

    settings = _settings(model_path=path, profile="testing")
    try:
        target = optimize_model(settings, model_name)
    except ModelServeError as exc:
        _fail(exc.message, 1)
    click.echo(f"wrote {target} (runtime: onnx)")


@main.command("predict")
@_path_arg
@click.argument("payload")
@click.option("--model", "model_name", default=None, help="Which model, when PATH holds several.")
@click.option(
    "--preprocessor",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="Single-file mode: a fitted transformer applied before the model.",
)
def predict_command(
    path: Path, payload: str, model_name: str | None, preprocessor: Path | None
) -> None:
    """One-off prediction: PAYLOAD is a JSON object of features, or {"instances": [...]}.

    Use '-' to read PAYLOAD from standard input.
    """
    from .protocols.seed import SeedProtocol
    from .service import InferenceService

    body = sys.stdin.buffer.read() if payload == "-" else payload.encode()
    settings = _settings(model_path=path, preprocessor=preprocessor, profile="testing")
    try:
        service = InferenceService(settings)
        service.load()
        seed = SeedProtocol(service)
        try:
            parsed = orjson.loads(body)
        except orjson.JSONDecodeError:
            parsed = None
        if isinstance(parsed, dict) and "instances" in parsed:
            result = seed.predict_batch(model_name, None, body)
        else:
            result = seed.predict_one(model_name, None, body)
    except ModelServeError as exc:
        details = "".join(f"\n  {d.get('path')}: {d.get('message')}" for d in exc.details)
        _fail(exc.message + details, 1)
    click.echo(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode())


_keys_file_option = click.option(
    "--keys-file",
    type=click.Path(dir_okay=False, path_type=Path),
    envvar="MODELSERVE_KEYS_FILE",
    required=True,
    help="The keys file [env: MODELSERVE_KEYS_FILE].",
)


@main.group("keys")
def keys_group() -> None:
    """Manage API keys: create (shown once, stored as a hash), list, revoke.

    A running server sees every change within about a second, in every worker.
    """


@keys_group.command("create")
@click.argument("name")
@click.option(
    "--scope",
    "scopes",
    type=click.Choice(["predict", "admin"]),
    multiple=True,
    default=("predict",),
    show_default=True,
    help="What the key may do; repeat for both.",
)
@click.option(
    "--model",
    "model_names",
    multiple=True,
    help="Limit a predict key to this model; repeat for several [default: every model].",
)
@_keys_file_option
def keys_create_command(
    name: str, scopes: tuple[str, ...], model_names: tuple[str, ...], keys_file: Path
) -> None:
    """Create key NAME and print it once (only its sha256 is stored)."""
    from .keys import create_key

    try:
        key = create_key(keys_file, name, scopes, model_names or None)
    except ModelServeError as exc:
        _fail(exc.message, 2)
    limit = f" for model(s) {', '.join(model_names)}" if model_names else ""
    click.echo(
        f"created key {name!r} ({', '.join(scopes)}{limit}) in {keys_file}; "
        "copy it now, it is not shown again:",
        err=True,
    )
    click.echo(key)


@keys_group.command("list")
@_keys_file_option
def keys_list_command(keys_file: Path) -> None:
    """List the keys: name, scopes, models, created (never the keys or their hashes)."""
    from .keys import read_keys

    try:
        records = read_keys(keys_file)
    except ModelServeError as exc:
        _fail(exc.message, 2)
    rows = [("NAME", "SCOPES", "MODELS", "CREATED")]
    for r in sorted(records, key=lambda r: r.name):
        models = ",".join(sorted(r.models)) if r.models is not None else "*"
        created = r.created.isoformat() if r.created is not None else "-"
        rows.append((r.name, ",".join(sorted(r.scopes)), models, created))
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    for row in rows:
        cells = [cell.ljust(width) for cell, width in zip(row[:3], widths, strict=True)]
        click.echo("  ".join([*cells, row[3]]))


@keys_group.command("revoke")
@click.argument("name")
@_keys_file_option
def keys_revoke_command(name: str, keys_file: Path) -> None:
    """Revoke key NAME: running servers refuse it within seconds, without a restart."""
    from .keys import revoke_key

    try:
        revoke_key(keys_file, name)
    except ModelServeError as exc:
        _fail(exc.message, 2)
    click.echo(f"revoked key {name!r} in {keys_file}", err=True)
