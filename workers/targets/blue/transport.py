"""zeep's HTTP layer over httpx: explicit timeouts, a long one for prepare and finalize.

zeep's own Transport uses requests with one timeout for every call; Blue needs
a read timeout of minutes for ordinary calls and of an hour for prepare and
finalize, and tests need httpx.MockTransport. Failures below SOAP (refused
connections, timeouts, gateway pages) become importq errors here; SOAP faults
go back to zeep, which parses them.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
from collections.abc import Iterator
from urllib.parse import urlsplit

import httpx
import zeep
from lxml import etree

from importq.errors import ConfigError, FinalError, RetryableError
from workers import vendor_calls
from workers.http import raise_for_status, transport_error

TARGET = "blue"
HINTS = {
    401: "the web server refused the request: check the Blue address and its access rules",
    403: "the web server refused the request: check the Blue address and its access rules",
    404: "no Blue web service at that address: check BLUE_ENDPOINT_URL / BLUE_WSDL_URL",
    415: "the endpoint speaks the other SOAP version: the .svc address is SOAP 1.2, "
    ".svc/file is SOAP 1.1; set BLUE_SOAP_VERSION to match",
}


# No DTD, no entities, no network, no recovery: only a check that the answer is whole.
_STRICT_XML = etree.XMLParser(
    resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False, recover=False
)


class HttpxTransport(zeep.Transport):
    """A zeep Transport that sends with httpx and maps HTTP failures to importq errors."""

    def __init__(
        self,
        *,
        connect_timeout: float,
        read_timeout: float,
        transport: httpx.BaseTransport | None = None,
        wsdl_origin: str | None = None,
    ) -> None:
        # Not calling zeep's __init__: it would open a requests session this class never uses.
        self.cache = None
        self.load_timeout = read_timeout
        self.operation_timeout = read_timeout
        self.logger = logging.getLogger(__name__)
        self._close_session = False
        self._connect = connect_timeout
        self._wsdl_origin = wsdl_origin
        self._timeout: contextvars.ContextVar[httpx.Timeout | None] = contextvars.ContextVar(
            "blue_read_timeout", default=None
        )
        self._http = vendor_calls.http_client(
            timeout=httpx.Timeout(read_timeout, connect=connect_timeout),
            transport=transport,
            headers={"User-Agent": "importq-blue"},
        )

    def close(self) -> None:
        self._http.close()

    @contextlib.contextmanager
    def read_timeout(self, seconds: float) -> Iterator[None]:
        """Use `seconds` as the read timeout of the calls made inside the block."""
        token = self._timeout.set(httpx.Timeout(seconds, connect=self._connect))
        try:
            yield
        finally:
            self._timeout.reset(token)

    def post(self, address: str, message: bytes, headers: dict[str, str]) -> httpx.Response:
        what = operation_of(headers)
        timeout = self._timeout.get() or httpx.USE_CLIENT_DEFAULT
        try:
            response = self._http.post(address, content=message, headers=headers, timeout=timeout)
        except httpx.TransportError as error:
            raise transport_error(error, target=TARGET, what=what) from None
        if response.status_code >= 400 and not _is_soap(response):
            # A gateway or web-server page, not a SOAP fault: zeep could not read it anyway.
            raise_for_status(response, target=TARGET, hints=HINTS)
        if b"<!DOCTYPE" in response.content or b"<!ENTITY" in response.content:
            # zeep forbids them too; refusing here names the reason and reads nothing.
            raise FinalError(
                f"{what}: the answer declares a DTD or entities; importq refuses to parse it "
                "(entity expansion). Check that BLUE_ENDPOINT_URL is the Blue web service",
                target=TARGET,
            )
        well_formed(response.content, what)
        return response

    def get(self, address: str, params: dict[str, str], headers: dict[str, str]) -> httpx.Response:
        try:
            return self._http.get(address, params=params, headers=headers)
        except httpx.TransportError as error:
            raise transport_error(error, target=TARGET, what="GET") from None

    def load(self, url: str) -> bytes:
        parts = urlsplit(url)
        if parts.scheme in ("http", "https"):
            return self._load_remote_data(url)
        with open(url, "rb") as wsdl:  # the bundled WSDL
            return wsdl.read()

    def _load_remote_data(self, url: str) -> bytes:
        origin = _origin(url)
        if self._wsdl_origin and origin != self._wsdl_origin:
            # A WCF ?wsdl imports its xsd parts from its own host; nothing else is fetched.
            raise ConfigError(
                f"the Blue WSDL imports {origin}, another host than {self._wsdl_origin}: "
                "refused; use the service's ?singleWsdl address"
            )
        try:
            response = self._http.get(url, timeout=self.load_timeout)
        except httpx.TransportError as error:
            raise transport_error(error, target=TARGET, what="loading the WSDL") from None
        raise_for_status(response, target=TARGET, hints=HINTS)
        return response.content


def well_formed(content: bytes, what: str) -> None:
    """Refuse an answer that is not well-formed XML (cut off, say) before zeep reads it:
    answers are parsed leniently, and zeep's lenient mode would recover half of one."""
    if not content.strip():
        return
    try:
        etree.fromstring(content, parser=_STRICT_XML)
    except etree.XMLSyntaxError as error:
        raise RetryableError(f"{what}: unreadable answer: {error}", target=TARGET) from None


def operation_of(headers: dict[str, str]) -> str:
    """The SOAP operation a request is for, from SOAPAction (1.1) or the action parameter (1.2)."""
    action = headers.get("SOAPAction", "").strip('"')
    if not action:
        content_type = headers.get("Content-Type", "")
        action = content_type.partition('action="')[2].partition('"')[0]
    return action.rsplit("/", 1)[-1] or "SOAP call"


def _is_soap(response: httpx.Response) -> bool:
    content_type = response.headers.get("Content-Type", "")
    return bool(response.content) and ("xml" in content_type)


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()
