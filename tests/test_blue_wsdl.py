"""BLUE_WSDL_URL: the service's ?wsdl, whose xsd parts are fetched from its own host only.

A WCF ?wsdl imports its schemas from the service itself (?xsd=xsd0...). A WSDL
that imports from anywhere else would make workers fetch what a third party
(or whoever controls that document) chooses: an SSRF. These tests serve a WSDL
over real HTTP, read through the setting the way a worker reads it, and check
that the other host is never asked anything.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import httpx
import pytest

from importq.errors import ConfigError
from importq.settings import load
from simulators.blue import FAKE_API_KEY, BlueSimulator
from simulators.blue_soap import WSDL_ADDRESS, _wsdl_text
from simulators.http import SimServer, serve
from workers.targets.blue.client import BlueClient
from workers.targets.blue.limits import BlueLimits

ARRAYS = "http://schemas.microsoft.com/2003/10/Serialization/Arrays"
SVC_PATH = "/BlueWebService.svc"
_ARRAYS_SCHEMA = re.compile(
    rf'\s*<xs:schema elementFormDefault="qualified"\s+targetNamespace="{ARRAYS}".*?</xs:schema>',
    re.S,
)


def split_wsdl(service_url: str, xsd_url: str) -> tuple[str, str]:
    """The bundled WSDL at `service_url`, its Arrays schema moved out to `xsd_url`; that xsd."""
    text = _wsdl_text().replace(WSDL_ADDRESS, f"{service_url}{SVC_PATH}")
    found = _ARRAYS_SCHEMA.search(text)
    assert found, "the bundled WSDL has an inline Arrays schema"
    xsd = (
        found.group(0)
        .strip()
        .replace("<xs:schema ", '<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema" ', 1)
    )
    wsdl = text.replace(found.group(0), "").replace(
        f'<xs:import namespace="{ARRAYS}"/>',
        f'<xs:import namespace="{ARRAYS}" schemaLocation="{xsd_url}"/>',
        1,  # the first schema's import: the one zeep follows to load the part
    )
    return wsdl, xsd


@dataclass
class Host:
    """One HTTP origin: answers GETs from `pages` (else `fallback`, else 404) and POSTs with
    `soap`; keeps every request."""

    pages: dict[str, str] = field(default_factory=dict)
    soap: Callable[[httpx.Request], httpx.Response] | None = None
    seen: list[str] = field(default_factory=list)
    fallback: str | None = None

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.seen.append(f"{request.method} {request.url.raw_path.decode()}")
        if request.method == "POST" and self.soap is not None:
            return self.soap(request)
        page = self.pages.get(request.url.raw_path.decode(), self.fallback)
        if page is None:
            return httpx.Response(404, text="not here")
        return httpx.Response(200, text=page, headers={"Content-Type": "text/xml"})


@pytest.fixture
def hosts() -> Iterator[tuple[tuple[Host, SimServer], tuple[Host, SimServer]]]:
    """The Blue service's host (with a simulator behind it) and another one."""
    blue, other = Host(soap=BlueSimulator()), Host()
    servers = serve(blue), serve(other)
    yield (blue, servers[0]), (other, servers[1])
    for server in servers:
        server.stop()


def client_from_settings(wsdl_url: str) -> BlueClient:
    """The client a worker builds from its environment: BLUE_WSDL_URL, no endpoint."""
    settings = load({"BLUE_WSDL_URL": wsdl_url, "BLUE_API_KEY": FAKE_API_KEY})
    return BlueClient.from_settings(settings, BlueLimits.from_settings(settings))


def test_xsd_parts_from_the_services_own_host_are_loaded(
    hosts: tuple[tuple[Host, SimServer], ...],
) -> None:
    (blue, server), _ = hosts
    wsdl, xsd = split_wsdl(server.url, f"{server.url}{SVC_PATH}?xsd=xsd1")
    blue.pages = {f"{SVC_PATH}?wsdl": wsdl, f"{SVC_PATH}?xsd=xsd1": xsd}
    client = client_from_settings(f"{server.url}{SVC_PATH}?wsdl")
    try:
        assert next(s.caption for s in client.datasources()) == "Users"
    finally:
        client.close()
    assert f"GET {SVC_PATH}?xsd=xsd1" in blue.seen  # the part really came from the import


@pytest.mark.parametrize("elsewhere", ["other host", "same host, other port", "other scheme"])
def test_an_xsd_import_from_anywhere_else_is_refused_before_it_is_fetched(
    hosts: tuple[tuple[Host, SimServer], ...], elsewhere: str
) -> None:
    (blue, server), (other, other_server) = hosts
    xsd_url = {
        "other host": f"{other_server.url.replace('127.0.0.1', 'localhost')}/steal.xsd",
        "same host, other port": f"{other_server.url}/steal.xsd",
        "other scheme": f"{server.url.replace('http:', 'https:')}/steal.xsd",
    }[elsewhere]
    wsdl, xsd = split_wsdl(server.url, xsd_url)
    blue.pages = {f"{SVC_PATH}?wsdl": wsdl}
    other.pages = {"/steal.xsd": xsd}
    client = client_from_settings(f"{server.url}{SVC_PATH}?wsdl")
    try:
        with pytest.raises(ConfigError) as refused:
            client.datasources()
    finally:
        client.close()
    assert "refused" in str(refused.value) and "?singleWsdl" in str(refused.value)
    assert xsd_url.rsplit("/", 1)[0] in str(refused.value)  # it names where the import pointed
    assert other.seen == []  # nothing was fetched from there
    assert blue.seen == [f"GET {SVC_PATH}?wsdl"]  # and no SOAP call went out either
