"""README settings that no other test names: each one reaches the behaviour the table promises.

Each test sets the variable the way an operator would (an environment read by
importq.settings.load) and checks what it changes: a limit, a slot, a request,
a timeout, a log level, a command line.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from importq.cli import main
from importq.errors import RetryableError
from importq.settings import load
from simulators.http import serve
from tests.test_blue_wsdl import Host
from tests.test_logging_redaction import lines
from workers.targets import blue, blueshift, datasource, sourcing_data, workflow_import
from workers.targets.base import Record
from workers.targets.blue.limits import BlueLimits
from workers.targets.blueshift.client import TRIGGER_PATH
from workers.targets.blueshift.limits import BlueshiftLimits
from workers.targets.datasource.client import DataSourceRef

# --- Blue ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("variable", "field", "value"),
    [
        ("BLUE_ROWS_PER_PUSH", "rows_per_push", 250),
        ("BLUE_CONNECT_TIMEOUT", "connect_timeout_seconds", 3.5),
        ("BLUE_TIMEOUT", "read_timeout_seconds", 45.0),
        ("BLUE_PREPARE_TIMEOUT", "long_timeout_seconds", 1800.0),
        ("BLUE_IMPORT_GAP", "import_gap_seconds", 900.0),
        ("BLUE_FOREIGN_RETRY", "foreign_retry_seconds", 120.0),
        ("BLUE_BUSY_RETRY", "busy_retry_seconds", 15.0),
        ("BLUE_PROGRESS_INTERVAL", "progress_interval_seconds", 10.0),
    ],
)
def test_each_blue_setting_sets_its_limit(variable: str, field: str, value: float) -> None:
    limits = BlueLimits.from_settings(load({variable: str(value)}))
    assert getattr(limits, field) == value
    assert getattr(BlueLimits.from_settings(load({})), field) == getattr(BlueLimits(), field)


def test_the_import_gap_setting_is_the_slots_gap() -> None:
    sink = blue.TARGET.sink
    limits = blue.TARGET.limits(load({"BLUE_IMPORT_GAP": "900"}))
    assert sink.slot_gap({"datasource": "Users"}, limits) == 900


def test_the_endpoint_names_the_instance_whose_slot_all_workers_share() -> None:
    wsdl = "https://blue.example.edu/BlueWebService.svc?singleWsdl"
    endpoint = "https://blue-2.example.edu/BlueWebService.svc/file"
    both = BlueLimits.from_settings(load({"BLUE_WSDL_URL": wsdl, "BLUE_ENDPOINT_URL": endpoint}))
    assert both.instance == "https://blue-2.example.edu/BlueWebService.svc"  # the endpoint wins
    only_wsdl = BlueLimits.from_settings(load({"BLUE_WSDL_URL": wsdl}))
    assert only_wsdl.instance == "https://blue.example.edu/BlueWebService.svc"
    sink = blue.TARGET.sink
    slots = {sink.slot({}, limits) for limits in (both, only_wsdl)}
    assert len(slots) == 2 and all(cap == 1 for _, cap in slots)


def test_the_endpoint_setting_is_where_calls_go_whatever_the_wsdl_says() -> None:
    from simulators.blue import FAKE_API_KEY, BlueSimulator
    from simulators.blue_soap import _wsdl_text

    wsdl_host, service = Host(), Host(soap=BlueSimulator())
    servers = serve(wsdl_host), serve(service)
    wsdl_host.pages = {"/BlueWebService.svc?singleWsdl": _wsdl_text()}  # says http://localhost
    try:
        settings = load({"BLUE_WSDL_URL": f"{servers[0].url}/BlueWebService.svc?singleWsdl",
                         "BLUE_ENDPOINT_URL": f"{servers[1].url}/BlueWebService.svc",
                         "BLUE_API_KEY": FAKE_API_KEY})  # fmt: skip
        client = blue.TARGET.client(settings)
        try:
            assert [s.source_id for s in client.datasources()] == ["Data1", "Data2", "Data3"]
        finally:
            client.close()
    finally:
        for server in servers:
            server.stop()
    assert service.seen == ["POST /BlueWebService.svc"]
    assert wsdl_host.seen == ["GET /BlueWebService.svc?singleWsdl"]


# --- Workflow Import Queue ----------------------------------------------------------------------


def people(count: int, size: int = 10) -> Iterator[tuple[Record, str]]:
    for n in range(count):
        yield {"EmployeeId": f"E{n:05d}", "Note": "x" * size}, f"people.jsonl:{n + 1}"


def test_workflow_batches_are_cut_at_the_record_and_byte_settings() -> None:
    sink = workflow_import.TARGET.sink
    by_records = workflow_import.TARGET.limits(load({"WORKFLOW_IMPORT_RECORDS_PER_BATCH": "300"}))
    assert [len(batch) for batch in sink.plan(people(1000), by_records, {})] == [300] * 3 + [100]
    by_bytes = workflow_import.TARGET.limits(load({"WORKFLOW_IMPORT_BYTES_PER_BATCH": "10000"}))
    batches = list(sink.plan(people(1000, size=80), by_bytes, {}))
    assert len(batches) > 1 and sum(len(b) for b in batches) == 1000
    for batch in batches:  # JSON Lines: one line and its newline per record
        assert sum(len(json.dumps(r, separators=(",", ":"))) + 1 for r in batch) <= 10_000


def test_batches_in_flight_is_the_cap_of_the_workflow_slot() -> None:
    sink = workflow_import.TARGET.sink
    limits = workflow_import.TARGET.limits(load({"WORKFLOW_IMPORT_BATCHES_IN_FLIGHT": "3"}))
    assert sink.slot({}, limits) == ("endpoint", 3)


def test_sourcing_data_resends_in_place_as_often_as_its_setting_says() -> None:
    """The breaker and outage tests shorten a 503's in-place resends with this setting;
    unread, each attempt spent its default 6 resends against a vendor that is down."""
    limits = sourcing_data.TARGET.limits(load({"SOURCING_DATA_RESEND_ATTEMPTS": "2"}))
    assert limits.resend_attempts == 2
    assert sourcing_data.TARGET.limits(load({})).resend_attempts == 6


# --- SourcingData, Blueshift, Data Source: requests and timeouts ---------------------------------


@pytest.fixture
def host() -> Iterator[tuple[Host, str]]:
    answering = Host(pages={})
    server = serve(answering)
    yield answering, server.url
    server.stop()


def test_the_sourcing_data_client_id_goes_with_every_request(host: tuple[Host, str]) -> None:
    seen, url = host
    seen.fallback = "{}"
    env = {"SOURCING_DATA_URL": f"{url}/api/asol/ds", "SOURCING_DATA_TOKEN": "t-1234",
           "SOURCING_DATA_AGENT_ID": "agent", "SOURCING_DATA_CLIENT_ID": "client-7"}  # fmt: skip
    settings = load(env)
    client = sourcing_data.TARGET.client(settings)
    try:
        client.list_items()
    finally:
        client.close()
    (request,) = seen.seen
    assert "clientId=client-7" in request


def test_blueshift_url_is_where_triggers_go(host: tuple[Host, str]) -> None:
    seen, url = host
    settings = load({"BLUESHIFT_URL": url, "BLUESHIFT_API_KEY": "k-1234"})
    client = blueshift.TARGET.client(settings).api
    with pytest.raises(Exception, match="404"):  # this host is no Blueshift: it answers 404
        client.trigger("8a6f5c2e-0000-4000-8000-000000000001")
    client.close()
    assert seen.seen == [f"POST {TRIGGER_PATH}"]


def test_blueshift_attempt_and_timeout_settings_set_their_limits() -> None:
    env = {"BLUESHIFT_500_ATTEMPTS": "7", "BLUESHIFT_TIMEOUT": "12.5"}
    limits = BlueshiftLimits.from_settings(load(env))
    assert (limits.server_error_attempts, limits.request_timeout_seconds) == (7, 12.5)
    defaults = BlueshiftLimits.from_settings(load({}))
    assert (defaults.server_error_attempts, defaults.request_timeout_seconds) == (3, 30.0)


@pytest.fixture
def black_hole() -> Iterator[str]:
    """An address whose connections are accepted (by the kernel) and never answered."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"


