"""`importq serve` (the HTTP API and dashboard) and `importq serve-token` (a new API token)."""

from __future__ import annotations

import os
import signal
import sys

import click

from importq.cli.common import announce_redis

DEFAULT_PORT = 8080
LOCAL_ADDRESS = "127.0.0.1"


@click.command()
@click.option(
    "--host",
    default=LOCAL_ADDRESS,
    show_default=True,
    envvar="IMPORTQ_SERVE_ADDRESS",
    help="Address to listen on (env IMPORTQ_SERVE_ADDRESS); TLS is a proxy's job.",
)
@click.option(
    "--port",
    type=int,
    default=DEFAULT_PORT,
    show_default=True,
    envvar="IMPORTQ_SERVE_PORT",
    help="HTTP port (env IMPORTQ_SERVE_PORT).",
)
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    envvar="IMPORTQ_SERVE_WORKERS",
    help="HTTP server processes (env IMPORTQ_SERVE_WORKERS). One speaks HTTP for about 600 "
    "bodies of 1,000 records a second; the publishing is done by --publishers.",
)
@click.option(
    "--publishers",
    type=click.IntRange(min=1),
    envvar="IMPORTQ_SERVE_PUBLISHERS",
    help="Publisher processes of each server process (env IMPORTQ_SERVE_PUBLISHERS; default: "
    "one per core): they stage the bodies, which is CPU-bound.",
)
def serve(host: str, port: int, workers: int, publishers: int | None) -> None:
    """Serve the HTTP API (/v1/..., its document at /openapi.json) and the dashboard (/ui/)."""
    import uvicorn

    from importq.cli.services import ensure_free
    from importq.serve.app import from_environment
    from importq.serve.publishers import COUNT_SETTING

    if publishers:  # read by every server process's app (uvicorn's workers inherit it)
        os.environ[COUNT_SETTING] = str(publishers)
    ensure_free(host, port, "importq serve", "--port (or IMPORTQ_SERVE_PORT)")
    announce_redis()
    app = from_environment()  # refuses to start without tokens, before any worker process
    click.echo(
        f"importq serve: http://{host}:{port}/ (API /v1, document /openapi.json, dashboard /ui/)",
        err=True,
    )
    # uvicorn shuts down gracefully on SIGTERM, then raises the signal again for the handler
    # it found: this one makes that a clean exit (0) for process runners.
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: sys.exit(0))
    # uvicorn's "auto" loop and HTTP parser are uvloop and httptools, installed with
    # uvicorn[standard]: the compiled pair, the field's usual choice for throughput.
    if workers == 1:
        uvicorn.run(app, host=host, port=port, log_level="info", server_header=False)
        return
    uvicorn.run("importq.serve.app:from_environment", factory=True, workers=workers,
                host=host, port=port, log_level="info", server_header=False)  # fmt: skip


@click.command("serve-token")
@click.argument("name")
@click.option("--write", is_flag=True, help="May publish, replay, cancel, pause (default: read).")
@click.option("--targets", default="*", show_default=True, help="`*` or a comma list.")
def serve_token(name: str, write: bool, targets: str) -> None:
    """Make an API token for NAME: the token once on stdout, its hashed line on stderr."""
    from importq.serve.auth import new_token, token_line
    from workers.targets import TARGETS

    if targets != "*":
        unknown = [t for t in targets.split(",") if t not in TARGETS]
        if unknown:
            raise click.BadParameter(
                f"no target(s) {unknown}; the targets are {', '.join(TARGETS)}",
                param_hint="--targets",
            )
    if not name.isidentifier():
        raise click.BadParameter("a name of letters, digits and _ (it is shown in logs)")
    token = new_token()
    click.echo(token)
    line = token_line(name, token, "write" if write else "read", targets)
    click.echo(
        "add this line to IMPORTQ_SERVE_TOKENS (`;` between entries) or to the file "
        f"IMPORTQ_SERVE_TOKENS_FILE; keep the token itself in the producer:\n{line}",
        err=True,
    )
