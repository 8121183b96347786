"""`importq deploy-files`: the Procfile, docker-compose.yml, .env.example and the README's
target settings, written from the target registry (importq/deploy/)."""

from __future__ import annotations

import sys
from pathlib import Path

import click


@click.command("deploy-files")
@click.option(
    "--root",
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    default=Path("."),
    show_default=True,
    help="The project checkout to write in.",
)
@click.option("--check", is_flag=True,
              help="Write nothing; exit 1 naming each file the registry would change.")  # fmt: skip
def deploy_files_command(root: Path, check: bool) -> None:
    """Write the deployment files from the registered targets (one worker each)."""
    # On demand: the OpenAPI document it writes brings the HTTP API (FastAPI), the
    # producers and the worker app, which every other command's start need not load.
    from importq import deploy

    wanted = deploy.files(root, deploy.registered())
    if check:
        stale = deploy.stale(root, wanted)
        for path in stale:
            click.echo(f"{path} is out of date: run `importq deploy-files`", err=True)
        sys.exit(1 if stale else 0)
    written = deploy.write(root, wanted)
    click.echo("wrote " + ", ".join(written) if written else "every file is up to date")
