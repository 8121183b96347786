"""A zeep client for Blue's import web service: datasources, data blocks, one import's calls.

The service description comes from BLUE_WSDL_URL, or from the WSDL bundled
next to this module (rebuilt from the vendor doc and blue-facts.md), and
BLUE_ENDPOINT_URL overrides its address. Header names and the prepare
operation's spelling are read from the WSDL, never assumed. Every answer goes
through zeep's parser with DTDs, entities and external fetches forbidden.

Answers are read leniently: an element the WSDL does not declare (a member the
service grew since, or one a reconstructed WSDL lacks) is skipped, and declared
ones are found in any order (zeep's strict=False with xsd_ignore_sequence_order,
for answers only: the WSDL itself is loaded strictly). zeep's lenient mode also
turns on lxml's recover mode, which would half-read a cut-off answer, so the
transport first refuses any answer that is not well-formed XML.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import zeep
from lxml import etree
from zeep import exceptions as soap_errors
from zeep.wsdl.bindings.soap import Soap11Binding, Soap12Binding

from importq.errors import ConfigError, FinalError, RetryableError, VendorAnswer
from importq.settings import Secret, Settings
from workers.targets.blue.answers import (
    CurrentImport,
    DataBlock,
    DataSource,
    ImportOptions,
    StepResult,
    check,
    fields_of,
    items,
    step,
)
from workers.targets.blue.limits import BlueLimits
from workers.targets.blue.refusals import TARGET, refusal
from workers.targets.blue.transport import HttpxTransport

# zeep's functions carry no annotations; these aliases make the calls explicit about it.
_Client: Any = zeep.Client

BUNDLED_WSDL = Path(__file__).with_name("blue.wsdl")
NAMESPACES = {
    "tem": "http://tempuri.org/",
    "arr": "http://schemas.microsoft.com/2003/10/Serialization/Arrays",
    "blue": "http://schemas.datacontract.org/2004/07/Blue.Integration",
}
# The service's real action carries a typo; a corrected WSDL may declare the other one.
PREPARE_SPELLINGS = ("PrepareDataToFinzalizeImportV2", "PrepareDataToFinalizeImportV2")
BINDINGS = {"1.1": Soap11Binding, "1.2": Soap12Binding}
# Answers: skip undeclared elements, find declared ones in any order (zeep's documented
# workarounds for servers whose answers outgrow their WSDL).
LENIENT_ANSWERS = {"strict": False, "xsd_ignore_sequence_order": True}
COLUMN_MEMBERS = ("ColumnNamesList", "ColumnNames")  # a data block's columns, per service
_HOSTILE_XML = (
    soap_errors.DTDForbidden,
    soap_errors.EntitiesForbidden,
    soap_errors.ExternalReferenceForbidden,
)


class BlueClient:
    """One Blue instance. Errors come out as importq.errors classes; the key stays inside."""

    def __init__(
        self,
        api_key: Secret,
        *,
        wsdl: str | None = None,
        endpoint: str | None = None,
        soap_version: str | None = None,
        limits: BlueLimits | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        if soap_version and soap_version not in BINDINGS:
            raise ConfigError(f"BLUE_SOAP_VERSION={soap_version!r}: use 1.1 or 1.2")
        self.limits = limits or BlueLimits()
        self._api_key = api_key
        self._wsdl = wsdl or str(BUNDLED_WSDL)
        self._endpoint = endpoint or None
        self._soap_version = soap_version or None
        remote = urlsplit(self._wsdl).scheme in ("http", "https")
        origin = urlsplit(self._wsdl)
        self._transport = HttpxTransport(
            connect_timeout=self.limits.connect_timeout_seconds,
            read_timeout=self.limits.read_timeout_seconds,
            transport=transport,
            wsdl_origin=f"{origin.scheme}://{origin.netloc}".lower() if remote else None,
        )
        # Imports of a remote WCF ?wsdl come from its own host (checked by the transport).
        self._settings = zeep.Settings(
            strict=True,  # the WSDL; answers are parsed under LENIENT_ANSWERS
            xml_huge_tree=False,
            forbid_dtd=True,
            forbid_entities=True,
            forbid_external=not remote,
        )
        self._service: Any = None
        self._binding: Any = None
        self.prepare_operation = ""
        self._headers: dict[tuple[str, str], str] = {}

    @classmethod
    def from_settings(cls, settings: Settings, limits: BlueLimits) -> BlueClient:
        api_key = settings.secret("BLUE_API_KEY")
        wsdl = settings.get("BLUE_WSDL_URL")
        endpoint = settings.get("BLUE_ENDPOINT_URL")
        if not api_key or not (wsdl or endpoint):
            raise ConfigError(
                "blue needs BLUE_API_KEY and BLUE_ENDPOINT_URL (the .svc address) or "
                "BLUE_WSDL_URL (its ?wsdl) in the environment"
            )
        return cls(
            api_key,
            wsdl=wsdl or None,
            endpoint=endpoint or None,
            soap_version=settings.get("BLUE_SOAP_VERSION") or None,
            limits=limits,
        )

    def close(self) -> None:
        self._transport.close()

    # -- the vendor's operations ---------------------------------------------------------

    def datasources(self) -> list[DataSource]:
        fields = self._call("GetDataSourceList", {})
        listed = items(fields.get("DataSources"), "IDataSource")
        return [
            DataSource(str(i.get("SourceID") or ""), str(i.get("Caption") or "")) for i in listed
        ]

    def data_blocks(self, source_id: str) -> list[DataBlock]:
        fields = self._call("GetDataBlockInformation", {"DatasourceId": source_id})
        return [
            DataBlock(
                str(item.get("DataBlockName") or ""),
                str(item.get("ConnectorType") or ""),
                column_names(item),
            )
            for item in items(fields.get("DataBlockInfoList"), "DataBlockInfo")
        ]

    def register(self, source_id: str, options: ImportOptions) -> int:
        fields = self._call(
            "RegisterImport",
            {},
            AbortOnEmpty=options.abort_on_empty,
            DataSourceID=source_id,
            ReplaceBlueRole=options.replace_blue_role,
            ReplaceDataSourceAccessKey=options.replace_datasource_access_key,
            ReplaceLanguagePreferences=options.replace_language_preferences,
        )
        transaction_id = int(fields.get("TransactionID") or 0)
        if transaction_id <= 0:
            shown = {k: v for k, v in fields.items() if not k.startswith("_")}
            raise FinalError(
                f"RegisterImport answered no TransactionID ({shown}): Blue may have opened a "
                "transaction importq cannot name; check the WSDL (BLUE_WSDL_URL)",
                target=TARGET,
            )
        return transaction_id

    def push(
        self, transaction_id: int, block: str, columns: list[str], rows: list[list[str | None]]
    ) -> StepResult:
        headers = {
            "TransactionId": transaction_id,
            "DataBlockName": block,
            "ColumnNamesList": {"string": columns},
        }
        data = {
            "IDataRow": [
                {"IDataRowValue": {"IDataObj": [{"IDataObjValue": cell} for cell in row]}}
                for row in rows
            ]
        }
        return step(self._call("PushObjectDataV2", headers, Data=data))

    def prepare(self, transaction_id: int) -> StepResult:
        self._proxy()  # the WSDL decides the spelling
        fields = self._call(self.prepare_operation, {"TransactionID": transaction_id}, long=True)
        return step(fields)

    def finalize(self, transaction_id: int) -> StepResult:
        return step(self._call("FinalizeImport", {"TransactionID": transaction_id}, long=True))

    def cancel(self, transaction_id: int) -> None:
        self._call("CancelImport", {"TransactionID": transaction_id})

    def current_import(self) -> CurrentImport:
        fields = self._call("GetCurrentImportingDataSourceProcess", {})
        status = fields.get("ProgressStatus")
        return CurrentImport(
            int(fields.get("TransactionID") or 0), int(status) if status is not None else -1
        )

    def progress(self, source_id: str) -> int:
        fields = self._call("GetProgressStatus", {}, DataSourceId=source_id)
        status = fields.get("ProgressStatus")
        return int(status) if status is not None else -1

    # -- plumbing ------------------------------------------------------------------------

    def _call(
        self, operation: str, headers: dict[str, Any], *, long: bool = False, **body: Any
    ) -> dict[str, Any]:
        service = self._proxy()
        soap_headers = {self._header(operation, "APIKeyHeader"): self._api_key.reveal()}
        soap_headers.update({self._header(operation, k): v for k, v in headers.items()})
        timeout = self.limits.long_timeout_seconds if long else self.limits.read_timeout_seconds
        try:
            with self._transport.read_timeout(timeout), self._settings(**LENIENT_ANSWERS):
                reply = getattr(service, operation)(_soapheaders=soap_headers, **body)
        except soap_errors.Fault as fault:
            code = str(fault.code) if fault.code else None
            raise refusal(str(fault.message or ""), what=operation, fault=True, code=code) from None
        except _HOSTILE_XML:
            raise FinalError(
                f"{operation}: the answer declares a DTD or entities; importq refuses to parse "
                "it (entity expansion). Check that BLUE_ENDPOINT_URL is the Blue web service",
                target=TARGET,
            ) from None
        except (soap_errors.XMLSyntaxError, soap_errors.XMLParseError) as error:
            raise RetryableError(
                f"{operation}: unreadable answer: {error}", target=TARGET
            ) from None
        except soap_errors.TransportError as error:
            # An empty non-200 answer, or a 200 whose XML does not parse.
            status = error.status_code or 0
            cls = FinalError if 400 <= status < 500 else RetryableError
            text = str(error.message).split("\n", 1)[0][:300]
            answer = VendorAnswer(status=status or None, said=text)
            raise cls(f"{operation}: {text}", target=TARGET, answer=answer) from None
        fields = fields_of(reply)
        check(fields, operation)
        return fields

    def _proxy(self) -> Any:
        """The zeep service, built on first use: publishing needs no network round trip."""
        if self._service is None:
            try:
                client = _Client(self._wsdl, transport=self._transport, settings=self._settings)
            except soap_errors.Error as error:
                raise ConfigError(f"cannot read the Blue WSDL {self._wsdl}: {error}") from None
            for prefix, namespace in NAMESPACES.items():
                client.set_ns_prefix(prefix, namespace)
            binding, address = self._choose_port(client)
            spelled = [name for name in PREPARE_SPELLINGS if name in binding._operations]
            if not spelled:
                raise ConfigError("the Blue WSDL declares no PrepareDataToFinzalizeImportV2")
            self.prepare_operation = spelled[0]
            self._binding = binding
            self._service = client.create_service(str(binding.name), self._endpoint or address)
        return self._service

    def _choose_port(self, client: Any) -> tuple[Any, str]:
        ports = [
            (port.binding, port.binding_options["address"])
            for service in client.wsdl.services.values()
            for port in service.ports.values()
        ]
        if self._soap_version:
            ports = [p for p in ports if isinstance(p[0], BINDINGS[self._soap_version])]
        else:  # the vendor requires WSHttpBinding (SOAP 1.2) where the WSDL offers it
            ports.sort(key=lambda p: not isinstance(p[0], Soap12Binding))
        if not ports:
            raise ConfigError(f"the Blue WSDL has no SOAP {self._soap_version} binding")
        return ports[0]

    def _header(self, operation: str, name: str) -> str:
        """The header part as the WSDL spells it (TransactionId on push, TransactionID after)."""
        key = (operation, name)
        if key not in self._headers:
            header = self._binding.get(operation).input.header
            parts = [part for part, _ in header.type.elements] if header else []
            found = [part for part in parts if part.lower() == name.lower()]
            if not found:
                raise ConfigError(f"the Blue WSDL's {operation} has no {name} header ({parts})")
            self._headers[key] = found[0]
        return self._headers[key]


def column_names(block: dict[str, Any]) -> tuple[str, ...] | None:
    """A DataBlockInfo's columns, as ColumnNamesList or ColumnNames, declared in the WSDL or
    not (an undeclared one is among zeep's raw elements); None when the service names none."""
    for member in COLUMN_MEMBERS:
        listed = items(block.get(member), "string")
        if listed:
            return tuple(str(name) for name in listed)
    for raw in block.get("_raw_elements") or ():
        if etree.QName(raw).localname in COLUMN_MEMBERS:
            listed = [child.text or "" for child in raw if etree.QName(child).localname == "string"]
            if listed:
                return tuple(listed)
    return None
