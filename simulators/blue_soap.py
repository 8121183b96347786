"""SOAP 1.1 and 1.2 the way a WCF service speaks them, for the Blue simulator.

WCF accepts only its endpoint's SOAP version (415 otherwise), dispatches SOAP
1.2 requests on the one WS-Addressing Action header and SOAP 1.1 ones on the
SOAPAction HTTP header, and answers an action it does not know with a
ContractFilter fault. Requests are parsed with defusedxml: no DTDs, no entities.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any
from xml.sax.saxutils import escape

import defusedxml.ElementTree as SafeET
import httpx
from defusedxml import DefusedXmlException

SOAP11 = "http://schemas.xmlsoap.org/soap/envelope/"
SOAP12 = "http://www.w3.org/2003/05/soap-envelope"
WSA = "http://www.w3.org/2005/08/addressing"
TNS = "http://tempuri.org/"
ARRAYS = "http://schemas.microsoft.com/2003/10/Serialization/Arrays"
BLUE = "http://schemas.datacontract.org/2004/07/Blue.Integration"
ACTION_PREFIX = "http://tempuri.org/IBlueWebService/"
ENVELOPES = {"1.1": SOAP11, "1.2": SOAP12}
CONTENT_TYPES = {"1.1": "text/xml", "1.2": "application/soap+xml"}
WSDL_ADDRESS = "http://localhost/BlueWebService.svc"
TYPO = "PrepareDataToFinzalizeImportV2"


class SoapFault(Exception):
    """A fault answer: WCF's HTTP 500 with a SOAP Fault in the endpoint's version."""

    def __init__(self, text: str, subcode: str = "", sender: bool = True) -> None:
        super().__init__(text)
        self.text, self.subcode, self.sender = text, subcode, sender


class Unsupported(Exception):
    """The request is in the other SOAP version: WCF answers 415 without a body."""


@dataclass
class SoapRequest:
    version: str
    operation: str
    headers: dict[str, ET.Element]  # tempuri.org header elements by local name
    body: ET.Element | None  # the body's wrapper element

    def header(self, name: str) -> str | None:
        element = self.headers.get(name)
        return element.text if element is not None else None

    def field(self, name: str) -> str | None:
        if self.body is None:
            return None
        return self.body.findtext(f"{{{TNS}}}{name}")


def parse(request: httpx.Request, version: str) -> SoapRequest:
    content_type = request.headers.get("Content-Type", "").split(";")[0].strip().lower()
    if content_type != CONTENT_TYPES[version]:
        raise Unsupported(content_type)
    try:
        root = SafeET.fromstring(request.content, forbid_dtd=True)
    except (ET.ParseError, DefusedXmlException) as error:
        raise SoapFault(f"The message is not well-formed XML: {error}") from None
    soap = ENVELOPES[version]
    if root.tag != f"{{{soap}}}Envelope":
        raise SoapFault("VersionMismatch: the envelope is not in this endpoint's SOAP version.")
    header = root.find(f"{{{soap}}}Header")
    children = list(header) if header is not None else []
    ours = [child for child in children if child.tag.startswith(f"{{{TNS}}}")]
    headers = {child.tag.split("}")[1]: child for child in ours}
    body = root.find(f"{{{soap}}}Body")
    wrapper = next(iter(body), None) if body is not None else None
    return SoapRequest(version, _action(request, version, children), headers, wrapper)


def _action(request: httpx.Request, version: str, headers: list[ET.Element]) -> str:
    if version == "1.1":
        action = str(request.headers.get("SOAPAction", "")).strip().strip('"')
    else:
        actions = [h.text or "" for h in headers if h.tag == f"{{{WSA}}}Action"]
        if len(actions) > 1:
            raise SoapFault(f"Multiple headers with name 'Action' and namespace '{WSA}' found.")
        if not actions:
            raise SoapFault("No WS-Addressing Action header: WSHttpBinding dispatches on it.")
        action = str(actions[0]).strip()
    return action.removeprefix(ACTION_PREFIX)


def answer(
    request: SoapRequest, body_name: str, body: str = "", headers: dict[str, str] | None = None
) -> httpx.Response:
    """A WCF answer: message-contract headers, the body wrapper `body_name` holding `body`."""
    soap = ENVELOPES[request.version]
    parts = [
        f'<h:{name} xmlns:h="{TNS}">{escape(value)}</h:{name}>'
        for name, value in (headers or {}).items()
    ]
    if request.version == "1.2":
        action = f"{ACTION_PREFIX}{request.operation}Response"
        parts.insert(0, f'<a:Action s:mustUnderstand="1">{action}</a:Action>')
    text = (
        f'<s:Envelope xmlns:s="{soap}" xmlns:a="{WSA}"><s:Header>{"".join(parts)}</s:Header>'
        f'<s:Body><{body_name} xmlns="{TNS}">{body}</{body_name}></s:Body></s:Envelope>'
    )
    return _xml(request.version, 200, text)


def fault(version: str, error: SoapFault) -> httpx.Response:
    soap = ENVELOPES[version]
    role = "Sender" if error.sender else "Receiver"
    if version == "1.1":
        inner = (
            f"<faultcode>s:{'Client' if error.sender else 'Server'}</faultcode>"
            f'<faultstring xml:lang="en-US">{escape(error.text)}</faultstring>'
        )
    else:
        sub = (
            f"<s:Subcode><s:Value>a:{error.subcode}</s:Value></s:Subcode>" if error.subcode else ""
        )
        inner = (
            f"<s:Code><s:Value>s:{role}</s:Value>{sub}</s:Code>"
            f'<s:Reason><s:Text xml:lang="en-US">{escape(error.text)}</s:Text></s:Reason>'
        )
    text = (
        f'<s:Envelope xmlns:s="{soap}" xmlns:a="{WSA}">'
        f"<s:Body><s:Fault>{inner}</s:Fault></s:Body></s:Envelope>"
    )
    return _xml(version, 500, text)


def contract_filter(operation: str) -> SoapFault:
    return SoapFault(
        f"The message with Action '{ACTION_PREFIX}{operation}' cannot be processed at the "
        "receiver, due to a ContractFilter mismatch at the EndpointDispatcher.",
        subcode="ActionNotSupported",
    )


def hostile(version: str) -> httpx.Response:
    """An entity-expansion ("billion laughs") answer, for proving the client refuses it."""
    entities = '<!ENTITY lol0 "lol">' + "".join(
        f'<!ENTITY lol{n} "{f"&lol{n - 1};" * 10}">' for n in range(1, 10)
    )
    soap = ENVELOPES[version]
    text = (
        f'<?xml version="1.0"?><!DOCTYPE lolz [{entities}]><s:Envelope xmlns:s="{soap}"><s:Body>'
        f'<CancelImportResponse xmlns="{TNS}"><Message>&lol9;</Message></CancelImportResponse>'
        "</s:Body></s:Envelope>"
    )
    return _xml(version, 200, text)


def wsdl(base_url: str, prepare_operation: str) -> httpx.Response:
    """The bundled WSDL as this simulator serves it: its own address, its prepare spelling."""
    text = _wsdl_text().replace(WSDL_ADDRESS, f"{base_url}/BlueWebService.svc")
    if prepare_operation != TYPO:
        text = text.replace(TYPO, prepare_operation)
    return httpx.Response(200, text=text, headers={"Content-Type": "text/xml; charset=utf-8"})


@cache
def _wsdl_text() -> str:  # the WSDL the worker package bundles: one description for both
    return resources.files("workers.targets.blue").joinpath("blue.wsdl").read_text("utf-8")


def element(name: str, value: object, prefix: str = "") -> str:
    """One element with text; None is WCF's i:nil, booleans are lowercase."""
    tag = f"{prefix}{name}"
    if value is None:
        return f'<{tag} i:nil="true" xmlns:i="http://www.w3.org/2001/XMLSchema-instance"/>'
    text = str(value).lower() if isinstance(value, bool) else escape(str(value))
    return f"<{tag}>{text}</{tag}>"


