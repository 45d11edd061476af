"""``/docs``: Swagger UI from this server's own files, under a CSP that allows nothing else;
rendered by a real browser, which asks no other origin for anything."""

from __future__ import annotations

import re
from collections.abc import Callable
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urljoin
from urllib.parse import urlsplit

import pytest
from flask.testing import FlaskClient

from ..conftest import LiveServer
from ..web.test_browser import CHROMIUM
from ..web.test_browser import CHROMIUM_ARGS

BASE = "http://localhost"
API_KEY = "k" * 40


class _References(HTMLParser):
    """Every URL an HTML page makes a browser fetch or follow (src, href)."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if name in ("src", "href") and value:
                self.urls.append(value)


def _same_origin(url: str, page: str = BASE + "/docs") -> bool:
    absolute = urlsplit(urljoin(page, url))
    return (absolute.scheme, absolute.netloc) == urlsplit(BASE)[:2]


def test_docs_and_every_file_it_references_come_from_this_server(client: FlaskClient) -> None:
    resp = client.get("/docs")
    assert resp.status_code == 200 and resp.mimetype == "text/html"
    csp = resp.headers["Content-Security-Policy"]
    assert "default-src 'none'" in csp and "script-src 'self';" in csp
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp and "http" not in csp
    page = resp.get_data(as_text=True)
    assert "<script>" not in page  # no inline script: every <script> has a src
    parser = _References()
    parser.feed(page)
    assert len(parser.urls) >= 5, parser.urls
    foreign = [u for u in parser.urls if not _same_origin(u)]
    assert foreign == []
    for url in parser.urls:
        asset = client.get(url)
        assert asset.status_code == 200, url
        path = urlsplit(url).path
        if path.endswith(".css"):
            assert asset.mimetype == "text/css"
            # Stylesheets may load images and fonts: data: URIs or this server only.
            css = asset.get_data(as_text=True)
            for ref in re.findall(r"url\(\s*['\"]?([^'\")]+)", css):
                assert ref.startswith("data:") or _same_origin(ref, BASE + path), ref
        elif path.endswith(".js"):
            assert asset.mimetype == "text/javascript"
    # The page's own script names no URL but the document's, which it reads from the page.
    own = client.get("/docs/static/docs.js").get_data(as_text=True)
    assert re.findall(r"https?:|//[a-z]", own.split("\n", 2)[2]) == []
    assert 'data-spec-url="/openapi.json"' in page


def test_docs_serves_only_its_own_files(client: FlaskClient) -> None:
    for name in (
        "index.html",
        "swagger-initializer.js",
        "../../settings.py",
        "oauth2-redirect.html",
    ):
        resp = client.get(f"/docs/static/{name}")
        assert resp.status_code == 404 and resp.get_json()["status"] == "error", name


@pytest.mark.e2e
def test_a_browser_renders_the_docs_offline_and_authorize_shows_the_models(
    repo: Path, live_server: Callable[..., LiveServer]
) -> None:
    """Chromium renders the operations with no request off the server and no CSP violation;
    a key entered under Authorize reloads the document with each model's own paths."""
    from playwright.sync_api import sync_playwright

    server = live_server(
        [str(repo), "--default-model", "iris"], env={"MODELSERVE_API_KEY": API_KEY}
    )
    requested: list[str] = []
    problems: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.on("request", lambda r: requested.append(r.url))
            page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: problems.append(str(e)))
            page.goto(server.url + "/docs")
            page.wait_for_selector(".opblock-tag", timeout=20_000)
            tags = page.locator(".opblock-tag").all_inner_texts()
            assert tags and not any("model: iris" in t for t in tags)  # anonymous: routes only
            page.click("button.authorize")
            page.fill("section input[type=text]", API_KEY)
            page.locator(".auth-container").first.locator("button[type=submit]").click()
            page.click("button.btn-done")
            page.wait_for_selector("text=model: iris", timeout=20_000)
        finally:
            browser.close()
    assert problems == []
    assert requested and all(u.startswith(server.url + "/") for u in requested), requested
    assert server.url + "/openapi.json" in requested
