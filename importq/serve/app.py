"""The app factory: the API's routers, its error answers, and the OpenAPI document.

Every error is a `Problem` ({detail, errors}): what failed and what to do. The map from
importq's errors (and the API's own) to status codes is `_STATUS` below.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, suppress
from importlib import metadata
from typing import Any

import redis
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse
from starlette.exceptions import HTTPException

from importq import logging as importq_logging
from importq.errors import (
    ConfigError,
    ImportqError,
    InputError,
    QueueFull,
    RedisUnavailable,
    UnknownJob,
)
from importq.serve import auth, bodies, callbacks, idempotency, publishers, ui
from importq.serve.jobs import (
    PUBLISH_PATH,
    RETRY_AFTER_SECONDS,
    AlreadyEnded,
    UnknownTarget,
    publish_route,
)
from importq.serve.jobs import router as jobs_router
from importq.serve.models import Problem, RecordError
from importq.serve.publishing import RefusedBody
from importq.serve.services import Services
from importq.serve.targets import router as targets_router
from importq.settings import Settings

TITLE = "importq"
_STATUS: dict[type[BaseException], int] = {
    auth.Unauthenticated: 401,
    auth.Forbidden: 403,
    UnknownJob: 404,
    UnknownTarget: 404,
    idempotency.KeyConflict: 409,
    AlreadyEnded: 409,
    bodies.BodyTooLarge: 413,
    bodies.UnsupportedBody: 415,
    InputError: 422,
    QueueFull: 429,
    ConfigError: 503,
    RedisUnavailable: 503,
    publishers.PublisherUnavailable: 503,
    publishers.PublisherLost: 503,
    redis.ConnectionError: 503,
    redis.TimeoutError: 503,
}
_DOCUMENTED = {
    400: "A JSON body that does not parse",
    401: "No token, or not a configured one",
    403: "The token is not scoped to this target, or may only read",
    404: "No such job or target",
    409: "Idempotency-Key used with another body, or the job cannot do this now",
    413: "The body is over IMPORTQ_SERVE_MAX_BODY_BYTES",
    415: "A Content-Type or Content-Encoding importq does not read",
    422: "Refused input: the body's records (each with its place), params, or query",
    429: "The target's queue is full (IMPORTQ_MAX_QUEUED_UNITS): retry after Retry-After",
    503: "Redis or a setting is missing, or (publishing) a publisher process ended: the "
    "server says which",
}


def from_environment() -> FastAPI:
    """The app over the configured Redis and tokens (what `importq serve` runs)."""
    from workers import app as worker_app
    from workers import targets
    from workers.jobs import JobStore

    settings = worker_app.settings()
    # Every server process (uvicorn's workers call this factory) logs through importq's
    # pipeline: the level and format settings, and the redaction of secrets.
    importq_logging.configure(settings)
    tokens = auth.load(settings)
    if not tokens:
        raise ConfigError(
            f"no API token is configured: `importq serve-token NAME` makes one "
            f"and prints the line for {auth.TOKENS_SETTING} or "
            f"{auth.TOKENS_FILE_SETTING}"
        )
    callbacks.secrets(settings)  # a malformed entry stops the start, not a job's callback
    services = Services(
        settings,
        JobStore(worker_app.redis_client()),
        worker_app.publish_unit,
        auth.TokenRing(tokens),
        worker_app.runner,
        publishers.Publishers(publisher_count(settings), publisher_environ()),
        list(targets.TARGETS),
    )
    return create_app(services)


def publisher_count(settings: Settings) -> int:
    """IMPORTQ_SERVE_PUBLISHERS, one per core by default: a publish is CPU-bound."""
    cores = os.cpu_count() or 1
    return settings.integer(publishers.COUNT_SETTING, cores, minimum=1)


def publisher_environ() -> dict[str, str]:
    """The publishers' environment: this process's, with the Redis it chose pinned when the
    choice was not configured (the embedded one, or localhost), so that a publisher started
    later cannot choose another (one started meanwhile, or none if localhost blinks)."""
    from workers import app as worker_app

    environ = dict(os.environ)
    choice = worker_app.redis_choice()
    if choice.source in ("embedded", "localhost"):
        environ["REDIS_URL"] = choice.url
    return environ


def create_app(services: Services | None) -> FastAPI:
    """The app over `services` (None: only to write its OpenAPI document)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        sender = None
        if services is not None:
            await services.publishers.start()  # the processes that stage the bodies
            # the callbacks of ended jobs, sent while the app runs
            summary = callbacks.Sender(services.store, services.settings, _summary(services))
            sender = asyncio.create_task(summary.run())
        yield
        if sender is not None:
            sender.cancel()
            with suppress(asyncio.CancelledError):
                await sender
        if services is not None:
            await services.publishers.stop()

    app = FastAPI(
        lifespan=lifespan,
        title=TITLE,
        version=metadata.version("importq"),
        description="Publish records to importq's targets from any language, and follow "
        "the jobs. Every request carries `Authorization: Bearer <token>`.",
        responses={
            code: {"model": Problem, "description": text} for code, text in _DOCUMENTED.items()
        },
    )
    app.state.services = services
    # The publish, producers' hot path, as a plain Starlette route ahead of its FastAPI one
    # (which only documents it): FastAPI's request handler and dependency resolution cost
    # more than the route's own work, and it declares nothing for them to do.
    app.add_route(PUBLISH_PATH, publish_route, methods=["POST"], include_in_schema=False)
    app.include_router(jobs_router)
    app.include_router(targets_router)
    app.include_router(ui.router)
    app.add_exception_handler(ui.SignIn, ui.refused)
    app.add_exception_handler(ui.CsrfRefused, ui.refused)

    @app.get("/", include_in_schema=False)
    def home() -> RedirectResponse:
        return RedirectResponse("/ui/")

    for error_type in _STATUS:
        app.add_exception_handler(error_type, _answer)  # type: ignore[arg-type]
    replay_error: Any = _replay_error()
    app.add_exception_handler(replay_error, _answer)
    app.add_exception_handler(RequestValidationError, _invalid_request)
    app.add_exception_handler(HTTPException, _http_error)  # type: ignore[arg-type]
    return app


