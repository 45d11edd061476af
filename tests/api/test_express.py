"""The express lane (``api/express.py``): the same answers, lines and counts as Flask, one
rate-limit count per request, Flask for every request it cannot answer with a 200, and off
whenever the app does per-request work it does not know."""

from __future__ import annotations

import base64
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask import signals
from flask.testing import FlaskClient
from pydantic import SecretStr
from werkzeug.test import TestResponse

from modelserve import metrics
from modelserve.api.express import ExpressLane
from modelserve.app import create_app
from modelserve.logging import REQUEST_LOGGER
from modelserve.settings import ServerSettings

from .. import models

KEY = "ms_express-test-key-0123456789abcdefghijk"
AUTH = {"X-API-Key": KEY}
#: Headers whose values are the request's own, not the answer's.
VARYING = {"X-Request-ID", "X-RateLimit-Reset"}


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    from sklearn.preprocessing import FunctionTransformer

    root = tmp_path / "models"
    trained = models.iris()
    models.write_model(root, "iris", trained)
    models.write_model(root, "iris", trained, version="2")
    # Refuses schema-valid rows with a negative sepal length: the model's own error (422).
    strict = FunctionTransformer(models.reject_negative_sepal, validate=True).fit(trained.x)
    guarded = models.Trained(trained.model, trained.x, strict, trained.feature_names)
    models.write_model(root, "guarded", guarded)
    return root


def _settings(repo: Path, **changes: Any) -> ServerSettings:
    base: dict[str, Any] = {
        "profile": "testing",
        "model_path": repo,
        "default_model": "iris",
        "api_key": SecretStr(KEY),
        "rate_limit": "1000/minute",
    }
    return ServerSettings(**{**base, **changes})


class _Counted:
    """The app's ``full_dispatch_request``, counting how often Flask dispatched."""

    def __init__(self, app: Flask) -> None:
        self.calls = 0
        self._dispatch = app.full_dispatch_request
        app.full_dispatch_request = self  # type: ignore[method-assign]

    def __call__(self) -> Any:
        self.calls += 1
        return self._dispatch()


def _lane(app: Flask) -> ExpressLane:
    lane = app.wsgi_app
    assert isinstance(lane, ExpressLane)
    return lane


ROW = models.features_of(models.iris(), models.iris().x[0])
V2 = {
    "inputs": [
        {"name": "input", "shape": [2, 4], "datatype": "FP64", "data": models.iris().x[:2].tolist()}
    ]
}
BINARY = {"name": "predict_proba", "parameters": {"binary_data": True}}

#: (method, path, body, headers): every way a prediction request goes right or wrong.
REQUESTS: list[tuple[str, str, Any, dict[str, str]]] = [
    ("POST", "/predict", ROW, AUTH),
    ("POST", "/models/iris/predict", ROW, AUTH),
    ("POST", "/models/iris/versions/2/predict", ROW, AUTH),
    ("POST", "/models/iris/versions/2/predict", ROW, {**AUTH, "X-Request-ID": "mine-1"}),
    ("POST", "/predict", ROW, {"Authorization": f"Bearer {KEY}"}),
    ("POST", "/predict", ROW, {}),  # no key: 401
    ("POST", "/predict", ROW, {"X-API-Key": "ms_wrong"}),  # unknown key: 401
    ("POST", "/predict", ROW, {**AUTH, "Authorization": f"Bearer {KEY}"}),  # both: 401
    ("POST", "/predict", {**ROW, "sepal_length": "long"}, AUTH),  # invalid: 400
    ("POST", "/predict", {"petal": 1}, AUTH),  # missing features: 400
    ("POST", "/predict", b"{not json", AUTH),  # 400
    ("POST", "/predict", b"", AUTH),  # empty body: 400
    ("POST", "/models/nope/predict", ROW, AUTH),  # 404
    ("POST", "/models/iris/versions/9/predict", ROW, AUTH),  # 404
    ("POST", "/models/guarded/predict", {**ROW, "sepal_length": -1.0}, AUTH),  # model: 422
    ("POST", "/models/guarded/predict", ROW, AUTH),
    ("POST", "/predict/", ROW, AUTH),  # another path: Flask's answer
    ("GET", "/predict", None, AUTH),  # 405
    ("POST", "/predict_batch", {"instances": [ROW, ROW]}, AUTH),
    ("POST", "/models/iris/versions/1/predict_batch", {"instances": [ROW]}, AUTH),
    ("POST", "/predict_batch", {"instances": [list(ROW.values())], "format": "columns"}, AUTH),
    ("POST", "/predict_batch", {"instances": [ROW]}, {**AUTH, "Accept": "application/json"}),
    ("POST", "/predict_batch", {"instances": [ROW, {"petal": 1}]}, AUTH),  # 400
    ("POST", "/predict_batch", {"rows": [ROW]}, AUTH),  # 400
    ("POST", "/predict_batch?format=columns", {"instances": [ROW]}, AUTH),  # Flask's
    ("POST", "/predict_batch?format=sideways", {"instances": [ROW]}, AUTH),  # Flask's 400
    # Flask negotiates these (one a table answer, one a JSON answer by preference).
    ("POST", "/predict_batch", {"instances": [ROW]}, {**AUTH, "Accept": "text/csv"}),
    ("POST", "/predict_batch", {"instances": [ROW]}, {**AUTH, "Accept": "application/*"}),
    ("POST", "/predict_image_base64", {"image": "aGVsbG8="}, AUTH),  # another route
    # V2 inference in JSON: answered in JSON, or with binary outputs it asks for.
    ("POST", "/v2/models/iris/infer", V2, AUTH),
    ("POST", "/v2/models/iris/versions/1/infer", {**V2, "id": "req-7"}, AUTH),
    ("POST", "/v2/models/iris/infer", {**V2, "outputs": [BINARY]}, AUTH),
    ("POST", "/v2/models/iris/infer", b'{"inputs": []}', AUTH),  # 400
    ("POST", "/v2/models/nope/infer", V2, AUTH),  # 404
    ("POST", "/v2/models/iris/infer", V2, {}),  # 401
    (
        "POST",
        "/v2/models/iris/infer",
        b'{"inputs": [{"name": "input", "shape": [1, 4], '
        b'"datatype": "FP64", "data": [5.1, 3.5, 1.4, 0.2]}]}',
        AUTH,
    ),
]
#: How many of :data:`REQUESTS` the lane answers itself (the good rows, batches, inferences).
LANE_ANSWERS = 14


