"""Bearer tokens: read hashed from a setting or a file, each scoped to targets and read/write.

A token line is `NAME SHA256 SCOPE TARGETS`: SCOPE is `read` or `write` (write includes
read), TARGETS is `*` or a comma list. Only the SHA-256 of a token is ever stored, so the
setting and the file hold nothing a reader could use; `importq serve-token NAME` makes a
token and prints its line. A presented token is hashed and compared with every stored
hash in constant time. No token, or an unknown one: 401. A known token without the
target or the write scope: 403.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from pathlib import Path

from importq.errors import ConfigError
from importq.settings import Settings

TOKENS_SETTING = "IMPORTQ_SERVE_TOKENS"
TOKENS_FILE_SETTING = "IMPORTQ_SERVE_TOKENS_FILE"
SCOPES = ("read", "write")
ALL_TARGETS = "*"
_TOKEN_BYTES = 32


class Unauthenticated(Exception):
    """No token, or one that is not configured: 401."""


class Forbidden(Exception):
    """A known token without the scope or the target asked for: 403."""


@dataclass(frozen=True)
class Token:
    name: str
    digest: str  # hex SHA-256 of the token
    write: bool
    targets: frozenset[str] | None  # None: every target

    def may_read(self, target: str) -> bool:
        return self.targets is None or target in self.targets

    def require(self, target: str, write: bool = False) -> None:
        """Forbidden unless this token may read (or write) `target`."""
        if not self.may_read(target):
            raise Forbidden(f"token {self.name!r} is not scoped to target {target!r}")
        if write and not self.write:
            raise Forbidden(f"token {self.name!r} may only read; this needs a write token")


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    """A fresh random token (URL-safe, 256 bits), prefixed so it is recognisable in a leak."""
    return "iq_" + secrets.token_urlsafe(_TOKEN_BYTES)


def token_line(name: str, token: str, scope: str, targets: str) -> str:
    return f"{name} {digest(token)} {scope} {targets}"


def parse(text: str, source: str) -> list[Token]:
    """Token lines (newlines or `;` between them, `#` comments); ConfigError names the line."""
    tokens = []
    for number, line in enumerate(text.replace(";", "\n").splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        tokens.append(_parse_line(line, f"{source} entry {number}"))
    return tokens


def _parse_line(line: str, where: str) -> Token:
    fields = line.split()
    if len(fields) != 4:
        raise ConfigError(
            f"{where}: expected `NAME SHA256 SCOPE TARGETS`, got {len(fields)} "
            "fields; `importq serve-token NAME` prints a line"
        )
    name, hashed, scope, targets = fields
    if len(hashed) != 64 or any(c not in "0123456789abcdef" for c in hashed.lower()):
        raise ConfigError(
            f"{where}: {name}'s hash is not a hex SHA-256 (64 hex digits); the "
            "token itself never goes in the setting"
        )
    if scope not in SCOPES:
        raise ConfigError(f"{where}: scope {scope!r} is not one of {', '.join(SCOPES)}")
    scoped = None if targets == ALL_TARGETS else frozenset(targets.split(","))
    return Token(name, hashed.lower(), scope == "write", scoped)


def load(settings: Settings) -> list[Token]:
    """The tokens of IMPORTQ_SERVE_TOKENS and IMPORTQ_SERVE_TOKENS_FILE."""
    tokens = parse(settings.get(TOKENS_SETTING), TOKENS_SETTING)
    path = settings.get(TOKENS_FILE_SETTING)
    if path:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as error:
            raise ConfigError(f"{TOKENS_FILE_SETTING}={path}: {error.strerror}") from None
        tokens += parse(text, path)
    return tokens


class TokenRing:
    """The configured tokens; `check` finds the one a request presents."""

    def __init__(self, tokens: list[Token]) -> None:
        self.tokens = tokens

    def check(self, authorization: str | None) -> Token:
        scheme, _, presented = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not presented.strip():
            raise Unauthenticated("send `Authorization: Bearer <token>`")
        wanted = digest(presented.strip())
        found = None
        for token in self.tokens:  # no early exit: every stored hash is compared
            if hmac.compare_digest(token.digest, wanted):
                found = token
        if found is None:
            raise Unauthenticated("the token is not one of the configured tokens")
        return found
