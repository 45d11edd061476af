"""The scheduler: own rows back to every caller, failure isolation, bounded queue, no idle wait."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from modelserve.batching.batcher import Batcher
from modelserve.errors import InferenceError
from modelserve.errors import ServerBusy
from modelserve.types import TensorDict


class SumModel:
    """Test double: row sums and row ids; rows with a negative first value are rejected."""

    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay
        self.calls: list[int] = []
        self.lock = threading.Lock()

    def predict(self, inputs: TensorDict, outputs: Sequence[str] | None = None) -> TensorDict:
        x = inputs["input"]
        with self.lock:
            self.calls.append(len(x))
        if self.delay:
            time.sleep(self.delay)
        if (x[:, 0] < 0).any():
            raise InferenceError("negative first value")
        result = {"sum": x.sum(axis=1), "first": x[:, 0].copy()}
        return {k: v for k, v in result.items() if outputs is None or k in outputs}


def make(model: SumModel, **kwargs: float) -> Batcher:
    options = {"max_batch_size": 64, "max_latency_ms": 5.0, "max_queue": 1000, "timeout": 10.0}
    options.update(kwargs)
    return Batcher(model.predict, name="sum", **options)  # type: ignore[arg-type]


def test_concurrent_callers_get_their_own_rows_and_outputs() -> None:
    model = SumModel(delay=0.002)
    batcher = make(model)
    rng = np.random.default_rng(0)
    requests = [rng.uniform(0, 1, size=(int(rng.integers(1, 4)), 3)) for _ in range(300)]
    wanted = [None, ["sum"], ["first"]]

    def call(i: int) -> tuple[int, TensorDict]:
        with batcher.incoming():
            return i, batcher.submit({"input": requests[i]}, wanted[i % 3])

    with ThreadPoolExecutor(32) as pool:
        results = list(pool.map(call, range(len(requests))))
    batcher.close()
    for i, out in results:
        x = requests[i]
        expected = {"sum": x.sum(axis=1), "first": x[:, 0]}
        names = wanted[i % 3] or ["sum", "first"]
        assert set(out) == set(names)
        for name in names:
            assert np.array_equal(out[name], expected[name])
    assert sum(model.calls) == sum(len(x) for x in requests)
    assert len(model.calls) < len(requests), "calls were merged"
    assert max(model.calls) <= 64


def test_one_bad_request_fails_alone() -> None:
    model = SumModel(delay=0.005)
    batcher = make(model)
    rows = [np.array([[1.0, 2.0]]), np.array([[-1.0, 2.0]]), np.array([[3.0, 4.0]])]
    start = threading.Barrier(len(rows))

    def call(x: np.ndarray) -> TensorDict | Exception:
        start.wait()
        try:
            return batcher.submit({"input": x})
        except InferenceError as exc:
            return exc

    with ThreadPoolExecutor(len(rows)) as pool:
        out = list(pool.map(call, rows))
    batcher.close()
    assert isinstance(out[1], InferenceError)
    assert out[0]["sum"].tolist() == [3.0]  # type: ignore[index]
    assert out[2]["sum"].tolist() == [7.0]  # type: ignore[index]


def test_full_queue_is_server_busy() -> None:
    gate = threading.Event()

    def blocked(inputs: TensorDict, outputs: Sequence[str] | None = None) -> TensorDict:
        gate.wait(5)
        return {"sum": inputs["input"].sum(axis=1)}

    batcher = Batcher(
        blocked, max_batch_size=2, max_latency_ms=0, max_queue=1, timeout=10, name="b"
    )
    x = {"input": np.ones((1, 2))}
    with ThreadPoolExecutor(3) as pool:
        first = pool.submit(batcher.submit, x)  # taken by the scheduler, blocks in the model
        deadline = time.monotonic() + 5
        while not batcher.batches and time.monotonic() < deadline:
            time.sleep(0.001)
        second = pool.submit(batcher.submit, x)  # waits in the queue
        while second.running() and len(batcher._queue) < 1 and time.monotonic() < deadline:
            time.sleep(0.001)
        with pytest.raises(ServerBusy, match="requests waiting") as info:
            batcher.submit(x)
        assert info.value.retry_after >= 1
        gate.set()
        assert first.result()["sum"].tolist() == [2.0]
        assert second.result()["sum"].tolist() == [2.0]
    batcher.close()


def test_lone_request_is_not_held_back() -> None:
    """With a huge max latency, a lone call still returns at once: it waits for nobody."""
    batcher = make(SumModel(), max_latency_ms=2000)
    started = time.perf_counter()
    for _ in range(20):
        with batcher.incoming():
            batcher.submit({"input": np.ones((1, 3))})
    assert time.perf_counter() - started < 1.0  # 20 calls; waiting once would take 2 s
    batcher.close()


def test_announced_caller_that_never_submits_releases_the_wait() -> None:
    batcher = make(SumModel(), max_latency_ms=2000)
    ready = threading.Event()
    release = threading.Event()

    def failing_decoder() -> None:
        with batcher.incoming():
            ready.set()
            release.wait(5)  # still "decoding" ...
            # ... then fails validation and never submits

    thread = threading.Thread(target=failing_decoder)
    thread.start()
    ready.wait(5)
    result: list[TensorDict] = []
    caller = threading.Thread(
        target=lambda: result.append(batcher.submit({"input": np.ones((1, 3))}))
    )
    started = time.perf_counter()
    caller.start()
    time.sleep(0.05)
    release.set()
    caller.join(5)
    thread.join(5)
    assert result and time.perf_counter() - started < 1.0
    batcher.close()


def test_large_requests_bypass_the_queue() -> None:
    model = SumModel()
    batcher = make(model, max_batch_size=4)
    out = batcher.submit({"input": np.ones((10, 2))})
    assert out["sum"].shape == (10,)
    assert batcher.batches == 0
    batcher.close()
