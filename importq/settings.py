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

import structlog

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
        """A raw variable, for target packages that read their own settings. Empty is unset:
        docker-compose passes a variable nobody set as an empty ${VAR:-} reference."""
        value = self.env.get(name, "")
        return value if value.strip() else default

    def secret(self, name: str) -> Secret:
        return Secret(self.env.get(name, ""))

    def number(
        self,
        name: str,
        default: float,
        *,
        minimum: float = 0.0,
        maximum: float | None = None,
        above: float | None = None,
    ) -> float:
        """A number setting; ConfigError naming the variable and the range it takes.

        `minimum` and `maximum` are inclusive; `above` excludes its bound (timeouts above 0).
        """
        return _number(self.env, name, default, minimum=minimum, maximum=maximum, above=above)

    def integer(
        self, name: str, default: int, *, minimum: int = 0, maximum: int | None = None
    ) -> int:
        """A whole-number setting ("2.5" is refused, not truncated)."""
        return _integer(self.env, name, default, minimum=minimum, maximum=maximum)

    def choice(self, name: str, default: str, choices: tuple[str, ...]) -> str:
        """One of `choices` (compared without case); anything else is a ConfigError."""
        return _choice(self.env, name, default, choices)

    def flag(self, name: str, default: bool = False) -> bool:
        """A true/false setting; anything else is a ConfigError rather than a silent default."""
        return _flag(self.env, name, default)

    def max_wait(self, target: str) -> float:
        """Seconds a unit may wait without using attempts (a slot, its turn) before failing."""
        return self.number(f"IMPORTQ_MAX_WAIT_SECONDS_{target.upper()}", self.max_wait_seconds)

    def tightened(self, name: str, vendor_limit: int) -> int:
        """A vendor's hard limit: a setting may lower it (to 1 at least), never raise it.

        Below 1 is refused (0 records per request means nothing); above the vendor's limit
        the limit is used and a warning says so, once per process and value.
        """
        value = _integer(self.env, name, vendor_limit, minimum=1, limit=vendor_limit)
        if value <= vendor_limit:
            return value
        if (name, value) not in _CLAMPS_SAID:
            _CLAMPS_SAID.add((name, value))
            _log.warning(
                "setting above the vendor's limit: the limit is used",
                variable=name,
                value=self.env.get(name),
                used=vendor_limit,
            )
        return vendor_limit


_log = structlog.get_logger("importq.settings")
_CLAMPS_SAID: set[tuple[str, int]] = set()
_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})


def _shown(value: float) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _raw(env: Mapping[str, str], name: str) -> str | None:
    raw = env.get(name)
    return None if raw is None or raw.strip() == "" else raw


def _accepted(
    default: float,
    minimum: float,
    maximum: float | None,
    above: float | None,
    whole: bool,
    limit: int | None = None,
) -> str:
    kind = "a whole number" if whole else "a number"
    if limit is not None:
        span = f"from {_shown(minimum)} to {limit} (the vendor's limit; higher is clamped)"
    elif above is not None:
        span = f"above {_shown(above)}" + (f" up to {_shown(maximum)}" if maximum else "")
    elif maximum is not None:
        span = f"from {_shown(minimum)} to {_shown(maximum)}"
    else:
        span = f"of at least {_shown(minimum)}"
    return f"accepted: {kind} {span}; unset it for the default ({_shown(default)})"


def _number(
    env: Mapping[str, str],
    name: str,
    default: float,
    *,
    minimum: float = 0.0,
    maximum: float | None = None,
    above: float | None = None,
) -> float:
    raw = _raw(env, name)
    if raw is None:
        return default
    accepted = _accepted(default, minimum, maximum, above, whole=False)
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a number; {accepted}") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise ConfigError(f"{name}={raw!r} is not a finite number; {accepted}")
    if above is not None and value <= above:
        raise ConfigError(f"{name}={raw!r} must be above {_shown(above)}; {accepted}")
    _in_range(name, raw, value, minimum, maximum, accepted)
    return value


def _in_range(
    name: str, raw: str, value: float, minimum: float, maximum: float | None, accepted: str
) -> None:
    if value < minimum:
        raise ConfigError(f"{name}={raw!r} must be at least {_shown(minimum)}; {accepted}")
    if maximum is not None and value > maximum:
        raise ConfigError(f"{name}={raw!r} must be at most {_shown(maximum)}; {accepted}")


def _integer(
    env: Mapping[str, str],
    name: str,
    default: int,
    *,
    minimum: int = 0,
    maximum: int | None = None,
    limit: int | None = None,
) -> int:
    """`limit`: a vendor limit the caller clamps to, named in the message but not refused."""
    raw = _raw(env, name)
    if raw is None:
        return default
    accepted = _accepted(default, minimum, maximum, None, whole=True, limit=limit)
    try:
        value = int(raw.strip())
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a whole number; {accepted}") from None
    _in_range(name, raw, value, minimum, maximum, accepted)
    return value


def _choice(env: Mapping[str, str], name: str, default: str, choices: tuple[str, ...]) -> str:
    raw = _raw(env, name)
    if raw is None:
        return default
    for choice in choices:
        if raw.strip().lower() == choice.lower():
            return choice
    raise ConfigError(f"{name}={raw!r} is not one of {', '.join(choices)}; unset it for {default}")


def _flag(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = _raw(env, name)
    if raw is None:
        return default
    if raw.strip().lower() in _TRUE:
        return True
    if raw.strip().lower() in _FALSE:
        return False
    raise ConfigError(f"{name}={raw!r} is not a boolean; use true or false")


LOG_FORMATS = ("auto", "json", "kv")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


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
        lease_seconds=_number(env, "IMPORTQ_LEASE_SECONDS", 30.0, above=0),
        reaper_interval=_number(env, "IMPORTQ_REAPER_INTERVAL", 5.0, above=0),
        visibility_timeout=_integer(env, "IMPORTQ_VISIBILITY_TIMEOUT", 4 * 3600, minimum=1),
        max_attempts=_integer(env, "IMPORTQ_MAX_ATTEMPTS", 8, minimum=1),
        max_crashes=_integer(env, "IMPORTQ_MAX_CRASHES", 5, minimum=1),
        backoff_base=_number(env, "IMPORTQ_BACKOFF_BASE", 1.0),
        backoff_max=_number(env, "IMPORTQ_BACKOFF_MAX", 300.0),
        retry_grace=_number(env, "IMPORTQ_RETRY_GRACE", 60.0),
        rescue_seconds=_number(env, "IMPORTQ_RESCUE_SECONDS", 300.0, above=0),
        unit_time_limit=_number(env, "IMPORTQ_UNIT_TIME_LIMIT", 3 * 3600, above=0),
        max_wait_seconds=_number(env, "IMPORTQ_MAX_WAIT_SECONDS", 86400.0),
        staging_ttl=_number(env, "IMPORTQ_STAGING_TTL", 6 * 3600, above=0),
        allow_eviction=_flag(env, "IMPORTQ_ALLOW_EVICTION", False),
        job_ttl=_integer(env, "IMPORTQ_JOB_TTL", 14 * 86400, minimum=1),
        log_format=_choice(env, "IMPORTQ_LOG_FORMAT", "auto", LOG_FORMATS),
        log_level=_choice(env, "IMPORTQ_LOG_LEVEL", "INFO", LOG_LEVELS),
        env=env,
    )