def _xml(version: str, status: int, text: str) -> httpx.Response:
    content_type = f"{CONTENT_TYPES[version]}; charset=utf-8"
    return httpx.Response(status, content=text.encode(), headers={"Content-Type": content_type})


# -- the operations on the wire ---------------------------------------------------------------


class Refusal(Exception):
    """Blue's way of failing: the operation answers with this Message (IsSuccess false)."""


SUCCESS = element("Message", "Success")


def handle(sim: Any, request: httpx.Request, base_path: str) -> httpx.Response:
    """Route one HTTP request: the WSDL, or a SOAP call at the 1.2 or 1.1 address."""
    path = request.url.path.rstrip("/")
    if request.method == "GET" and path == base_path:
        base = f"{request.url.scheme}://{request.url.netloc.decode()}"
        return wsdl(base, sim.config.prepare_operation)
    version = {base_path: "1.2", base_path + "/file": "1.1"}.get(path)
    if version is None:
        return httpx.Response(404, text="The resource cannot be found.")
    if request.method != "POST":
        return httpx.Response(405, text="Method not allowed.")
    try:
        return _call(sim, parse(request, version))
    except Unsupported:
        return httpx.Response(415, text="Cannot process the message: unsupported media type.")
    except SoapFault as error:
        return fault(version, error)


