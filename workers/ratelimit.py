"""Request rate limits per target, shared by every worker on every machine.

Celery's `rate_limit` is per worker process; a vendor's limit is global. So a
moving window lives in Redis (the `limits` library's atomic Lua scripts,
under the key prefix `importq:ratelimit`), and every HTTP request a target's
client sends waits for a place in it: the runner installs the target's
throttle as a check before each request (workers/vendor_calls.py).

Configure with IMPORTQ_RATE_LIMIT_<TARGET>, e.g. IMPORTQ_RATE_LIMIT_BLUESHIFT=5/second.
"""

from __future__ import annotations

import time

from limits import RateLimitItem, parse
from limits.storage import RedisSentinelStorage, RedisStorage
from limits.strategies import MovingWindowRateLimiter

from importq import sentinel
from importq.errors import ConfigError
from importq.settings import Settings
from workers import keys


class Throttle:
    """Blocks until the target's shared window has room for one more request."""

    def __init__(self, target: str, rate: RateLimitItem, limiter: MovingWindowRateLimiter):
        self.target, self.rate, self.limiter = target, rate, limiter

    def wait(self) -> float:
        """Take a place in the window; returns the seconds spent waiting for it."""
        started = time.monotonic()
        while not self.limiter.hit(self.rate, self.target):
            reset = self.limiter.get_window_stats(self.rate, self.target).reset_time
            time.sleep(min(max(reset - time.time(), 0.005), 1.0))
        return time.monotonic() - started


def setting_name(target: str) -> str:
    return f"IMPORTQ_RATE_LIMIT_{target.upper()}"


def rate_for(target: str, settings: Settings) -> RateLimitItem | None:
    """The target's configured rate, or None; ConfigError when the setting is not a rate.

    Needs no Redis, so a worker checks it before it starts (workers/app.py).
    """
    name = setting_name(target)
    raw = settings.get(name).strip()
    if not raw:
        return None
    try:
        return parse(raw)
    except ValueError:
        raise ConfigError(
            f"{name}={raw!r} is not a rate; write e.g. 5/second or 100/minute "
            "(requests per window, across all workers), or unset it for no limit"
        ) from None


def throttle_for(target: str, settings: Settings, redis_url: str) -> Throttle | None:
    """The target's throttle, or None when no limit is configured."""
    rate = rate_for(target, settings)
    if rate is None:
        return None
    return Throttle(target, rate, MovingWindowRateLimiter(_storage(settings, redis_url)))


def _storage(settings: Settings, redis_url: str) -> RedisStorage:
    prefix = keys.PREFIX + "ratelimit"
    group = sentinel.config(settings)
    if group and redis_url == group.url:  # the primary the sentinels name, wherever it moves
        return RedisSentinelStorage(redis_url, key_prefix=prefix, socket_timeout=5,
                                    socket_connect_timeout=5, **group.limits_options())  # fmt: skip
    # Timeouts: a half-open connection must not hang a unit inside the limiter forever.
    return RedisStorage(redis_url, key_prefix=prefix, socket_timeout=5, socket_connect_timeout=5)
