"""The Celery consumer importq's workers run: Celery's own, kept alive across a lost Redis.

When the broker connection is lost, Celery 5.7 first collects it (kombu closes its channels
and then drops the transport's `client`, the connection details a channel rebuilds its
Redis pool from), then closes it once more. If Redis went away while the consumer waited on
a queue for more work (a BRPOP in flight), the collect's close of that channel fails on the
dead socket before it does anything, so the second close is the one that puts the messages
the channel delivered back, and it needs a new pool: AttributeError "'NoneType' object has
no attribute 'hostname'", which Celery takes for an unrecoverable error. Even past that, the
channel could never build a pool again, so acknowledging a unit that was running across the
restart raised the same error. Either way the worker exited (status 1) and nothing consumed
its queues until something restarted it.

It also publishes the task events it buffers (task-received, -started, -succeeded: Flower's)
a moment later rather than at the event loop's next turn (EVENT_FLUSH_DELAY).

This consumer gives the lost connection's transport its details back, so its channels work
as they do after any other lost connection (the messages they delivered are acknowledged
once their units end, over a new pool), and lets that one failure of the close pass: the
put-back could not have reached a Redis that is away anyway, and a unit does not depend on
its message (its lease and the reaper do). Any other error still ends the worker.
"""

from __future__ import annotations

from typing import Any

import structlog
from celery.worker.consumer import Consumer as CeleryConsumer

log = structlog.get_logger("importq.worker")

# Seconds buffered task events wait before they are published. Celery flushes them at the
# loop's next turn, before the loop writes the unit's message to a pool process: a Redis
# round trip (and the CPU it takes) on every unit's way to its claim, for a monitoring
# event that can as well leave a few milliseconds later, in one flush with the next ones.
EVENT_FLUSH_DELAY = 0.005


class Consumer(CeleryConsumer):  # type: ignore[misc]  # celery ships no type hints
    _events_flush: Any = None
    """The timer entry of the flush to come (None when none is due)."""

    def on_send_event_buffered(self) -> None:
        if self.hub is None:
            super().on_send_event_buffered()
        # One flush at a time; a new one if the loop dropped the last (Celery cancels its
        # timers after a lost connection: the events would wait for a full buffer).
        elif self._events_flush is None or getattr(self._events_flush, "canceled", False):
            self._events_flush = self.hub.call_later(EVENT_FLUSH_DELAY, self._flush_events_later)

    def _flush_events_later(self) -> None:
        self._events_flush = None
        self._flush_events()

    def on_connection_error_after_connected(self, exc: Exception) -> None:
        lost = self.connection
        transport = getattr(lost, "_transport", None)  # before Celery collects it
        try:
            super().on_connection_error_after_connected(exc)
        except AttributeError as error:
            if transport is None or transport.client is not None:
                raise  # not the dropped details: a bug of its own
            log.warning(
                "the lost Redis connection did not close cleanly (kombu); reconnecting: "
                "the messages it delivered are acknowledged when their units end",
                error=str(error),
            )
        finally:
            keep_details(transport, lost)


def keep_details(transport: Any, connection: Any) -> None:
    """Give a collected transport back the connection it was made for: its channels rebuild
    their Redis pool from it to acknowledge the messages they delivered."""
    if transport is not None and connection is not None and transport.client is None:
        transport.client = connection