def _send(client: FlaskClient, method: str, path: str, body: Any, headers: dict[str, str]) -> Any:
    if isinstance(body, bytes):
        headers = {**headers, "Content-Type": "application/json"}
        return client.open(path, method=method, data=body, headers=headers)
    if body is None:
        return client.open(path, method=method, headers=headers)
    return client.open(path, method=method, json=body, headers=headers)


def _answer(response: TestResponse) -> tuple[int, bytes, list[tuple[str, str]]]:
    headers = [(k, "*" if k in VARYING else v) for k, v in response.headers.items()]
    return response.status_code, response.get_data(), headers


def _lines(caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    lines = []
    for record in caplog.records:
        if record.name == REQUEST_LOGGER:
            fields = dict(record.__dict__["fields"])
            fields.pop("request_id")
            fields.pop("latency_ms")
            lines.append(fields)
    caplog.clear()
    return lines


def test_answers_lines_and_counts_are_flasks(repo: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Every request, through the lane and through Flask alone: the same status, body,
    headers (but the id and the reset time) and request line, and the same metrics."""
    lane_app = create_app(_settings(repo))
    flask_app = create_app(_settings(repo, express=False))
    dispatched = _Counted(lane_app)
    _compare(lane_app, flask_app, REQUESTS, caplog)
    assert dispatched.calls == len(REQUESTS) - LANE_ANSWERS


def test_base64_images_are_flasks_too(demo_repo: Path, caplog: pytest.LogCaptureFixture) -> None:
    from modelserve.demo_digits import load_split
    from modelserve.demo_digits import render_digit

    from ..images import encode

    x_test = load_split()[1]
    png = base64.b64encode(encode(render_digit(x_test[0], 4), "PNG")).decode()
    second = base64.b64encode(encode(render_digit(x_test[1], 4), "PNG")).decode()
    sent: list[tuple[str, str, Any, dict[str, str]]] = [
        ("POST", "/models/digits/predict_image_base64", {"image": png}, {}),
        ("POST", "/models/digits-onnx/predict_image_base64", {"images": [png, second]}, {}),
        (
            "POST",
            "/models/digits/predict_image_base64",
            {"image": f"data:image/png;base64,{png}"},
            {},
        ),
        ("POST", "/models/digits/predict_image_base64", {"image": "not base64!"}, {}),  # 400
        ("POST", "/models/digits/predict_image_base64", {"image": "aGVsbG8="}, {}),  # 400
        ("POST", "/models/iris/predict_image_base64", {"image": png}, {}),  # not an image model
    ]
    lane_app = create_app(ServerSettings(profile="testing", model_path=demo_repo))
    flask_app = create_app(ServerSettings(profile="testing", model_path=demo_repo, express=False))
    dispatched = _Counted(lane_app)
    _compare(lane_app, flask_app, sent, caplog)
    assert dispatched.calls == len(sent) - 3


def _compare(
    lane_app: Flask,
    flask_app: Flask,
    sent: list[tuple[str, str, Any, dict[str, str]]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Send each request to both apps: the same answer, line and metric counts."""
    lane, plain = lane_app.test_client(), flask_app.test_client()
    requests = metrics.REQUESTS
    in_flight = _gauge(metrics.IN_FLIGHT)
    for method, path, body, headers in sent:
        before = _counts(requests)
        with caplog.at_level(logging.INFO, logger=REQUEST_LOGGER):
            expected = _answer(_send(plain, method, path, body, headers))
            expected_lines = _lines(caplog)
            middle = _counts(requests)
            got = _answer(_send(lane, method, path, body, headers))
            got_lines = _lines(caplog)
        after = _counts(requests)
        assert got == expected, (method, path)
        assert got_lines == expected_lines, (method, path)
        # Both apps count into one registry: the lane's request added what Flask's did.
        assert _delta(middle, after) == _delta(before, middle), (method, path)
    assert _gauge(metrics.IN_FLIGHT) == in_flight  # every request it opened, it closed
    assert _lane(lane_app)._on is True


def _counts(metric: Any) -> dict[Any, float]:
    """Each labelled series' count, by its labels."""
    return {
        tuple(sorted(s.labels.items())): s.value
        for family in metric.collect()
        for s in family.samples
        if s.name.endswith("_total")
    }


def _gauge(metric: Any) -> float:
    return float(sum(s.value for family in metric.collect() for s in family.samples))


def _delta(a: dict[Any, float], b: dict[Any, float]) -> dict[Any, float]:
    return {k: b.get(k, 0.0) - a.get(k, 0.0) for k in set(a) | set(b) if b.get(k) != a.get(k)}


def test_the_lane_answers_a_good_row_and_hands_over_the_rest(repo: Path) -> None:
    app = create_app(_settings(repo))
    dispatched = _Counted(app)
    client = app.test_client()
    good = client.post("/predict", json=ROW, headers={**AUTH, "X-Request-ID": "lane-1"})
    assert good.status_code == 200 and dispatched.calls == 0
    assert good.headers["X-Request-ID"] == "lane-1"
    assert good.json is not None and good.json["model"] == "iris"
    bad = client.post("/predict", json={"petal": 1}, headers={**AUTH, "X-Request-ID": "lane-2"})
    assert bad.status_code == 400 and dispatched.calls == 1
    assert bad.headers["X-Request-ID"] == "lane-2"


def test_a_handed_over_request_is_counted_once(repo: Path) -> None:
    """The lane counts the limit before the model runs; a request it hands over (bad input,
    the model's own error, over the limit) is not counted again by Flask."""
    app = create_app(_settings(repo, rate_limit="5/minute"))
    client = app.test_client()
    sent = [
        ("/predict", ROW),
        ("/predict", {"petal": 1}),  # 400
        ("/models/guarded/predict", {**ROW, "sepal_length": -1.0}),  # 422
        ("/predict", ROW),
        ("/models/nope/predict", ROW),  # 404
    ]
    remaining = []
    for path, body in sent:
        answer = client.post(path, json=body, headers=AUTH)
        remaining.append(int(answer.headers["X-RateLimit-Remaining"]))
    assert remaining == [4, 3, 2, 1, 0]
    refused = client.post("/predict", json=ROW, headers=AUTH)
    assert refused.status_code == 429 and refused.headers["X-RateLimit-Remaining"] == "0"
    assert refused.json is not None and refused.json["type"] == "TooManyRequests"
    assert int(refused.headers["Retry-After"]) >= 1


def test_limits_count_by_the_address_behind_trusted_proxies(repo: Path) -> None:
    """Anonymous clients are counted by address: the one ProxyFix found, which runs first."""
    app = create_app(_settings(repo, api_key=None, rate_limit="2/minute", proxy_hops=1))
    client = app.test_client()
    dispatched = _Counted(app)

    def send(address: str) -> int:
        headers = {"X-Forwarded-For": address}
        return client.post("/predict", json=ROW, headers=headers).status_code

    assert [send("192.0.2.1"), send("192.0.2.1"), send("192.0.2.1")] == [200, 200, 429]
    assert send("192.0.2.2") == 200
    assert dispatched.calls == 1  # only the 429 went to Flask


def test_a_credential_limited_to_other_models_is_refused(repo: Path, tmp_path: Path) -> None:
    from modelserve.keys import create_key

    keys = tmp_path / "keys.json"
    secret = create_key(keys, "guarded-only", ["predict"], models=["guarded"])
    app = create_app(_settings(repo, api_key=None, keys_file=keys))
    client = app.test_client()
    headers = {"X-API-Key": secret}
    assert client.post("/models/guarded/predict", json=ROW, headers=headers).status_code == 200
    refused = client.post("/predict", json=ROW, headers=headers)  # the default model: iris
    assert refused.status_code == 403 and "iris" in refused.get_data(as_text=True)


def test_a_body_over_the_limit_and_a_chunked_body_are_flasks(repo: Path) -> None:
    app = create_app(_settings(repo, max_content_length=64))
    client = app.test_client()
    dispatched = _Counted(app)
    big = client.post("/predict", json={**ROW, "pad": "x" * 100}, headers=AUTH)
    assert big.status_code == 413  # werkzeug refuses it before the view: no dispatch count
    chunked = client.post(
        "/predict",
        data=b'{"a": 1}',
        headers={**AUTH, "Content-Type": "application/json", "Transfer-Encoding": "chunked"},
    )
    assert chunked.status_code == 400 and dispatched.calls >= 1


def test_a_session_cookie_goes_to_flask(repo: Path) -> None:
    app = create_app(_settings(repo))
    dispatched = _Counted(app)
    client = app.test_client()
    client.set_cookie("session", "anything")
    assert client.post("/predict", json=ROW, headers=AUTH).status_code == 200
    assert dispatched.calls == 1


ExtraWork = Callable[[Flask], None]


def _before_hook(app: Flask) -> None:
    app.before_request(lambda: None)


def _after_hook(app: Flask) -> None:
    app.after_request(lambda response: response)


def _blueprint_teardown(app: Flask) -> None:
    app.teardown_request_funcs.setdefault("predict", []).append(lambda exc: None)


def _appcontext_teardown(app: Flask) -> None:
    app.teardown_appcontext(lambda exc: None)


def _other_view(app: Flask) -> None:
    app.view_functions["predict.predict"] = lambda **kwargs: "replaced"


@pytest.mark.parametrize(
    "extra", [_before_hook, _after_hook, _blueprint_teardown, _appcontext_teardown, _other_view]
)
def test_work_the_lane_does_not_know_turns_it_off(
    repo: Path, extra: ExtraWork, caplog: pytest.LogCaptureFixture
) -> None:
    app = create_app(_settings(repo))
    extra(app)
    dispatched = _Counted(app)
    with caplog.at_level(logging.INFO, logger="modelserve.api.express"):
        app.test_client().post("/predict", json=ROW, headers=AUTH)
        app.test_client().post("/predict", json=ROW, headers=AUTH)
    assert dispatched.calls == 2 and _lane(app)._on is False
    said = [r.getMessage() for r in caplog.records if r.name == "modelserve.api.express"]
    assert len(said) == 1 and said[0].startswith("express lane off: ")  # once, with why


def test_a_signal_receiver_turns_it_off(repo: Path) -> None:
    app = create_app(_settings(repo))
    seen: list[Any] = []

    def receiver(sender: Any, **extra: Any) -> None:
        seen.append(sender)

    signals.request_started.connect(receiver, app)
    try:
        assert app.test_client().post("/predict", json=ROW, headers=AUTH).status_code == 200
    finally:
        signals.request_started.disconnect(receiver, app)
    assert seen == [app] and _lane(app)._on is False


def test_cors_turns_it_off(repo: Path) -> None:
    app = create_app(_settings(repo, cors_origins=["https://app.example"]))
    headers = {**AUTH, "Origin": "https://app.example"}
    answer = app.test_client().post("/predict", json=ROW, headers=headers)
    assert answer.status_code == 200
    assert answer.headers["Access-Control-Allow-Origin"] == "https://app.example"
    assert _lane(app)._on is False


def test_the_setting_turns_it_off(repo: Path) -> None:
    app = create_app(_settings(repo, express=False))
    dispatched = _Counted(app)
    assert app.test_client().post("/predict", json=ROW, headers=AUTH).status_code == 200
    assert dispatched.calls == 1


def test_paths_remembered_are_bounded(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("modelserve.api.express.MAX_PATHS", 3)
    app = create_app(_settings(repo))
    client = app.test_client()
    for index in range(6):
        assert client.post(f"/models/m{index}/predict", json=ROW, headers=AUTH).status_code == 404
    assert len(_lane(app)._routes) == 3
    assert client.post("/models/iris/predict", json=ROW, headers=AUTH).status_code == 200


def test_hooks_added_after_the_lanes_first_request_are_refused_as_flask_does(repo: Path) -> None:
    """Flask refuses set-up after its first request; the lane's first answer counts as one,
    so a hook added later fails loudly instead of being skipped by the lane."""
    app = create_app(_settings(repo))
    dispatched = _Counted(app)
    assert app.test_client().post("/predict", json=ROW, headers=AUTH).status_code == 200
    assert dispatched.calls == 0  # the lane answered it: Flask never saw a request
    with pytest.raises(AssertionError, match="first request"):
        app.before_request(lambda: None)
