"""Jobs: publish a body as a job, read jobs and their dead letters, replay, cancel."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Annotated, Any

import structlog
from fastapi import APIRouter, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from starlette.datastructures import Headers

from importq import moments
from importq.errors import UnknownJob
from importq.serve import bodies, callbacks, idempotency
from importq.serve.auth import Forbidden, Token
from importq.serve.models import DeadLetter, DeadLetterPage, Job, Problem, Replay, Replayed
from importq.serve.models import Pause as PauseModel
from importq.serve.publishers import PublisherLost, run_to_end
from importq.serve.publishing import Published
from importq.serve.publishing import Request as PublishRequest
from importq.serve.services import AUTHORIZATION_DOC, Services, ServicesDep, TokenDep
from importq.serve.services import of as services_of
from producers.publish import max_queued_units, wait_for_room
from workers.breaker import Pause
from workers.dlq import DeadLetters
from workers.failures import why_failed
from workers.jobs import JobState, JobView

log = structlog.get_logger("importq.serve")
PREFIX = "/v1"
router = APIRouter(prefix=PREFIX, tags=["jobs"])

RETRY_AFTER_SECONDS = 5
CALLBACK_PARAM = "callback_url"  # a query parameter of the API, not one of the target
IDEMPOTENCY_HEADER = "idempotency-key"
IDEMPOTENCY_KEY_MAX = 200


def _header_doc(name: str, description: str = "", max_length: int = 0) -> dict[str, Any]:
    """A header parameter as FastAPI documents `Annotated[str | None, Header()] = None`."""
    text: dict[str, Any] = {"type": "string"}
    if max_length:
        text["maxLength"] = max_length
    title = "-".join(word.capitalize() for word in name.split("-"))
    schema: dict[str, Any] = {"anyOf": [text, {"type": "null"}], "title": title}
    described = {"description": description} if description else {}
    return {"in": "header", "name": name, "required": False, **described,
            "schema": {**schema, **described}}  # fmt: skip


def _body_doc() -> dict[str, Any]:
    record = {"type": "object", "additionalProperties": True}
    return {
        "requestBody": {
            "required": True,
            "description": "The records: JSON Lines, a JSON array or CSV (by Content-Type); "
            "gzip with `Content-Encoding: gzip`. All or nothing: one bad record refuses the "
            "body (422, with up to IMPORTQ_SERVE_MAX_ERRORS errors) and nothing is staged.",
            "content": {
                "application/x-ndjson": {"schema": {"type": "string"}},
                "application/json": {"schema": {"type": "array", "items": record}},
                "text/csv": {"schema": {"type": "string"}},
            },
        },
        # publish_job reads its headers itself (see there); documented as FastAPI would
        "parameters": [
            _header_doc("content-type"),
            _header_doc("content-encoding"),
            _header_doc(IDEMPOTENCY_HEADER, max_length=IDEMPOTENCY_KEY_MAX),
            _header_doc("authorization", AUTHORIZATION_DOC),
            {
                "name": "params",
                "in": "query",
                "required": False,
                "style": "form",
                "explode": True,
                "schema": {"type": "object", "additionalProperties": {"type": "string"}},
                "description": "The target's params (`importq publish --param`), e.g. "
                "`?path=events/`",
            },
            {
                "name": CALLBACK_PARAM,
                "in": "query",
                "required": False,
                "schema": {"type": "string", "format": "uri"},
                "description": "Called (POST, the job's summary, signed with HMAC-SHA256 "
                "under the token's key in IMPORTQ_SERVE_CALLBACK_SECRETS) when the job ends; "
                "retried with backoff",
            },
        ],
    }


def job_answer(request: Request, svc: Services, job: JobView, units: bool = False) -> Job:
    """The job as the API shows it, reading why it failed and its target's pause."""
    pause = None if job.finished else svc.breaker.pause(job.target)
    return _answer(request, svc, job, pause, units)


