"""The registry of targets: one line per target package."""

from __future__ import annotations

from importq.errors import InputError
from workers.targets import blue, blueshift, datasource, http_batch, sourcing_data, workflow_import
from workers.targets.base import Sink

SINKS: dict[str, Sink] = {
    sink.name: sink
    for sink in (
        sourcing_data.SINK,
        workflow_import.SINK,
        blueshift.SINK,
        datasource.SINK,
        blue.SINK,
        http_batch.SINK,
    )
}


def get(name: str) -> Sink:
    try:
        return SINKS[name]
    except KeyError:
        raise InputError(f"unknown target '{name}' (known: {', '.join(sorted(SINKS))})") from None
