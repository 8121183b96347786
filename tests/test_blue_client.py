"""The Blue zeep client against the simulator via httpx.MockTransport: wire and errors."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest

from importq.errors import (
    AuthError,
    FinalError,
    NotApplied,
    NotFoundError,
    RejectedError,
    RetryableError,
    TargetError,
)
from importq.settings import Secret
from simulators.blue import FAKE_API_KEY, BlueSimulator
from workers.targets.blue.answers import ImportOptions
from workers.targets.blue.client import BlueClient
from workers.targets.blue.limits import BlueLimits, instance_of
from workers.targets.blue.refusals import BlueBusy, TransactionLost

SVC = "http://blue.test/BlueWebService.svc"
USERS = ["USER_ID", "FIRST_NAME", "LAST_NAME", "EMAIL"]
CANARY_KEY = "canary-blue-key-7d41e0"


class Recorder:
    """Passes requests to the simulator and keeps them, to look at what went on the wire."""

    def __init__(self, sim: BlueSimulator) -> None:
        self.sim = sim
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return self.sim(request)

    def body_of(self, operation: str) -> str:
        found = [r for r in self.requests if operation in r.content.decode()]
        return found[-1].content.decode()


def client_for(
    handler: Callable[[httpx.Request], httpx.Response],
    *,
    version: str = "1.2",
    key: str = FAKE_API_KEY,
    wsdl: str | None = None,
    limits: BlueLimits | None = None,
) -> BlueClient:
    endpoint = SVC if version == "1.2" else SVC + "/file"
    return BlueClient(Secret(key), wsdl=wsdl, endpoint=None if wsdl else endpoint,
                      soap_version=version, limits=limits,
                      transport=httpx.MockTransport(handler))  # fmt: skip


def import_two_users(client: BlueClient) -> int:
    transaction_id = client.register("Data1", ImportOptions())
    rows: list[list[str | None]] = [["u1", "A", "B", "a@x"], ["u2", "C", "D", None]]
    client.push(transaction_id, "Users", USERS, rows)
    client.prepare(transaction_id)
    client.finalize(transaction_id)
    return transaction_id


@pytest.mark.parametrize("version", ["1.1", "1.2"])
def test_both_soap_versions_import_a_datasource(version: str) -> None:
    sim = BlueSimulator()
    client = client_for(sim, version=version)
    assert [s.caption for s in client.datasources()] == ["Users", "Courses", "CourseStudents"]
    assert client.data_blocks("Data1")[0].columns == tuple(USERS)
    import_two_users(client)
    ledger = sim.ledger()
    assert ledger["committed"] == {"Data1": 2}
    assert ledger["requests"][f"soap{version}"] > 0
    assert client.progress("Data1") == 100


def test_soap12_carries_exactly_one_ws_addressing_action() -> None:
    recorder = Recorder(BlueSimulator())
    import_two_users(client_for(recorder))
    for request in recorder.requests:
        body = request.content.decode()
        assert body.count("Action>") == 2, body[:400]  # <wsa:Action>...</wsa:Action>
        assert request.headers["Content-Type"].startswith("application/soap+xml")


def test_soap11_names_the_operation_in_soapaction() -> None:
    recorder = Recorder(BlueSimulator())
    import_two_users(client_for(recorder, version="1.1"))
    actions = [r.headers["SOAPAction"] for r in recorder.requests]
    assert '"http://tempuri.org/IBlueWebService/PrepareDataToFinzalizeImportV2"' in actions


def test_header_spelling_follows_the_wsdl_per_operation() -> None:
    recorder = Recorder(BlueSimulator())
    transaction_id = import_two_users(client_for(recorder))
    assert f"TransactionId>{transaction_id}<" in recorder.body_of("DataObjectTransferRequestV2")
    assert f"TransactionID>{transaction_id}<" in recorder.body_of("FinalizeImportRequest")


def test_the_prepare_spelling_comes_from_the_wsdl() -> None:
    sim = BlueSimulator()
    sim.configure(prepare_operation="PrepareDataToFinalizeImportV2")
    from_service = client_for(sim, wsdl=f"{SVC}?wsdl")
    import_two_users(from_service)  # the served WSDL declares the corrected spelling
    assert from_service.prepare_operation == "PrepareDataToFinalizeImportV2"
    bundled = client_for(sim)  # the bundled WSDL declares the typo this service lacks
    transaction_id = bundled.current_import().transaction_id + 0
    with pytest.raises(FinalError, match="ContractFilter"):
        bundled.prepare(transaction_id)


def test_endpoint_setting_overrides_the_wsdl_address() -> None:
    recorder = Recorder(BlueSimulator())
    client = BlueClient(Secret(FAKE_API_KEY), wsdl=f"{SVC}?wsdl",
                        endpoint="http://other.test/BlueWebService.svc",
                        transport=httpx.MockTransport(recorder))  # fmt: skip
    client.datasources()
    assert str(recorder.requests[-1].url) == "http://other.test/BlueWebService.svc"


@pytest.mark.parametrize(
    ("config", "call", "error", "phrase"),
    [
        ({"api_key": "another"}, "datasources", AuthError, "INVALID_APIKEY"),
        ({"ip_denied": True}, "datasources", AuthError, "IP_ADDR_DENIED"),
        ({}, "register_unknown", NotFoundError, "datasource does not exist"),
        ({}, "register_twice", BlueBusy, "currently being imported by another process"),
        ({"fault_rate": 1.0, "fault_kinds": ("database",)}, "datasources", RetryableError,
         "Cannot connect to the database"),
        ({"fault_rate": 1.0, "fault_kinds": ("http503",)}, "datasources", RetryableError, "503"),
        ({"fault_rate": 1.0, "fault_kinds": ("http500",)}, "datasources", RetryableError,
         "unable to process"),
        ({}, "push_missing_column", FinalError, "Missing value on EMAIL field"),
        ({}, "push_unknown_block", NotFoundError, "Could not find the data block"),
        ({}, "prepare_empty", FinalError, "imported data table is empty"),
    ],
)  # fmt: skip
def test_blue_answers_map_to_the_error_tree(
    config: dict[str, Any], call: str, error: type[TargetError], phrase: str
) -> None:
    sim = BlueSimulator()
    sim.configure(**config)
    client = client_for(sim)
    with pytest.raises(error, match=phrase) as caught:
        CALLS[call](client)
    assert not isinstance(caught.value, RejectedError)  # one import: never bisected


CALLS: dict[str, Callable[[BlueClient], Any]] = {
    "datasources": lambda c: c.datasources(),
    "register_unknown": lambda c: c.register("Data99", ImportOptions()),
    "register_twice": lambda c: [c.register("Data1", ImportOptions()) for _ in range(2)],
    "push_missing_column": lambda c: c.push(c.register("Data1", ImportOptions()), "Users",
                                            USERS[:3], [["u1", "A", "B"]]),
    "push_unknown_block": lambda c: c.push(c.register("Data1", ImportOptions()), "Nope",
                                           USERS, [["u1", "A", "B", "e"]]),
    "prepare_empty": lambda c: c.prepare(c.register("Data1", ImportOptions())),
}  # fmt: skip


def test_the_other_soap_version_is_a_final_error_naming_the_setting() -> None:
    client = client_for(BlueSimulator(), version="1.2")
    client._endpoint = SVC + "/file"  # a 1.2 client pointed at the 1.1 address
    with pytest.raises(FinalError, match="BLUE_SOAP_VERSION"):
        client.datasources()


@pytest.mark.parametrize(
    ("failure", "not_applied"),
    [(httpx.ReadTimeout("slow"), False), (httpx.ConnectError("refused"), True)],
)
def test_network_failures_are_retryable(failure: Exception, not_applied: bool) -> None:
    wsdl_only = BlueSimulator()

    def handler(request: httpx.Request) -> httpx.Response:
        raise failure

    with pytest.raises(RetryableError) as caught:
        client_for(handler, limits=BlueLimits(resend_attempts=1)).datasources()
    assert isinstance(caught.value, NotApplied) is not_applied
    assert wsdl_only.ledger()["requests"] == {}


def test_an_entity_expansion_answer_is_refused() -> None:
    sim = BlueSimulator()
    sim.configure(hostile_xml=True)
    client = client_for(sim)
    with pytest.raises(FinalError, match="entit"):
        client.cancel(1)
    settings = client._settings
    assert settings.forbid_dtd and settings.forbid_entities and settings.forbid_external
    assert not settings.xml_huge_tree


def test_prepare_and_finalize_get_the_long_read_timeout() -> None:
    sim = BlueSimulator()
    seen: dict[str, float] = {}

    def handler(request: httpx.Request) -> httpx.Response:
        action = request.headers["Content-Type"].rsplit("/", 1)[-1].strip('"')
        seen[action] = request.extensions["timeout"]["read"]
        return sim(request)

    import_two_users(client_for(handler, limits=BlueLimits(read_timeout_seconds=7,
                                                           long_timeout_seconds=3600)))  # fmt: skip
    assert seen["PrepareDataToFinzalizeImportV2"] == seen["FinalizeImport"] == 3600
    assert seen["PushObjectDataV2"] == seen["RegisterImport"] == 7


def test_the_api_key_travels_only_in_its_header_and_never_in_errors() -> None:
    recorder = Recorder(BlueSimulator())  # the simulator expects another key: every call fails
    client = client_for(recorder, key=CANARY_KEY)
    with pytest.raises(AuthError) as caught:
        client.datasources()
    assert CANARY_KEY not in str(caught.value) and CANARY_KEY not in repr(client)
    request = recorder.requests[-1]
    assert f"APIKeyHeader>{CANARY_KEY}</" in request.content.decode()
    assert CANARY_KEY not in str(request.url) and CANARY_KEY not in str(request.headers)


def test_every_address_of_one_instance_shares_one_slot() -> None:
    names = {
        instance_of("https://Blue.example.edu/ws/BlueWebService.svc"),
        instance_of("https://blue.example.edu/ws/BlueWebService.svc/file"),
        instance_of("https://user:pw@blue.example.edu/ws/BlueWebService.svc?wsdl"),
    }
    assert names == {"https://blue.example.edu/ws/BlueWebService.svc"}


# -- the service as it answers (blue-facts.md), and answers no WSDL foresaw --------------------


@pytest.mark.parametrize("element", ["ColumnNamesList", "ColumnNames"])
def test_block_columns_are_read_as_the_service_names_them(element: str) -> None:
    sim = BlueSimulator()
    sim.configure(columns_element=element)
    assert client_for(sim).data_blocks("Data1")[0].columns == tuple(USERS)
    sim.configure(report_columns=False)
    assert client_for(sim).data_blocks("Data1")[0].columns is None  # none reported: None


def test_register_answers_its_status_beside_the_transaction_id() -> None:
    sim = BlueSimulator()
    transaction_id = client_for(sim).register("Data1", ImportOptions())
    assert transaction_id == sim.ledger()["timeline"][0]["id"]


@pytest.mark.parametrize("where", ["body", "header"])
def test_finalize_reads_blues_message_wherever_it_comes(where: str) -> None:
    sim = BlueSimulator()
    sim.configure(finalize_message_in=where)
    client = client_for(sim)
    import_two_users(client)  # Success
    with pytest.raises(TransactionLost, match="Transaction cannot be found"):
        client.finalize(12345)


@pytest.mark.parametrize("version", ["1.1", "1.2"])
def test_answer_elements_no_wsdl_declares_are_tolerated(version: str) -> None:
    sim = BlueSimulator()
    # An element before the declared ones: in order alone, zeep would lose what follows it.
    sim.configure(extra_answer_elements=True)
    client = client_for(sim, version=version)
    assert [s.source_id for s in client.datasources()] == ["Data1", "Data2", "Data3"]
    import_two_users(client)
    assert sim.ledger()["committed"] == {"Data1": 2}
    assert client.current_import().progress == 100
    with pytest.raises(TransactionLost):
        client.finalize(12345)


def test_a_malformed_answer_is_unreadable_not_recovered() -> None:
    """Lax about the schema, strict about XML: a cut-off answer is never half-read."""
    sim = BlueSimulator()
    client = client_for(sim)
    transaction_id = client.register("Data1", ImportOptions())
    client.push(transaction_id, "Users", USERS, [["u1", "A", "B", "a@x"]])
    client.prepare(transaction_id)

    def cut(request: httpx.Request) -> httpx.Response:
        answer = sim(request)
        return httpx.Response(answer.status_code, content=answer.content[:-40],
                              headers=answer.headers)  # fmt: skip

    with pytest.raises(RetryableError, match="unreadable answer"):
        client_for(cut).finalize(transaction_id)


def test_the_bundled_wsdl_declares_what_the_service_answers() -> None:
    from lxml import etree

    from workers.targets.blue.client import BUNDLED_WSDL

    xs = "{http://www.w3.org/2001/XMLSchema}"
    tree = etree.parse(str(BUNDLED_WSDL))

    def members(name: str) -> list[str]:
        found = tree.xpath(f"//*[local-name()='element' or local-name()='complexType']"
                           f"[@name='{name}']")  # fmt: skip
        declared = [[e.get("name") for e in f.iter(f"{xs}element") if e is not f] for f in found]
        return next(members for members in declared if members)  # the type, not a use of it

    assert members("RegisterImportResponse") == ["Message", "ProgressStatus", "TransactionID"]
    assert "Message" in members("FinalizeImportResponse")
    assert {"ColumnNames", "ColumnNamesList", "ConnectorType", "DataBlockName"} == set(
        members("DataBlockInfo")
    )


@pytest.mark.parametrize(
    "spelling",
    [
        "http://127.0.0.1:8080/Blue/BlueWebService.svc",
        "http://LOCALHOST:8080/Blue/BlueWebService.svc/",
        "http://[::1]:8080/Blue/BlueWebService.svc/file",
        "http://localhost.:8080/Blue/BlueWebService.svc?singleWsdl",
    ],
)
def test_every_spelling_of_a_local_instance_is_one_instance(spelling: str) -> None:
    assert instance_of(spelling) == instance_of("http://localhost:8080/Blue/BlueWebService.svc")


def test_default_ports_and_case_do_not_make_another_instance() -> None:
    assert instance_of("https://Blue.Example.edu:443/ws/BlueWebService.svc") == instance_of(
        "HTTPS://blue.example.edu/ws/BlueWebService.svc/"
    )
    assert instance_of("http://blue.example.edu:80/ws/BlueWebService.svc") == instance_of(
        "http://blue.example.edu/ws/BlueWebService.svc"
    )
    assert instance_of("http://blue.example.edu:8080/ws/BlueWebService.svc") != instance_of(
        "http://blue.example.edu/ws/BlueWebService.svc"
    )