def _call(sim: Any, soap: SoapRequest) -> httpx.Response:
    name = "PREPARE" if soap.operation == sim.config.prepare_operation else soap.operation
    if name not in ANSWERS:
        raise contract_filter(soap.operation)
    with sim.lock:
        sim.stats[f"req:{soap.operation}"] += 1
        sim.stats[f"req:soap{soap.version}"] += 1
        early = _refuse_early(sim, soap, name)
    if early is not None:
        return early
    try:
        body = _body(sim, soap, name)
    except Refusal as refusal:
        return refused(sim, soap, name, str(refusal))
    headers = {"APIKeyHeader": "Valid API_KEY"} if ANSWERS[name][2] else {}
    if name == "FinalizeImport" and sim.config.finalize_message_in == "header":
        return answer(soap, ANSWERS[name][0], _extra(sim), {**headers, "Message": "Success"})
    return answer(soap, ANSWERS[name][0], _extra(sim) + body, headers)


def _extra(sim: Any) -> str:
    """An element the service's contract grew after a client's WSDL was made (a WCF data
    contract serializes members in alphabetical order, so it can come before known ones)."""
    return element("AnswerTime", "2026-01-01T00:00:00") if sim.config.extra_answer_elements else ""


def _refuse_early(sim: Any, soap: SoapRequest, name: str) -> httpx.Response | None:
    """Hostile XML, an injected fault, a denied IP or a wrong key, before the operation runs."""
    cfg = sim.config
    if cfg.hostile_xml:
        return hostile(soap.version)
    if cfg.fault_rate and sim.rng.random() < cfg.fault_rate:
        sim.stats["faults"] += 1
        kind = sim.rng.choice(cfg.fault_kinds)
        if kind == "http503":
            headers = {"Retry-After": str(cfg.retry_after_seconds), "Content-Type": "text/html"}
            return httpx.Response(503, text="<h1>Service Unavailable</h1>", headers=headers)
        if kind == "http500":
            raise SoapFault("The server was unable to process the request.", sender=False)
        return refused(sim, soap, name, "Cannot connect to the database for Blue application.")
    if cfg.ip_denied:
        return refused(sim, soap, name, "IP_ADDR_DENIED")
    if soap.header("APIKeyHeader") != cfg.api_key:
        return refused(sim, soap, name, "INVALID_APIKEY", key="Invalid API_KEY")
    return None


def refused(
    sim: Any, soap: SoapRequest, name: str, message: str, key: str = "Valid API_KEY"
) -> httpx.Response:
    body_name, result_style, echo_key = ANSWERS[name]
    headers = {"APIKeyHeader": key} if echo_key else {}
    if name == "FinalizeImport" and sim.config.finalize_message_in == "header":
        return answer(soap, body_name, "", {**headers, "Message": message})
    body = element("Message", message)
    if result_style:
        body = element("HasWarningMessage", False) + element("IsSuccess", False) + body
    return answer(soap, body_name, body, headers)


