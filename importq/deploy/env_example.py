""".env.example: what an operator fills in, from the core's table and each target's rows."""

from __future__ import annotations

from collections.abc import Sequence

from importq.deploy.common import GENERATED, Deployable, is_own

_HEAD = """\
# Copy to .env (git ignores it) and fill in what you use; never commit real values.
# docker-compose reads it for the ${VAR} references (each service is given only the
# variables it reads); honcho and `importq` read it from the working directory too.
# Every variable is in the README.
"""

_CORE = """
# Flower's logins, user:password[,user2:password2]. Required by docker-compose.
FLOWER_BASIC_AUTH=

# `importq serve`'s API tokens, hashed (`importq serve-token NAME` prints a line; `;` between
# entries). Required by the api service.
IMPORTQ_SERVE_TOKENS=

# The keys `importq serve` signs job callbacks with, for the tokens whose producers ask for
# them: NAME=SECRET entries, `;` between them (NAME: the token's). The api service reads it.
IMPORTQ_SERVE_CALLBACK_SECRETS=

# Processes per worker service (one-process targets always run exactly one).
WORKER_CONCURRENCY=4

# Set by docker-compose itself; for a Procfile runner point it at your Redis (AOF on).
# REDIS_URL=redis://localhost:6379/0

# Redis Sentinel (`docker-compose --profile ha`): the sentinels replace REDIS_URL.
# REDIS_SENTINELS=sentinel-1:26379,sentinel-2:26379,sentinel-3:26379
# REDIS_SENTINEL_MASTER=mymaster
"""


def text(targets: Sequence[Deployable]) -> str:
    blocks = [_HEAD + GENERATED + "\n" + _CORE]
    for target in targets:
        lines = [f"\n# {target.title}"]
        for setting in target.settings:
            # Only the target's own variables with no default are left to fill in: others
            # (AWS_*) are read by a library that takes an empty value literally.
            fill_in = not setting.default and is_own(setting, target)
            lines += [f"{'' if fill_in else '# '}{name}=" for name in setting.names]
        blocks.append("\n".join(lines) + "\n")
    return "".join(blocks)
