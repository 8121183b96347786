"""An httpx client for Blueshift's trigger customer import: one POST with the import's uuid."""

from __future__ import annotations

from urllib.parse import urlsplit

import httpx

from importq.errors import ConfigError, FinalError, RejectedError, RetryableError
from importq.settings import Secret, Settings
from workers import vendor_calls
from workers.http import answer_of, raise_for_status, transport_error

TARGET = "blueshift"
US_URL = "https://api.getblueshift.com"
EU_URL = "https://api.eu.getblueshift.com"
TRIGGER_PATH = "/api/v1/customer_attributes/trigger_import"


class ImportNotTriggerable(RetryableError):
    """405: the import is not S3-sourced, not launched, or still processing an earlier run.

    Only the last cause passes by itself, so the sink retries a few times, then gives up.
    """


class BlueshiftClient:
    """One Blueshift account (User API Key) in one region. Errors are importq.errors classes."""

    def __init__(
        self,
        base_url: str,
        api_key: Secret,
        *,
        timeout: float = 30.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._http = vendor_calls.http_client(
            base_url=self.base_url,
            # The doc: the User API Key is the Basic username, the password stays empty.
            auth=httpx.BasicAuth(api_key.reveal(), ""),
            headers={"Accept": "application/json"},
            timeout=httpx.Timeout(timeout, connect=10.0),
            transport=transport,
        )

    @classmethod
    def from_settings(cls, settings: Settings, timeout: float) -> BlueshiftClient:
        api_key = settings.secret("BLUESHIFT_API_KEY")
        if not api_key:
            raise ConfigError(
                "blueshift needs BLUESHIFT_API_KEY (the User API Key from Account Settings "
                "> API Keys) in the environment"
            )
        url = settings.get("BLUESHIFT_URL") or US_URL
        if urlsplit(url).scheme not in ("http", "https") or not urlsplit(url).netloc:
            raise ConfigError(
                f"BLUESHIFT_URL={url!r} is not an http(s) URL; use {US_URL} (US) or {EU_URL} (EU)"
            )
        return cls(url, api_key, timeout=timeout)

    def close(self) -> None:
        self._http.close()

    def trigger(self, uuid: str) -> None:
        """Ask Blueshift to run customer import `uuid` now; returns once it accepted."""
        try:
            response = self._http.post(TRIGGER_PATH, json={"uuid": uuid})
        except httpx.TransportError as error:
            raise transport_error(error, target=TARGET, what=f"trigger of import {uuid}") from None
        if response.status_code == 405:
            answer = answer_of(response)
            raise ImportNotTriggerable(answer.said, target=TARGET, answer=answer)
        try:
            raise_for_status(response, target=TARGET, hints=self._hints(uuid))
        except RejectedError as error:
            # One trigger of one whole file: there is no single record to isolate by bisection.
            raise FinalError(error.message, target=TARGET, answer=error.answer) from None

    def _hints(self, uuid: str) -> dict[int, str]:
        region = f"BLUESHIFT_URL is {self.base_url}; US {US_URL}, EU {EU_URL}"
        refused = (
            "BLUESHIFT_API_KEY was refused: set the User API Key (Account Settings > API Keys) "
            f"of the account that owns import {uuid}, in its region ({region})"
        )
        return {
            401: refused,
            403: refused,
            404: (
                f"no customer import {uuid} in this account: copy the uuid from the import "
                "task's URL (.../customer/import_show/<uuid>) and check the region "
                f"({region})"
            ),
        }
