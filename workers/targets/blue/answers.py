"""Blue's answers as plain values: datasources, blocks, a step's result, the current import.

WCF message contracts put a value in a SOAP header or in the body as the WSDL
says (FinalizeImport's Message is a header in public clients), so an answer is
read as one dict of both, and judged by Message, IsSuccess and APIKeyHeader.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from zeep.helpers import serialize_object

from workers.targets.blue.refusals import is_success, refusal

_serialize: Any = serialize_object  # zeep is untyped
CLOSED_STATUSES = frozenset({-1, -2, -3})  # flushed, failed or auto-cancelled, cancelled
DONE = 100


@dataclass(frozen=True)
class DataSource:
    source_id: str
    caption: str


@dataclass(frozen=True)
class DataBlock:
    name: str
    connector: str
    columns: tuple[str, ...] | None  # None: this Blue does not report a block's columns


@dataclass(frozen=True)
class StepResult:
    """A push, prepare or finalize that worked; `warnings` is Blue's warning text, if any."""

    message: str
    warnings: str = ""


@dataclass(frozen=True)
class CurrentImport:
    """GetCurrentImportingDataSourceProcess: the instance's latest transaction and its status."""

    transaction_id: int
    progress: int

    @property
    def open(self) -> bool:
        """Registered (-4) or running (0-99): it blocks every other import until it ends."""
        return self.transaction_id > 0 and self.progress not in CLOSED_STATUSES | {DONE}


@dataclass(frozen=True)
class ImportOptions:
    abort_on_empty: bool = True
    replace_blue_role: bool = False
    replace_datasource_access_key: bool = False
    replace_language_preferences: bool = False


def fields_of(reply: Any) -> dict[str, Any]:
    """Header and body values of an answer in one dict: Blue puts Message in either."""
    data = _serialize(reply)
    if not isinstance(data, dict):
        return {}
    if set(data) == {"header", "body"}:
        merged = {k: v for k, v in (data["header"] or {}).items() if k != "_raw_elements"}
        body = data["body"] if isinstance(data["body"], dict) else {}
        for key, value in body.items():  # a value the body leaves out never hides the header's
            if value is not None or key not in merged:
                merged[key] = value
        return merged
    return dict(data)


def check(fields: dict[str, Any], operation: str) -> None:
    key_answer = str(fields.get("APIKeyHeader") or "")
    message = fields.get("Message")
    if key_answer.strip().lower().startswith("invalid"):
        said = f"{message}; " if message and not is_success(message) else ""
        raise refusal(f"{said}APIKeyHeader: {key_answer}", what=operation)
    succeeded = fields.get("IsSuccess")
    if succeeded is None:
        succeeded = is_success(message)
    if not succeeded:
        text = message if not is_success(message) else fields.get("Result")
        raise refusal(str(text or "IsSuccess is false"), what=operation)


def step(fields: dict[str, Any]) -> StepResult:
    message = str(fields.get("Message") or "")
    if not fields.get("HasWarningMessage"):
        return StepResult(message)
    warnings = [str(fields.get("Result") or "")]
    if not is_success(message):  # IsSuccess true with the warnings in Message
        warnings.append(message)
    return StepResult(message, "\n".join(w for w in warnings if w))


def items(value: Any, name: str) -> list[Any]:
    """The items of a WCF array ({"IDataSource": [...]}) as a list, whatever zeep returned."""
    if value is None:
        return []
    if isinstance(value, dict):
        value = value.get(name)
    if value is None:
        return []
    return list(value) if isinstance(value, list) else [value]
