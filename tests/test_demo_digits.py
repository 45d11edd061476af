from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import requests
import yaml

from modelserve.demo import DEMO_MODELS
from modelserve.demo_digits import IMAGE_SPEC
from modelserve.demo_digits import load_split
from modelserve.demo_digits import render_digit
from modelserve.repository import sha256_file

from .conftest import LiveServer
from .images import encode
from .images import png_header_only


def test_demo_writes_both_digits_models_with_pinned_hashes(demo_repo: Path) -> None:
    assert sorted(p.name for p in demo_repo.iterdir()) == sorted(DEMO_MODELS)
    for name, artifact, runtime in (
        ("digits", "model.pt", "torch"),
        ("digits-onnx", "model.onnx", "onnx"),
    ):
        manifest = yaml.safe_load((demo_repo / name / "model.yaml").read_text())
        assert manifest["runtime"] == runtime and manifest["artifact"] == artifact
        assert manifest["sha256"] == {
            f"1/{artifact}": sha256_file(demo_repo / name / "1" / artifact)
        }
        assert manifest["image"]["mode"] == "L" and manifest["image"]["size"] == [8, 8]
        assert manifest["class_names"] == [str(d) for d in range(10)]


def test_the_split_holds_out_a_fifth_and_renders_dark_ink_on_white() -> None:
    x_train, x_test, y_train, y_test = load_split()
    assert len(x_test) == 360 and len(x_train) == 1437
    img = render_digit(x_test[0], 4)
    assert img.size == (32, 32) and img.mode == "L"
    pixels = np.asarray(img)
    assert pixels.max() == 255 and np.median(pixels) > 128  # mostly paper
    assert IMAGE_SPEC.mean == [0.5]


@pytest.mark.e2e
def test_held_out_digits_over_http_under_gunicorn(
    demo_repo: Path, live_server: Callable[..., LiveServer]
) -> None:
    """Every held-out digit, rendered as a PNG, through a real gunicorn: >= 95% correct."""
    server = live_server([str(demo_repo), "--threads", "2"])
    _, x_test, _, y_test = load_split()
    files = [encode(render_digit(v, 4), "PNG") for v in x_test]
    with requests.Session() as http:
        for model in ("digits", "digits-onnx"):
            predicted: list[str] = []
            for start in range(0, len(files), 30):
                batch = [
                    ("image", (f"{i}.png", io.BytesIO(f), "image/png"))
                    for i, f in enumerate(files[start : start + 30])
                ]
                resp = http.post(
                    f"{server.url}/models/{model}/predict_image", files=batch, timeout=30
                )
                assert resp.status_code == 200, resp.text
                predicted += [p["predicted_class"] for p in resp.json()["predictions"]]
            accuracy = np.mean([p == str(y) for p, y in zip(predicted, y_test, strict=True)])
            assert accuracy >= 0.95, f"{model}: {accuracy:.3f}"
            one = http.post(
                f"{server.url}/models/{model}/predict_image",
                files={"image": ("d.png", files[0], "image/png")},
                timeout=30,
            )
            assert one.status_code == 200 and one.json()["predicted_class"] == predicted[0]
        bomb = http.post(
            f"{server.url}/models/digits/predict_image",
            files={"image": ("bomb.png", png_header_only(60_000, 60_000), "image/png")},
            timeout=30,
        )
        assert bomb.status_code == 413
        too_big = http.post(
            f"{server.url}/models/digits-onnx/predict_image",
            files={"image": ("big.png", b"\0" * (17 * 1024 * 1024), "image/png")},
            timeout=30,
        )
        assert too_big.status_code == 413, too_big.text  # the seed's 16 MiB default
        # The worker survived the bomb.
        assert http.get(f"{server.url}/health", timeout=5).status_code == 200


def test_validate_answers_a_sample_image_for_image_models(demo_repo: Path) -> None:
    from modelserve.settings import ServerSettings
    from modelserve.validate import validate_repository

    lines: list[str] = []
    settings = ServerSettings(profile="testing", model_path=demo_repo)
    assert validate_repository(settings, False, lines.append), lines
    assert any(line.startswith("ok   digits-onnx v1: image model, 10 classes") for line in lines)
