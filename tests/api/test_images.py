from __future__ import annotations

import base64
import io
from pathlib import Path

import numpy as np
import pytest
from flask import Flask
from flask.testing import FlaskClient
from PIL import Image

from modelserve.app import create_app
from modelserve.demo_digits import load_split
from modelserve.demo_digits import render_digit
from modelserve.settings import ServerSettings

from ..images import encode
from ..images import png_header_only

MODELS = ["digits", "digits-onnx"]


@pytest.fixture(scope="module")
def digits_app(demo_repo: Path) -> Flask:
    settings = ServerSettings(
        profile="testing",
        model_path=demo_repo,
        default_model="digits",
        max_content_length=64 * 1024,
        max_image_pixels=1_000_000,
        max_images_per_request=8,
    )
    return create_app(settings)


@pytest.fixture
def c(digits_app: Flask) -> FlaskClient:
    return digits_app.test_client()


@pytest.fixture(scope="module")
def held_out() -> tuple[np.ndarray, np.ndarray]:
    _, x_test, _, y_test = load_split()
    return x_test, y_test


def digit_file(values: np.ndarray, fmt: str = "PNG", scale: int = 4, mode: str = "L") -> bytes:
    img = render_digit(values, scale)
    return encode(img.convert(mode) if mode != "L" else img, fmt)


def upload(c: FlaskClient, url: str, *files: bytes, field: str = "image") -> object:
    data = {field: [(io.BytesIO(f), f"digit{i}.png") for i, f in enumerate(files)]}
    return c.post(url, data=data, content_type="multipart/form-data")


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP", "BMP", "GIF"])
@pytest.mark.parametrize("model", MODELS)
def test_predict_image_answers_in_the_seed_shape(
    c: FlaskClient, held_out: tuple[np.ndarray, np.ndarray], model: str, fmt: str
) -> None:
    x, y = held_out
    resp = upload(c, f"/models/{model}/predict_image", digit_file(x[0], fmt, scale=8))
    assert resp.status_code == 200, resp.json
    body = resp.json
    assert body["predicted_class"] == str(y[0])
    assert 0.5 < body["confidence"] <= 1.0
    assert list(body["all_probabilities"]) == [str(d) for d in range(10)]
    assert sum(body["all_probabilities"].values()) == pytest.approx(1.0)
    assert [t["class"] for t in body["top_k"]][0] == body["predicted_class"]
    assert len(body["top_k"]) == 3  # the demo manifest's top_k
    assert (body["model"], body["version"], body["status"]) == (model, "1", "success")


def test_default_and_versioned_routes(
    c: FlaskClient, held_out: tuple[np.ndarray, np.ndarray]
) -> None:
    x, y = held_out
    data = digit_file(x[1])
    for url in ("/predict_image", "/models/digits/versions/1/predict_image"):
        resp = upload(c, url, data)
        assert resp.status_code == 200, resp.json
        assert resp.json["predicted_class"] == str(y[1]) and resp.json["model"] == "digits"


def test_raw_image_body_is_accepted(
    c: FlaskClient, held_out: tuple[np.ndarray, np.ndarray]
) -> None:
    x, y = held_out
    resp = c.post("/predict_image", data=digit_file(x[2]), content_type="image/png")
    assert resp.status_code == 200, resp.json
    assert resp.json["predicted_class"] == str(y[2])


@pytest.mark.parametrize("model", MODELS)
def test_several_files_are_one_batch_in_order(
    c: FlaskClient, held_out: tuple[np.ndarray, np.ndarray], model: str
) -> None:
    x, y = held_out
    files = [digit_file(v) for v in x[:5]]
    resp = upload(c, f"/models/{model}/predict_image", *files)
    assert resp.status_code == 200, resp.json
    preds = resp.json["predictions"]
    assert [p["instance_id"] for p in preds] == [0, 1, 2, 3, 4]
    assert [p["predicted_class"] for p in preds] == [str(v) for v in y[:5]]
    single = [upload(c, f"/models/{model}/predict_image", f).json for f in files]
    assert [s["confidence"] for s in single] == pytest.approx([p["confidence"] for p in preds])


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "LA", "1"])
def test_colour_and_alpha_uploads_to_a_grayscale_model(
    c: FlaskClient, held_out: tuple[np.ndarray, np.ndarray], mode: str
) -> None:
    x, y = held_out
    resp = upload(c, "/predict_image", digit_file(x[3], mode=mode))
    assert resp.status_code == 200, resp.json
    assert resp.json["predicted_class"] == str(y[3])


def test_transparent_background_counts_as_white_paper(
    c: FlaskClient, held_out: tuple[np.ndarray, np.ndarray]
) -> None:
    # Ink only, on a fully transparent background (how drawing apps export).
    x, y = held_out
    ink = 255 - np.asarray(render_digit(x[4], 4))
    rgba = np.zeros((*ink.shape, 4), dtype=np.uint8)
    rgba[..., 3] = ink
    resp = upload(c, "/predict_image", encode(Image.fromarray(rgba, "RGBA"), "PNG"))
    assert resp.status_code == 200, resp.json
    assert resp.json["predicted_class"] == str(y[4])


def test_exif_rotated_photo_is_turned_upright(
    c: FlaskClient, held_out: tuple[np.ndarray, np.ndarray]
) -> None:
    x, y = held_out
    upright = render_digit(x[5], 16).convert("RGB")
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    sideways = encode(upright.transpose(Image.Transpose.ROTATE_90), "JPEG", exif=exif, quality=95)
    resp = upload(c, "/predict_image", sideways)
    assert resp.status_code == 200, resp.json
    assert resp.json["predicted_class"] == str(y[5])


