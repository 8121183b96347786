"""A moment as people write it: a duration back from now, a time, or epoch seconds.

`importq jobs --since`, `importq dlq export --since` and the API's `GET /v1/jobs?since=`
read the same forms through `since()`.
"""

from __future__ import annotations

import re
import time
from datetime import datetime

SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
FORMS = (
    "a duration (90s, 30m, 2h, 7d) nor a time (2026-12-07 13:00, 2026-12-07T09:00Z or "
    "2026-12-07), nor epoch seconds"
)
_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*([smhdw])")
_EPOCH = re.compile(r"\d{9,}(?:\.\d+)?")  # 9 digits and more: no date is written so


def since(text: str, now: float | None = None) -> float:
    """Epoch seconds of `text`; a time without an offset is local time. ValueError names
    the forms that are read."""
    text = text.strip()
    if match := _DURATION.fullmatch(text):
        return (time.time() if now is None else now) - float(match[1]) * SECONDS[match[2]]
    if _EPOCH.fullmatch(text):
        return float(text)
    try:
        return datetime.fromisoformat(text).timestamp()
    except ValueError:
        raise ValueError(f"{text!r} is neither {FORMS}") from None
