"""The Procfile: Flower, the metrics, the HTTP API, and one worker process per target."""

from __future__ import annotations

from collections.abc import Sequence

from importq.deploy.common import GENERATED, Deployable

_HEAD = [
    "# Flower (web), importq's Prometheus metrics, the HTTP API (api: IMPORTQ_SERVE_ADDRESS, "
    "IMPORTQ_SERVE_PORT, tokens in",
    "# IMPORTQ_SERVE_TOKENS) and one worker per target. `exec` makes each line's process the one "
    "the runner watches,",
    "# so on SIGTERM it waits for the warm shutdown instead of a shell's exit.",
    GENERATED,
    "web: exec importq flower --port ${PORT:-5555} --address ${FLOWER_ADDRESS:-127.0.0.1}",
    "metrics: exec importq metrics --port ${METRICS_PORT:-9808} --address "
    "${METRICS_ADDRESS:-127.0.0.1}",
    "api: exec importq serve",
]


def text(targets: Sequence[Deployable]) -> str:
    lines = list(_HEAD)
    for target in targets:
        concurrency = "1" if target.one_process else "${WORKER_CONCURRENCY:-4}"
        lines.append(
            f"worker_{target.name}: exec celery -A workers.app worker -Q {target.name} "
            f"-n {target.name}@%h --concurrency {concurrency} --loglevel INFO"
        )
    return "\n".join(lines) + "\n"
