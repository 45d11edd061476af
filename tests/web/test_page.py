"""The web page through the Flask test client: content negotiation at ``/``, the rendered
HTML (no inline script, only this server's assets), and who may load it."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient

from modelserve import __version__
from modelserve.app import create_app
from modelserve.settings import ServerSettings

STATIC = Path(__file__).resolve().parents[2] / "src" / "modelserve" / "static"
BROWSER_ACCEPT = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
KEY = "k" * 40
SVG_NAMESPACE = '"http://www.w3.org/2000/svg"'


class _Tags(HTMLParser):
    """Every start tag with its attributes, and the text inside <script> and <style>."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.inline: list[str] = []
        self._in: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        self._in = tag if tag in ("script", "style") else None

    def handle_endtag(self, tag: str) -> None:
        self._in = None

    def handle_data(self, data: str) -> None:
        if self._in and data.strip():
            self.inline.append(data)


def _parse(html: str) -> _Tags:
    parser = _Tags()
    parser.feed(html)
    return parser


@pytest.mark.parametrize(
    ("accept", "html"),
    [
        (BROWSER_ACCEPT, True),
        ("text/html", True),
        ("text/html;q=0.9, application/json;q=0.5", True),
        (None, False),
        ("*/*", False),
        ("application/json", False),
        ("application/json, text/html", False),  # names both, prefers neither: JSON
        ("text/html;q=0.5, application/json", False),
        ("text/*", False),
        ("text/html;q=0", False),
    ],
)
def test_accept_picks_the_page_or_the_api_map(
    client: FlaskClient, accept: str | None, html: bool
) -> None:
    headers = {"Accept": accept} if accept is not None else {}
    resp = client.get("/", headers=headers)
    assert resp.status_code == 200
    assert "Accept" in resp.headers["Vary"]
    if html:
        assert resp.mimetype == "text/html"
        assert "<title>modelserve</title>" in resp.text
    else:
        assert resp.mimetype == "application/json"
        body = resp.json
        assert body["name"] == "modelserve" and body["models"] == ["forest", "iris"]
        assert body["routes"]["predict"] == "/predict"


def test_the_page_has_the_strict_csp_and_no_inline_code(client: FlaskClient) -> None:
    resp = client.get("/", headers={"Accept": BROWSER_ACCEPT})
    csp = resp.headers["Content-Security-Policy"]
    assert "script-src 'self';" in csp and "style-src 'self';" in csp
    assert "img-src 'self' data: blob:;" in csp and "'unsafe-inline'" not in csp
    assert resp.headers["X-Frame-Options"] == "DENY"
    page = _parse(resp.text)
    assert page.inline == []  # no inline <script> or <style>
    for tag, attrs in page.tags:
        assert not [a for a in attrs if a.startswith("on")], f"inline handler on <{tag}>"
        assert "style" not in attrs, f"inline style on <{tag}>"
    scripts = [attrs["src"] for tag, attrs in page.tags if tag == "script"]
    assert scripts == ["/static/js/app.js"]


def test_the_page_holds_no_model_data(client: FlaskClient) -> None:
    html = client.get("/", headers={"Accept": BROWSER_ACCEPT}).text
    assert "iris" not in html and "forest" not in html
    assert __version__ not in html  # public HTML: not even the server's version


def _assets(client: FlaskClient) -> set[str]:
    """Every URL the page and its scripts and styles load, followed transitively."""
    page = _parse(client.get("/", headers={"Accept": BROWSER_ACCEPT}).text)
    todo = [
        attrs.get("src") or attrs.get("href") or ""
        for tag, attrs in page.tags
        if tag in ("script", "link", "img") and (attrs.get("src") or tag == "link")
    ]
    seen: set[str] = set()
    while todo:
        url = todo.pop()
        if url in seen:
            continue
        seen.add(url)
        if url.endswith(".js"):
            text = client.get(url).text
            base = url.rsplit("/", 1)[0]
            todo += [f"{base}/{name}" for name in re.findall(r'from "\./([\w.]+)"', text)]
    return seen


def test_every_asset_is_served_here_without_a_key(repo: Path) -> None:
    settings = ServerSettings(profile="testing", model_path=repo, api_key=KEY)
    client = create_app(settings).test_client()
    assets = _assets(client)
    assert all(url.startswith("/static/") for url in assets), assets
    on_disk = {f"/static/{p.relative_to(STATIC)}" for p in STATIC.rglob("*") if p.is_file()}
    assert assets <= on_disk  # everything the page loads is shipped in the package
    page_files = {"/static/style.css", "/static/favicon.svg"}
    page_files |= {f"/static/js/{name}.js" for name in ("app", "api", "forms", "charts")}
    assert page_files <= assets  # the page's modules load each other by relative imports
    types = {".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml"}
    for url in assets:
        resp = client.get(url)
        assert resp.status_code == 200, url
        assert resp.mimetype == types[Path(url).suffix], url
        # No absolute URL to another origin in any asset (fonts, CDNs, analytics); the SVG
        # namespace is a name, never fetched.
        text = resp.text.replace(SVG_NAMESPACE, "")
        assert not re.search(r"""(?:url\(|["'`])\s*(?:https?:)?//""", text), url


@pytest.fixture
def secured(repo: Path) -> Flask:
    return create_app(ServerSettings(profile="testing", model_path=repo, api_key=KEY))


def test_with_auth_on_the_html_is_public_but_the_json_map_is_not(secured: Flask) -> None:
    client = secured.test_client()
    page = client.get("/", headers={"Accept": BROWSER_ACCEPT})
    assert page.status_code == 200 and page.mimetype == "text/html"
    for headers in ({}, {"Accept": "application/json"}, {"Accept": "*/*"}):
        resp = client.get("/", headers=headers)
        assert resp.status_code == 401 and resp.json["type"] == "Unauthenticated", headers
        assert "WWW-Authenticate" in resp.headers
    ok = client.get("/", headers={"X-API-Key": KEY})
    assert ok.status_code == 200 and ok.json["models"] == ["forest", "iris"]
    # The page's data needs the key like any other client.
    assert client.get("/models", headers={"Accept": BROWSER_ACCEPT}).status_code == 401
    assert client.get("/models", headers={"X-API-Key": KEY}).status_code == 200
    # Only reading the page is public: another method on / is no way around the key.
    assert client.post("/", headers={"Accept": BROWSER_ACCEPT}).status_code == 405


def test_head_of_the_page_is_public_too(secured: Flask) -> None:
    resp = secured.test_client().head("/", headers={"Accept": "text/html"})
    assert resp.status_code == 200 and resp.mimetype == "text/html"


def test_the_template_renders_the_controls_the_scripts_use(client: FlaskClient) -> None:
    html = client.get("/", headers={"Accept": "text/html"}).text
    ids = set(re.findall(r'id="([\w-]+)"', html))
    script_ids: set[str] = set()
    for name in ("app.js",):
        script_ids |= set(re.findall(r'\$\("([\w-]+)"\)', (STATIC / "js" / name).read_text()))
    assert script_ids and script_ids <= ids, script_ids - ids
    assert {"form", "json", "batch", "image"} == set(re.findall(r'data-tab="(\w+)"', html))
