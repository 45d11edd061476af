"""The web page in a real browser: Playwright drives Debian's chromium against a real server on
the demo models, with an API key and the prediction log on.

Every request the page makes is recorded, and a test fails on any to another origin, on a
Content-Security-Policy violation and on an uncaught script error. Screenshots land in
``build/test-artifacts/web/`` (``WEB_TEST_ARTIFACTS`` overrides it). One server and one browser
serve the whole module; each test gets a fresh browser context (its own sessionStorage).
"""

from __future__ import annotations

import csv
import os
import re
import secrets
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests
from playwright.sync_api import Browser
from playwright.sync_api import ConsoleMessage
from playwright.sync_api import Page
from playwright.sync_api import Request
from playwright.sync_api import expect
from playwright.sync_api import sync_playwright

from modelserve import __version__
from modelserve.demo_digits import load_split
from modelserve.demo_digits import render_digit
from modelserve.service import InferenceService
from modelserve.settings import ServerSettings
from modelserve.validate import write_reference

from ..conftest import LiveServer
from ..conftest import running_server
from ..images import encode

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path(os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium"))
ARTIFACTS = Path(os.environ.get("WEB_TEST_ARTIFACTS", ROOT / "build" / "test-artifacts")) / "web"
#: Headless, and nothing of chromium's own traffic (updates, sync, QUIC probes) on the wire.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
KEY = secrets.token_urlsafe(32)
IRIS = ("sepal_length", "sepal_width", "petal_length", "petal_width")
TIMEOUT_MS = 15_000


def _iris_reference(demo_repo: Path, tmp: Path) -> Path:
    """``reference.json`` of the demo iris, profiled on scikit-learn's iris data (for drift)."""
    from sklearn.datasets import load_iris

    only_iris = tmp / "iris-only"
    shutil.copytree(demo_repo / "iris", only_iris / "iris")
    data = tmp / "iris.csv"
    with data.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(IRIS)
        writer.writerows(load_iris().data.tolist())
    service = InferenceService(ServerSettings(profile="testing", model_path=only_iris))
    service.load()
    return write_reference(service, "iris", data)


@pytest.fixture(scope="module")
def server(demo_repo: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    tmp = tmp_path_factory.mktemp("web")
    repo = tmp / "models"
    shutil.copytree(demo_repo, repo)
    reference = _iris_reference(demo_repo, tmp)
    shutil.copy(reference, repo / reference.relative_to(reference.parents[2]))
    env = {
        "MODELSERVE_API_KEY": KEY,
        "MODELSERVE_PREDICTION_LOG": str(tmp / "predictions.db"),
        "MODELSERVE_PREDICTION_LOG_FLUSH_SECONDS": "0.2",
    }
    args = [str(repo), "--default-model", "iris", "--poll-interval", "0"]
    with running_server(args, env) as live:
        yield live


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        pytest.fail(
            f"chromium is not installed at {CHROMIUM}; the web page tests drive it: "
            "sudo apt-get install -y chromium (or set CHROMIUM_PATH)",
            pytrace=False,
        )
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield launched
        launched.close()


def foreign_requests(urls: list[str], origin: str) -> list[str]:
    """The URLs not of ``origin`` (scheme, host and port); ``data:`` and this origin's
    ``blob:`` URLs (previews made in the page) stay in the browser."""
    own = urlsplit(origin)[:2]
    out = []
    for url in urls:
        inner = url[len("blob:") :] if url.startswith("blob:") else url
        if url.startswith("data:") or urlsplit(inner)[:2] == own:
            continue
        out.append(url)
    return out


class Tab:
    """One browser context on the server, recording what the page asks for and breaks."""

    def __init__(self, browser: Browser, server: LiveServer) -> None:
        self.server = server
        self.context = browser.new_context(viewport={"width": 1360, "height": 900})
        self.context.set_default_timeout(TIMEOUT_MS)
        self.requests: list[str] = []
        self.problems: list[str] = []
        self.context.on("request", self._request)
        self.page: Page = self.context.new_page()
        self.page.on("console", self._console)
        self.page.on("pageerror", lambda exc: self.problems.append(f"script error: {exc}"))

    def _request(self, request: Request) -> None:
        self.requests.append(request.url)

    def _console(self, message: ConsoleMessage) -> None:
        if "Content Security Policy" in message.text:
            self.problems.append(f"CSP violation: {message.text}")

    def foreign(self) -> list[str]:
        return foreign_requests(self.requests, self.server.url)

    def open(self, fragment: str = "") -> None:
        """Load the page and enter the API key, as a person does once per tab."""
        self.page.goto(self.server.url + "/" + fragment)
        expect(self.page.locator("#key-panel")).to_be_visible()
        self.page.fill("#key-input", KEY)
        self.page.click("#key-form button[type=submit]")
        expect(self.page.locator("#key-panel")).to_be_hidden()
        expect(self.page.locator("#model")).to_be_visible()

    def shoot(self, name: str) -> Path:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        path = ARTIFACTS / f"{name}.png"
        self.page.screenshot(path=str(path), full_page=True)
        return path


@pytest.fixture
def tab(browser: Browser, server: LiveServer, request: pytest.FixtureRequest) -> Iterator[Tab]:
    opened = Tab(browser, server)
    yield opened
    try:
        opened.shoot(request.node.name)
    finally:
        opened.context.close()
    assert opened.requests, "the page made no request at all"
    assert opened.foreign() == [], "requests to another origin"
    assert opened.problems == []


def _api(server: LiveServer, path: str, **kwargs: Any) -> Any:
    resp = requests.post(server.url + path, headers={"X-API-Key": KEY}, timeout=30, **kwargs)
    assert resp.status_code == 200, resp.text
    return resp.json()


def test_asks_for_the_key_once_and_keeps_it_for_the_tab_only(tab: Tab) -> None:
    page = tab.page
    page.goto(tab.server.url + "/")
    expect(page.locator("#key-panel")).to_be_visible()
    expect(page.locator("#page-message")).to_contain_text("API key")
    page.fill("#key-input", "ms_wrong")
    page.press("#key-input", "Enter")
    expect(page.locator("#key-error")).to_contain_text("refused")
    page.fill("#key-input", KEY)
    page.press("#key-input", "Enter")
    expect(page.locator("#model-name")).to_have_text("iris")  # the default model
    expect(page.locator("#model-list a")).to_have_count(4)
    expect(page.locator("#health")).to_have_text("healthy")
    expect(page.locator("#server-version")).to_have_text(f"v{__version__}")
    page.reload()  # same tab: the key is still there
    expect(page.locator("#model-name")).to_have_text("iris")
    expect(page.locator("#key-panel")).to_be_hidden()
    assert page.evaluate("sessionStorage.getItem('modelserve.apiKey')") == KEY
    assert page.evaluate("localStorage.length") == 0 and tab.context.cookies() == []
    other = tab.context.browser.new_context()  # type: ignore[union-attr]
    other.on("request", tab._request)  # its requests are checked with this tab's
    try:
        fresh = other.new_page()
        fresh.goto(tab.server.url + "/")
        expect(fresh.locator("#key-panel")).to_be_visible()
    finally:
        other.close()


def test_the_iris_form_predicts_and_charts_the_probabilities(tab: Tab) -> None:
    tab.open()
    page = tab.page
    fields = page.locator("#fields .field")
    expect(fields).to_have_count(4)
    # Bounds and example values come from the model's input schema.
    sepal = page.locator("#field-sepal_length")
    assert sepal.get_attribute("min") == "0" and sepal.get_attribute("max") == "100"
    assert float(sepal.input_value()) > 0
    flower = {"sepal_length": 6.7, "sepal_width": 3.0, "petal_length": 5.2, "petal_width": 2.3}
    for name, value in flower.items():
        page.fill(f"#field-{name}", str(value))
    page.click("#predict-button")
    expected = _api(tab.server, "/models/iris/predict", json=flower)
    expect(page.locator("#result-class")).to_have_text(expected["class_name"])
    bars = page.locator("#result-chart svg g.row")
    expect(bars).to_have_count(3)
    assert [bars.nth(i).get_attribute("data-class") for i in range(3)] == [
        "setosa",
        "versicolor",
        "virginica",
    ]
    top = page.locator("#result-chart svg g.row:has(rect.top)")
    assert top.get_attribute("data-class") == expected["class_name"]
    assert re.fullmatch(r"\d+\.\d ms", page.locator("#result-latency").inner_text())
    expect(page.locator("#result-status")).to_have_text("200")
    curl = page.locator("#curl").inner_text()
    assert f"{tab.server.url}/models/iris/predict" in curl and '"petal_width":2.3' in curl
    assert "$MODELSERVE_API_KEY" in curl and KEY not in curl
    # The JSON tab sends a raw body as typed.
    page.click('#tabs .tab[data-tab="json"]')
    expect(page.locator("#json-route")).to_have_text("POST /models/iris/predict")
    raw = '{"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}'
    page.fill("#json-body", raw)
    page.click("#json-tab button[type=submit]")
    expect(page.locator("#result-class")).to_have_text("setosa")
    page.fill("#json-body", '{"sepal_length": 5.1}')
    page.click("#json-tab button[type=submit]")
    expect(page.locator("#json-error")).to_contain_text("sepal_width: is required")


def test_a_bad_value_shows_the_error_next_to_its_field(tab: Tab) -> None:
    tab.open()
    page = tab.page
    page.fill("#field-sepal_length", "-1")
    page.fill("#field-petal_width", "")
    page.click("#predict-button")
    expect(page.locator("#result-status")).to_have_text("400")
    sepal = page.locator('.field[data-field="sepal_length"]')
    expect(sepal.locator(".field-error")).to_contain_text("less than the minimum 0")
    expect(sepal).to_have_class(re.compile(r"\binvalid\b"))
    expect(page.locator('.field[data-field="petal_width"] .field-error')).to_have_text(
        "is required"
    )
    for fine in ("sepal_width", "petal_length"):
        expect(page.locator(f'.field[data-field="{fine}"] .field-error')).to_have_text("")
    tab.shoot("field-errors")
    # Fixing the value clears the errors on the next answer.
    page.click("#reset-button")
    page.click("#predict-button")
    expect(page.locator("#result-status")).to_have_text("200")
    expect(page.locator(".field.invalid")).to_have_count(0)


def test_random_examples_and_a_csv_batch_show_a_table(tab: Tab, tmp_path: Path) -> None:
    tab.open()
    page = tab.page
    before = page.input_value("#field-sepal_length")
    for _ in range(5):  # a random draw may repeat a value; five in a row will not
        page.click("#random-button")
        if page.input_value("#field-sepal_length") != before:
            break
    assert page.input_value("#field-sepal_length") != before
    assert 0 <= float(page.input_value("#field-petal_width")) <= 100
    page.click('#tabs .tab[data-tab="batch"]')
    rows = [[5.1, 3.5, 1.4, 0.2], [6.0, 2.7, 4.1, 1.3], [6.9, 3.1, 5.4, 2.1]]
    upload = tmp_path / "flowers.csv"
    upload.write_text(",".join(IRIS) + "\n" + "\n".join(",".join(map(str, r)) for r in rows))
    page.set_input_files("#batch-file", str(upload))
    expect(page.locator("#batch-csv")).to_have_value(re.compile(r"^sepal_length,.*6\.9", re.S))
    expect(page.locator("#batch-file-name")).to_have_text("flowers.csv")
    page.click("#batch-tab button[type=submit]")
    expected = _api(tab.server, "/models/iris/predict_batch", json={"instances": rows})
    table = page.locator("#result-table table.results tr")
    expect(table).to_have_count(1 + len(rows))  # the header row and one per instance
    predicted = [table.nth(i + 1).locator("td").nth(1).inner_text() for i in range(len(rows))]
    assert predicted == [p["class_name"] for p in expected["predictions"]]
    expect(page.locator("#result-class")).to_have_text("3 rows")
    # A bad cell names its row and field.
    page.fill("#batch-csv", ",".join(IRIS) + "\n5.1,3.5,1.4,0.2\n5.1,x,1.4,0.2")
    page.click("#batch-tab button[type=submit]")
    expect(page.locator("#batch-errors li")).to_have_text(
        [re.compile(r"^row 2, sepal_width: is a string")]
    )


def _digit_png() -> tuple[bytes, str]:
    _, x_test, _, y_test = load_split()
    return encode(render_digit(x_test[0], 4), "PNG"), str(y_test[0])


def test_a_dropped_digit_is_previewed_and_classified(tab: Tab) -> None:
    png, label = _digit_png()
    expected = _api(
        tab.server, "/models/digits/predict_image", files={"image": ("d.png", png, "image/png")}
    )
    assert expected["predicted_class"] == label  # the demo CNN reads this digit right
    tab.open("#/models/digits")
    page = tab.page
    expect(page.locator("#model-name")).to_have_text("digits")
    expect(page.locator('#tabs .tab[data-tab="image"]')).to_have_attribute("aria-selected", "true")
    expect(page.locator('#tabs .tab[data-tab="form"]')).to_be_hidden()
    # Drag and drop: a real drop event carrying the file.
    transfer = page.evaluate_handle(
        """(bytes) => {
            const dt = new DataTransfer();
            dt.items.add(new File([new Uint8Array(bytes)], "digit.png", {type: "image/png"}));
            return dt;
        }""",
        list(png),
    )
    page.dispatch_event("#drop-zone", "drop", {"dataTransfer": transfer})
    preview = page.locator("#previews img")
    expect(preview).to_have_count(1)
    assert (preview.get_attribute("src") or "").startswith("blob:")
    # The preview really loaded under the page's CSP (img-src blob:).
    page.wait_for_function("document.querySelector('#previews img').naturalWidth > 0")
    page.click("#image-button")
    expect(page.locator("#result-class")).to_have_text(label)
    expect(page.locator("#result-chart svg g.row")).to_have_count(10)
    top = page.locator("#result-chart svg g.row:has(rect.top)")
    assert top.get_attribute("data-class") == label
    assert "-F 'image=@digit.png'" in page.locator("#curl").inner_text()
    # Two files chosen with the file picker: one request, a table of both.
    page.set_input_files(
        "#image-file",
        [
            {"name": "a.png", "mimeType": "image/png", "buffer": png},
            {"name": "b.png", "mimeType": "image/png", "buffer": png},
        ],
    )
    expect(preview).to_have_count(2)
    page.click("#image-button")
    rows = page.locator("#result-table table.results tr")
    expect(rows).to_have_count(3)
    expect(rows.nth(2).locator("td").nth(2)).to_have_text(label)


def test_traffic_and_drift_pictures_and_the_readme_screenshot(tab: Tab) -> None:
    """The model's request rate, latency and drift, from its stats and drift routes."""
    from sklearn.datasets import load_iris

    # Traffic like the reference data (every other flower of it), so drift stays low.
    _api(
        tab.server, "/models/iris/predict_batch", json={"instances": load_iris().data[::2].tolist()}
    )
    for row in ([5.1, 3.5, 1.4, 0.2], [6.3, 3.3, 6.0, 2.5], [5.8, 2.7, 5.1, 1.9]):
        _api(tab.server, "/models/iris/predict", json=dict(zip(IRIS, row, strict=True)))
    stats = requests.get(
        tab.server.url + "/models/iris/stats", headers={"X-API-Key": KEY}, timeout=10
    ).json()
    assert stats["requests"] >= 4 and stats["latency"]["count"] == stats["requests"]
    time.sleep(0.5)  # the prediction log writes every 0.2 s
    tab.open()
    page = tab.page
    page.click("#predict-button")
    expect(page.locator("#result-status")).to_have_text("200")
    expect(page.locator("#stats-counts")).to_contain_text("inference requests")
    page.wait_for_function(
        "[...document.querySelectorAll('#latency-chart rect.bar')]"
        ".some((bar) => Number(bar.getAttribute('height')) > 0)"
    )
    expect(page.locator("#latency-quantiles")).to_contain_text("p50")
    drift = page.locator("#drift-chart svg text.label")
    expect(drift).to_have_text(list(IRIS))
    expect(page.locator("#drift-summary")).to_contain_text("rows")
    # The rate needs two readings of the stats, a few seconds apart.
    expect(page.locator("#rate-chart svg path.line")).to_be_visible(timeout=10_000)
    expect(page.locator("#rate-now")).to_contain_text("req/s")
    tab.shoot("web-page")


def test_the_form_module_builds_selects_for_enums_and_reads_typed_values(tab: Tab) -> None:
    """forms.js on features the demo models lack: enums, booleans, integers, strings."""
    tab.page.goto(tab.server.url + "/")
    result = tab.page.evaluate(
        """async () => {
            const forms = await import("/static/js/forms.js");
            const features = [
                {name: "colour", type: "string", enum: ["red", "green", "blue"]},
                {name: "grade", type: "integer", enum: [1, 2, 3]},
                {name: "member", type: "boolean"},
                {name: "age", type: "integer", minimum: 18, maximum: 99},
                {name: "note", type: "string"},
            ];
            const box = document.createElement("div");
            document.body.append(box);
            const example = {colour: "green", grade: 3, member: true, age: 40, note: "hi"};
            forms.buildFields(box, features, example);
            const read = forms.readFields(box, features);
            const tags = features.map((f) => box.querySelector(`[name="${f.name}"]`).tagName);
            const options = [...box.querySelectorAll('[name="colour"] option')].map((o) => o.text);
            const age = box.querySelector('[name="age"]');
            const randoms = Array.from({length: 50}, () => forms.randomInstance(features, example));
            const rest = forms.showFieldErrors(box, [
                {path: "age", message: "is 5, less than the minimum 18"},
                {path: "", message: "the body is not an object"},
            ]);
            const csv = forms.csvInstances(
                'colour,grade,member,note\\n"blue",2,false,"a, ""quoted"" note"\\r\\n'
                    + "red,,true,x\\n",
                features,
            );
            return {
                read, tags, options, min: age.min, max: age.max, step: age.step,
                ageError: box.querySelector('[data-field="age"] .field-error').textContent,
                rest, csv,
                randomOk: randoms.every((r) => ["red", "green", "blue"].includes(r.colour)
                    && [1, 2, 3].includes(r.grade) && typeof r.member === "boolean"
                    && Number.isInteger(r.age) && r.age >= 18 && r.age <= 99),
            };
        }"""
    )
    assert result["read"] == {
        "colour": "green",
        "grade": 3,
        "member": True,
        "age": 40,
        "note": "hi",
    }
    assert result["tags"] == ["SELECT", "SELECT", "SELECT", "INPUT", "INPUT"]
    assert result["options"] == ["red", "green", "blue"]
    assert (result["min"], result["max"], result["step"]) == ("18", "99", "1")
    assert result["ageError"] == "is 5, less than the minimum 18"
    assert result["rest"] == [{"path": "", "message": "the body is not an object"}]
    assert result["csv"]["columns"] == ["colour", "grade", "member", "note"]
    assert result["csv"]["instances"] == [
        {"colour": "blue", "grade": 2, "member": False, "note": 'a, "quoted" note'},
        {"colour": "red", "member": True, "note": "x"},  # an empty cell is left out
    ]
    assert result["randomOk"] is True


def test_the_origin_check_catches_other_hosts_ports_and_schemes() -> None:
    own = "http://127.0.0.1:8000"
    urls = [
        f"{own}/",
        f"{own}/static/js/app.js",
        f"blob:{own}/0b7c",
        "data:image/png;base64,AAAA",
        "http://127.0.0.1:8001/",  # another port
        "https://127.0.0.1:8000/",  # another scheme
        "http://localhost:8000/",  # another host name
        "https://fonts.example/x.woff2",
        "blob:https://cdn.example/1",
    ]
    assert foreign_requests(urls, own) == urls[4:]