def _body(sim: Any, soap: SoapRequest, name: str) -> str:
    """Read the request, run the operation on the simulator, write the answer's body."""
    transaction = soap.header("TransactionID")  # the spelling of every call but the push
    if name == "GetDataSourceList":
        return _datasources(sim.datasources()) + SUCCESS
    if name == "GetDataBlockInformation":
        found = sim.blocks(soap.header("DatasourceId") or "")
        return _blocks(found, sim.config.columns_element) + SUCCESS
    if name == "RegisterImport":
        abort = (soap.field("AbortOnEmpty") or "true").strip().lower() == "true"
        registered = sim.register(soap.field("DataSourceID"), abort)
        # As the service answers: the new transaction's status (-4) comes with its id.
        return SUCCESS + element("ProgressStatus", -4) + element("TransactionID", registered)
    if name == "PushObjectDataV2":
        block = soap.header("DataBlockName") or ""
        return _result(sim.push(soap.header("TransactionId"), block, *_table(soap)))
    if name == "PREPARE":
        sim.prepare(transaction)
        return _result([])
    if name == "FinalizeImport":
        sim.finalize(transaction)
        return "" if sim.config.finalize_message_in == "header" else SUCCESS
    if name == "CancelImport":
        sim.cancel(transaction)
        return SUCCESS
    if name == "GetProgressStatus":
        return SUCCESS + element("ProgressStatus", sim.progress(soap.field("DataSourceId")))
    transaction_id, status = sim.current()
    return SUCCESS + element("ProgressStatus", status) + element("TransactionID", transaction_id)


def _datasources(found: list[tuple[str, str]]) -> str:
    items = "".join(
        f"<b:IDataSource>{element('Caption', caption, 'b:')}{element('SourceID', ds, 'b:')}"
        "</b:IDataSource>"
        for ds, caption in found
    )
    return f'<DataSources xmlns:b="{BLUE}">{items}</DataSources>'


def _blocks(found: list[tuple[str, list[str] | None]], columns_element: str) -> str:
    """DataBlockInfo items; a block's columns as an ArrayOfstring named `columns_element`
    (the service's ColumnNamesList, or ColumnNames), absent when not reported."""
    items = []
    tag = f"b:{columns_element}"
    for name, columns in found:
        listed = "".join(element("string", c, "c:") for c in columns or ())
        reported = f'<{tag} xmlns:c="{ARRAYS}">{listed}</{tag}>' if columns else ""
        items.append(
            f"<b:DataBlockInfo>{reported}{element('ConnectorType', 'CSVFile', 'b:')}"
            f"{element('DataBlockName', name, 'b:')}</b:DataBlockInfo>"
        )
    return f'<DataBlockInfoList xmlns:b="{BLUE}">{"".join(items)}</DataBlockInfoList>'


def _table(soap: SoapRequest) -> tuple[list[str], list[list[str | None]]]:
    """ColumnNamesList and the rows of Data/IDataRow/IDataRowValue/IDataObj/IDataObjValue."""
    listed = soap.headers.get("ColumnNamesList")
    columns = (
        [s.text or "" for s in listed.iter(f"{{{ARRAYS}}}string")] if listed is not None else []
    )
    data = soap.body.find(f"{{{TNS}}}Data") if soap.body is not None else None
    rows = [
        [cell.findtext(f"{{{BLUE}}}IDataObjValue") for cell in row.iter(f"{{{BLUE}}}IDataObj")]
        for row in (data.iter(f"{{{BLUE}}}IDataRow") if data is not None else ())
    ]
    return columns, rows


def _result(warnings: list[str]) -> str:
    text = "\n".join(warnings) if warnings else None
    return (
        element("HasWarningMessage", bool(warnings)) + element("IsSuccess", True) + SUCCESS
        + element("Result", text)
    )  # fmt: skip


# operation -> (its answer's body element, answers IsSuccess/HasWarningMessage, echoes the key)
ANSWERS = {
    "GetDataSourceList": ("DataSourceListResponse", False, True),
    "GetDataBlockInformation": ("DataBlockInformationResponse", False, True),
    "RegisterImport": ("RegisterImportResponse", False, True),
    "PushObjectDataV2": ("DataObjectTransferResponseV2", True, False),
    "PREPARE": ("BasicResponseV2", True, False),
    "FinalizeImport": ("FinalizeImportResponse", False, True),
    "CancelImport": ("CancelImportResponse", False, True),
    "GetCurrentImportingDataSourceProcess": (
        "CurrentImportingDataSourceProcessResponse", False, True),
    "GetProgressStatus": ("ProgressStatusResponse", False, True),
}  # fmt: skip
