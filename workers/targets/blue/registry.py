"""Which open Blue transactions importq started, and whether the attempt behind each lives.

Blue keeps a transaction open after its client died, and refuses every other
import until someone cancels it. importq cancels only its own: a transaction
recorded here whose owner (a unit and the claim token of the attempt that
registered it) no longer holds that unit's lease. Anything else open on the
instance was started by someone else, and is left alone. The keys are kept through the
core (workers/target_state.py: Claims, their index and a Note); this module never sees Redis.

    importq:blue:transactions:{instance}  hash  transaction id -> {"unit", "token"};
                                                "registering" -> the owner about to
                                                call RegisterImport (its answer may be lost);
                                                {instance} is limits.instance_of(address)
    importq:blue:instances                set   every transactions:{instance} key used
    importq:blue:skipped:{unit}           string JSON [[index, reason], ...] of the rows
                                          Blue skipped, kept while FinalizeImport runs
"""

from __future__ import annotations

import json

from workers.target_state import Claim, TargetState

FINALIZING = "finalizing"  # the unit's remembered phase while FinalizeImport runs

REGISTERING = "registering"
TRANSACTIONS = "transactions"  # kind of the Claims of one instance's transactions
INSTANCES = "instances"  # their index: every registry key a transaction was recorded under
SKIPPED = "skipped"  # kind of a unit's Note of skipped rows
SKIPPED_TTL_SECONDS = 7 * 24 * 3600
# The attempt that opened a transaction: a unit and its claim token then.
Owner = Claim


class Registry:
    """The transactions importq opened on one Blue instance, seen from one running unit."""

    def __init__(self, state: TargetState, instance: str) -> None:
        self.state = state
        self.claims = state.claims(TRANSACTIONS, instance, index=INSTANCES)
        self.key = self.claims.key
        # While a unit runs, its lease key holds the claim token of this very attempt.
        self.me = state.me()
        self.skipped = state.note(SKIPPED)

    def intend(self) -> None:
        """Say a RegisterImport is about to be sent: its answer could die with this process."""
        self.claims.mark(REGISTERING, self.me)

    def record(self, transaction_id: int) -> None:
        # The index is where find() looks under other names of an instance.
        self.claims.hold(str(transaction_id), self.me, instead_of=REGISTERING)

    def forget(self, transaction_id: int) -> None:
        self.claims.drop(str(transaction_id))

    def drop_intent(self) -> None:
        self.claims.drop(REGISTERING)

    def owner(self, transaction_id: int) -> Owner | None:
        return self.claims.holder(str(transaction_id))

    def find(self, transaction_id: int) -> tuple[str, Owner] | None:
        """(registry key, owner) of a transaction any importq worker recorded: under this
        instance's name first, then under any other name (a worker that reaches this Blue
        by an address the names cannot tell apart, such as a second DNS name)."""
        owner = self.owner(transaction_id)
        if owner is not None:
            return self.key, owner
        return self.claims.elsewhere(str(transaction_id))

    def forget_in(self, key: str, transaction_id: int) -> None:
        """Forget a transaction found under another name of the instance (see find)."""
        self.claims.drop(str(transaction_id), key)

    def dead_intent(self) -> Owner | None:
        """An attempt that was registering an import when it died, if there is one."""
        intent = self.claims.holder(REGISTERING)
        return intent if intent and not self.alive(intent) else None

    def alive(self, owner: Owner) -> bool:
        """True while the attempt still holds its unit's lease (a redo holds another token),
        or while its unit waits to learn how a FinalizeImport whose answer was lost ended:
        that transaction may be committing, and only its own unit may settle it."""
        if owner == self.me or self.state.running(owner):
            return True
        state, phase = self.state.unit_state(owner.unit, "phase")
        return state in ("waiting", "queued") and phase == FINALIZING

    def save_skipped(self, rejected: list[tuple[int, str]]) -> None:
        self.skipped.save(json.dumps(rejected), SKIPPED_TTL_SECONDS)

    def load_skipped(self) -> list[tuple[int, str]]:
        raw = self.skipped.load()
        if not raw:
            return []
        return [(int(index), str(reason)) for index, reason in json.loads(raw)]

    def drop_skipped(self) -> None:
        self.skipped.drop()
