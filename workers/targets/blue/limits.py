"""Explorance Blue limits and timeouts, with the vendor doc's numbers as defaults.

Vendor doc: no hard batch limit, about 1,000 rows per PushObjectDataV2 is the
guidance; one import at a time per Blue instance; 10-15 minutes between imports
on busy instances. Public integrations give prepare and finalize 600-3,600 s.
"""

from __future__ import annotations

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
            rows_per_push=max(1, settings.integer("BLUE_ROWS_PER_PUSH", VENDOR_ROWS_PER_PUSH)),
            connect_timeout_seconds=settings.number(
                "BLUE_CONNECT_TIMEOUT", cls.connect_timeout_seconds
            ),
            read_timeout_seconds=settings.number("BLUE_TIMEOUT", cls.read_timeout_seconds),
            long_timeout_seconds=settings.number("BLUE_PREPARE_TIMEOUT", cls.long_timeout_seconds),
            import_gap_seconds=settings.number("BLUE_IMPORT_GAP", cls.import_gap_seconds),
            foreign_retry_seconds=settings.number("BLUE_FOREIGN_RETRY", cls.foreign_retry_seconds),
            busy_retry_seconds=settings.number("BLUE_BUSY_RETRY", cls.busy_retry_seconds),
            progress_interval_seconds=max(
                0.05, settings.number("BLUE_PROGRESS_INTERVAL", cls.progress_interval_seconds)
            ),
        )


def instance_of(address: str) -> str:
    """One name per Blue instance, whichever of its addresses a worker was given.

    The SOAP 1.2 address (.svc), the SOAP 1.1 one (.svc/file) and the WSDL (.svc?wsdl)
    are the same instance, so they must share one slot; credentials in the URL and
    the query are dropped so the slot key never carries them.
    """
    parts = urlsplit(address)
    path = parts.path
    cut = path.lower().find(".svc")
    if cut >= 0:
        path = path[: cut + 4]
    host = (parts.hostname or "").lower()
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme.lower()}://{host}{port}{path.rstrip('/')}"
