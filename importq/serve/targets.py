"""Targets: each one's queue, consumers and pause (workers/queues.py); pause and resume."""

from __future__ import annotations

import structlog
from fastapi import APIRouter

from importq.serve.jobs import known_target
from importq.serve.models import PauseRequest, Resumed, Target
from importq.serve.services import ServicesDep, TokenDep

log = structlog.get_logger("importq.serve")
router = APIRouter(prefix="/v1", tags=["targets"])


@router.get(
    "/targets",
    response_model=list[Target],
    summary="Each target the token may read: queue, consumers, paused and why",
)
def list_targets(svc: ServicesDep, token: TokenDep) -> list[Target]:
    from workers.queues import look

    readable = [name for name in svc.targets if token.may_read(name)]
    views = look(svc.store.redis, svc.runner().breaker, readable)
    return [Target(**view.as_dict()) for view in views]


@router.post(
    "/targets/{target}/pause",
    response_model=Target,
    summary="Pause a target: its units wait without using attempts",
)
def pause(
    target: str, svc: ServicesDep, token: TokenDep, body: PauseRequest | None = None
) -> Target:
    from workers.queues import look

    known_target(svc, target)
    token.require(target, write=True)
    reason = (body or PauseRequest()).reason
    svc.runner().breaker.hold(target, reason)
    log.info("target paused", target=target, caller=token.name)
    (view,) = look(svc.store.redis, svc.runner().breaker, [target])
    return Target(**view.as_dict())


@router.post(
    "/targets/{target}/resume",
    response_model=Resumed,
    summary="Lift a target's pause (an operator's or the breaker's), wake its units",
)
def resume(target: str, svc: ServicesDep, token: TokenDep) -> Resumed:
    from workers import controls
    from workers.middleware.base import Waker

    known_target(svc, target)
    token.require(target, write=True)
    runner = svc.runner()
    woken = controls.resume(runner.breaker, Waker(runner.leases, runner.publish), target)
    log.info("target resumed", target=target, caller=token.name, woken=woken)
    return Resumed(target=target, was_paused=woken is not None, woken=woken or 0)
