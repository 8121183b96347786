"""An httpx client for the Workflow Import Queue API: a JSON Lines POST creates a queue batch."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx
import yaml

from importq.errors import ConfigError, FinalError, RejectedError, VendorAnswer
from importq.settings import Secret, Settings
from workers import vendor_calls
from workers.http import raise_for_status, transport_error
from workers.targets.workflow_import.limits import WorkflowImportLimits

TARGET = "workflow_import"
PERMISSION = "BeginWorkflowImportProcess"
# The doc names no media type; this is the one jsonlines.org suggests.
MEDIA_TYPE = "application/jsonl"
_LINE = re.compile(r"\bline\s+\d+", re.IGNORECASE)
_encode = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


def json_lines(records: Iterable[Mapping[str, Any]]) -> bytes:
    """The request body: one compact JSON object per line (never an array: the API refuses it)."""
    return "".join(_encode(record) + "\n" for record in records).encode()


@dataclass(frozen=True)
class QueueBatch:
    """The WORKFLOW_IMPORT_QUEUE_BATCH the POST created, and its page in the vendor's UI."""

    id: str
    details: str

    @classmethod
    def from_response(cls, response: httpx.Response) -> QueueBatch:
        body = _answer(response)
        return cls(str(body.get("queueBatchId") or ""), str(body.get("queueBatchDetails") or ""))


def _answer(response: httpx.Response) -> dict[str, Any]:
    # The doc's example answer has unquoted keys ({ queueBatchId: "abc" }): YAML reads that.
    try:
        body = response.json()
    except ValueError:
        try:
            body = yaml.safe_load(response.text)
        except yaml.YAMLError:
            body = None
    return body if isinstance(body, dict) else {}


def refusal(error: RejectedError) -> FinalError:
    """A 4xx refusal: record-level (the core bisects) only when one record can be the cause.

    The doc lists no error messages. A refusal that names a line of the body points at
    one record, and a 413 shrinks by halving; anything else (a missing creationPath, an
    unknown parameter, a permission) would fail the same way for every half, so
    bisecting it would only multiply refused requests.
    """
    if error.status == 413 or _LINE.search(error.message):
        return error
    hint = (
        "the import queue refused the whole batch, not one record: check "
        "WORKFLOW_IMPORT_CREATION_PATH and the job's --param options, then replay the "
        "dead letters with `importq dlq replay JOB`"
    )
    return FinalError(f"{error.message} ({hint})", target=TARGET, answer=error.answer)


class WorkflowImportClient:
    """POSTs batches to one Workflow Import Queue endpoint. Errors come out as importq.errors."""

    def __init__(
        self,
        url: str,
        api_key: Secret,
        creation_path: str,
        *,
        timeout: float = 120.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.url = url
        self.creation_path = creation_path
        self._http = vendor_calls.http_client(
            headers={"Authorization": f"apikey {api_key.reveal()}", "Content-Type": MEDIA_TYPE},
            timeout=httpx.Timeout(timeout, connect=10.0),
            transport=transport,
        )
        self._hints = {
            401: f"WORKFLOW_IMPORT_API_KEY was refused: set a valid API key with the {PERMISSION} "
            "permission",
            403: f"the API key lacks the {PERMISSION} permission: ask an administrator to grant it",
            404: "check WORKFLOW_IMPORT_URL: it must be the Workflow Import Queue API endpoint",
            413: "the batch body is too large: lower WORKFLOW_IMPORT_BYTES_PER_BATCH",
        }

    @classmethod
    def from_settings(
        cls, settings: Settings, timeout: float | None = None
    ) -> WorkflowImportClient:
        """The client the settings describe; `timeout` defaults to the limits' read timeout."""
        if timeout is None:
            timeout = WorkflowImportLimits.from_settings(settings).request_timeout_seconds
        url = settings.get("WORKFLOW_IMPORT_URL")
        api_key = settings.secret("WORKFLOW_IMPORT_API_KEY")
        creation_path = settings.get("WORKFLOW_IMPORT_CREATION_PATH")
        required = (
            ("WORKFLOW_IMPORT_URL", url),
            ("WORKFLOW_IMPORT_API_KEY", api_key),
            ("WORKFLOW_IMPORT_CREATION_PATH", creation_path),
        )
        missing = [name for name, value in required if not value]
        if missing:
            raise ConfigError(f"workflow_import needs {', '.join(missing)} in the environment")
        return cls(url, api_key, creation_path, timeout=timeout)

    def close(self) -> None:
        self._http.close()

    def post_batch(
        self, records: Iterable[Mapping[str, Any]], query: Mapping[str, str]
    ) -> QueueBatch:
        """POST one batch; `query` holds creationPath and the job's other control data."""
        try:
            response = self._http.post(self.url, params=dict(query), content=json_lines(records))
        except httpx.TransportError as error:
            raise transport_error(error, target=TARGET, what="POST of the batch") from None
        try:
            raise_for_status(response, target=TARGET, hints=self._hints)
        except RejectedError as error:
            raise refusal(error) from None
        if not response.is_success:  # a redirect (to a login page?) created no batch
            where = response.headers.get("Location", "elsewhere")
            raise FinalError(
                f"answered {response.status_code} and pointed to {where}: "
                "set WORKFLOW_IMPORT_URL to the API endpoint itself",
                target=TARGET,
                answer=VendorAnswer(status=response.status_code),
            )
        return QueueBatch.from_response(response)
