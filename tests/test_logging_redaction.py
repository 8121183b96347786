"""Secrets never leave the process through a log line: scrub, redact, the configured pipeline."""

from __future__ import annotations

import contextlib
import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
import structlog

from importq.logging import REDACTED, configure, redact, scrub
from importq.settings import Secret, Settings, known_secret_values

# Distinctive values, registered as secrets the way settings.secret() registers them.
TOKEN = "tok-7c1e2f9a-redaction-test"
API_KEY = "key-5b8d04e6-redaction-test"
SECRETS = (Secret(TOKEN), Secret(API_KEY))


@contextlib.contextmanager
def configured(log_format: str = "json") -> Iterator[io.StringIO]:
    """configure() writing into a buffer; logging and structlog are put back afterwards."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    structlog_config = structlog.get_config()
    quiet = {name: logging.getLogger(name).level for name in ("httpx", "httpcore")}
    stream = io.StringIO()
    try:
        configure(Settings(log_format=log_format, log_level="INFO"), stream=stream)
        yield stream
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
        structlog.configure(**structlog_config)
        for name, old in quiet.items():
            logging.getLogger(name).setLevel(old)


def lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]


# --- scrub and redact --------------------------------------------------------------------------


def test_secret_is_registered_and_never_shown_by_repr() -> None:
    assert TOKEN in known_secret_values()
    assert TOKEN not in repr(SECRETS[0])
    assert TOKEN not in str(SECRETS[0])
    assert f"{SECRETS[0]}" == "Secret('***')"
    assert SECRETS[0].reveal() == TOKEN


def test_secret_looking_keys_are_masked_whatever_their_value() -> None:
    fields = {
        "token": "abc",
        "api_key": "abc",
        "apiKey": "abc",
        "Authorization": "abc",
        "client_secret": "abc",
        "password": "abc",
        "credentials": {"user": "abc"},
        "retries": 3,
        "agent": "demo-agent",
    }
    assert scrub(fields) == {
        "token": REDACTED,
        "api_key": REDACTED,
        "apiKey": REDACTED,
        "Authorization": REDACTED,
        "client_secret": REDACTED,
        "password": REDACTED,
        "credentials": REDACTED,
        "retries": 3,
        "agent": "demo-agent",
    }


def test_known_secret_value_is_masked_inside_free_text() -> None:
    assert scrub(f"calling with {TOKEN}, then {API_KEY}.") == f"calling with {REDACTED}, then ***."


def test_known_secret_value_is_masked_in_nested_dicts_and_lists() -> None:
    value: dict[str, Any] = {
        "request": {"headers": [("X", f"v={TOKEN}")], "params": [1, {"k": API_KEY}]}
    }
    scrubbed = scrub(value)
    assert scrubbed == {"request": {"headers": [["X", "v=***"]], "params": [1, {"k": "***"}]}}
    assert value["request"]["params"][1] == {"k": API_KEY}  # a copy: the original is untouched


def test_exception_is_rendered_with_its_message_scrubbed() -> None:
    assert (
        scrub(RuntimeError(f"login refused for {TOKEN}")) == "RuntimeError: login refused for ***"
    )


def test_bearer_basic_and_apikey_credentials_in_text_are_masked() -> None:
    text = "sent Authorization: Bearer abc.DEF-123_x and apikey s3cr3tvalue, then Basic dXNlcjpw=="
    assert scrub(text) == "sent Authorization: Bearer *** and apikey ***, then Basic ***"


def test_words_after_bearer_that_are_not_credentials_survive() -> None:
    assert scrub("bearer of bad news") == "bearer of bad news"  # 'of' is too short to be a token
    assert scrub("unit r-12 took 3.2 s") == "unit r-12 took 3.2 s"


def test_redact_processor_masks_keys_and_values_but_keeps_the_event() -> None:
    event = {
        "event": f"started with {TOKEN}",
        "token": "anything",
        "unit": "j:0",
        "detail": {"note": f"Bearer {API_KEY}"},
    }
    out = redact(None, "info", event)
    assert out == {
        "event": "started with ***",
        "token": REDACTED,
        "unit": "j:0",
        "detail": {"note": "Bearer ***"},
    }


# --- the configured pipeline -------------------------------------------------------------------


def test_json_line_keeps_the_bound_context_but_not_the_secret() -> None:
    with configured() as stream:
        log = structlog.get_logger("importq.test").bind(unit="job1:0")
        with structlog.contextvars.bound_contextvars(job="job1", target="sourcing_data"):
            log.info(
                "request sent",
                token=TOKEN,
                headers={"Authorization": f"Bearer {TOKEN}"},
                note=f"retrying with key {API_KEY}",
                records=500,
            )
    output = stream.getvalue()
    assert TOKEN not in output
    assert API_KEY not in output
    (line,) = lines(stream)
    assert line["event"] == "request sent"
    assert (line["job"], line["unit"], line["target"]) == ("job1", "job1:0", "sourcing_data")
    assert line["records"] == 500
    assert line["token"] == REDACTED
    assert line["headers"] == {"Authorization": REDACTED}
    assert line["note"] == "retrying with key ***"
    assert line["level"] == "info"
    assert "timestamp" in line


def test_logged_exception_traceback_does_not_carry_the_secret() -> None:
    with configured() as stream:
        log = structlog.get_logger("importq.test")
        try:
            raise PermissionError(f"vendor refused token {TOKEN}")
        except PermissionError:
            log.exception("call failed", unit="job2:1")
    output = stream.getvalue()
    assert TOKEN not in output
    (line,) = lines(stream)
    assert line["unit"] == "job2:1"
    assert "PermissionError: vendor refused token ***" in line["exception"]
    assert "Traceback" in line["exception"]


def test_exception_passed_as_a_value_is_scrubbed() -> None:
    with configured() as stream:
        error = ConnectionError(f"could not reach https://x/?apikey={API_KEY}")
        structlog.get_logger("importq.test").warning("retrying", error=error)
    assert API_KEY not in stream.getvalue()
    (line,) = lines(stream)
    assert line["error"] == "ConnectionError: could not reach https://x/?apikey=***"


def test_stdlib_log_records_go_through_the_same_redaction() -> None:
    with configured() as stream:
        logging.getLogger("celery.worker").warning("connected with %s", TOKEN)
    assert TOKEN not in stream.getvalue()
    (line,) = lines(stream)
    assert line["event"] == "connected with ***"
    assert line["logger"] == "celery.worker"


def test_key_value_format_is_redacted_too() -> None:
    with configured("kv") as stream:
        structlog.get_logger("importq.test").info("hello", password=TOKEN, unit="j:3")
    output = stream.getvalue()
    assert TOKEN not in output
    assert "event='hello'" in output
    assert "password='***'" in output
    assert "unit='j:3'" in output


def test_records_below_the_configured_level_are_dropped() -> None:
    with configured() as stream:
        structlog.get_logger("importq.test").debug("noise")
        logging.getLogger("httpx").info("HTTP Request: POST ...")
    assert stream.getvalue() == ""


# --- deep nesting and sets --------------------------------------------------------------------


def nested(depth: int, leaf: Any) -> Any:
    """`leaf` under `depth` levels of dicts: {"k": {"k": ... leaf}}."""
    value = leaf
    for _ in range(depth):
        value = {"k": value}
    return value


def test_known_secret_value_is_masked_however_deep_it_is_nested() -> None:
    deep = {"a": {"b": {"c": {"d": {"e": {"f": TOKEN}}}}}}
    assert scrub(deep) == {"a": {"b": {"c": {"d": {"e": {"f": REDACTED}}}}}}


@pytest.mark.parametrize("depth", [11, 12, 13, 40])
def test_scrub_keeps_the_structure_to_depth_12_and_masks_the_text_beyond(depth: int) -> None:
    scrubbed = scrub(nested(depth, {"password": "unregistered", "note": f"with {TOKEN}"}))
    assert TOKEN not in repr(scrubbed)
    kept = scrubbed
    for _ in range(min(depth, 13)):  # containers at depth 0..12 stay containers
        assert isinstance(kept, dict)
        kept = kept["k"]
    if depth <= 12:
        assert kept == {"password": REDACTED, "note": "with ***"}
    else:  # what lies deeper is rendered as its repr, with the secret values masked
        assert isinstance(kept, str)
        assert "'note': 'with ***'" in kept


def test_secret_deep_in_a_log_line_does_not_reach_the_output() -> None:
    with configured() as stream:
        structlog.get_logger("importq.test").info("deep", payload=nested(30, f"Bearer {TOKEN}"))
    assert TOKEN not in stream.getvalue()
    (line,) = lines(stream)
    assert "Bearer ***" in json.dumps(line["payload"])


@pytest.mark.parametrize("kind", [set, frozenset])
def test_known_secret_value_in_a_set_is_scrubbed_into_a_list(kind: type) -> None:
    scrubbed = scrub({"seen": kind({TOKEN, "plain"}), "nested": [kind({API_KEY})]})
    assert isinstance(scrubbed["seen"], list)
    assert sorted(scrubbed["seen"]) == [REDACTED, "plain"]
    assert scrubbed["nested"] == [[REDACTED]]


def test_known_secret_value_in_a_set_is_masked() -> None:
    with configured() as stream:
        structlog.get_logger("importq.test").info("tokens", seen={TOKEN}, keys=frozenset({API_KEY}))
    output = stream.getvalue()
    assert TOKEN not in output
    assert API_KEY not in output
    (line,) = lines(stream)
    assert (line["seen"], line["keys"]) == ([REDACTED], [REDACTED])


def test_api_key_header_spelled_with_a_hyphen_is_masked() -> None:
    assert scrub({"X-Api-Key": "unregistered-value"}) == {"X-Api-Key": REDACTED}


# --- every secret-looking key, wherever it sits in a line --------------------------------------

# Field names a log line may carry a credential under: the vendors' own spellings, and the
# names of the README's secret settings (a settings or environment dump).
SECRET_KEYS = [
    "token", "access_token", "refreshToken", "password", "passwd", "secret", "client_secret",
    "api_key", "apikey", "apiKey", "api-key", "X-Api-Key", "APIKeyHeader", "Authorization",
    "proxy-authorization", "credential", "credentials", "IntegrationKey", "integration_key",
    "SOURCING_DATA_TOKEN", "BLUE_API_KEY", "WORKFLOW_IMPORT_API_KEY",
    "DATASOURCE_INTEGRATION_KEY", "BLUESHIFT_API_KEY", "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN", "FLOWER_BASIC_AUTH", "basic_auth", "HTTP_BATCH_AUTH_SECRET",
    "REDIS_PASSWORD", "REDIS_SENTINEL_PASSWORD",
]  # fmt: skip
PLAIN_KEYS = ["unit", "job", "target", "records", "attempt", "delay", "monkey", "keys", "author"]


@pytest.mark.parametrize("key", SECRET_KEYS)
def test_a_secret_looking_key_is_masked_at_the_top_of_a_line_and_nested(key: str) -> None:
    unregistered = f"unregistered-{key}-value"  # masked for its key alone, not its value
    event = {"event": "calling", key: unregistered, "detail": {key: unregistered}}
    assert redact(None, "info", event) == {
        "event": "calling", key: REDACTED, "detail": {key: REDACTED}
    }  # fmt: skip


@pytest.mark.parametrize("key", PLAIN_KEYS)
def test_ordinary_keys_are_kept(key: str) -> None:
    assert redact(None, "info", {"event": "e", key: "kept"}) == {"event": "e", key: "kept"}


def test_secret_keys_are_masked_in_the_configured_json_line() -> None:
    fields = {key.replace("-", "_"): f"unregistered-{n}" for n, key in enumerate(SECRET_KEYS)}
    with configured() as stream:
        structlog.get_logger("importq.test").warning("settings", unit="j:0", **fields)
    (line,) = lines(stream)
    assert "unregistered-" not in stream.getvalue()
    assert all(line[name] == REDACTED for name in fields)
    assert line["unit"] == "j:0"


def test_every_secret_setting_is_masked_wherever_its_value_appears() -> None:
    env = {name: f"value-of-{name.lower()}-0b7e" for name in SECRET_KEYS if name.isupper()}
    settings = Settings(env=env)
    for name in env:
        settings.secret(name)  # how targets read them: the value is registered for redaction
    with configured() as stream:
        log = structlog.get_logger("importq.test")
        for name, value in env.items():
            log.error(f"vendor said: {value} is not valid", note=[f"sent {value}"], where=name)
            logging.getLogger("httpx").error("POST https://vendor/?k=%s failed", value)
            try:
                raise ValueError(f"refused {value}")
            except ValueError:
                log.exception("call failed")
    output = stream.getvalue()
    leaked = [name for name, value in env.items() if value in output]
    assert leaked == []
    assert output.count(REDACTED) >= 4 * len(env)
