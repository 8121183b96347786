"""The registry of targets: one line per target package.

A target is a package here whose `__init__` declares `TARGET = Target(...)`; registering it
is adding its name below. Everything else (its queue and worker, `importq worker`, the
deployment files, the README's settings table, the demo) is read from this registry.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

from importq.errors import InputError
from workers.targets.base import Target, registry

REGISTERED = (  # the first is Celery's default queue
    "sourcing_data",
    "workflow_import",
    "blueshift",
    "datasource",
    "blue",
    "http_batch",
)

TARGETS: dict[str, Target[Any, Any]] = registry(
    *(import_module(f"{__name__}.{name}").TARGET for name in REGISTERED)
)


def get(name: str) -> Target[Any, Any]:
    try:
        return TARGETS[name]
    except KeyError:
        raise InputError(f"unknown target '{name}' (known: {', '.join(sorted(TARGETS))})") from None
