"""Rate limits: every vendor request made for a unit first takes a place in its target's
shared window (the limiter itself: workers/ratelimit.py)."""

from __future__ import annotations

from importq.settings import Settings
from workers import ratelimit
from workers.middleware.base import Check, Middleware
from workers.outcomes import UnitRun


class RateLimit(Middleware):
    def __init__(self, settings: Settings, redis_url: str) -> None:
        self.settings, self.redis_url = settings, redis_url
        self._throttles: dict[str, ratelimit.Throttle | None] = {}

    def throttle(self, target: str) -> ratelimit.Throttle | None:
        # One limiter per target per process; none without a Redis URL (in-process tests).
        if target not in self._throttles and self.redis_url:
            self._throttles[target] = ratelimit.throttle_for(target, self.settings, self.redis_url)
        return self._throttles.get(target)

    def request_check(self, run: UnitRun) -> Check | None:
        throttle = self.throttle(run.target)
        return throttle.wait if throttle else None
