"""The keys file: hashes only, valid TOML both ways, strict parsing, and a watcher that sees a
change within its interval without a stat per call."""

from __future__ import annotations

import hashlib
import os
import threading
from datetime import UTC
from datetime import datetime
from pathlib import Path

import pytest

from modelserve.errors import ConfigError
from modelserve.keys import KeyFile
from modelserve.keys import KeyRecord
from modelserve.keys import create_key
from modelserve.keys import format_keys
from modelserve.keys import hash_key
from modelserve.keys import new_key
from modelserve.keys import read_keys
from modelserve.keys import revoke_key


def test_new_keys_are_random_and_hashed_with_sha256() -> None:
    a, b = new_key(), new_key()
    assert a != b and a.startswith("ms_") and len(a) >= 43 + 3
    assert "." not in a  # never mistaken for a JWT
    assert hash_key(a) == "sha256:" + hashlib.sha256(a.encode()).hexdigest()


def test_create_writes_a_file_that_reads_back(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "keys.toml"
    when = datetime(2024, 5, 1, 12, 0, 0, 123, tzinfo=UTC)
    key = create_key(path, "ci-bot", ["predict"], ["iris", "forest"], now=when)
    create_key(path, "ops", ["admin", "predict"])
    ci, ops = read_keys(path)
    assert ci == KeyRecord(
        "ci-bot",
        hash_key(key),
        frozenset({"predict"}),
        frozenset({"iris", "forest"}),
        datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC),
    )
    assert ops.scopes == {"admin", "predict"} and ops.models is None
    assert "created = 2024-05-01T12:00:00Z" in path.read_text()
    assert not list(path.parent.glob(".keys.toml.*"))  # no temporary file left behind


def test_unusual_model_names_survive_the_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "keys.toml"
    names = ['quote"d', "back\\slash", "ünïcode 🐍", "tab\there", "del\x7f", "nul\x00"]
    create_key(path, "k", ["predict"], names)
    (record,) = read_keys(path)
    assert record.models == set(names)
    text = format_keys([record])
    assert "\x7f" not in text and "\x00" not in text  # escaped, as TOML requires


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[k\n", "not valid TOML"),
        ('k = "x"\n', "must be a table"),
        ('[k]\nhash = "md5:abc"\nscopes = ["predict"]\n', "needs hash"),
        (f'[k]\nhash = "{hash_key("x")}"\nscopes = ["root"]\n', "needs scopes"),
        (f'[k]\nhash = "{hash_key("x")}"\nscopes = []\n', "needs scopes"),
        (f'[k]\nhash = "{hash_key("x")}"\nscopes = ["predict"]\nmodels = "iris"\n', "models"),
        (f'[k]\nhash = "{hash_key("x")}"\nscopes = ["predict"]\nkey = "plain"\n', "unknown"),
        (f'[k]\nhash = "{hash_key("x")}"\nscopes = ["predict"]\ncreated = "x"\n', "created"),
    ],
)
def test_invalid_files_are_refused_naming_the_problem(
    tmp_path: Path, text: str, message: str
) -> None:
    path = tmp_path / "keys.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        read_keys(path)


def test_revoke_removes_only_that_key(tmp_path: Path) -> None:
    path = tmp_path / "keys.toml"
    create_key(path, "a", ["predict"])
    create_key(path, "b", ["predict"])
    revoke_key(path, "a")
    assert [r.name for r in read_keys(path)] == ["b"]
    with pytest.raises(ConfigError, match="No key named 'a'"):
        revoke_key(path, "a")


def test_concurrent_creates_lose_nothing(tmp_path: Path) -> None:
    path = tmp_path / "keys.toml"
    threads = [
        threading.Thread(target=create_key, args=(path, f"k{i}", ["predict"])) for i in range(8)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(r.name for r in read_keys(path)) == sorted(f"k{i}" for i in range(8))


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_the_watcher_rereads_a_changed_file_at_most_once_per_interval(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "keys.toml"
    create_key(path, "a", ["predict"])
    clock = _Clock()
    watcher = KeyFile(path, interval=1.0, clock=clock)
    first = watcher.records()
    assert [r.name for r in first] == ["a"]

    stats: list[object] = []
    real_stat = os.stat

    def counting_stat(p: object, *args: object, **kwargs: object) -> os.stat_result:
        stats.append(p)
        return real_stat(p, *args, **kwargs)  # type: ignore[arg-type]

    revoke_key(path, "a")
    create_key(path, "b", ["admin"])
    monkeypatch.setattr("modelserve.keys.os.stat", counting_stat)
    clock.now += 0.5
    assert watcher.records() is first  # within the interval: not even a stat
    assert stats == []
    clock.now += 0.6
    assert [r.name for r in watcher.records()] == ["b"]
    assert len(stats) == 1
    same = watcher.records()
    clock.now += 1.1
    assert watcher.records() is same  # unchanged file: one stat, no re-read


def test_a_broken_or_deleted_file_lets_no_key_in(tmp_path: Path) -> None:
    path = tmp_path / "keys.toml"
    create_key(path, "a", ["predict"])
    clock = _Clock()
    watcher = KeyFile(path, interval=1.0, clock=clock)
    assert watcher.records()
    path.write_text("[broken\n")
    clock.now += 2
    assert watcher.records() == ()
    create_key(path.with_name("other.toml"), "x", ["predict"])
    os.replace(path.with_name("other.toml"), path)
    clock.now += 2
    assert [r.name for r in watcher.records()] == ["x"]
    path.unlink()
    clock.now += 2
    assert watcher.records() == ()
