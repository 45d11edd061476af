"""The opt-in prediction cache: local LRU and shared Redis, keyed on the validated input."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import numpy as np
import pytest
import redis

from modelserve.app import create_app
from modelserve.cache import LocalCache
from modelserve.cache import RedisCache
from modelserve.cache import input_digest
from modelserve.settings import ServerSettings

from . import models


def test_digest_is_canonical_over_the_validated_array() -> None:
    a = np.array([[1.0, 2.0]])
    assert input_digest("one", a) == input_digest("one", np.array([[1, 2]], dtype=np.float64))
    assert input_digest("one", a) != input_digest("batch", a)
    assert input_digest("one", a) != input_digest("one", np.array([[2.0, 1.0]]))
    assert input_digest("one", a) != input_digest("one", a.reshape(2, 1))
    obj = np.array([[1.0, "x"]], dtype=object)
    assert input_digest("one", obj) != input_digest("one", np.array([[1.0, "y"]], dtype=object))


def test_local_cache_is_bounded_and_expires() -> None:
    cache = LocalCache("p", ttl=0.2, max_entries=2)
    for key in "abc":
        cache.put(key, {"v": key})
    assert cache.get("a") is None  # evicted: least recently used
    assert cache.get("c") == {"v": "c"}
    time.sleep(0.25)
    assert cache.get("c") is None  # expired
    assert cache.stats()["hits"] == 1 and cache.stats()["misses"] == 2


def cached_app(tmp_path: Path, backend: str, redis_url: str) -> tuple[object, Path]:
    models.write_model(tmp_path, "iris", models.iris(), manifest={"cache": {"ttl_seconds": 60}})
    settings = ServerSettings(
        profile="testing", model_path=tmp_path, cache_backend=backend, redis_url=redis_url
    )
    return create_app(settings), tmp_path


@pytest.mark.parametrize("backend", ["local", "redis"])
def test_hits_and_misses_are_counted_and_answers_equal(
    tmp_path: Path, backend: str, redis_url: str
) -> None:
    if backend == "redis":
        redis.Redis.from_url(redis_url).flushdb()
    app, _ = cached_app(tmp_path, backend, redis_url)
    client = app.test_client()  # type: ignore[attr-defined]
    trained = models.iris()
    row = models.features_of(trained, trained.x[77])
    first = client.post("/predict", json=row).json
    again = client.post("/predict", json=dict(reversed(list(row.items())))).json  # same input
    other = client.post("/predict", json=models.features_of(trained, trained.x[3])).json
    batch = client.post("/predict_batch", json={"instances": [row]}).json
    assert first == again
    assert other["probability"] != first["probability"]
    assert batch["predictions"][0]["probability"] == first["probability"]
    stats = client.get("/models/iris").json["cache"]
    assert stats["backend"] == backend
    assert (stats["hits"], stats["misses"]) == (1, 3)


def test_redis_cache_is_shared_between_servers(tmp_path: Path, redis_url: str) -> None:
    redis.Redis.from_url(redis_url).flushdb()
    app_a, root = cached_app(tmp_path, "redis", redis_url)
    app_b = create_app(
        ServerSettings(
            profile="testing", model_path=root, cache_backend="redis", redis_url=redis_url
        )
    )
    row = models.features_of(models.iris(), models.iris().x[10])
    app_a.test_client().post("/predict", json=row)  # type: ignore[attr-defined]
    app_b.test_client().post("/predict", json=row)
    assert app_b.extensions["modelserve"].resolve("iris").cache.stats()["hits"] == 1


def test_a_changed_artifact_never_hits_old_answers(tmp_path: Path, redis_url: str) -> None:
    """Same name and version, different file: the key changes with the artifact's sha256."""
    redis.Redis.from_url(redis_url).flushdb()
    app_a, root = cached_app(tmp_path, "redis", redis_url)
    row = models.features_of(models.iris(), models.iris().x[10])
    app_a.test_client().post("/predict", json=row)  # type: ignore[attr-defined]
    trained = models.iris()
    from sklearn.linear_model import LogisticRegression

    other = LogisticRegression(C=0.001, max_iter=500).fit(
        trained.preprocessor.transform(trained.x),
        trained.model.predict(trained.preprocessor.transform(trained.x)),
    )
    models.write_model(
        root,
        "iris",
        models.Trained(
            other, trained.x, trained.preprocessor, trained.feature_names, trained.class_names
        ),
        manifest={"cache": {"ttl_seconds": 60}},
    )
    app_b = create_app(
        ServerSettings(
            profile="testing", model_path=root, cache_backend="redis", redis_url=redis_url
        )
    )
    answer = app_b.test_client().post("/predict", json=row).json
    service = app_b.extensions["modelserve"]
    assert service.resolve("iris").cache.stats()["hits"] == 0
    z = trained.preprocessor.transform(trained.x[10:11])
    assert answer["probability"] == other.predict_proba(z)[0].tolist()


def test_redis_down_is_a_miss_not_an_error(tmp_path: Path) -> None:
    models.write_model(tmp_path, "iris", models.iris(), manifest={"cache": {}})
    settings = ServerSettings(
        profile="testing",
        model_path=tmp_path,
        cache_backend="redis",
        redis_url="redis://127.0.0.1:1/0",
    )
    app = create_app(settings)
    row = models.features_of(models.iris(), models.iris().x[0])
    assert app.test_client().post("/predict", json=row).status_code == 200
    stats = app.test_client().get("/models/iris").json["cache"]
    assert stats["errors"] >= 1 and stats["hits"] == 0


def test_cache_is_off_unless_the_manifest_asks(repo: Path) -> None:
    app = create_app(ServerSettings(profile="testing", model_path=repo, default_model="iris"))
    assert app.test_client().get("/models/iris").json["cache"] is None


def test_redis_cache_unit(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    cache = RedisCache(f"t-{uuid.uuid4().hex}", ttl=0.3, client=client)
    cache.put("k", {"a": 1})
    assert cache.get("k") == {"a": 1}
    time.sleep(0.4)
    assert cache.get("k") is None