def _answer(
    request: Request, svc: Services, job: JobView, pause: Pause | None, units: bool = False
) -> Job:
    data = job.as_dict()
    failure = None
    if job.state in (JobState.FAILED, JobState.PARTIAL) and (
        why := why_failed(svc.store.redis, job)
    ):
        failure = why.as_dict()
    paused = None
    if (held := pause) is not None and not job.finished:
        paused = PauseModel(
            by=held.by, reason=held.reason, since=held.since, next_probe_at=held.probe_at or None
        )
    unit_rows = (
        [{"id": uid, **fields} for uid, fields in svc.store.units(job.id)] if units else None
    )
    return Job(**data, url=job_url(request, job.id), failure=failure, paused=paused,
               units=unit_rows)  # fmt: skip


def job_url(request: Request, job_id: str) -> str:
    """What `request.url_for("get_job", job_id=...)` answers, without its search through every
    route (a tenth of a publish's HTTP cost): job ids are hex, so nothing needs quoting."""
    return f"{str(request.base_url).rstrip('/')}{PREFIX}/jobs/{job_id}"


def readable_job(svc: Services, token: Token, job_id: str) -> JobView:
    job = svc.store.get(job_id)
    if job is None:
        raise UnknownJob(job_id)
    token.require(job.target)
    return job


def known_target(svc: Services, target: str) -> None:
    if target not in svc.targets:
        raise UnknownTarget(f"no target {target!r}; the targets are {', '.join(svc.targets)}")


class UnknownTarget(Exception):
    """404."""


@router.post(
    "/targets/{target}/jobs",  # served by publish_route (PUBLISH_PATH): this documents it
    status_code=201,
    response_model=Job,
    openapi_extra=_body_doc(),
    responses={
        200: {
            "model": Job,
            "description": "The job an earlier request with this Idempotency-Key made",
        }
    },
    summary="Publish records as a job",
)
async def publish_job(target: str, request: Request) -> Response:
    # The hot path: producers call it for every body, so it skips what costs more than its
    # work. Its headers are read here, not declared as parameters: FastAPI inspects each
    # declared parameter's type on every request, and resolving the services and token
    # dependencies took a fifth of a publish's HTTP time. The document says the same
    # (_body_doc), and the checks come in FastAPI's order: the token (401), then the headers
    # (422). The answer is serialised by pydantic at once, not validated again by FastAPI.
    svc = services_of(request)
    token = svc.tokens.check(request.headers.get("authorization"))
    idempotency_key = _idempotency_key(request.headers)
    known_target(svc, target)
    token.require(target, write=True)
    fmt = bodies.body_format(request.headers.get("content-type"),
                             request.headers.get("content-encoding"))  # fmt: skip
    limit = svc.settings.integer(bodies.MAX_BODY_SETTING, bodies.DEFAULT_MAX_BODY, minimum=1)
    if int(request.headers.get("content-length") or 0) > limit:
        raise bodies.BodyTooLarge(
            f"the body is over {limit} bytes ({bodies.MAX_BODY_SETTING}); "
            "split it into several jobs"
        )
    if not _held_in_memory(request):  # publish checks again before staging anything
        _refuse_when_full(svc, target)
    params = dict(request.query_params)
    callback_url = params.pop(CALLBACK_PARAM, None)
    if callback_url:
        callbacks.check(svc.settings, callback_url, token.name)
    body = await bodies.receive(request.stream(), limit, hashed=bool(idempotency_key))
    try:
        claim = None
        if idempotency_key:
            called = {**params, CALLBACK_PARAM: callback_url or ""}
            digest = _request_digest(target, called, fmt, body.sha256)
            ttl = svc.settings.integer(idempotency.TTL_SETTING, idempotency.DEFAULT_TTL, minimum=1)
            claim = idempotency.claim(svc.store.redis, token.name, idempotency_key, digest, ttl)
            if claim.job_id and (earlier := svc.store.get(claim.job_id)):
                answer = job_answer(request, svc, earlier)
                return _json(answer, 200, {"Idempotent-Replayed": "true"})
        # Run to its end even if the request is cancelled meanwhile: the outcome decides the
        # key and the callback, and the body (its file) is removed only once it is read.
        handed = _Handed(PublishRequest(target, fmt, params), claim, callback_url, token.name)
        published = await run_to_end(_publish_and_keep(svc, handed, body))
    finally:
        body.remove()
    job_id = published.job_id
    job, pause = published.job, published.pause
    if job is None:  # its read failed: again, now that an Idempotency-Key holds its id
        job = readable_job(svc, token, job_id)
        pause = None if job.finished else svc.breaker.pause(target)
    log.info(
        "job published",
        job_id=job_id,
        target=target,
        caller=token.name,
        records=job.records_total,
        units=job.units_total,
        bytes=body.size,
        publish_cpu_ms=round(published.cpu * 1000, 2),  # the body's cost in its publisher
    )
    answer = _answer(request, svc, job, pause)
    return _json(answer, 201, {"Location": answer.url})


