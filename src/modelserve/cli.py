"""The ``modelserve`` command line: serve, demo, validate, predict."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING
from typing import Any

import click
import orjson

from .errors import ModelServeError
from .settings import ServerSettings
from .settings import load_settings

if TYPE_CHECKING:  # pragma: no cover
    from .client import ModelServeClient


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


#: Extensions that make ``predict``'s PAYLOAD a file to score rather than JSON.
_FILE_SUFFIXES = (".csv", ".jsonl", ".ndjson", ".parquet", ".pq")


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
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="File mode: where the predictions go; its extension picks the format "
    "[default: INPUT.predictions with INPUT's extension].",
)
@click.option("--id-column", default=None, help="File mode: a column copied to every answer.")
@click.option(
    "--chunk-rows",
    type=click.IntRange(min=1),
    default=10_000,
    show_default=True,
    help="File mode: rows scored per model call.",
)
@click.option(
    "--errors",
    "errors_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="File mode: rejected rows, as JSON lines [default: OUTPUT.errors.jsonl].",
)
@click.option(
    "--max-errors",
    type=click.IntRange(min=0),
    default=None,
    help="File mode: stop with exit code 1, writing no output, past this many rejected rows "
    "[default: no limit].",
)
@click.option("-q", "--quiet", is_flag=True, help="File mode: no progress bar.")
def predict_command(
    path: Path,
    payload: str,
    model_name: str | None,
    preprocessor: Path | None,
    output: Path | None,
    id_column: str | None,
    chunk_rows: int,
    errors_path: Path | None,
    max_errors: int | None,
    quiet: bool,
) -> None:
    """Score PAYLOAD on the model at PATH.

    PAYLOAD is a JSON object of features, or {"instances": [...]} ('-' reads it from
    standard input), or a CSV, JSON lines or Parquet file of rows: every row is scored,
    a chunk at a time, into --output (rows that fail validation go to --errors).
    """
    settings = _settings(model_path=path, preprocessor=preprocessor, profile="testing")
    if payload != "-" and Path(payload).suffix.lower() in _FILE_SUFFIXES:
        _predict_file(
            settings,
            Path(payload),
            model_name,
            output,
            id_column,
            chunk_rows,
            errors_path,
            max_errors,
            quiet,
        )
        return
    from .protocols.seed import SeedProtocol
    from .service import InferenceService

    body = sys.stdin.buffer.read() if payload == "-" else payload.encode()
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
        _fail(exc.message + _details(exc), 1)
    click.echo(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode())


def _details(exc: ModelServeError) -> str:
    return "".join(f"\n  {d.get('path')}: {d.get('message')}" for d in exc.details)


def _predict_file(
    settings: ServerSettings,
    source: Path,
    model_name: str | None,
    output: Path | None,
    id_column: str | None,
    chunk_rows: int,
    errors_path: Path | None,
    max_errors: int | None,
    quiet: bool,
) -> None:
    """``predict``'s file mode: score every row of ``source`` offline."""
    if not source.is_file():
        _fail(f"{source}: no such file", 2)
    try:
        from .jobs import formats
        from .jobs.offline import score_file
        from .jobs.scoring import ChunkScorer
    except ImportError as exc:  # pragma: no cover - the extra is part of the dev install
        _fail(f"scoring files needs the batch extra (pip install 'modelserve[batch]'): {exc}", 2)
    from .service import InferenceService

    fmt = formats.detect_format(source.name, None)
    if output is None:
        output = source.with_name(f"{source.stem}.predictions{source.suffix}")
    try:
        out_fmt = formats.output_format(output.name) if output.suffix else fmt
    except ModelServeError as exc:
        _fail(exc.message, 2)
    if output.resolve() == source.resolve():
        _fail(f"--output {output} is the input file: name another file", 2)
    try:
        service = InferenceService(settings)
        service.load()
        scorer = ChunkScorer(service, model_name, id_column=id_column)
        with _progress_bar(formats.count_rows(source, fmt), quiet) as bar:
            summary = score_file(
                scorer,
                source,
                fmt,
                output,
                out_fmt,
                chunk_rows=chunk_rows,
                errors_path=errors_path,
                max_errors=max_errors,
                progress=bar.update if bar is not None else None,
            )
    except ModelServeError as exc:
        _fail(exc.message + _details(exc), 1)
    click.echo(summary.line(), err=True)
    if summary.over_budget:
        _fail(
            f"more than {max_errors} rows were rejected (--max-errors): stopped, no output "
            f"written; see {summary.errors_path}",
            1,
        )


@contextmanager
def _progress_bar(total: int | None, quiet: bool) -> Iterator[Any]:
    """A tqdm bar on standard error (rows, rows/s, ETA), or ``None`` when it is not a
    terminal or ``--quiet`` asks for none."""
    if quiet or not sys.stderr.isatty():
        yield None
        return
    from tqdm import tqdm

    with tqdm(total=total, unit="rows", unit_scale=True, file=sys.stderr, smoothing=0.1) as bar:
        yield bar


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


# -- batch jobs (issue 19) ------------------------------------------------------------------


