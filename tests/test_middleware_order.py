"""The order in which the runner calls its middleware around a unit (workers/middleware/base.py).

Before hooks run in order and after hooks in reverse, like nested `with` blocks;
a before that returns an outcome ends the run there, and only the middleware that
let the unit through get their after hooks, which run even when something raised.
The runner runs in this process with the scripted sink (tests/scripted.py).
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from importq.errors import NotFoundError
from tests.scripted import TARGET, MakeRunner, ScriptedSink, staged_unit
from workers.jobs import JobView
from workers.middleware.base import Middleware
from workers.outcomes import Defer, Outcome, Result, UnitRun


class Recording(Middleware):
    """Notes each hook it gets in `calls`; `stop` is what its before_unit returns, and
    `fails_in` names a hook that raises (a bug in a middleware)."""

    def __init__(self, name: str, calls: list[str]) -> None:
        self.name, self.calls = name, calls
        self.stop: Outcome | None = None
        self.fails_in = ""

    def note(self, hook: str, detail: str = "") -> None:
        self.calls.append(f"{self.name}.{hook}{detail}")
        if hook == self.fails_in:
            raise RuntimeError(f"a bug in {self.name}.{hook}")

    def before_unit(self, run: UnitRun) -> Outcome | None:
        self.note("before")
        return self.stop

    def on_result(self, run: UnitRun, result: Result) -> Outcome | None:
        self.note("result", f":{type(result).__name__}")
        return None

    def after_unit(self, run: UnitRun, status: str | None) -> None:
        self.note("after", f":{status}")

    def after_job_finished(self, job: JobView) -> None:
        self.note("job")


def with_recorders(
    make_runner: MakeRunner, calls: list[str], *names: str
) -> tuple[Callable[[], str], list[Recording]]:
    """A runner with a Recording middleware per name, after the core's; and a unit runner."""
    runner, store = make_runner()
    added = [Recording(name, calls) for name in names]
    for middleware in added:
        runner.add_middleware(middleware)
    return lambda: runner.run(TARGET, staged_unit(store)), added


def test_the_core_rules_run_in_their_documented_order(make_runner: MakeRunner) -> None:
    runner, _ = make_runner()
    names = [type(middleware).__name__ for middleware in runner.middleware]
    assert names == ["Ordering", "CircuitBreaker", "TargetSetup", "Slots", "RateLimit"]


def test_before_runs_in_order_and_after_in_reverse(
    sink: ScriptedSink, make_runner: MakeRunner
) -> None:
    calls: list[str] = []
    run_unit, _ = with_recorders(make_runner, calls, "a", "b", "c")
    assert run_unit() == "succeeded"
    assert sink.runs == 1
    assert calls == [
        "a.before", "b.before", "c.before",
        "c.result:Delivered", "b.result:Delivered", "a.result:Delivered",
        # The unit's job finished while its outcome was routed: told in order, once.
        "a.job", "b.job", "c.job",
        "c.after:succeeded", "b.after:succeeded", "a.after:succeeded",
    ]  # fmt: skip


def test_after_runs_when_the_sink_raises(sink: ScriptedSink, make_runner: MakeRunner) -> None:
    calls: list[str] = []
    run_unit, _ = with_recorders(make_runner, calls, "a", "b")
    sink.error = NotFoundError("no such queue", target=TARGET)
    assert run_unit() == "failed"
    assert calls[:4] == ["a.before", "b.before", "b.result:NotFoundError", "a.result:NotFoundError"]
    assert calls[-2:] == ["b.after:failed", "a.after:failed"]


@pytest.mark.parametrize(
    ("fails_in", "expected"),
    [
        ("before", ["a.before", "b.before", "a.after:None"]),
        ("result", ["a.before", "b.before", "b.result:Delivered", "b.after:None", "a.after:None"]),
    ],
)
def test_after_runs_when_a_middleware_raises(
    sink: ScriptedSink, make_runner: MakeRunner, fails_in: str, expected: list[str]
) -> None:
    calls: list[str] = []
    run_unit, (_, second) = with_recorders(make_runner, calls, "a", "b")
    second.fails_in = fails_in
    with pytest.raises(RuntimeError, match=f"a bug in b.{fails_in}"):
        run_unit()
    assert calls == expected


def test_an_outcome_from_before_skips_the_sink_and_the_later_middleware(
    sink: ScriptedSink, make_runner: MakeRunner
) -> None:
    calls: list[str] = []
    run_unit, (_, second, _) = with_recorders(make_runner, calls, "a", "b", "c")
    second.stop = Defer("slot")
    assert run_unit() == "waiting"
    assert sink.runs == 0
    # "b" stopped the unit, so it has nothing to undo; "a" had let it through.
    assert calls == ["a.before", "b.before", "a.result:Defer", "a.after:waiting"]
