"""Flower on the configured broker, behind basic auth: the login check and its command line."""

from __future__ import annotations

import ipaddress
import sys
from collections.abc import Mapping

from importq.errors import ConfigError

DEFAULT_PORT = 5555
LOCAL_ADDRESS = "127.0.0.1"
# The tasks page shows the target (task name) and args: "job=<id> unit=<id>", never records.
TASKS_COLUMNS = "name,args,state,started,runtime,worker"
BASIC_AUTH = "FLOWER_BASIC_AUTH"  # Flower reads it from the environment itself


def is_loopback(address: str) -> bool:
    """True when only this machine can reach the address."""
    if address == "localhost":
        return True
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:  # a host name other than localhost may resolve anywhere
        return False


def check_basic_auth(env: Mapping[str, str], address: str) -> str | None:
    """Refuse what would expose Flower; return a warning for a login-free local Flower."""
    logins = env.get(BASIC_AUTH, "")
    if not logins:
        if is_loopback(address):
            return (
                f"{BASIC_AUTH} is not set: Flower on {address} asks for no login "
                "(only this machine can reach it) and its HTTP API stays closed"
            )
        raise ConfigError(
            f"{BASIC_AUTH} is not set, so Flower on {address} would show every task to "
            f"anyone who can reach it: set {BASIC_AUTH}=user:password (from your secret "
            f"store or .env), or listen on {LOCAL_ADDRESS}"
        )
    for number, login in enumerate(logins.split(","), start=1):
        user, sep, password = login.partition(":")
        if not (user and sep and password):
            # The value itself is a secret: say which entry is wrong, never what it holds.
            raise ConfigError(
                f"{BASIC_AUTH} entry {number} is not user:password; "
                "write it as user:password[,user2:password2]"
            )
    return None


def flower_argv(port: int, address: str) -> list[str]:
    """The Celery command that serves Flower for importq's app (no secret on the line)."""
    return [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "workers.app",
        "flower",
        f"--port={port}",
        f"--address={address}",
        f"--tasks_columns={TASKS_COLUMNS}",
    ]
