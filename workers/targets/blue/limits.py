"""Explorance Blue limits and timeouts, with the vendor doc's numbers as defaults.

Vendor doc: no hard batch limit, about 1,000 rows per PushObjectDataV2 is the
guidance; one import at a time per Blue instance; 10-15 minutes between imports
on busy instances. Public integrations give prepare and finalize 600-3,600 s.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from urllib.parse import urlsplit

from importq.settings import Settings

VENDOR_ROWS_PER_PUSH = 1000


@dataclass(frozen=True)
class BlueLimits:
    instance: str = "unconfigured"
    """The Blue instance (its .svc address): the key of the one-import-at-a-time slot."""
    rows_per_push: int = VENDOR_ROWS_PER_PUSH
    connect_timeout_seconds: float = 10.0
    read_timeout_seconds: float = 120.0
    long_timeout_seconds: float = 3600.0
    """Read timeout of prepare and finalize, which take tens of minutes on large imports."""
    import_gap_seconds: float = 0.0
    foreign_retry_seconds: float = 300.0
    """How long a unit waits before looking again when someone else's import is open."""
    busy_retry_seconds: float = 30.0
    progress_interval_seconds: float = 30.0
    """How often Blue's progress is read into job state while prepare runs."""
    resend_attempts: int = 4

    @classmethod
    def from_settings(cls, settings: Settings) -> BlueLimits:
        address = settings.get("BLUE_ENDPOINT_URL") or settings.get("BLUE_WSDL_URL")
        return cls(
            instance=instance_of(address) if address else cls.instance,
            rows_per_push=settings.integer("BLUE_ROWS_PER_PUSH", VENDOR_ROWS_PER_PUSH, minimum=1),
            connect_timeout_seconds=settings.number(
                "BLUE_CONNECT_TIMEOUT", cls.connect_timeout_seconds, above=0
            ),
            read_timeout_seconds=settings.number("BLUE_TIMEOUT", cls.read_timeout_seconds, above=0),
            long_timeout_seconds=settings.number(
                "BLUE_PREPARE_TIMEOUT", cls.long_timeout_seconds, above=0
            ),
            import_gap_seconds=settings.number("BLUE_IMPORT_GAP", cls.import_gap_seconds),
            foreign_retry_seconds=settings.number(
                "BLUE_FOREIGN_RETRY", cls.foreign_retry_seconds, above=0
            ),
            busy_retry_seconds=settings.number("BLUE_BUSY_RETRY", cls.busy_retry_seconds, above=0),
            progress_interval_seconds=settings.number(
                "BLUE_PROGRESS_INTERVAL", cls.progress_interval_seconds, minimum=0.05
            ),
        )


def instance_of(address: str) -> str:
    """One name per Blue instance, whichever of its addresses a worker was given.

    The SOAP 1.2 address (.svc), the SOAP 1.1 one (.svc/file) and the WSDL (.svc?wsdl)
    are the same instance, and so are the spellings of one host: its case, a trailing
    dot or slash, the scheme's default port, and every loopback name (localhost,
    127.0.0.1, ::1) on one machine. They must share one slot and one registry of open
    transactions. Credentials in the URL and the query are dropped so the key never
    carries them. (An alias no rule can know, a second DNS name, is still recognised
    when its transactions are found: see registry.Registry.find.)
    """
    parts = urlsplit(address.strip())
    scheme = parts.scheme.lower()
    path = parts.path
    cut = path.lower().find(".svc")
    if cut >= 0:
        path = path[: cut + 4]
    host = _host(parts.hostname or "")
    try:
        port = parts.port
    except ValueError:  # not a number: keep it as written, the address will not work anyway
        port = None
    shown_port = f":{port}" if port and port != DEFAULT_PORTS.get(scheme) else ""
    return f"{scheme}://{host}{shown_port}{path.rstrip('/')}"


DEFAULT_PORTS = {"http": 80, "https": 443}


def _host(name: str) -> str:
    host = name.lower().rstrip(".")
    if host == "localhost" or host.endswith(".localhost"):
        return "localhost"
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host
    if address.is_loopback:
        return "localhost"
    return f"[{address.compressed}]" if address.version == 6 else address.compressed
