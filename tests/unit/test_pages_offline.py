"""Every HTML page the project serves works on a machine without internet: the API docs (Swagger UI, ReDoc)
and the sandbox provider's hosted payment page name only same-origin URLs, and each asset they name is
served by the same process."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from html.parser import HTMLParser
from urllib.parse import urljoin, urlsplit

import pytest
from fastapi.testclient import TestClient

from services.gateway.app import create_app
from services.gateway.settings import GatewaySettings
from services.payments.provider import sandbox
from services.payments.settings import DEV_WEBHOOK_SECRET
from tests.unit.test_gateway_problems import FakeAuth, FakeRpc, MemoryIdempotency

pytestmark = pytest.mark.unit

EXTERNAL = re.compile(r"""(?:https?:)?//[a-z0-9.-]+\.[a-z]{2,}""", re.IGNORECASE)


class _Links(HTMLParser):
    """Every ``src=`` and ``href=`` of a page (scripts, styles, icons, links, images, forms' ``action``)."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.urls += [value for name, value in attrs if name in ("src", "href", "action") and value]


def links(html: str) -> list[str]:
    parser = _Links()
    parser.feed(html)
    return parser.urls


def assert_offline(client: TestClient, path: str) -> list[str]:
    """The page at ``path`` names no other host, and every URL it names answers 200 from ``client``."""
    response = client.get(path)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/html")
    page = response.text
    assert not EXTERNAL.findall(page), f"{path} names external URLs: {EXTERNAL.findall(page)}"
    urls = links(page)
    for url in urls:
        parts = urlsplit(url)
        assert not parts.scheme and not parts.netloc, f"{path} links to another origin: {url}"
        if url.startswith("#"):
            continue
        asset = client.get(urljoin(path, url))
        assert asset.status_code == 200, f"{path} names {url}, which answers {asset.status_code}"
        assert asset.content
    return urls


@pytest.fixture()
def gateway() -> Iterator[TestClient]:
    app = create_app(GatewaySettings(), rpc=FakeRpc(), authenticator=FakeAuth(), idempotency=MemoryIdempotency())
    with TestClient(app, raise_server_exceptions=False) as client:  # no API key: the docs are public
        yield client


def test_swagger_ui_is_served_from_the_gateway(gateway: TestClient) -> None:
    urls = assert_offline(gateway, "/api/v1/docs")
    assert any(u.endswith("swagger-ui-bundle.js") for u in urls)
    assert any(u.endswith("swagger-ui.css") for u in urls)
    page = gateway.get("/api/v1/docs").text
    assert "'/api/v1/openapi.json'" in page or '"/api/v1/openapi.json"' in page
    assert '"validatorUrl": null' in page  # no badge image fetched from validator.swagger.io
    assert gateway.get("/api/v1/openapi.json").status_code == 200
    assert_offline(gateway, "/api/v1/docs/oauth2-redirect")


def test_redoc_is_served_from_the_gateway(gateway: TestClient) -> None:
    urls = assert_offline(gateway, "/api/v1/redoc")
    assert any(u.endswith("redoc.standalone.js") for u in urls)


def test_the_assets_have_their_types(gateway: TestClient) -> None:
    page = gateway.get("/api/v1/docs").text
    js = next(u for u in links(page) if u.endswith(".js"))
    css = next(u for u in links(page) if u.endswith(".css"))
    assert "javascript" in gateway.get(js).headers["content-type"]
    assert gateway.get(css).headers["content-type"].startswith("text/css")


def test_the_sandbox_payment_pages_are_offline() -> None:
    app = sandbox.create_app(None, DEV_WEBHOOK_SECRET, seed=1)
    with TestClient(app) as client:
        created = client.post("/v1/payment_links", json={"amount": "12.50", "currency": "EUR", "reference": "#1001"},
                              headers={"Idempotency-Key": str(uuid.uuid4())})
        assert created.status_code == 200, created.text
        link = created.json()["id"]
        assert_offline(client, f"/pay/{link}")
        for card in (sandbox.CARD_3DS, sandbox.CARD_DECLINE):  # the answers to a payment are pages too
            answer = client.post(f"/pay/{link}", data={"card_number": card})
            assert not EXTERNAL.findall(answer.text)
            assert all(not urlsplit(url).netloc for url in links(answer.text))


@pytest.mark.parametrize("asset", ["swagger-ui-bundle.js", "redoc.standalone.js"])
def test_each_bundled_asset_ships_with_its_licence(gateway: TestClient, asset: str) -> None:
    """Each bundle's first line says where its licences are; that path is served, and the project's own
    licence files for Swagger UI (Apache-2.0) and ReDoc (MIT) are served too."""
    first_line = gateway.get(f"/api/v1/docs-assets/{asset}").text.splitlines()[0]
    named = re.search(r"see (\S+\.LICENSE\.txt)", first_line)
    assert named, first_line
    bundled = gateway.get(f"/api/v1/docs-assets/{named.group(1)}")
    assert bundled.status_code == 200 and "license" in bundled.text.lower()
    own = {"swagger-ui-bundle.js": ("swagger-ui.LICENSE", "Apache License"), "redoc.standalone.js": (
        "redoc.LICENSE", "MIT License")}[asset]
    licence = gateway.get(f"/api/v1/docs-licenses/{own[0]}")
    assert licence.status_code == 200 and own[1] in licence.text
