"""`importq deploy-files`: the Procfile, docker-compose.yml, .env.example and the README's
target settings, written from the target registry (importq/deploy_files.py)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from importq import deploy_files


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
    wanted = deploy_files.files(root, deploy_files.registered())
    if check:
        stale = deploy_files.stale(root, wanted)
        for path in stale:
            click.echo(f"{path} is out of date: run `importq deploy-files`", err=True)
        sys.exit(1 if stale else 0)
    written = deploy_files.write(root, wanted)
    click.echo("wrote " + ", ".join(written) if written else "every file is up to date")
