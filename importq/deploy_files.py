"""The deployment files, written from the target registry: nothing per target is copied by hand.

`importq deploy-files` writes the Procfile, docker-compose.yml, .env.example and the
README's table of target settings from the registered targets (their names, whether they
run one process, and the environment variables they declare); `--check` says which file
is out of date instead (a test runs it). A new target appears in all four by registration
alone.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from workers.targets.base import EnvSetting

README_BEGIN = "<!-- target settings: written by `importq deploy-files` from the targets -->"
README_END = "<!-- end of target settings -->"
GENERATED = "# Written by `importq deploy-files` from the target registry: edit there, then run it."


class Deployable(Protocol):
    """What the files need to know of a target."""

    @property
    def name(self) -> str: ...
    @property
    def title(self) -> str: ...
    @property
    def one_process(self) -> bool: ...
    @property
    def settings(self) -> tuple[EnvSetting, ...]: ...


@dataclass(frozen=True)
class DeployFile:
    path: str
    text: str


def procfile(targets: Sequence[Deployable]) -> str:
    lines = [
        "# Flower (web), importq's Prometheus metrics, and one worker per target. `exec` makes"
        " each line's process the one the",
        "# runner watches, so on SIGTERM it waits for the warm shutdown instead of a shell's exit.",
        GENERATED,
        "web: exec importq flower --port ${PORT:-5555} --address ${FLOWER_ADDRESS:-127.0.0.1}",
        "metrics: exec importq metrics --port ${METRICS_PORT:-9808} --address "
        "${METRICS_ADDRESS:-127.0.0.1}",
    ]
    for target in targets:
        concurrency = "1" if target.one_process else "${WORKER_CONCURRENCY:-4}"
        lines.append(
            f"worker_{target.name}: exec celery -A workers.app worker -Q {target.name} "
            f"-n {target.name}@%h --concurrency {concurrency} --loglevel INFO"
        )
    return "\n".join(lines) + "\n"


_COMPOSE_HEAD = """\
# importq on one host: Redis (AOF on), Flower, and one worker service per target.
#
#   cp .env.example .env     # then fill in the credentials of the targets you use
#   docker-compose up -d --build
#   docker-compose up -d --scale worker_sourcing_data=3   # more workers, never for blue
#
# Secrets come from .env or from the shell's environment (the ${VAR} references below);
# none is written here or baked into the image. Redis is reachable only inside the
# compose network; Flower is published on the host's 127.0.0.1:5555 (put a TLS proxy in
# front of it to open it wider).
"""

_COMPOSE_SHARED = """
x-image: &image
  build: .
  image: importq:latest
  init: true  # reaps zombies and forwards SIGTERM as PID 1
  restart: unless-stopped
  depends_on:
    redis:
      condition: service_healthy

x-settings: &settings
  REDIS_URL: redis://redis:6379/0
  IMPORTQ_LOG_FORMAT: json

x-worker: &worker
  <<: *image
  # The settings (URLs, ids, limits, timeouts). Each worker's `environment` names its
  # target's secrets as ${VAR} references, so they may come from the shell instead
  # (a CI or secret-manager environment); an unset one stays empty, which importq reads
  # as not configured.
  env_file: .env
  # Long enough for a worker to finish its current request and hand its unit back; a
  # worker killed after this loses nothing either (the lease reaper re-enqueues its unit).
  stop_grace_period: 90s

services:
  redis:
    image: redis:7
    # AOF: a Redis restart loses no queued unit or job state. noeviction: a full Redis
    # refuses new writes instead of dropping messages.
    command: ["redis-server", "--appendonly", "yes", "--appendfsync", "everysec",
              "--maxmemory-policy", "noeviction"]
    volumes:
      - redis-data:/data
    healthcheck:
      test: ["CMD", "redis-cli", "ping"]
      interval: 5s
      timeout: 3s
      retries: 10
    restart: unless-stopped

  flower:
    <<: *image
    # Only the broker and the logins: Flower needs no target credential.
    command: ["importq", "flower", "--address", "0.0.0.0", "--port", "5555"]
    environment:
      <<: *settings
      FLOWER_BASIC_AUTH: ${FLOWER_BASIC_AUTH:?set FLOWER_BASIC_AUTH=user:password in .env}
    ports:
      - "127.0.0.1:5555:5555"
    healthcheck:
      test: ["CMD", "python", "-c",
             "import urllib.request; urllib.request.urlopen('http://127.0.0.1:5555/healthcheck')"]
      interval: 10s
      timeout: 5s
      retries: 5

  metrics:
    <<: *image
    # importq's Prometheus metrics, read from Redis: they cover every worker.
    command: ["importq", "metrics", "--address", "0.0.0.0", "--port", "9808"]
    environment:
      <<: *settings
    ports:
      - "127.0.0.1:9808:9808"