def times_out(call: Callable[[], Any], deadline: float = 30) -> BaseException:
    """The error `call` ends with; fails if it is still waiting at the (generous) deadline."""
    caught: list[BaseException] = []

    def run() -> None:
        try:
            call()
        except BaseException as error:
            caught.append(error)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(deadline)
    assert not thread.is_alive(), "still waiting: the timeout setting was not applied"
    assert caught, "the call answered"
    return caught[0]


def test_datasource_timeout_bounds_a_request_that_never_answers(black_hole: str) -> None:
    env = {"DATASOURCE_URL": f"{black_hole}/api/v2/datasource", "DATASOURCE_TIMEOUT": "0.5",
           "DATASOURCE_COMPANY_ID": "1", "DATASOURCE_INTEGRATION_KEY": "k-1"}  # fmt: skip
    settings = load(env)
    client = datasource.TARGET.client(settings)
    error = times_out(lambda: client.put(DataSourceRef("Sports", external_id="x"), "Rows", []))
    client.close()
    assert isinstance(error, RetryableError) and "timed out" in str(error).lower(), error


def test_blueshift_timeout_bounds_a_trigger_that_never_answers(black_hole: str) -> None:
    settings = load({"BLUESHIFT_URL": black_hole, "BLUESHIFT_TIMEOUT": "0.5",
                     "BLUESHIFT_API_KEY": "k-1234"})  # fmt: skip
    client = blueshift.TARGET.client(settings).api
    error = times_out(lambda: client.trigger("8a6f5c2e-0000-4000-8000-000000000001"))
    client.close()
    assert isinstance(error, RetryableError) and "timed out" in str(error).lower(), error


