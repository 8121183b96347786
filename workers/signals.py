"""The control signals that stop a running unit: not failures, so outside the error tree.

    ControlSignal
    ├── LeaseLost             this worker no longer owns the unit; it must stop without committing
    │   └── LeaseUnconfirmed  Redis did not confirm the lease in time; stop, hand back if still ours
    │       └── ReplicaUnconfirmed  no replica confirmed a remembered remote id (Sentinel)
    └── HandBack              the worker is shutting down: the unit goes back to the queue

The heartbeat (workers/heartbeat.py) and the runner's `remember` raise them at a
checkpoint, before a vendor request or when a fenced write is refused. Only the runner
acts on them (it hands the unit back, or stops without writing): they never go through
the retry, bisection or dead-letter routing that failures take.

They are not ImportqError, so no `except ImportqError` (nor a TargetError subclass) in a
client or sink can take one for a failure. They stay Exception rather than BaseException
(as asyncio.CancelledError is), because the `except Exception` on a unit's path that can
meet one either catches it on purpose (Blue's progress watch stops on a lost lease; the
runner's settling of what an earlier attempt left open reports it instead of guessing) or
comes after an `except LeaseLost` / HandBack clause (heartbeat, runner); cleanups under
`except BaseException` re-raise. tests/test_signals.py keeps it so.
"""

from __future__ import annotations


class ControlSignal(Exception):
    """Stops the unit's run so the runner can end it; never a vendor's or the input's fault."""


class LeaseLost(ControlSignal):
    """The unit's lease expired or was taken over; the holder must not commit."""


class LeaseUnconfirmed(LeaseLost):
    """The lease could not be renewed in time (Redis unreachable); it may still be ours."""


class ReplicaUnconfirmed(LeaseUnconfirmed):
    """A remembered remote id reached the primary, but no connected replica confirmed it in
    time: a failover could lose it, so stop before the vendor request it guards."""


class HandBack(ControlSignal):
    """The worker is shutting down: stop at this checkpoint and return the unit to the queue."""
