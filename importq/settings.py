"""Frozen settings read once from the environment (and an optional .env file).

Every variable is listed in the README's configuration table. Secrets are kept
in `Secret`, whose repr never shows the value, and are registered with the log
redaction so they cannot leak even through an exception message.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from importq.errors import ConfigError

_SECRET_VALUES: set[str] = set()


class Secret:
    """A credential: usable with `.reveal()`, shown everywhere else as '***'."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value
        if value:
            _SECRET_VALUES.add(value)

    def reveal(self) -> str:
        return self._value

    def __bool__(self) -> bool:
        return bool(self._value)

    def __repr__(self) -> str:
        return "Secret('***')" if self._value else "Secret('')"

    __str__ = __repr__


def known_secret_values() -> frozenset[str]:
    """Every secret value loaded so far, for the log redaction processor."""
    return frozenset(_SECRET_VALUES)


def _default_home() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "importq"


@dataclass(frozen=True)
class Settings:
    redis_url: str | None = None
    home: Path = field(default_factory=_default_home)
    lease_seconds: float = 30.0
    reaper_interval: float = 5.0
    visibility_timeout: int = 4 * 3600
    max_attempts: int = 8
    max_crashes: int = 5
    backoff_base: float = 1.0
    backoff_max: float = 300.0
    retry_grace: float = 60.0
    rescue_seconds: float = 300.0
    unit_time_limit: float = 3 * 3600
    max_wait_seconds: float = 86400.0
    allow_eviction: bool = False
    staging_ttl: float = 6 * 3600
    job_ttl: int = 14 * 86400
    log_format: str = "auto"
    log_level: str = "INFO"
    env: Mapping[str, str] = field(default_factory=dict, repr=False)

    def get(self, name: str, default: str = "") -> str:
        """A raw variable, for target packages that read their own settings."""
        return self.env.get(name, default)

    def secret(self, name: str) -> Secret:
        return Secret(self.env.get(name, ""))

    def number(self, name: str, default: float) -> float:
        return _number(self.env, name, default)

    def integer(self, name: str, default: int) -> int:
        return int(_number(self.env, name, default))

    def max_wait(self, target: str) -> float:
        """Seconds a unit may wait without using attempts (a slot, its turn) before failing."""
        return self.number(f"IMPORTQ_MAX_WAIT_SECONDS_{target.upper()}", self.max_wait_seconds)

    def tightened(self, name: str, vendor_limit: int) -> int:
        """A vendor's hard limit: a setting may lower it (to 1 at least), never raise it."""
        return max(1, min(vendor_limit, self.integer(name, vendor_limit)))


def _number(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a number; unset it or give a number") from None
    if value < 0:
        raise ConfigError(f"{name}={raw!r} must not be negative")
    return value


def load(env: Mapping[str, str] | None = None) -> Settings:
    """Settings from `env` (default: the process environment plus ./.env)."""
    if env is None:
        from dotenv import find_dotenv, load_dotenv

        # usecwd: the .env of the directory importq runs in, not of the installed package.
        load_dotenv(find_dotenv(usecwd=True), override=False)
        env = dict(os.environ)
    home = env.get("IMPORTQ_HOME")
    return Settings(
        redis_url=env.get("REDIS_URL") or None,
        home=Path(home) if home else _default_home(),
        lease_seconds=_number(env, "IMPORTQ_LEASE_SECONDS", 30.0),
        reaper_interval=_number(env, "IMPORTQ_REAPER_INTERVAL", 5.0),
        visibility_timeout=int(_number(env, "IMPORTQ_VISIBILITY_TIMEOUT", 4 * 3600)),
        max_attempts=int(_number(env, "IMPORTQ_MAX_ATTEMPTS", 8)),
        max_crashes=int(_number(env, "IMPORTQ_MAX_CRASHES", 5)),
        backoff_base=_number(env, "IMPORTQ_BACKOFF_BASE", 1.0),
        backoff_max=_number(env, "IMPORTQ_BACKOFF_MAX", 300.0),
        retry_grace=_number(env, "IMPORTQ_RETRY_GRACE", 60.0),
        rescue_seconds=_number(env, "IMPORTQ_RESCUE_SECONDS", 300.0),
        unit_time_limit=_number(env, "IMPORTQ_UNIT_TIME_LIMIT", 3 * 3600),
        max_wait_seconds=_number(env, "IMPORTQ_MAX_WAIT_SECONDS", 86400.0),
        staging_ttl=_number(env, "IMPORTQ_STAGING_TTL", 6 * 3600),
        allow_eviction=env.get("IMPORTQ_ALLOW_EVICTION", "").lower() in ("1", "true", "yes"),
        job_ttl=int(_number(env, "IMPORTQ_JOB_TTL", 14 * 86400)),
        log_format=env.get("IMPORTQ_LOG_FORMAT", "auto"),
        log_level=env.get("IMPORTQ_LOG_LEVEL", "INFO").upper(),
        env=env,
    )
