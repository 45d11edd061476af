"""An off-the-shelf V2 client (tritonclient.http) against real granian and gunicorn servers."""

from __future__ import annotations

import time
from collections.abc import Callable
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import tritonclient.http as httpclient
from tritonclient._plugin import InferenceServerClientPlugin
from tritonclient.utils import InferenceServerException

from . import models
from .conftest import LiveServer
from .conftest import running_server

pytestmark = pytest.mark.e2e

API_KEY = "tritonclient-tests-key"


class _APIKey(InferenceServerClientPlugin):
    """tritonclient's hook for headers on every request: the server's API key."""

    def __call__(self, request: Any) -> None:
        request.headers["X-API-Key"] = API_KEY


@pytest.fixture(scope="module", params=["granian", "gunicorn"])
def server(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[LiveServer]:
    """One server per server choice for the module: starting two workers takes seconds."""
    repo = tmp_path_factory.mktemp("triton") / "models"
    models.write_model(repo, "iris", models.iris())
    models.write_model(repo, "forest", models.forest())
    models.write_model(repo, "labels", models.string_labels())
    args = [str(repo), "--workers", "2", "--default-model", "iris", "--server", request.param]
    with running_server(args, {"MODELSERVE_API_KEY": API_KEY}) as server:
        yield server


@pytest.fixture
def triton(server: LiveServer) -> httpclient.InferenceServerClient:
    client = httpclient.InferenceServerClient(url=server.url.removeprefix("http://"))
    client.register_plugin(_APIKey())
    return client


def test_without_the_key_tritonclient_gets_401(server: LiveServer) -> None:
    anonymous = httpclient.InferenceServerClient(url=server.url.removeprefix("http://"))
    assert anonymous.is_server_live()  # health stays public
    with pytest.raises(InferenceServerException) as info:
        anonymous.unload_model("forest")
    assert info.value.status() == "401"


def test_health_and_server_metadata(triton: httpclient.InferenceServerClient) -> None:
    assert triton.is_server_live()
    assert triton.is_server_ready()
    meta = triton.get_server_metadata()
    assert meta["name"] == "modelserve"
    assert "binary_tensor_data" in meta["extensions"]


def test_model_metadata_and_ready(triton: httpclient.InferenceServerClient) -> None:
    assert triton.is_model_ready("iris")
    assert triton.is_model_ready("iris", "1")
    meta = triton.get_model_metadata("iris")
    assert meta["name"] == "iris"
    assert meta["versions"] == ["1"]
    assert meta["platform"] == "sklearn"
    assert meta["inputs"] == [{"name": "input", "datatype": "FP64", "shape": [-1, 4]}]
    assert meta["outputs"] == [
        {"name": "predict", "datatype": "INT64", "shape": [-1]},
        {"name": "predict_proba", "datatype": "FP64", "shape": [-1, 3]},
    ]
    with pytest.raises(InferenceServerException, match="not found"):
        triton.get_model_metadata("nope")


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int64])
@pytest.mark.parametrize("binary_input", [True, False])
def test_infer_equals_in_process(
    triton: httpclient.InferenceServerClient, dtype: type, binary_input: bool
) -> None:
    trained = models.iris()
    x = trained.x[::7].astype(dtype)
    inp = httpclient.InferInput("input", list(x.shape), httpclient.np_to_triton_dtype(x.dtype))
    inp.set_data_from_numpy(x, binary_data=binary_input)
    result = triton.infer("iris", [inp], request_id="req-1")
    labels, proba = trained.expected(x.astype(np.float64))
    np.testing.assert_array_equal(result.as_numpy("predict"), labels)
    np.testing.assert_array_equal(result.as_numpy("predict_proba"), proba)
    response = result.get_response()
    assert response["model_name"] == "iris"
    assert response["model_version"] == "1"
    assert response["id"] == "req-1"
    # No outputs requested: tritonclient asks for every output as binary data.
    assert all("binary_data_size" in o["parameters"] for o in response["outputs"])


def test_requested_outputs_json_and_binary(triton: httpclient.InferenceServerClient) -> None:
    trained = models.forest()
    x = trained.x[:25]
    inp = httpclient.InferInput("input", list(x.shape), "FP64")
    inp.set_data_from_numpy(x)
    outputs = [
        httpclient.InferRequestedOutput("predict", binary_data=False),
        httpclient.InferRequestedOutput("predict_proba", binary_data=True),
    ]
    result = triton.infer("forest", [inp], outputs=outputs)
    labels, proba = trained.expected(x)
    np.testing.assert_array_equal(result.as_numpy("predict"), labels)
    np.testing.assert_array_equal(result.as_numpy("predict_proba"), proba)
    by_name = {o["name"]: o for o in result.get_response()["outputs"]}
    assert "data" in by_name["predict"]
    assert by_name["predict_proba"]["parameters"]["binary_data_size"] == proba.nbytes


def test_string_labels_come_back_as_bytes(triton: httpclient.InferenceServerClient) -> None:
    trained = models.string_labels()
    x = trained.x[::30]
    inp = httpclient.InferInput("input", list(x.shape), "FP64")
    inp.set_data_from_numpy(x)
    result = triton.infer("labels", [inp], outputs=[httpclient.InferRequestedOutput("predict")])
    labels, _ = trained.expected(x)
    assert [v.decode() for v in result.as_numpy("predict")] == labels.tolist()


def test_bad_input_is_an_error(triton: httpclient.InferenceServerClient) -> None:
    x = np.zeros((2, 3))
    inp = httpclient.InferInput("input", [2, 3], "FP64")
    inp.set_data_from_numpy(x)
    with pytest.raises(InferenceServerException, match=r"shape \[rows, 4\]") as info:
        triton.infer("iris", [inp])
    assert info.value.status() == "400"


def test_repository_extension(triton: httpclient.InferenceServerClient) -> None:
    index = triton.get_model_repository_index()
    assert {(m["name"], m["state"]) for m in index} >= {("iris", "READY"), ("forest", "READY")}
    triton.unload_model("forest")
    # The worker that answered unloaded it at once; the master fans it out to the other one.
    assert _settles(lambda: not triton.is_model_ready("forest"))
    assert ("forest", "UNAVAILABLE") in {
        (m["name"], m["state"]) for m in triton.get_model_repository_index()
    }
    triton.load_model("forest")
    assert _settles(lambda: triton.is_model_ready("forest"))


def _settles(check: Callable[[], bool], timeout: float = 10.0) -> bool:
    """True once ``check`` holds on 8 calls in a row (more calls than workers)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(check() for _ in range(8)):
            return True
        time.sleep(0.1)
    return False


@pytest.mark.parametrize("algorithm", ["gzip", "deflate"])
def test_compressed_requests(triton: httpclient.InferenceServerClient, algorithm: str) -> None:
    trained = models.iris()
    x = trained.x[:10]
    inp = httpclient.InferInput("input", list(x.shape), "FP64")
    inp.set_data_from_numpy(x)
    result = triton.infer("iris", [inp], request_compression_algorithm=algorithm)
    np.testing.assert_array_equal(result.as_numpy("predict"), trained.expected(x)[0])