@main.command("worker")
@_path_arg
@click.option(
    "--broker", default=None, help="Celery broker URL [default: MODELSERVE_JOBS_BROKER_URL]."
)
@click.option("--store", default=None, help="Job store URL [default: MODELSERVE_JOBS_STORE_URL].")
@click.option(
    "--jobs-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="The jobs' data folder, shared with the server [default: MODELSERVE_JOBS_DIR].",
)
@click.option("--queue", default=None, help="Queue to consume [default: modelserve-jobs].")
@click.option("--concurrency", type=int, default=None, help="Jobs run at once [default: 1].")
def worker_command(
    path: Path,
    broker: str | None,
    store: str | None,
    jobs_dir: Path | None,
    queue: str | None,
    concurrency: int | None,
) -> None:
    """Run batch jobs of the models under PATH from a Celery broker (needs the jobs extra).

    Start any number, on any machines that share the job store (PostgreSQL) and the jobs
    folder; a job whose worker dies is resumed by another from its last finished chunk.
    """
    settings = _settings(
        model_path=path,
        jobs_backend="celery",
        jobs_broker_url=broker,
        jobs_store_url=store,
        jobs_dir=jobs_dir,
        jobs_queue=queue,
        jobs_workers=concurrency,
    )
    try:
        from .jobs.celery_app import run_worker
    except ImportError as exc:
        _fail(
            f"modelserve worker needs the jobs extra ({exc.name} is missing): "
            "pip install 'modelserve[jobs]'",
            2,
        )
    from .logging import configure_logging

    configure_logging(settings)
    try:
        run_worker(settings)
    except ModelServeError as exc:
        _fail(exc.message, 2)


_url_option = click.option(
    "--url",
    envvar="MODELSERVE_URL",
    default="http://127.0.0.1:8000",
    show_default=True,
    help="The server [env: MODELSERVE_URL].",
)
_key_option = click.option(
    "--api-key",
    envvar="MODELSERVE_API_KEY",
    default=None,
    help="API key [env: MODELSERVE_API_KEY].",
)


@contextmanager
def _jobs_client(url: str, api_key: str | None) -> Iterator[ModelServeClient]:
    """The jobs API through :class:`~modelserve.client.ModelServeClient`; a clean error line
    (and exit 1) on any failure."""
    import requests

    from .client import ClientError
    from .client import ModelServeClient

    try:
        with ModelServeClient(url, timeout=60, api_key=api_key) as client:
            yield client
    except ClientError as exc:
        _fail(f"{exc.status}: {exc.message}")
    except requests.RequestException as exc:
        _fail(f"cannot reach {url}: {exc}")


def _show_job(job: dict[str, Any]) -> None:
    total = job.get("rows_total")
    done = f"{job['rows_done']}/{total}" if total is not None else str(job["rows_done"])
    rate = job.get("rows_per_second")
    line = f"{job['id']}  {job['state']:<9}  rows {done}  rejected {job['rows_failed']}"
    if rate:
        line += f"  {rate:g} rows/s"
    if job.get("error"):
        line += f"  error: {job['error']}"
    click.echo(line)


@main.group("jobs")
def jobs_group() -> None:
    """Batch jobs on a running server: submit a file, follow it, fetch the predictions."""


@jobs_group.command("submit")
@click.argument("input_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--model", "model_name", default=None, help="The model [default: the default].")
@click.option("--version", "version", type=int, default=None, help="The version [default].")
@click.option("--id-column", default=None, help="A column carried through to the result.")
@click.option(
    "--output-format",
    type=click.Choice(["csv", "jsonl", "parquet"]),
    default=None,
    help="The result's format [default: the input's].",
)
@click.option(
    "--wait", is_flag=True, help="Wait until the job finished; exit 1 unless it succeeded."
)
@_url_option
@_key_option
def jobs_submit_command(
    input_file: Path,
    model_name: str | None,
    version: int | None,
    id_column: str | None,
    output_format: str | None,
    wait: bool,
    url: str,
    api_key: str | None,
) -> None:
    """Upload INPUT_FILE (CSV, JSON lines or Parquet) as a job; print its id."""
    with _jobs_client(url, api_key) as client:
        job = client.submit_job(
            input_file,
            model_name,
            str(version) if version and model_name else None,
            id_column=id_column or None,
            output_format=output_format,
        )
        click.echo(job["id"])
        if wait:
            _wait_for_job(client, job["id"])


def _wait_for_job(client: ModelServeClient, job_id: str) -> None:
    job = client.wait_job(job_id)
    _show_job(job)
    if job["state"] != "succeeded":
        sys.exit(1)


@jobs_group.command("status")
@click.argument("job_id", required=False)
@click.option("--wait", is_flag=True, help="Wait until the job finished.")
@_url_option
@_key_option
def jobs_status_command(job_id: str | None, wait: bool, url: str, api_key: str | None) -> None:
    """Show job JOB_ID, or list this key's jobs."""
    with _jobs_client(url, api_key) as client:
        if job_id is None:
            for job in client.jobs()["jobs"]:
                _show_job(job)
        elif wait:
            _wait_for_job(client, job_id)
        else:
            _show_job(client.job(job_id))


@jobs_group.command("fetch")
@click.argument("job_id")
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="Where to write the predictions.",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["csv", "jsonl", "parquet"]),
    default=None,
    help="The result's format [default: the job's].",
)
@click.option("--errors", is_flag=True, help="Write the rejected rows (JSON lines) instead.")
@_url_option
@_key_option
def jobs_fetch_command(
    job_id: str, output: Path, fmt: str | None, errors: bool, url: str, api_key: str | None
) -> None:
    """Download the predictions of job JOB_ID to --output (or, with --errors, every rejected
    row as JSON lines)."""
    with _jobs_client(url, api_key) as client, output.open("wb") as out:
        if errors:
            for record in client.iter_job_errors(job_id):
                out.write(orjson.dumps(record) + b"\n")
        else:
            for block in client.job_result(job_id, fmt):
                out.write(block)
    click.echo(f"wrote {output}", err=True)


@jobs_group.command("cancel")
@click.argument("job_id")
@_url_option
@_key_option
def jobs_cancel_command(job_id: str, url: str, api_key: str | None) -> None:
    """Cancel job JOB_ID (a running job stops after its current chunk)."""
    with _jobs_client(url, api_key) as client:
        _show_job(client.cancel_job(job_id))
