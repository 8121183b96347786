"""structlog set-up: JSON lines off a TTY, key=value on one, secrets redacted.

Celery's and the libraries' stdlib log records go through the same
processors, so one redaction step covers every line the process writes.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

from importq.errors import ConfigError
from importq.settings import Settings, known_secret_values, load

REDACTED = "***"
CLI_HANDLER_NAME = "importq-command"  # the root handler configure_command adds
# Field names that carry credentials: the generic ones, Data Source's IntegrationKey and
# Flower's FLOWER_BASIC_AUTH (the README's secret settings all match one of these).
_SECRET_KEY = re.compile(
    r"token|secret|password|passwd|api[_-]?key|integration[_-]?key|basic[_-]?auth"
    r"|authorization|credential",
    re.I,
)
_SECRET_TEXT = re.compile(r"(?i)\b(bearer|basic|apikey)\s+[A-Za-z0-9._~+/=-]{4,}")


def _scrub_text(text: str) -> str:
    text = _SECRET_TEXT.sub(lambda m: f"{m.group(1)} {REDACTED}", text)
    for value in known_secret_values():
        if value in text:
            text = text.replace(value, REDACTED)
    return text


def scrub(value: Any, depth: int = 0) -> Any:
    """A copy of `value` with secret-looking keys and every known secret value masked."""
    if isinstance(value, str):
        return _scrub_text(value)
    if depth > 12:  # deeper than any log line needs: keep its text, masked
        return _scrub_text(repr(value))
    if isinstance(value, dict):
        return {
            k: REDACTED if isinstance(k, str) and _SECRET_KEY.search(k) else scrub(v, depth + 1)
            for k, v in value.items()
        }
    if isinstance(value, list | tuple | set | frozenset):
        return [scrub(v, depth + 1) for v in value]
    if isinstance(value, BaseException):
        return _scrub_text(f"{type(value).__name__}: {value}")
    return value


def redact(_: Any, __: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """structlog processor: nothing secret leaves the process through a log line."""
    for key, value in list(event_dict.items()):
        if _SECRET_KEY.search(key) and key != "event":
            event_dict[key] = REDACTED
        else:
            event_dict[key] = scrub(value)
    return event_dict


def _redact_exception(
    logger: Any, name: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    if "exception" in event_dict:
        event_dict["exception"] = _scrub_text(str(event_dict["exception"]))
    return event_dict


def configure(settings: Settings, stream: Any = None, *, owns_process: bool = True) -> None:
    """Route structlog and stdlib logging through one redacting pipeline.

    A worker owns its process (`owns_process`): its handler replaces the root logger's and
    loggers are cached on first use. The `importq` command (configure_command) adds its
    handler next to any already there and caches nothing, so that running a command
    in-process (click's CliRunner under pytest) leaves the test's log capture working.
    """
    stream = stream or sys.__stderr__
    as_json = settings.log_format == "json" or (
        settings.log_format == "auto" and not getattr(stream, "isatty", lambda: False)()
    )
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        redact,
    ]
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if as_json
        else structlog.processors.KeyValueRenderer(key_order=["timestamp", "level", "event"])
    )
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=owns_process,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            _redact_exception,
            renderer,
        ],
    )
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    if owns_process:
        root.handlers[:] = [handler]
    else:
        handler.set_name(CLI_HANDLER_NAME)
        handler.setLevel(settings.log_level)  # whatever level a test gives the root logger
        root.handlers[:] = [h for h in root.handlers if h.get_name() != CLI_HANDLER_NAME]
        root.addHandler(handler)
    root.setLevel(settings.log_level)
    # One line per HTTP request would drown the useful lines.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("httpcore").setLevel(logging.WARNING)


def configure_command() -> None:
    """The `importq` command's logging, set up once per process: every line on stderr in
    importq's format (IMPORTQ_LOG_FORMAT, IMPORTQ_LOG_LEVEL) and redacted, never on stdout
    (structlog's default), where people and `--json` readers look."""
    if command_configured():
        return
    try:
        settings = load()
    except ConfigError:  # the command itself refuses the bad variable; its lines stay masked
        settings = Settings()
    configure(settings, owns_process=False)


def command_configured() -> bool:
    """Whether configure_command's handler and importq's processors are in place."""
    ours = any(h.get_name() == CLI_HANDLER_NAME for h in logging.getLogger().handlers)
    return ours and redact in structlog.get_config()["processors"]


def get_logger(name: str = "importq") -> Any:
    return structlog.get_logger(name)
