"""docker-compose.yml: Redis, Flower, the metrics, the API, and one worker service per target.

Each service is given only the variables it reads, as ${VAR} references (no value is
written here): a worker gets the core's worker settings, the per-target ones for its own
target, and its target's own variables; Flower gets its logins; nothing gets another
target's credentials (the API gets none: it stages records, the workers deliver them).
Workers are healthy while a Celery ping of their own node answers.
"""

from __future__ import annotations

from collections.abc import Sequence

from importq.deploy.common import GENERATED, Deployable, is_own
from importq.settings_table import CORE, PER_TARGET

_HEAD = """\
# importq on one host: Redis (AOF on), Flower, the metrics, the HTTP API and one worker service
# per target.
#
#   cp .env.example .env     # then fill in the credentials of the targets you use
#   docker-compose up -d --build redis flower metrics api worker_<target> ...
#   docker-compose up -d --scale worker_sourcing_data=3   # more workers, never for blue
#
# Secrets come from .env or from the shell's environment (the ${VAR} references below);
# none is written here or baked into the image, and each service is given only the
# variables it reads. Redis is reachable only inside the compose network; Flower is
# published on the host's 127.0.0.1:5555 and the API on 127.0.0.1:8080 (put a TLS proxy in
# front of them to open them wider).
"""

_SHARED = """
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
  # The ha profile: REDIS_SENTINELS=sentinel-1:26379,sentinel-2:26379,sentinel-3:26379
  # in .env makes every service follow the primary the sentinels name (REDIS_URL ignored).
  REDIS_SENTINELS: ${REDIS_SENTINELS:-}
  REDIS_SENTINEL_MASTER: ${REDIS_SENTINEL_MASTER:-}
  REDIS_PASSWORD: ${REDIS_PASSWORD:-}
  REDIS_SENTINEL_PASSWORD: ${REDIS_SENTINEL_PASSWORD:-}
  IMPORTQ_LOG_FORMAT: json

x-worker: &worker
  <<: *image
  # Long enough for a worker to finish its current request and hand its unit back; a
  # worker killed after this loses nothing either (the lease reaper re-enqueues its unit).
  stop_grace_period: 90s

services:
  redis:
    image: redis:7
    # AOF: a Redis restart loses no queued unit or job state. noeviction: a full Redis
    # refuses new writes instead of dropping messages.
    # With the ha profile it starts as the group's primary; after a failover the sentinels
    # make it a replica of the new one (it announces itself by its service name).
    command: ["redis-server", "--appendonly", "yes", "--appendfsync", "everysec",
              "--maxmemory-policy", "noeviction", "--replica-announce-ip", "redis"]
    volumes:
      - redis-data:/data
    healthcheck:
      test: ["CMD", "redis-cli", "ping"]
      interval: 5s
      timeout: 3s
      retries: 10
    restart: unless-stopped
{ha}
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
    healthcheck:
      test: ["CMD", "python", "-c",
             "import urllib.request; urllib.request.urlopen('http://127.0.0.1:9808/metrics')"]
      interval: 15s
      timeout: 5s
      retries: 3
"""

# `docker-compose --profile ha up`: a replica of `redis` and three sentinels (docs/operations.md,
# "Redis Sentinel"). Sentinels rewrite their config, so each writes a fresh one at start.
_SENTINEL_CONF = (
    "port 26379",
    "sentinel resolve-hostnames yes",
    "sentinel announce-hostnames yes",
    "sentinel announce-ip {name}",
    "sentinel monitor mymaster redis 6379 2",
    "sentinel down-after-milliseconds mymaster 5000",
    "sentinel failover-timeout mymaster 60000",
    "sentinel parallel-syncs mymaster 1",
)

_REDIS_HEALTH = """\
    healthcheck:
      test: ["CMD", "redis-cli", "-p", "{port}", "ping"]
      interval: 5s
      timeout: 3s
      retries: 10
    restart: unless-stopped
"""

_HA_REPLICA = """
  redis-replica:
    image: redis:7
    profiles: ["ha"]
    command: ["redis-server", "--appendonly", "yes", "--appendfsync", "everysec",
              "--maxmemory-policy", "noeviction", "--replicaof", "redis", "6379",
              "--replica-announce-ip", "redis-replica"]
    volumes:
      - redis-replica-data:/data
    depends_on:
      redis:
        condition: service_healthy
""" + _REDIS_HEALTH.format(port=6379)


