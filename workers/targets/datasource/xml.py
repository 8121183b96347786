"""The Data Source API's XML: the DataSource request body and the DataSourceResponse answer.

Requests are built with the standard library; answers are untrusted and are
parsed only through defusedxml with DTDs forbidden, so no entity is expanded
and nothing is fetched.
"""

from __future__ import annotations

import xml.etree.ElementTree as ElementTree
from collections.abc import Mapping
from typing import Any

import defusedxml.ElementTree as SafeElementTree
from defusedxml import DefusedXmlException

__all__ = ["XSI", "DefusedXmlException", "request_body", "response_status"]

XSI = "http://www.w3.org/2001/XMLSchema-instance"  # the doc requires xmlns:i on the root
ROW_LISTS = frozenset({"Rows", "NewRows", "DeletedRows"})


def request_body(body: Mapping[str, Any]) -> bytes:
    """The JSON-shaped request `body` as a <DataSource> document, fields in the given order."""
    # Set as a plain attribute: ElementTree only declares namespaces that elements use.
    root = ElementTree.Element("DataSource", {"xmlns:i": XSI})
    for name, value in body.items():
        element = ElementTree.SubElement(root, name)
        if name == "Headers":
            for header in value:
                item = ElementTree.SubElement(element, "Header")
                for field, text in header.items():
                    ElementTree.SubElement(item, field).text = text
        elif name in ROW_LISTS:
            for row in value:
                item = ElementTree.SubElement(element, "Row")
                for val in row["Vals"]:
                    ElementTree.SubElement(item, "Val").text = val  # "" is written <Val />
        else:
            element.text = str(value)
    return bytes(ElementTree.tostring(root, encoding="utf-8", xml_declaration=True))


def response_status(content: bytes) -> tuple[str, str]:
    """ErrorCode and Message of a <DataSourceResponse>.

    Raises DefusedXmlException for a DTD or entity declaration, and
    ElementTree.ParseError for text that is not XML.
    """
    root = SafeElementTree.fromstring(content, forbid_dtd=True)
    # "{*}" matches with or without a namespace: the doc shows none, ServiceStack may add one.
    status = root.find("{*}ResponseStatus")
    if status is None:
        return "", ""
    return status.findtext("{*}ErrorCode") or "", status.findtext("{*}Message") or ""
