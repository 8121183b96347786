"""`importq demo` and `importq simulate`: the whole path on this machine, the target simulators."""

from __future__ import annotations

import sys

import click


@click.command(context_settings={"ignore_unknown_options": True, "help_option_names": []})
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def simulate(args: tuple[str, ...]) -> None:
    """Serve the target simulators on 127.0.0.1 (--port, --latency, --fault-rate, --help)."""
    from simulators.run import main as run_simulators

    sys.exit(run_simulators(list(args)))


@click.command()
@click.option("--records", default=20_000, show_default=True)
def demo(records: int) -> None:
    """Everything local: embedded Redis, simulator, worker; import sample data, show a summary."""
    from importq.demo import run_demo

    sys.exit(run_demo(records))
