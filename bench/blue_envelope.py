"""zeep vs hand-written XML for one PushObjectDataV2 envelope of 1,000 rows.

Both build the same SOAP 1.2 envelope (APIKeyHeader, TransactionId, DataBlockName,
ColumnNamesList, the WS-Addressing headers, Data/IDataRow/IDataRowValue/IDataObj/
IDataObjValue) as UTF-8 bytes ready to POST; zeep's path is exactly what a send
runs before the HTTP request. The ratio is zeep's time over the hand-written
one. A profile of the zeep path splits its time into building zeep's typed
value objects from the plain rows, rendering them into lxml, and serialising.

    python -m bench.blue_envelope [--rows 1000] [--repeat 5]
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import sys
import time
import uuid
from collections.abc import Callable
from typing import Any
from xml.sax.saxutils import escape

from importq.settings import Secret
from workers.targets.blue.client import NAMESPACES, BlueClient

COLUMNS = ["USER_ID", "FIRST_NAME", "LAST_NAME", "EMAIL", "BLUE_ROLE"]
ENDPOINT = "http://blue.invalid/BlueWebService.svc"  # never called: envelopes only
ACTION = "http://tempuri.org/IBlueWebService/PushObjectDataV2"


def sample_rows(count: int) -> list[list[str | None]]:
    return [[f"u{n:06d}", f"First {n}", f"Last & {n}", f"u{n:06d}@example.edu", "3"]
            for n in range(count)]  # fmt: skip


def zeep_envelope(client: BlueClient) -> Callable[[list[list[str | None]]], bytes]:
    from zeep.wsdl import utils

    to_bytes: Any = utils.etree_to_string  # zeep is untyped
    service = client._proxy()
    binding, options, zeep_client = service._binding, service._binding_options, service._client

    def build(rows: list[list[str | None]]) -> bytes:
        headers = {"APIKeyHeader": "bench-fake-key", "TransactionId": 6821714594214839001,
                   "DataBlockName": "Users", "ColumnNamesList": {"string": COLUMNS}}  # fmt: skip
        data = {
            "IDataRow": [
                {"IDataRowValue": {"IDataObj": [{"IDataObjValue": v} for v in row]}} for row in rows
            ]
        }
        kwargs = {"Data": data, "_soapheaders": headers}
        envelope, _ = binding._create(
            "PushObjectDataV2", (), kwargs, client=zeep_client, options=options
        )
        written: bytes = to_bytes(envelope)
        return written

    return build


def hand_envelope(rows: list[list[str | None]]) -> bytes:
    tem, arr, blue = NAMESPACES["tem"], NAMESPACES["arr"], NAMESPACES["blue"]
    names = "".join(f"<arr:string>{escape(c)}</arr:string>" for c in COLUMNS)
    cells = "".join(
        "<blue:IDataRow><blue:IDataRowValue>"
        + "".join("<blue:IDataObj/>" if v is None else
                  f"<blue:IDataObj><blue:IDataObjValue>{escape(v)}</blue:IDataObjValue></blue:IDataObj>"
                  for v in row)
        + "</blue:IDataRowValue></blue:IDataRow>"
        for row in rows
    )  # fmt: skip
    text = (
        "<?xml version='1.0' encoding='utf-8'?>"
        f'<soap-env:Envelope xmlns:soap-env="http://www.w3.org/2003/05/soap-envelope" '
        f'xmlns:tem="{tem}" xmlns:arr="{arr}" xmlns:blue="{blue}">'
        '<soap-env:Header xmlns:wsa="http://www.w3.org/2005/08/addressing">'
        "<tem:APIKeyHeader>bench-fake-key</tem:APIKeyHeader>"
        f"<tem:ColumnNamesList>{names}</tem:ColumnNamesList>"
        "<tem:DataBlockName>Users</tem:DataBlockName>"
        "<tem:TransactionId>6821714594214839001</tem:TransactionId>"
        f"<wsa:Action>{ACTION}</wsa:Action><wsa:MessageID>urn:uuid:{uuid.uuid4()}</wsa:MessageID>"
        f"<wsa:To>{ENDPOINT}</wsa:To></soap-env:Header>"
        f"<soap-env:Body><tem:DataObjectTransferRequestV2><tem:Data>{cells}</tem:Data>"
        "</tem:DataObjectTransferRequestV2></soap-env:Body></soap-env:Envelope>"
    )
    return text.encode()


def _best(build: Callable[[list[list[str | None]]], bytes], rows: Any, repeat: int) -> float:
    timings = []
    for _ in range(repeat):
        started = time.perf_counter()
        build(rows)
        timings.append(time.perf_counter() - started)
    return min(timings)


def _where_zeep_spends(
    build: Callable[[list[list[str | None]]], bytes], rows: Any
) -> dict[str, float]:
    """Cumulative seconds of zeep's phases in one profiled build (profiling slows it evenly)."""
    profile = cProfile.Profile()
    profile.runcall(build, rows)
    stats: dict[Any, Any] = pstats.Stats(profile).stats  # type: ignore[attr-defined]
    phases = {
        "typed values from the rows": ("xsd/elements/element.py", "__call__"),
        "rendering into lxml": ("xsd/elements/element.py", "render"),
        "serialising to bytes": ("wsdl/utils.py", "etree_to_string"),
    }
    total = max(entry[3] for entry in stats.values())
    found = {"total": total}
    for name, (path, function) in phases.items():
        found[name] = max((entry[3] for (file, _, func), entry in stats.items()
                           if file.endswith(path) and func == function), default=0.0)  # fmt: skip
    return found


def measure(rows: int = 1000, repeat: int = 5) -> dict[str, Any]:
    client = BlueClient(Secret("bench-fake-key"), endpoint=ENDPOINT)
    build = zeep_envelope(client)
    data = sample_rows(rows)
    zeep_bytes, hand_bytes = build(data), hand_envelope(data)
    zeep_seconds, hand_seconds = _best(build, data, repeat), _best(hand_envelope, data, repeat)
    return {
        "rows": rows,
        "zeep_ms": round(zeep_seconds * 1000, 1),
        "hand_ms": round(hand_seconds * 1000, 2),
        "ratio": round(zeep_seconds / hand_seconds, 1),
        "zeep_bytes": len(zeep_bytes),
        "hand_bytes": len(hand_bytes),
        "zeep_profile": {k: round(v, 3) for k, v in _where_zeep_spends(build, data).items()},
    }


def report(result: dict[str, Any]) -> list[str]:
    lines = [
        f"blue envelope, {result['rows']} rows x {len(COLUMNS)} columns: zeep "
        f"{result['zeep_ms']:.0f} ms, by hand {result['hand_ms']:.1f} ms: ratio "
        f"{result['ratio']:.0f}x ({result['zeep_bytes']:,} vs {result['hand_bytes']:,} bytes)"
    ]
    profile = result["zeep_profile"]
    if result["ratio"] > 2:
        shares = ", ".join(f"{name} {seconds / profile['total']:.0%}"
                           for name, seconds in profile.items() if name != "total")  # fmt: skip
        lines.append(f"  where zeep's time goes (profiled): {shares}")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.blue_envelope", description=__doc__)
    parser.add_argument("--rows", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)
    print("\n".join(report(measure(args.rows, args.repeat))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
