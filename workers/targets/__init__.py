"""The registry of targets: one line per target package."""

from __future__ import annotations

from typing import Any

from importq.errors import InputError
from workers.targets import blue, blueshift, datasource, sourcing_data, workflow_import
from workers.targets.base import Target, registry

TARGETS: dict[str, Target[Any, Any]] = registry(
    sourcing_data.TARGET,
    workflow_import.TARGET,
    blueshift.TARGET,
    datasource.TARGET,
    blue.TARGET,
)


def get(name: str) -> Target[Any, Any]:
    try:
        return TARGETS[name]
    except KeyError:
        raise InputError(f"unknown target '{name}' (known: {', '.join(sorted(TARGETS))})") from None