@dataclass(frozen=True)
class _Handed:
    """A body's publish as the route hands it on, with what its outcome settles."""

    request: PublishRequest
    claim: idempotency.Claim | None
    callback_url: str | None
    caller: str  # the token's name


async def _publish_and_keep(svc: Services, handed: _Handed, body: bodies.Body) -> Published:
    """The body published in a publisher process (the event loop only speaks HTTP); then
    its Idempotency-Key settled and its callback registered, or the key forgotten if the
    publish failed."""
    try:
        published = await svc.publishers.publish(handed.request, body)
    except PublisherLost:  # the job may exist: a retry with the key must not make another
        raise
    except Exception:  # it failed: a retry with the key may publish. (Cancelled, a
        # BaseException, the key stays taken: the publisher may have had the body.)
        if handed.claim:
            idempotency.forget(svc.store.redis, handed.claim)
        raise
    if handed.claim:  # first: a failed callback registration must not leave it pending
        idempotency.settle(svc.store.redis, handed.claim, published.job_id)
    if handed.callback_url:
        callbacks.register(svc.store.redis, svc.settings, published.job_id,
                           handed.callback_url, handed.caller)  # fmt: skip
    return published


PUBLISH_PATH = PREFIX + "/targets/{target}/jobs"


async def publish_route(request: Request) -> Response:
    """publish_job as a plain Starlette endpoint (see create_app)."""
    return await publish_job(request.path_params["target"], request)


def _idempotency_key(headers: Headers) -> str | None:
    """The Idempotency-Key header; over IDEMPOTENCY_KEY_MAX characters, the 422 FastAPI
    gives a declared `Header(max_length=...)`."""
    key = headers.get(IDEMPOTENCY_HEADER)
    if key is not None and len(key) > IDEMPOTENCY_KEY_MAX:
        error = {"type": "string_too_long", "loc": ("header", IDEMPOTENCY_HEADER),
                 "msg": f"String should have at most {IDEMPOTENCY_KEY_MAX} characters",
                 "input": key, "ctx": {"max_length": IDEMPOTENCY_KEY_MAX}}  # fmt: skip
        raise RequestValidationError([error])
    return key


def _json(answer: Job, status: int, headers: dict[str, str]) -> Response:
    return Response(answer.model_dump_json(), status, headers, media_type="application/json")


def _held_in_memory(request: Request) -> bool:
    """Whether the body's declared length keeps it in memory (bodies.IN_MEMORY_BYTES).

    A full queue refuses a longer body (or one of unknown length) before it is read, so a
    producer is not kept sending a gigabyte for a 429; one held in memory is refused by
    publish's own check, before anything is staged: a Redis round trip less a body.
    """
    declared = request.headers.get("content-length")
    return declared is not None and declared.isdigit() and int(declared) <= bodies.IN_MEMORY_BYTES


def _refuse_when_full(svc: Services, target: str) -> None:
    """QueueFull (429) before the body is read; publish checks again before staging."""
    limit = max_queued_units(svc.settings, target)
    wait_for_room(svc.store, target, limit, notify=lambda _: None, wait=False)


def _request_digest(target: str, params: dict[str, str], fmt: str, body: str) -> str:
    """What makes two requests the same publish: target, params, format and body."""
    parts = [target, fmt, body, *(f"{k}={v}" for k, v in sorted(params.items()))]
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()


SINCE_DOC = (
    "Only jobs created since: a duration back from now (`90s`, `30m`, `2h`, `7d`, `1w`), a "
    "time in ISO 8601 (`2026-12-07T09:00Z`; without an offset, the server's local time) or "
    "epoch seconds (`1796634000`), as `importq jobs --since` takes; another value is a 422"
)