@pytest.mark.parametrize("model", MODELS)
def test_base64_and_data_urls(
    c: FlaskClient, held_out: tuple[np.ndarray, np.ndarray], model: str
) -> None:
    x, y = held_out
    text = base64.b64encode(digit_file(x[6])).decode()
    url = f"/models/{model}/predict_image_base64"
    for value in (text, "data:image/png;base64," + text):
        resp = c.post(url, json={"image": value})
        assert resp.status_code == 200, resp.json
        assert resp.json["predicted_class"] == str(y[6])
    many = c.post(url, json={"images": [text, text]})
    assert [p["predicted_class"] for p in many.json["predictions"]] == [str(y[6])] * 2
    default = c.post("/predict_image_base64", json={"image": text})
    assert default.status_code == 200 and default.json["model"] == "digits"


def test_torchscript_and_onnx_agree_on_every_held_out_digit(
    c: FlaskClient, held_out: tuple[np.ndarray, np.ndarray]
) -> None:
    x, _ = held_out
    top1: dict[str, list[str]] = {}
    for model in MODELS:
        top1[model] = []
        for start in range(0, len(x), 8):
            files = [digit_file(v) for v in x[start : start + 8]]
            resp = upload(c, f"/models/{model}/predict_image", *files)
            assert resp.status_code == 200, resp.json
            preds = resp.json.get("predictions", [resp.json])
            top1[model] += [p["predicted_class"] for p in preds]
    assert len(top1["digits"]) == len(x)
    assert top1["digits"] == top1["digits-onnx"]


# -- bad input ------------------------------------------------------------------------------


def error_of(resp: object) -> tuple[int, str, str]:
    body = resp.json  # type: ignore[attr-defined]
    assert body["status"] == "error"
    return resp.status_code, body["type"], body["error"]  # type: ignore[attr-defined]


def test_not_an_image_is_415(c: FlaskClient) -> None:
    status, kind, message = error_of(upload(c, "/predict_image", b"just some text"))
    assert (status, kind) == (415, "UnsupportedMediaType")
    assert "not a supported image" in message


def test_truncated_image_is_400(c: FlaskClient) -> None:
    noisy = Image.fromarray(np.random.default_rng(1).integers(0, 255, (64, 64), dtype=np.uint8))
    data = encode(noisy, "PNG")
    status, kind, message = error_of(upload(c, "/predict_image", data[: len(data) // 2]))
    assert (status, kind) == (400, "InvalidInput")
    assert "truncated" in message


def test_body_over_max_content_length_is_413(c: FlaskClient) -> None:
    status, _, message = error_of(upload(c, "/predict_image", b"\0" * (65 * 1024)))
    assert status == 413 and "MODELSERVE_MAX_CONTENT_LENGTH" in message
    resp = c.post("/predict_image_base64", json={"image": "A" * (70 * 1024)})
    assert resp.status_code == 413
    raw = c.post("/predict_image", data=b"\0" * (65 * 1024), content_type="image/png")
    assert raw.status_code == 413


def test_pixel_bomb_is_413(c: FlaskClient) -> None:
    status, kind, message = error_of(upload(c, "/predict_image", png_header_only(5000, 5000)))
    assert (status, kind) == (413, "PayloadTooLarge")
    assert "5000x5000" in message


def test_too_many_images_is_413(c: FlaskClient, held_out: tuple[np.ndarray, np.ndarray]) -> None:
    files = [digit_file(held_out[0][0])] * 9
    status, _, message = error_of(upload(c, "/predict_image", *files))
    assert status == 413 and "MODELSERVE_MAX_IMAGES_PER_REQUEST" in message


def test_wrong_field_name_is_400_naming_the_field(c: FlaskClient) -> None:
    status, _, message = error_of(upload(c, "/predict_image", b"x", field="file"))
    assert status == 400
    assert "'image'" in message and "file" in message


def test_json_body_on_the_upload_route_is_415(c: FlaskClient) -> None:
    status, _, message = error_of(c.post("/predict_image", json={"image": "x"}))
    assert status == 415 and "multipart/form-data" in message


@pytest.mark.parametrize(
    "payload",
    [{"image": "%%% not base64 %%%"}, {"picture": "abc"}, {"image": 12}, ["image"]],
)
def test_bad_base64_bodies_are_400(c: FlaskClient, payload: object) -> None:
    status, kind, _ = error_of(c.post("/predict_image_base64", json=payload))
    assert (status, kind) == (400, "InvalidInput")


def test_a_tabular_model_refuses_images_and_an_image_model_refuses_features(
    c: FlaskClient, held_out: tuple[np.ndarray, np.ndarray]
) -> None:
    status, _, message = error_of(
        upload(c, "/models/iris/predict_image", digit_file(held_out[0][0]))
    )
    assert status == 400 and "not an image model" in message
    status, _, message = error_of(c.post("/models/digits/predict", json={"x": 1}))
    assert status == 400 and "predict_image" in message


def test_unknown_model_is_404(c: FlaskClient) -> None:
    status, _, _ = error_of(upload(c, "/models/nope/predict_image", b"x"))
    assert status == 404


def test_metadata_describes_the_image_input(c: FlaskClient) -> None:
    body = c.get("/models/digits-onnx").json
    assert body["kind"] == "image"
    assert body["inputs"] == [{"name": "image", "datatype": "FP32", "shape": [-1, 1, 8, 8]}]
    assert body["outputs"] == [{"name": "logits", "datatype": "FP32", "shape": [-1, 10]}]
    assert body["image"]["size"] == [8, 8] and body["image"]["mode"] == "L"
    assert body["class_names"] == [str(d) for d in range(10)]
    assert "/models/digits-onnx/versions/1/predict_image" in body["routes"]
    assert c.get("/models/iris").json.get("kind") is None  # tabular metadata unchanged
