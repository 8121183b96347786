"""Where a receiver's answer lists the records it refused, and how to read that list.

HTTP_BATCH_ERRORS_PATH names a list in the JSON answer by dotted keys (`errors`,
`result.failed`); each item of it names one record of the request by its
position (HTTP_BATCH_ERROR_INDEX_FIELD, counted from HTTP_BATCH_ERROR_INDEX_BASE)
and says why (HTTP_BATCH_ERROR_MESSAGE_FIELD). Unset, the receiver lists none:
a 2xx then means every record of the request was taken.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from importq.errors import ConfigError
from importq.settings import Settings

_MISSING = object()


class UnreadableList(ValueError):
    """The answer does not hold the list where the settings say, or an item names no record."""


@dataclass(frozen=True)
class ErrorList:
    """The settings that locate and read the per-record errors of an answer."""

    path: tuple[str, ...] = ()
    index_field: str = "index"
    message_field: str = "message"
    index_base: int = 0

    @classmethod
    def from_settings(cls, settings: Settings) -> ErrorList:
        dotted = settings.get("HTTP_BATCH_ERRORS_PATH").strip()
        path = tuple(dotted.split(".")) if dotted else ()
        if any(not key.strip() for key in path):
            raise ConfigError(
                f"HTTP_BATCH_ERRORS_PATH={dotted!r} has an empty key: write the keys that lead "
                "to the list, joined by dots (errors, result.failed); unset it if the receiver "
                "lists no refused records"
            )
        base = settings.choice("HTTP_BATCH_ERROR_INDEX_BASE", "0", ("0", "1"))
        return cls(
            path=path,
            index_field=settings.get("HTTP_BATCH_ERROR_INDEX_FIELD").strip() or cls.index_field,
            message_field=(
                settings.get("HTTP_BATCH_ERROR_MESSAGE_FIELD").strip() or cls.message_field
            ),
            index_base=int(base),
        )

    @property
    def dotted(self) -> str:
        return ".".join(self.path)

    def find(self, body: Any) -> list[Any] | None:
        """The list at the path; None where the answer has nothing there (or is not JSON)."""
        value = body
        for key in self.path:
            value = value.get(key, _MISSING) if isinstance(value, dict) else _MISSING
            if value is _MISSING:
                return None
        if value is None:  # "errors": null says "none", as an empty list does
            return []
        if not isinstance(value, list):
            raise UnreadableList(f"{self.dotted!r} of the answer is a {type(value).__name__}, "
                                 "not a list")  # fmt: skip
        return value

    def refusals(self, items: list[Any], count: int) -> dict[int, str]:
        """Position in the request (from 0) -> the receiver's reason, for `count` records."""
        refused: dict[int, str] = {}
        for item in items:
            position, reason = self._read(item, count)
            earlier = refused.get(position)
            refused[position] = f"{earlier}; {reason}" if earlier else reason
        return refused

    def _read(self, item: Any, count: int) -> tuple[int, str]:
        if not isinstance(item, dict):
            raise UnreadableList(f"an item of {self.dotted!r} is not an object: {item!r:.200}")
        index = item.get(self.index_field)
        first, last = self.index_base, self.index_base + count - 1
        # bool is an int to Python, never a position to a receiver
        if isinstance(index, bool) or not isinstance(index, int) or not first <= index <= last:
            raise UnreadableList(
                f"an item of {self.dotted!r} has {self.index_field}={index!r}, not a position "
                f"from {first} to {last} in the request of {count} records: {_shown(item)}"
            )
        message = item.get(self.message_field)
        return index - self.index_base, str(message) if message else _shown(item)


def _shown(item: Any) -> str:
    """An item as the receiver wrote it, when it carries no message of its own."""
    return json.dumps(item, ensure_ascii=False, separators=(",", ":"))[:500]