"""


def compose(targets: Sequence[Deployable]) -> str:
    services = [_worker_service(target) for target in targets]
    tail = "\nvolumes:\n  redis-data:\n"
    return _COMPOSE_HEAD + GENERATED + "\n" + _COMPOSE_SHARED + "".join(services) + tail


def _worker_service(target: Deployable) -> str:
    name = target.name
    concurrency = '"1"' if target.one_process else '"${WORKER_CONCURRENCY:-4}"'
    lines = ["", f"  worker_{name}:", "    <<: *worker"]
    if target.one_process:
        lines += [
            "    # One process (the vendor takes one import at a time): the Redis slot keeps it",
            "    # so across machines. Never scale this service.",
        ]
    lines += [
        f'    command: ["celery", "-A", "workers.app", "worker", "-Q", "{name}",',
        f'              "-n", "{name}@%h", "--concurrency", {concurrency},',
        '              "--loglevel", "INFO"]',
    ]
    if target.one_process:
        lines += ["    deploy:", "      replicas: 1"]
    lines += ["    environment:", "      <<: *settings"]
    secrets = [name for s in target.settings if s.secret for name in s.names]
    lines += [f"      {name}: ${{{name}:-}}" for name in secrets]
    return "\n".join(lines) + "\n"


_ENV_HEAD = """\
# Copy to .env (git ignores it) and fill in what you use; never commit real values.
# docker-compose reads it for every worker and for the ${VAR} references; honcho and
# `importq` read it from the working directory too. Every variable is in the README.
"""

_ENV_CORE = """
# Flower's logins, user:password[,user2:password2]. Required by docker-compose.
FLOWER_BASIC_AUTH=

# Processes per worker service (one-process targets always run exactly one).
WORKER_CONCURRENCY=4

# Set by docker-compose itself; for a Procfile runner point it at your Redis (AOF on).
# REDIS_URL=redis://localhost:6379/0
"""


def env_example(targets: Sequence[Deployable]) -> str:
    """The variables with no default are left to fill in; the others are shown commented."""
    blocks = [_ENV_HEAD + GENERATED + "\n" + _ENV_CORE]
    for target in targets:
        lines = [f"\n# {target.title}"]
        for setting in target.settings:
            # Only the target's own variables with no default are left to fill in: others
            # (AWS_*) are read by a library that takes an empty value literally.
            fill_in = not setting.default and _is_own(setting, target)
            lines += [f"{'' if fill_in else '# '}{name}=" for name in setting.names]
        blocks.append("\n".join(lines) + "\n")
    return "".join(blocks)


def _is_own(setting: EnvSetting, target: Deployable) -> bool:
    """The target's own variable (SOURCING_DATA_...), not a shared family such as AWS_."""
    return setting.name.startswith(target.name.upper() + "_")


def readme_table(targets: Sequence[Deployable]) -> str:
    rows = []
    for target in targets:
        rows += ["", f"**{target.title}** (`{target.name}`)", "",
                 "| variable | default | meaning |", "|---|---|---|"]  # fmt: skip
        for setting in target.settings:
            names = " / ".join(f"`{name}`" for name in setting.names)
            help_text = setting.help + (" (secret)" if setting.secret else "")
            rows.append(f"| {names} | {setting.default} | {help_text} |")
    return "\n".join(rows[1:])


def with_readme_table(readme: str, targets: Sequence[Deployable]) -> str:
    """The README with the text between the markers replaced by the current table rows."""
    pattern = re.compile(re.escape(README_BEGIN) + r"\n.*?" + re.escape(README_END), re.S)
    if not pattern.search(readme):
        raise ValueError(f"README.md lacks the markers {README_BEGIN!r} ... {README_END!r}")
    block = f"{README_BEGIN}\n{readme_table(targets)}\n{README_END}"
    return pattern.sub(lambda _: block, readme, count=1)


def registered() -> list[Deployable]:
    from workers.targets import TARGETS

    return list(TARGETS.values())


def files(root: Path, targets: Sequence[Deployable]) -> list[DeployFile]:
    readme = (root / "README.md").read_text()
    return [
        DeployFile("Procfile", procfile(targets)),
        DeployFile("docker-compose.yml", compose(targets)),
        DeployFile(".env.example", env_example(targets)),
        DeployFile("README.md", with_readme_table(readme, targets)),
    ]


def stale(root: Path, wanted: Iterable[DeployFile]) -> list[str]:
    """The files whose text differs from what the registry says they should be."""
    return [f.path for f in wanted if (root / f.path).read_text() != f.text]


def write(root: Path, wanted: Iterable[DeployFile]) -> list[str]:
    written = stale(root, wanted := list(wanted))
    for f in wanted:
        if f.path in written:
            (root / f.path).write_text(f.text)
    return written
