"""What the routes share: settings, the job store, the worker runner, the tokens; and the
FastAPI dependencies that authenticate a request."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Annotated, Any

from fastapi import Depends, Header, Request

from importq.serve.auth import Token, TokenRing
from importq.serve.publishers import Publishers
from importq.settings import Settings
from workers.breaker import Breaker
from workers.dispatch import Publish
from workers.jobs import JobStore

AUTHORIZATION_DOC = "`Bearer <token>` (`importq serve-token` makes one)"


@dataclass
class Services:
    settings: Settings
    store: JobStore
    publish_unit: Publish
    tokens: TokenRing
    runner_factory: Any  # () -> workers.runner.Runner (its breaker and waker), made on demand
    publishers: Publishers  # the processes that stage bodies (started in the app's lifespan)
    targets: list[str] = field(default_factory=list)

    def runner(self) -> Any:
        return self.runner_factory()

    @cached_property
    def breaker(self) -> Breaker:
        """Made once: a Breaker reads its settings and registers its scripts."""
        return Breaker(self.store.redis, self.settings)


def of(request: Request) -> Services:
    found: Services = request.app.state.services
    return found


# The dependencies are coroutines: FastAPI runs a plain function in its thread pool, a hop
# each per request that costs more than the work.
async def services(request: Request) -> Services:
    return of(request)


async def token(
    request: Request,
    authorization: Annotated[str | None, Header(description=AUTHORIZATION_DOC)] = None,
) -> Token:
    return of(request).tokens.check(authorization)


ServicesDep = Annotated[Services, Depends(services)]
TokenDep = Annotated[Token, Depends(token)]
