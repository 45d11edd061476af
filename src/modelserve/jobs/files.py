"""The jobs' data folder: one folder per job with its input, result chunks and error lists.

Layout: ``<jobs_dir>/<id>/input.<fmt>``, ``chunk-<n>.<fmt>`` (the predictions of chunk
``n``), ``errors-<n>.jsonl`` (its rejected rows), and ``as-<fmt>/`` (result chunks converted
to another format on request, kept for the next download). Chunk files are written whole
(temporary file, then a rename), so a chunk scored twice is written twice, never twice over.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import orjson

from ..settings import ServerSettings

#: Bytes copied at once when an upload is streamed to disk.
COPY_BUFFER = 1024 * 1024


def default_jobs_dir() -> Path:
    """``$XDG_DATA_HOME/modelserve/jobs``, else ``~/.local/share/modelserve/jobs``."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "modelserve" / "jobs"


def jobs_dir(settings: ServerSettings) -> Path:
    return (settings.jobs_dir or default_jobs_dir()).expanduser()


def default_store_url(settings: ServerSettings) -> str:
    return settings.jobs_store_url or str(jobs_dir(settings) / "jobs.db")


class JobFiles:
    """Paths and file operations of the jobs under one data folder."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def folder(self, job_id: str) -> Path:
        return self.root / job_id

    def input(self, job_id: str, fmt: str) -> Path:
        return self.folder(job_id) / f"input.{fmt}"

    def chunk(self, job_id: str, n: int, fmt: str) -> Path:
        return self.folder(job_id) / f"chunk-{n:06d}.{fmt}"

    def converted(self, job_id: str, n: int, fmt: str) -> Path:
        return self.folder(job_id) / f"as-{fmt}" / f"chunk-{n:06d}.{fmt}"

    def errors(self, job_id: str, n: int) -> Path:
        return self.folder(job_id) / f"errors-{n:06d}.jsonl"

    def chunks(self, job_id: str, count: int, fmt: str) -> list[Path]:
        """The result chunk files of the first ``count`` (committed) chunks, in order."""
        return [self.chunk(job_id, n, fmt) for n in range(count)]

    def write_errors(self, job_id: str, n: int, lines: bytes) -> None:
        """Write chunk ``n``'s rejected rows (JSON lines), whole (a retried chunk replaces
        them)."""
        path = self.errors(job_id, n)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_bytes(lines)
        os.replace(tmp, path)

    def read_errors(self, job_id: str, count: int) -> Iterator[dict[str, object]]:
        """Every rejected row of the first ``count`` (committed) chunks, in row order."""
        for n in range(count):
            path = self.errors(job_id, n)
            if not path.exists():
                continue
            with path.open("rb") as lines:
                for line in lines:
                    if line.strip():
                        yield orjson.loads(line)

    def remove(self, job_id: str) -> None:
        shutil.rmtree(self.folder(job_id), ignore_errors=True)
