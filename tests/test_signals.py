"""A lost lease or a shutdown stops a unit as a control signal, never taken for a failure."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from importq import errors
from importq.errors import ImportqError
from importq.settings import load
from workers import signals, targets, vendor_calls
from workers.signals import ControlSignal, HandBack, LeaseLost, LeaseUnconfirmed
from workers.targets.datasource.client import DataSourceRef


@pytest.mark.parametrize("signal", [LeaseLost, LeaseUnconfirmed, HandBack])
def test_a_control_signal_is_outside_the_error_tree(signal: type[Exception]) -> None:
    assert issubclass(signal, ControlSignal)
    assert not issubclass(signal, ImportqError)
    assert signal.__name__ not in (errors.__doc__ or "")
    assert not hasattr(errors, signal.__name__)


@pytest.mark.parametrize(("module", "root"), [(errors, ImportqError), (signals, ControlSignal)])
def test_each_module_draws_every_class_it_defines(module: Any, root: type[Exception]) -> None:
    defined = [
        value.__name__
        for value in vars(module).values()
        if isinstance(value, type)
        and issubclass(value, root)
        and value.__module__ == module.__name__
    ]
    assert defined and all(name in (module.__doc__ or "") for name in defined)


# The first vendor request each target's unit sends, made through its real client.
FIRST_REQUEST: dict[str, Callable[[Any, Any], object]] = {
    "sourcing_data": lambda sink, client: sink.preflight(client, {}),
    "blue": lambda sink, client: sink.preflight(client, {}),
    "datasource": lambda sink, client: client.put(
        DataSourceRef("Sports", external_id="SPORTS-001"), "Rows", [["S1", "Football"]]
    ),
    "workflow_import": lambda sink, client: client.post_batch([{"id": "1"}], {"creationPath": "x"}),
    "blueshift": lambda sink, client: client.api.trigger("3f2b1c7e-0000-4000-8000-000000000000"),
    "http_batch": lambda sink, client: client.post([{"id": "1"}], "job:0"),
}


def test_every_target_is_checked_for_letting_a_lost_lease_through() -> None:
    assert set(FIRST_REQUEST) == set(targets.TARGETS)


@pytest.mark.parametrize("signal", [LeaseLost, LeaseUnconfirmed])
@pytest.mark.parametrize("target", sorted(FIRST_REQUEST))
def test_a_lost_lease_before_a_vendor_request_reaches_the_runner_unchanged(
    target: str, signal: type[LeaseLost], simulators: dict[str, Any]
) -> None:
    declared = targets.get(target)
    sink = declared.sink
    client = declared.client(load())
    lost = signal(f"unit job:0: lease lost before a {target} request")

    def check_lease() -> None:
        raise lost

    try:
        with vendor_calls.before_each_request(check_lease), pytest.raises(signal) as caught:
            FIRST_REQUEST[target](sink, client)
    finally:
        client.close()
    assert caught.value is lost  # not mapped to Unreachable, not retried, not wrapped