# --- the core: log level, visibility timeout, Flower ----------------------------------------------


def test_log_level_drops_lines_below_it() -> None:
    import io
    import logging

    import structlog

    from importq.logging import configure

    root = logging.getLogger()
    handlers, level, config = root.handlers[:], root.level, structlog.get_config()
    stream = io.StringIO()
    try:
        configure(load({"IMPORTQ_LOG_LEVEL": "warning", "IMPORTQ_LOG_FORMAT": "json"}), stream)
        log = structlog.get_logger("importq.test")
        log.info("routine")
        log.warning("worth a look")
        logging.getLogger("celery.worker").info("celery chatter")
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
        structlog.configure(**config)
    assert [line["event"] for line in lines(stream)] == ["worth a look"]


def test_visibility_timeout_setting_reaches_the_broker_transport() -> None:
    env = {**os.environ, "IMPORTQ_VISIBILITY_TIMEOUT": "7777"}
    code = (
        "from workers import app\n"
        "print(app.app.conf.broker_transport_options['visibility_timeout'])"
    )
    shown = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                           timeout=60, check=True)  # fmt: skip
    assert shown.stdout.strip().splitlines()[-1] == "7777"


def test_flower_port_and_address_come_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)  # no .env of the repository's
    started: list[list[str]] = []

    def execv(path: str, argv: list[str]) -> None:
        started.append(argv)

    monkeypatch.setattr(os, "execv", execv)
    monkeypatch.delenv("FLOWER_BASIC_AUTH", raising=False)
    env = {"FLOWER_PORT": "5599", "FLOWER_ADDRESS": "0.0.0.0"}
    refused = CliRunner().invoke(main, ["flower"], env=env)
    assert refused.exit_code != 0 and started == []  # beyond this machine without a login
    allowed = CliRunner().invoke(main, ["flower"], env={**env, "FLOWER_BASIC_AUTH": "ops:pw-1"})
    assert allowed.exit_code == 0, allowed.output
    (argv,) = started
    assert "--port=5599" in argv and "--address=0.0.0.0" in argv
    assert not any("pw-1" in arg for arg in argv)  # the login stays off the command line


def test_the_overall_queue_bound_applies_to_every_target_unless_one_has_its_own() -> None:
    from producers.publish import max_queued_units

    settings = load({"IMPORTQ_MAX_QUEUED_UNITS": "50", "IMPORTQ_MAX_QUEUED_UNITS_BLUE": "2"})
    assert max_queued_units(settings, "blue") == 2
    assert max_queued_units(settings, "sourcing_data") == 50
    assert max_queued_units(load({}), "sourcing_data") == 0  # off by default
