"""The options modelserve hands each server: the same promises, spelled in each one's terms."""

from __future__ import annotations

from pathlib import Path

from modelserve import server
from modelserve import workers
from modelserve.settings import ServerSettings


def test_recycling_and_stop_settings_reach_gunicorn(tmp_path: Path) -> None:
    settings = ServerSettings(
        model_path=tmp_path, max_requests=1000, max_requests_jitter=50, graceful_timeout=12
    )
    options = server.gunicorn_options(settings)
    assert (options["max_requests"], options["max_requests_jitter"]) == (1000, 50)
    assert options["graceful_timeout"] == 12
    # No request limit: no jitter either (gunicorn would draw one for nothing).
    plain = server.gunicorn_options(ServerSettings(model_path=tmp_path, max_requests_jitter=50))
    assert (plain["max_requests"], plain["max_requests_jitter"]) == (0, 0)


def test_granian_gets_a_kill_timeout_and_a_recycling_tick_only_when_asked(
    tmp_path: Path,
) -> None:
    plain = server.granian_options(ServerSettings(model_path=tmp_path, graceful_timeout=12))
    # The drain runs before granian's stop: together they stay within the graceful timeout.
    assert plain["workers_kill_timeout"] == 12 - workers.DRAIN_SECONDS
    assert plain["respawn_failed_workers"] is True
    assert "workers_max_rss" not in plain
    for asked in ({"max_requests": 500}, {"max_worker_rss_mb": 800}):
        options = server.granian_options(ServerSettings(model_path=tmp_path, **asked))
        assert options["rss_sample_interval"] == 1
        # modelserve checks the real limits on that tick; granian's own is never reached.
        assert options["workers_max_rss"] >= 1 << 30
