"""An import open on the Blue instance before ours: cancel it if it is a dead one of ours.

Asked before RegisterImport and whenever Blue says it is busy. An open
transaction is ours when this very unit remembered it (its earlier attempt,
dead since this attempt holds the unit now) or when the registry recorded it
(under this instance's name, or under another name a worker gave the same Blue);
its owner is dead when the owner's lease is gone or held by another attempt.
Anything else was started by someone else (by hand, in Blue): never touched,
the unit waits and says so in job state and in the log.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

from importq.errors import VendorBusy
from workers.targets.blue.answers import CurrentImport
from workers.targets.blue.limits import BlueLimits
from workers.targets.blue.refusals import TARGET, TransactionLost
from workers.targets.blue.registry import Owner, Registry

REGISTERED = -4  # Blue's status of a transaction nothing was pushed to yet


def settle_open(
    current: CurrentImport,
    remembered: int,
    registry: Registry | None,
    log: Any,
    limits: BlueLimits,
    *,
    cancel: Callable[[int], None],
) -> None:
    """Cancel `current` if it is a dead one of ours; else raise VendorBusy to wait."""
    transaction_id, progress = current.transaction_id, current.progress
    state, owner, key = owner_of(current, remembered, registry)
    if registry and key and key != registry.key:
        log.warning("an importq worker names this Blue instance otherwise, so the two do not "
                    "share one import slot: give every worker the same BLUE_ENDPOINT_URL",
                    transaction_id=transaction_id, recorded_under=key,
                    here=registry.key)  # fmt: skip
    if state == "dead":
        log.warning("cancelling a transaction of ours whose worker died",
                    transaction_id=transaction_id, progress=progress,
                    owner=owner.unit if owner else "")  # fmt: skip
        with contextlib.suppress(TransactionLost):  # it ended meanwhile: fine too
            cancel(transaction_id)
        if registry:
            registry.forget(transaction_id)
            if key and key != registry.key:
                registry.forget_in(key, transaction_id)
        return
    if state == "alive":
        raise VendorBusy(
            f"transaction {transaction_id} (progress {progress}) of importq unit "
            f"{owner.unit if owner else '?'} is open on Blue; waiting for it to end",
            target=TARGET,
            retry_after=limits.busy_retry_seconds,
        )
    log.warning("a foreign import is open on Blue; not touching it",
                transaction_id=transaction_id, progress=progress)  # fmt: skip
    raise VendorBusy(
        f"a foreign import is open on Blue: transaction {transaction_id}, progress "
        f"{progress}. importq did not start it and leaves it alone; it looks again in "
        f"{limits.foreign_retry_seconds:.0f} s. Let it finish, or cancel it in Blue",
        target=TARGET,
        retry_after=limits.foreign_retry_seconds,
    )


def owner_of(
    current: CurrentImport, remembered: int, registry: Registry | None
) -> tuple[str, Owner | None, str]:
    """("dead" | "alive" | "foreign", owner, the registry key it was found under)."""
    if current.transaction_id == remembered:
        return "dead", None, ""  # this unit's earlier attempt
    if registry is None:
        return "foreign", None, ""
    found = registry.find(current.transaction_id)
    if found is not None:
        key, owner = found
        return ("alive" if registry.alive(owner) else "dead"), owner, key
    intent = registry.dead_intent()
    if intent is not None and current.progress == REGISTERED:
        # Its RegisterImport's answer died with it: a just-registered import is that one.
        registry.drop_intent()
        return "dead", intent, ""
    return "foreign", None, ""
