"""What runs before every request a target's client sends while a unit runs.

Every target's HTTP client is made by `http_client` here (Blue's zeep transport
too), so two rules hold for every vendor request without each sink repeating
them: the unit's lease is still surely this worker's (workers/heartbeat.py),
and the target's shared rate limit has room (workers/ratelimit.py). The runner
installs the checks for the unit it runs with `before_each_request`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

import httpx

Check = Callable[[], Any]
_checks: ContextVar[tuple[Check, ...]] = ContextVar("importq_request_checks", default=())


@contextmanager
def before_each_request(*checks: Check | None) -> Iterator[None]:
    """Run `checks` (in order) before every request this thread sends inside the block."""
    token = _checks.set(tuple(check for check in checks if check is not None))
    try:
        yield
    finally:
        _checks.reset(token)


def _before_request(request: httpx.Request) -> None:
    for check in _checks.get():
        check()  # raises (LeaseLost) to stop the request from being sent


def http_client(**kwargs: Any) -> httpx.Client:
    """An httpx.Client whose every request (resends included) passes the unit's checks."""
    hooks = kwargs.pop("event_hooks", {}) or {}
    hooks = {**hooks, "request": [_before_request, *hooks.get("request", [])]}
    return httpx.Client(event_hooks=hooks, **kwargs)