OPENAPI_PATH = "schemas/openapi/serve.json"


def openapi_text() -> str:
    """The OpenAPI document as committed at OPENAPI_PATH (`importq deploy-files` writes it)."""
    return json.dumps(create_app(None).openapi(), indent=2, sort_keys=True) + "\n"


def _summary(services: Services) -> Callable[[Any], dict[str, Any]]:
    """A callback's body: the job as the API shows it, and why it failed if it did."""
    from workers.failures import why_failed

    def summary(job: Any) -> dict[str, Any]:
        failure = why_failed(services.store.redis, job)
        return {**job.as_dict(), "failure": failure.as_dict() if failure else None}

    return summary


def _replay_error() -> type[ImportqError]:
    from producers.replay import ReplayError

    _STATUS[ReplayError] = 409
    return ReplayError


def status_of(error: BaseException) -> int:
    for kind in type(error).__mro__:
        if kind in _STATUS:
            return _STATUS[kind]
    return 500


async def _answer(request: Request, error: Exception) -> JSONResponse:
    status = status_of(error)
    problem = Problem(detail=str(error), stopped_early=False)
    if isinstance(error, RefusedBody):
        problem.errors = [
            RecordError(where=e.where or "", message=_message(e)) for e in error.errors
        ]
        problem.stopped_early = error.stopped_early
    headers: dict[str, str] = {}
    if status == 401:
        headers["WWW-Authenticate"] = 'Bearer realm="importq"'
    if status == 429:
        headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
    return JSONResponse(problem.model_dump(), status, headers=headers)


def _message(error: InputError) -> str:
    text = str(error)
    prefix = f"{error.where}: " if error.where else ""
    return text[len(prefix) :] if prefix and text.startswith(prefix) else text


async def _invalid_request(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, RequestValidationError)
    errors = [
        RecordError(where=".".join(str(p) for p in e.get("loc", ())), message=e.get("msg", ""))
        for e in error.errors()
    ]
    problem = Problem(
        detail="the request was refused: see errors", errors=errors, stopped_early=False
    )
    return JSONResponse(problem.model_dump(), 422)


async def _http_error(request: Request, error: HTTPException) -> JSONResponse:
    return JSONResponse(
        Problem(detail=str(error.detail), stopped_early=False).model_dump(),
        error.status_code,
        headers=error.headers,
    )


Handler = Callable[[Request, Exception], Any]
