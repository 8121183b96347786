"""Blue's messages and faults mapped to importq's error tree, with what to do about each.

Blue answers most failures with a `Message` other than "Success" (the vendor
doc's table), and protocol problems with SOAP faults. None of them is
record-level: a Blue unit is one whole import, so bisecting it would run two
imports where the datasource expects one.
"""

from __future__ import annotations

from importq.errors import (
    AuthError,
    FinalError,
    NotApplied,
    NotFoundError,
    RetryableError,
    TargetError,
    VendorAnswer,
)

TARGET = "blue"
SUCCESS = "success"


class BlueBusy(RetryableError):
    """RegisterImport refused: another import is open on this Blue instance."""


class TransactionLost(RetryableError):
    """Blue no longer knows the transaction (cancelled by hand, or flushed): import again."""


# (phrase in Blue's message, error class, what to tell the operator); first match wins.
_KNOWN: tuple[tuple[str, type[TargetError], str], ...] = (
    ("invalid_apikey", AuthError,
     "set BLUE_API_KEY to a key generated in Blue under Connections > API Key"),
    ("invalid api_key", AuthError,
     "set BLUE_API_KEY to a key generated in Blue under Connections > API Key"),
    ("ip_addr_denied", AuthError,
     "ask the Blue administrator to allow this machine's IP address"),
    ("currently being imported by another process", BlueBusy,
     "another import is open on this Blue instance; importq checks whose and waits"),
    # Blue did nothing, so the same call may go again at once.
    ("cannot connect to the database", NotApplied,
     "Blue's database is unreachable; importq retries (contact Explorance support if it lasts)"),
    ("datasource does not exist", NotFoundError,
     "check the job's datasource option against GetDataSourceList"),
    ("failed to initialize the datasource", NotFoundError,
     "check the job's datasource option against GetDataSourceList"),
    ("could not find the data block", NotFoundError,
     "check the job's block option against GetDataBlockInformation"),
    ("missing required data block table", FinalError,
     "every required data block must be pushed before prepare"),
    ("missing primary data block table", FinalError,
     "the primary data block must be pushed before prepare"),
    ("missing value on", FinalError,
     "the input's columns do not match the data block's: fix the column names"),
    ("transaction cannot be found", TransactionLost,
     "the transaction was cancelled or flushed at Blue; importq starts the import again"),
    ("imported data table is empty", FinalError,
     "nothing was left to import and AbortOnEmpty is on; fix the rows or set abort_on_empty=false"),
    ("are not unique", FinalError,
     "make the ID column unique in the input"),
    ("contractfilter", FinalError,
     "the endpoint does not know this operation: check BLUE_SOAP_VERSION and the WSDL"),
    ("actionnotsupported", FinalError,
     "the endpoint does not know this operation: check BLUE_SOAP_VERSION and the WSDL"),
)  # fmt: skip


def refusal(
    message: str, *, what: str, fault: bool = False, code: str | None = None
) -> TargetError:
    """The importq error for Blue's `message` in answer to `what` (an operation name);
    `fault`: it came as a SOAP fault, whose fault code is `code`.

    An unknown message in a SOAP fault is retryable (WCF answers internal errors with
    HTTP 500 faults); an unknown `Message` in a normal answer is final.
    """
    text = " ".join(message.split()) or "(no message)"
    answer = VendorAnswer(code=code, said=text)
    lowered = text.lower()
    for phrase, cls, hint in _KNOWN:
        if phrase in lowered:
            return cls(f"{what}: {text} ({hint})", target=TARGET, answer=answer)
    if fault:
        return RetryableError(f"{what}: SOAP fault: {text}", target=TARGET, answer=answer)
    return FinalError(f"{what}: {text}", target=TARGET, answer=answer)


def is_success(message: str | None) -> bool:
    """True when Blue's Message says the call worked (or the answer carries none)."""
    return message is None or message.strip().lower() in (SUCCESS, "")
