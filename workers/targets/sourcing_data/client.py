"""An httpx client for the SourcingData v2 input queue: list, start, append, status, cancel."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx

from importq.errors import ConfigError, VendorBusy
from importq.settings import Secret, Settings
from workers import vendor_calls
from workers.http import raise_for_status, transport_error
from workers.targets.sourcing_data.limits import SourcingDataLimits

TARGET = "sourcing_data"
API = "/api/v2/SourcingData/EnqueueData"
SUCCESS_STATUSES = frozenset({"Success", "Succeeded"})
FAILURE_STATUSES = frozenset({"Failed", "Canceled", "Cancelled"})


@dataclass(frozen=True)
class QueueItem:
    """A queue item as the vendor reports it."""

    id: str
    status: str
    http_status: int
    error_message: str | None = None
    was_success: bool = False
    was_failure: bool = False
    operation_id: str = ""
    created_on: str = ""  # the vendor's clock, ISO 8601 UTC

    @property
    def succeeded(self) -> bool:
        return self.was_success or self.status in SUCCESS_STATUSES

    @property
    def failed(self) -> bool:
        return self.was_failure or self.status in FAILURE_STATUSES

    @property
    def finished(self) -> bool:
        return self.succeeded or self.failed

    @classmethod
    def from_response(cls, response: httpx.Response) -> QueueItem:
        return cls.from_body(response.json(), response.status_code)

    @classmethod
    def from_body(cls, body: dict[str, Any], http_status: int = 200) -> QueueItem:
        return cls(
            id=str(body.get("queueItemId", "")),
            status=str(body.get("status") or ""),
            http_status=http_status,
            error_message=body.get("errorMessage"),
            was_success=bool(body.get("wasSuccess")),
            was_failure=bool(body.get("wasFailure")),
            operation_id=str(body.get("operationId") or ""),
            created_on=str(body.get("createdOn") or ""),
        )


class SourcingDataClient:
    """One agent's input queue. Errors come out as importq.errors classes."""

    def __init__(
        self,
        base_url: str,
        token: Secret,
        agent_id: str,
        *,
        client_id: str | None = None,
        timeout: float = 60.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.agent_id = agent_id
        self.client_id = client_id
        self._http = vendor_calls.http_client(
            base_url=base_url.rstrip("/") + API,
            headers={"Authorization": f"Bearer {token.reveal()}"},
            timeout=httpx.Timeout(timeout, connect=10.0),
            transport=transport,
        )
        self._hints = {
            401: "SOURCING_DATA_TOKEN was refused: set a valid bearer token",
            403: f"the token may not publish for agent '{agent_id}': ask for access",
            404: f"check SOURCING_DATA_AGENT_ID ('{agent_id}') and the queue item id",
        }

    @classmethod
    def from_settings(cls, settings: Settings, timeout: float | None = None) -> SourcingDataClient:
        """The client the settings describe; `timeout` defaults to the limits' read timeout."""
        if timeout is None:
            timeout = SourcingDataLimits.from_settings(settings).request_timeout_seconds
        url = settings.get("SOURCING_DATA_URL")
        token = settings.secret("SOURCING_DATA_TOKEN")
        agent = settings.get("SOURCING_DATA_AGENT_ID")
        missing = [
            n
            for n, v in (
                ("SOURCING_DATA_URL", url),
                ("SOURCING_DATA_TOKEN", token),
                ("SOURCING_DATA_AGENT_ID", agent),
            )
            if not v
        ]
        if missing:
            raise ConfigError(f"sourcing_data needs {', '.join(missing)} in the environment")
        client_id = settings.get("SOURCING_DATA_CLIENT_ID") or None
        return cls(url, token, agent, client_id=client_id, timeout=timeout)

    def close(self) -> None:
        self._http.close()

    def _query(self, **extra: str | int | None) -> dict[str, str | int]:
        query: dict[str, str | int | None] = {"agentId": self.agent_id, "clientId": self.client_id}
        query.update(extra)
        return {k: v for k, v in query.items() if v is not None}

    def _send(self, method: str, path: str, what: str, **kw: Any) -> httpx.Response:
        try:
            response = self._http.request(method, path, **kw)
        except httpx.TransportError as error:
            raise transport_error(error, target=TARGET, what=what) from None
        raise_for_status(response, target=TARGET, hints=self._hints)
        return response

    def list_items(self, offset: int = 0, limit: int = 100) -> dict[str, Any]:
        params = self._query(offset=offset, limit=limit)
        body: dict[str, Any] = self._send("GET", "", "list", params=params).json()
        return body

    def recent_items(self, pages: int, page_size: int = 100) -> Iterator[QueueItem]:
        """The agent's (and client's) queue items, latest first, at most `pages` pages."""
        offset = 0
        for _ in range(pages):
            body = self.list_items(offset=offset, limit=page_size)
            found = body.get("items") or []
            for entry in found:
                if isinstance(entry, dict):
                    yield QueueItem.from_body(entry)
            offset += len(found)
            if not found or offset >= int(body.get("totalCount") or 0):
                return

    def start(
        self, items: list[dict[str, Any]], *, operation_id: str | None, incomplete: bool
    ) -> QueueItem:
        body = {"items": items, "incompleteData": incomplete}
        params = self._query(operationId=operation_id)
        return QueueItem.from_response(
            self._send("POST", "/start", "start", params=params, json=body)
        )

    def append(
        self, queue_item_id: str, items: list[dict[str, Any]], *, incomplete: bool
    ) -> QueueItem:
        body = {"items": items, "incompleteData": incomplete}
        path = f"/append/{queue_item_id}"
        return QueueItem.from_response(
            self._send("POST", path, "append", params=self._query(), json=body)
        )

    def status(self, queue_item_id: str) -> QueueItem:
        path = f"/status/{queue_item_id}"
        return QueueItem.from_response(self._send("GET", path, "status", params=self._query()))

    def cancel(self, queue_item_id: str) -> None:
        self._send("DELETE", f"/cancel/{queue_item_id}", "cancel", params=self._query())


def still_processing(item: QueueItem, waited: float) -> VendorBusy:
    # Not a failure: the item is complete and commits on its own; only the polling pauses.
    return VendorBusy(
        f"queue item {item.id} still '{item.status}' after {waited:.0f} s; it will be polled again",
        target=TARGET,
    )