def _sentinel(number: int) -> str:
    name = f"sentinel-{number}"
    conf = "\n".join(f"        '{line.format(name=name)}'" for line in _SENTINEL_CONF)
    return f"""
  {name}:
    image: redis:7
    profiles: ["ha"]
    command:
      - sh
      - -c
      - >-
        printf '%s\\n'
{conf}
        > /tmp/sentinel.conf && exec redis-server /tmp/sentinel.conf --sentinel
    depends_on:
      redis:
        condition: service_healthy
""" + _REDIS_HEALTH.format(port=26379)


# A worker is healthy while its own node answers a Celery ping ($$: compose's literal $).
HEALTHCHECK = "celery -A workers.app inspect ping -d {node}@$$HOSTNAME --timeout 10 >/dev/null"


def text(targets: Sequence[Deployable]) -> str:
    services = _api(targets) + "".join(_worker(target) for target in targets)
    ha = _HA_REPLICA + "".join(_sentinel(number) for number in (1, 2, 3))
    shared = _SHARED.replace("{ha}", ha)
    volumes = "\nvolumes:\n  redis-data:\n  redis-replica-data:\n"
    return _HEAD + GENERATED + "\n" + shared + services + volumes


def api_variables(targets: Sequence[Deployable]) -> list[str]:
    """What `importq serve` reads: its own settings (with its one secret, the callbacks'
    keys), and every target's variables that plan a job (limits, options), never a vendor's
    credential: the API stages records, workers send them."""
    serving = [n for s in CORE if s.name.startswith("IMPORTQ_SERVE_") for n in s.names]
    local = ("IMPORTQ_SERVE_ADDRESS", "IMPORTQ_SERVE_PORT")  # the command's own
    serving = [n for n in serving if n not in local]
    names = [*serving, "IMPORTQ_MAX_QUEUED_UNITS"]
    for target in targets:
        names.append(f"IMPORTQ_MAX_QUEUED_UNITS_{target.name.upper()}")
        names += [n for s in target.settings if is_own(s, target) and not s.secret for n in s.names]
    return list(dict.fromkeys(names))


def _api(targets: Sequence[Deployable]) -> str:
    lines = [
        "",
        "  api:",
        "    <<: *image",
        "    # The HTTP API and dashboard; it refuses to start without IMPORTQ_SERVE_TOKENS.",
        '    command: ["importq", "serve", "--host", "0.0.0.0", "--port", "8080"]',
        "    ports:",
        '      - "127.0.0.1:8080:8080"',
        "    healthcheck:",
        '      test: ["CMD", "python", "-c",',
        "             \"import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/openapi.json')\"]",
        "      interval: 15s",
        "      timeout: 5s",
        "      retries: 3",
        "    environment:",
        "      <<: *settings",
    ]
    lines += [f"      {variable}: ${{{variable}:-}}" for variable in api_variables(targets)]
    return "\n".join(lines) + "\n"


def worker_variables(target: Deployable) -> list[str]:
    """Every variable a worker of `target` reads: the core's, then its target's own."""
    core = [s for s in CORE if s.workers]
    names = [n for s in core if PER_TARGET not in s.name for n in s.names]
    names += [n for s in core if PER_TARGET in s.name for n in s.names_for(target.name)]
    own = [n for s in target.settings if is_own(s, target) or s.secret for n in s.names]
    return list(dict.fromkeys(names + own))


def library_variables(target: Deployable) -> list[str]:
    """Variables a library reads itself (boto3's AWS_REGION...): not passed empty, because
    the library takes an empty value literally (an empty AWS_PROFILE is a missing profile)."""
    return [n for s in target.settings if not (is_own(s, target) or s.secret) for n in s.names]


def _worker(target: Deployable) -> str:
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
    lines += [
        "    healthcheck:",
        f'      test: ["CMD-SHELL", "{HEALTHCHECK.format(node=name)}"]',
        "      interval: 30s",
        "      timeout: 30s",
        "      retries: 3",
        "      start_period: 60s",
        "    environment:",
        "      <<: *settings",
    ]
    lines += [f"      {variable}: ${{{variable}:-}}" for variable in worker_variables(target)]
    if foreign := library_variables(target):
        lines += [f"      # Add when you use them (never empty): {', '.join(foreign)}"]
    return "\n".join(lines) + "\n"
