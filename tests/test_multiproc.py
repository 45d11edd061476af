"""Metrics across worker processes: the files of dead writers are folded into archives (counts
kept, live gauges dropped, the folder bounded), and on real servers with 3 workers, granian
and gunicorn alike, ``/metrics`` adds up to exactly the requests sent, through worker kills."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import requests
from prometheus_client import CollectorRegistry
from prometheus_client import generate_latest
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families

from modelserve import multiproc

from . import models
from .conftest import SRC
from .conftest import LiveServer
from .conftest import wait_for
from .conftest import worker_pids

ROW = models.features_of(models.iris(), models.iris().x[0])

#: One short-lived "worker": records like modelserve does, in multiprocess mode, and exits.
WRITER = """
import sys
from prometheus_client import Counter, Gauge, Histogram
c = Counter("t_requests_total", "r", ["route"])
h = Histogram("t_seconds", "s", buckets=(0.001, 0.1))
g = Gauge("t_in_flight", "f", multiprocess_mode="livesum")
for _ in range(int(sys.argv[1])):
    c.labels("/predict").inc()
    h.observe(0.05)
g.inc(7)
"""


def write_as_dead_worker(path: Path, count: int) -> None:
    env = {"PYTHONPATH": str(SRC), "PATH": os.environ["PATH"], multiproc.ENV: str(path)}
    subprocess.run([sys.executable, "-c", WRITER, str(count)], env=env, check=True, timeout=60)


def scrape_dir(path: Path) -> dict[str, float]:
    registry = CollectorRegistry()
    MultiProcessCollector(registry, str(path))  # type: ignore[no-untyped-call]
    text = generate_latest(registry).decode()
    return {
        f"{s.name}{sorted(s.labels.items())}": s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_compaction_keeps_counts_drops_live_gauges_and_bounds_the_folder(tmp_path: Path) -> None:
    files_after: list[int] = []
    sent = 0
    for round_ in range(1, 5):
        write_as_dead_worker(tmp_path, round_)
        sent += round_
        before = scrape_dir(tmp_path)
        assert before["t_in_flight[]"] == 7  # the dead writer's gauge, until compacted
        with multiproc.locked(str(tmp_path)):
            assert len(multiproc.compact(str(tmp_path))) == 1
        after = scrape_dir(tmp_path)
        assert after["t_requests_total[('route', '/predict')]"] == sent
        assert after["t_seconds_count[]"] == sent
        assert after["t_seconds_bucket[('le', '0.1')]"] == sent
        assert after["t_seconds_bucket[('le', '0.001')]"] == 0
        assert after["t_seconds_sum[]"] == pytest.approx(0.05 * sent)
        assert "t_in_flight[]" not in after or after["t_in_flight[]"] == 0
        files_after.append(len(list(tmp_path.glob("*.db"))))
    assert files_after == [2, 2, 2, 2]  # counter_archive.db, histogram_archive.db
    assert sorted(p.name for p in tmp_path.glob("*.db")) == [
        "counter_archive.db",
        "histogram_archive.db",
    ]
    with multiproc.locked(str(tmp_path)):
        assert multiproc.compact(str(tmp_path)) == []  # nothing dead: nothing touched


def test_files_of_live_writers_are_left_alone(tmp_path: Path) -> None:
    own = tmp_path / f"counter_{os.getpid()}.db"
    own.write_bytes(b"")
    assert multiproc.dead_files(str(tmp_path)) == {}
    assert own.exists()


def test_prepare_refuses_when_prometheus_is_already_in_single_process_mode(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import prometheus_client  # noqa: F401 - this test process imported it without the folder

    monkeypatch.delenv(multiproc.ENV, raising=False)
    with pytest.raises(RuntimeError, match="imported before the metrics folder"):
        multiproc.prepare()


def test_prepare_wipes_a_given_folder_and_makes_one_otherwise(tmp_path: Path) -> None:
    code = (
        "import os, sys\n"
        "from modelserve import multiproc\n"
        "path, owned = multiproc.prepare()\n"
        "print(path, owned, os.environ[multiproc.ENV] == path, sorted(os.listdir(path)))\n"
        "if owned:\n"
        "    multiproc.remove(path)\n"
        "    print(os.path.exists(path))\n"
    )
    given = tmp_path / "given"
    given.mkdir()
    (given / "counter_1.db").write_bytes(b"old")
    (given / "keep.txt").write_text("x")
    base = {"PYTHONPATH": str(SRC), "PATH": os.environ["PATH"]}
    run = [sys.executable, "-c", code]
    out = subprocess.run(
        run, env={**base, multiproc.ENV: str(given)}, capture_output=True, text=True, check=True
    )
    assert out.stdout.split() == [str(given), "False", "True", "['keep.txt']"]
    made = subprocess.run(run, env=base, capture_output=True, text=True, check=True)
    path, owned, exported, listing, exists = made.stdout.split()
    assert "modelserve-metrics-" in path and owned == "True" and exported == "True"
    assert listing == "[]" and exists == "False"


# -- real servers ----------------------------------------------------------------------------


def scrape(url: str) -> dict[str, float]:
    """Requests by route (scrapes and health checks apart), and the in-flight gauge."""
    text = requests.get(url + "/metrics", timeout=30).text
    counts: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == "modelserve_requests_total":
                counts[s.labels["route"]] = counts.get(s.labels["route"], 0) + s.value
            elif s.name == "modelserve_requests_in_flight":
                counts["in_flight"] = s.value
    return counts


def send(url: str, n: int) -> None:
    for _ in range(n):  # a new connection each: the workers share them out
        with requests.Session() as session:
            assert session.post(url + "/predict", json=ROW, timeout=30).status_code == 200


@pytest.mark.e2e
@pytest.mark.parametrize("server_name", ["granian", "gunicorn"])
def test_metrics_add_up_across_workers_and_worker_kills(
    tmp_path: Path, live_server: Callable[..., LiveServer], server_name: str
) -> None:
    root = tmp_path / "models"
    models.write_model(root, "iris", models.iris())
    folder = tmp_path / "metrics"
    server = live_server(
        [str(root), "--workers", "3", "--threads", "4", "--server", server_name],
        env={"MODELSERVE_POLL_INTERVAL": "0", multiproc.ENV: str(folder)},
    )
    assert wait_for(lambda: len(worker_pids(server.proc.pid)) == 3, 30)
    sent = 45
    send(server.url, sent)
    counts = scrape(server.url)
    assert counts["/predict"] == sent, counts
    assert counts["in_flight"] == 1  # this scrape
    victims: list[int] = []
    # Each first worker in turn, never a respawned one: granian stops the whole server when
    # a worker dies just after its start (a crash loop). Not min(pid): pids wrap around.
    first = worker_pids(server.proc.pid)
    for _ in range(3):
        before = worker_pids(server.proc.pid)
        victim = min(before & first)
        victims.append(victim)
        os.kill(victim, signal.SIGKILL)
        assert wait_for(
            lambda b=before, v=victim: (
                len(worker_pids(server.proc.pid)) == 3
                and v not in worker_pids(server.proc.pid)
                and len(worker_pids(server.proc.pid) - b) == 1
            ),
            60,
        ), server.output()
        server.wait_ready()
        send(server.url, 15)
        sent += 15
        counts = scrape(server.url)
        assert counts["/predict"] == sent, counts
        assert counts["in_flight"] == 1
        # No file of a dead worker is left: at most 4 per running worker (counters,
        # histograms, two live gauges) plus the counter and histogram archives.
        names = sorted(p.name for p in folder.glob("*.db"))
        assert not [n for n in names for v in victims if n.endswith(f"_{v}.db")], names
        assert len(names) <= 3 * 4 + 2, names
        assert {"counter_archive.db", "histogram_archive.db"} <= set(names), names