def _moment(name: str, text: str | None) -> float | None:
    """Epoch seconds of a query parameter in importq/moments.py's forms; 422 otherwise."""
    if text is None:
        return None
    try:
        return moments.since(text)
    except ValueError as error:
        where = ("query", name)
        error_line = {"loc": where, "msg": str(error), "type": "value_error"}
        raise RequestValidationError([error_line]) from None


@router.get("/jobs", response_model=list[Job], summary="Recent jobs, newest first")
def list_jobs(
    request: Request,
    svc: ServicesDep,
    token: TokenDep,
    target: str | None = None,
    state: Annotated[list[JobState] | None, Query()] = None,
    since: Annotated[str | None, Query(description=SINCE_DOC, examples=["2h"])] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> list[Job]:
    created_since = _moment("since", since)
    if target is not None:
        known_target(svc, target)
        token.require(target)
    states = {s.value for s in state or []}
    wanted = limit if target or token.targets is None else 500
    views = svc.store.recent(wanted, since=created_since, target=target, states=states)
    readable = [v for v in views if token.may_read(v.target)][:limit]
    return [job_answer(request, svc, view) for view in readable]


@router.get("/jobs/{job_id}", response_model=Job, summary="A job: state, counts, reason, units")
def get_job(job_id: str, request: Request, svc: ServicesDep, token: TokenDep) -> Job:
    return job_answer(request, svc, readable_job(svc, token, job_id), units=True)


@router.get(
    "/jobs/{job_id}/dead-letters",
    response_model=DeadLetterPage,
    summary="A job's dead letters with the target's reasons, a page at a time",
)
def dead_letters(
    job_id: str,
    svc: ServicesDep,
    token: TokenDep,
    offset: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> DeadLetterPage:
    readable_job(svc, token, job_id)
    letters = DeadLetters(svc.store.redis)
    total = letters.count(job_id)
    items = [DeadLetter.model_validate(entry) for entry in letters.page(job_id, offset, limit)]
    following = offset + limit if offset + limit < total else None
    return DeadLetterPage(
        job_id=job_id, total=total, offset=offset, limit=limit, items=items, next_offset=following
    )


@router.post(
    "/jobs/{job_id}/replay",
    status_code=201,
    response_model=Replayed,
    summary="Publish a job's dead letters again as a new job",
)
async def replay_job(
    job_id: str, request: Request, svc: ServicesDep, token: TokenDep, body: Replay | None = None
) -> Replayed:
    from producers.replay import replay

    job = readable_job(svc, token, job_id)
    token.require(job.target, write=True)
    overrides = body.params if body else {}
    done = await run_in_threadpool(
        lambda: replay(
            job_id,
            settings=svc.settings,
            store=svc.store,
            publish_unit=svc.publish_unit,
            overrides=overrides,
        )
    )
    new_job = svc.store.get(done.new_job_id)
    assert new_job is not None
    log.info(
        "dead letters replayed",
        job_id=job_id,
        new_job_id=done.new_job_id,
        records=done.records,
        caller=token.name,
    )
    return Replayed(job_id=job_id, records=done.records, new_job=job_answer(request, svc, new_job))


class AlreadyEnded(Exception):
    """409: the job has ended; nothing to cancel."""


@router.post(
    "/jobs/{job_id}/cancel",
    response_model=Job,
    summary="Cancel a job: units not started are dropped, running ones finish",
)
def cancel_job(job_id: str, request: Request, svc: ServicesDep, token: TokenDep) -> Job:
    job = readable_job(svc, token, job_id)
    token.require(job.target, write=True)
    if job.finished:
        raise AlreadyEnded(f"job {job_id} already ended {job.state}: nothing to cancel")
    svc.store.cancel(job_id, f"cancelled through the API by {token.name}")
    log.info("job cancelled", job_id=job_id, caller=token.name)
    cancelled = svc.store.get(job_id)
    assert cancelled is not None
    return job_answer(request, svc, cancelled)


__all__ = ["AlreadyEnded", "Forbidden", "Problem", "UnknownTarget"]
