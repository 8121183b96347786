"""The cross-cutting rules around a unit's run, one module per rule (see base.py).

Import the rules from their modules: pipelines.py reaches the producers' side,
which must not load with the runner.
"""

from workers.middleware.base import Middleware, Waker

__all__ = ["Middleware", "Waker"]
