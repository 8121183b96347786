"""An httpx client for the Data Source API: one PUT of Rows, NewRows or DeletedRows, JSON or XML."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any
from xml.etree.ElementTree import ParseError

import httpx

from importq.errors import AuthError, ConfigError, FinalError, TargetError, VendorAnswer
from importq.settings import Secret, Settings
from workers import vendor_calls
from workers.http import raise_for_status, transport_error, vendor_message
from workers.targets.datasource import xml
from workers.targets.datasource.limits import DataSourceLimits

TARGET = "datasource"
FORMATS = ("json", "xml")
DISPLAY_AT = ("Title", "SubLeft", "Thumb")
ROW_KINDS = ("Rows", "NewRows", "DeletedRows")


@dataclass(frozen=True)
class Header:
    """One column of the data source, and where the app shows its values."""

    name: str
    display_at: str | None = None

    def body(self) -> dict[str, str]:
        return {"Name": self.name, **({"DisplayAt": self.display_at} if self.display_at else {})}


@dataclass(frozen=True)
class DataSourceRef:
    """The data source a publish updates (by ExternalId or Id) and the Name and Headers it sets."""

    name: str
    external_id: str | None = None
    id: str | None = None
    headers: tuple[Header, ...] = ()

    @property
    def key(self) -> str:
        return self.external_id or self.id or ""


class DataSourceClient:
    """PUTs to one company's Data Source API. Errors come out as importq.errors classes."""

    def __init__(
        self,
        url: str,
        company_id: int,
        integration_key: Secret,
        *,
        body_format: str = "json",
        timeout: float = 60.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.url = url
        self.company_id = company_id
        self.body_format = body_format
        self._key = integration_key
        self._http = vendor_calls.http_client(
            timeout=httpx.Timeout(timeout, connect=10.0), transport=transport
        )
        self._hints = {
            404: f"no Data Source API at DATASOURCE_URL ('{url}'): it ends in /api/v2/datasource",
        }

    @classmethod
    def from_settings(cls, settings: Settings, timeout: float | None = None) -> DataSourceClient:
        """The client the settings describe; `timeout` defaults to the limits' read timeout."""
        if timeout is None:
            timeout = DataSourceLimits.from_settings(settings).request_timeout_seconds
        url = settings.get("DATASOURCE_URL")
        company = settings.get("DATASOURCE_COMPANY_ID")
        key = settings.secret("DATASOURCE_INTEGRATION_KEY")
        names = ("DATASOURCE_URL", "DATASOURCE_COMPANY_ID", "DATASOURCE_INTEGRATION_KEY")
        missing = [
            name for name, value in zip(names, (url, company, key), strict=True) if not value
        ]
        if missing:
            raise ConfigError(f"datasource needs {', '.join(missing)} in the environment")
        if not company.strip().isdigit():
            raise ConfigError(
                f"DATASOURCE_COMPANY_ID={company!r} is not a number: copy the Company Id "
                "from the Company Setup page"
            )
        body_format = settings.get("DATASOURCE_FORMAT", "json").lower() or "json"
        if body_format not in FORMATS:
            raise ConfigError(f"DATASOURCE_FORMAT={body_format!r}: use json or xml")
        return cls(url, int(company), key, body_format=body_format, timeout=timeout)

    def close(self) -> None:
        self._http.close()

    def put(self, data_source: DataSourceRef, kind: str, rows: Sequence[Sequence[str]]) -> None:
        """Send one request; 200 (its body is empty) means the vendor applied it."""
        body = self._body(data_source, kind, rows)
        if self.body_format == "xml":
            content = xml.request_body(body)
        else:
            content = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
        media = f"application/{self.body_format}"
        what = f"{kind} request of {len(rows)} rows to data source '{data_source.key}'"
        try:
            response = self._http.put(
                self.url,
                params={"format": self.body_format},
                content=content,
                headers={"Content-Type": media, "Accept": media},
            )
        except httpx.TransportError as error:
            raise transport_error(error, target=TARGET, what=what) from None
        if not response.is_success:
            raise self._refusal(response, what)

    def _body(
        self, data_source: DataSourceRef, kind: str, rows: Sequence[Sequence[str]]
    ) -> dict[str, Any]:
        # The order of the doc's XML example; JSON ignores it.
        body: dict[str, Any] = {
            "CompanyId": self.company_id,
            "IntegrationKey": self._key.reveal(),
            "Name": data_source.name,
        }
        if data_source.id:
            body["Id"] = data_source.id
        if data_source.external_id:
            body["ExternalId"] = data_source.external_id
        if data_source.headers:
            body["Headers"] = [header.body() for header in data_source.headers]
        body[kind] = [{"Vals": list(vals)} for vals in rows]
        return body

    def _refusal(self, response: httpx.Response, what: str) -> TargetError:
        """The error for a failed answer (raised at once where workers.http maps the status)."""
        status = response.status_code
        if status not in (400, 401, 403):
            try:
                raise_for_status(response, target=TARGET, hints=self._hints)  # 404, 429, 5xx...
            except TargetError as error:  # an echo of the request must not carry the key
                error.args = (self._scrub(str(error)),)
                error.message = self._scrub(error.message)
                if error.answer:
                    error.answer = replace(error.answer, said=self._scrub(error.answer.said))
                raise
            # Left: 1xx/3xx. httpx follows no redirect, and a PUT should not be redirected.
            return FinalError(
                f"{what}: unexpected answer; check DATASOURCE_URL ('{self.url}')",
                target=TARGET,
                answer=VendorAnswer(status=status),
            )
        code, message = self._response_status(response, what)
        said = self._scrub(f"{code}: {message}" if code else message)
        answer = VendorAnswer(status=status, code=code or None, said=self._scrub(message))
        if status == 400:
            return FinalError(
                f"{what} refused: {said} (check the job's external_id/id and name and that the "
                "data source exists, then replay the dead letters)",
                target=TARGET,
                answer=answer,
            )
        hint = (
            "DATASOURCE_COMPANY_ID and DATASOURCE_INTEGRATION_KEY were refused: copy both "
            "from the Company Setup page"
            if status == 401
            else "the integration key may not update this data source: check "
            "DATASOURCE_COMPANY_ID, DATASOURCE_INTEGRATION_KEY and the company's API access"
        )
        return AuthError(f"{said} ({hint})", target=TARGET, answer=answer)

    def _response_status(self, response: httpx.Response, what: str) -> tuple[str, str]:
        """The DataSourceResponse's ErrorCode and Message (XML or JSON), else the raw text."""
        content = response.content
        try:
            if content.lstrip()[:1] == b"<":
                return xml.response_status(content)
            status = response.json().get("ResponseStatus") or {}
            return str(status.get("ErrorCode") or ""), str(status.get("Message") or "")
        except xml.DefusedXmlException as error:
            raise FinalError(
                f"{what}: the HTTP {response.status_code} answer is XML that declares a DTD or "
                f"entities ({type(error).__name__}); importq does not parse such XML (entity "
                "expansion). Check that DATASOURCE_URL points at the vendor, not at a proxy",
                target=TARGET,
                answer=VendorAnswer(status=response.status_code),
            ) from None
        except (ParseError, ValueError, AttributeError):
            return "", vendor_message(response)

    def _scrub(self, text: str) -> str:
        # A vendor that echoes the request must not carry the key into job state or logs.
        key = self._key.reveal()
        return text.replace(key, "***") if key else text
