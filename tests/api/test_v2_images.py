"""Image models through the Open Inference Protocol: one BYTES tensor of image files."""

from __future__ import annotations

import base64
from pathlib import Path

import numpy as np
import orjson
import pytest
from flask.testing import FlaskClient
from PIL import Image

from modelserve.app import create_app
from modelserve.codecs.v2 import encode_request
from modelserve.settings import ServerSettings

from ..images import encode


@pytest.fixture(scope="module")
def client(demo_repo: Path) -> FlaskClient:
    return create_app(ServerSettings(profile="testing", model_path=demo_repo)).test_client()


def digit(value: int) -> bytes:
    from sklearn.datasets import load_digits

    data = load_digits()
    idx = int(np.flatnonzero(data.target == value)[-1])
    pixels = (255 - data.images[idx] * 255 / 16).astype(np.uint8)  # dark ink on white
    return encode(Image.fromarray(pixels, mode="L").resize((32, 32)), "PNG")


@pytest.mark.parametrize("model", ["digits", "digits-onnx"])
def test_binary_bytes_images(client: FlaskClient, model: str) -> None:
    files = np.array([digit(3), digit(7)], dtype=object)
    body, header = encode_request([("image", files, True)])
    resp = client.post(
        f"/v2/models/{model}/infer",
        data=body,
        headers={"Inference-Header-Content-Length": str(header)},
        content_type="application/octet-stream",
    )
    assert resp.status_code == 200, resp.data[:300]
    out = orjson.loads(resp.data)
    assert out["model_name"] == model
    [scores] = out["outputs"]
    assert scores["shape"] == [2, 10]
    assert np.argmax(np.array(scores["data"]).reshape(2, 10), axis=1).tolist() == [3, 7]


def test_base64_bytes_in_json(client: FlaskClient) -> None:
    body = {
        "inputs": [
            {
                "name": "image",
                "shape": [1],
                "datatype": "BYTES",
                "data": [base64.b64encode(digit(5)).decode()],
            }
        ]
    }
    resp = client.post("/v2/models/digits/infer", json=body)
    assert resp.status_code == 200, resp.json
    scores = resp.json["outputs"][0]
    assert int(np.argmax(scores["data"])) == 5


def test_not_an_image_in_bytes_is_415(client: FlaskClient) -> None:
    files = np.array([b"definitely not a picture"], dtype=object)
    body, header = encode_request([("image", files, True)])
    resp = client.post(
        "/v2/models/digits/infer",
        data=body,
        headers={"Inference-Header-Content-Length": str(header)},
    )
    assert resp.status_code == 415
    assert resp.json["status"] == "error"
