"""`status`, `status --wait`, `jobs` and their --json say why a failed or partial job failed.

The routing runs in-process on the scripted target (tests/scripted.py) to give a job
exact failures; one job runs through a real worker against the SourcingData simulator.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from click.testing import CliRunner

from importq.cli import main
from importq.errors import FinalError
from tests.helpers import publish_sourcing, sample_records, wait_for_job
from tests.scripted import TARGET, MakeRunner, ScriptedSink
from workers.failures import kind_of
from workers.jobs import JobStore
from workers.targets.base import Delivered, RunContext

LONG_REASON = "the vendor refused the batch: " + "field Code is not in the catalogue; " * 12


def cli(*args: str) -> Any:
    return CliRunner().invoke(main, list(args))


def job_of_units(store: JobStore, units: int) -> tuple[str, list[str]]:
    job_id = store.create(TARGET, {})
    unit_ids = []
    for n in range(units):  # unit n holds n + 1 records
        records = [{"n": n, "i": i} for i in range(n + 1)]
        unit_ids.append(store.stage_unit(job_id, TARGET, n, records, rescue_ms=60_000))
    store.open(job_id)
    return job_id, unit_ids


def run_each(runner: Any, sink: ScriptedSink, unit_ids: list[str], errors: list[Any]) -> None:
    for unit_id, error in zip(unit_ids, errors, strict=True):
        sink.error = error
        runner.run(TARGET, unit_id)


@pytest.fixture
def partial_job(sink: ScriptedSink, make_runner: MakeRunner) -> tuple[str, list[str]]:
    """Unit 0 delivered; 1 refused with the long reason; 2 and 3 refused with a short one."""
    runner, store = make_runner()
    job_id, unit_ids = job_of_units(store, 4)
    short = FinalError("HTTP 403: not allowed", target=TARGET)
    run_each(runner, sink, unit_ids, [None, FinalError(LONG_REASON, target=TARGET), short, short])
    return job_id, unit_ids


def test_status_says_the_first_and_the_most_common_errors_with_counts(
    partial_job: tuple[str, list[str]],
) -> None:
    job_id, unit_ids = partial_job
    shown = cli("status", job_id)
    assert shown.exit_code == 2, shown.output  # partial
    lines = shown.stdout.splitlines()
    first = next(line for line in lines if "first error" in line)
    assert f"(unit {unit_ids[1]}): {TARGET}: the vendor refused the batch" in first
    assert first.endswith("(in full: --json)") and len(first) < 200  # one line in text
    common = lines[lines.index("  most common errors:") + 1 :]
    # Most records first: the 403 cost units 2 and 3 (3 + 4 records), the long one 2 records.
    assert common[0] == f"    2 units, 7 records: {TARGET}: HTTP 403: not allowed"
    assert common[1].startswith(f"    1 unit, 2 records: {TARGET}: the vendor refused")

    data = json.loads(cli("status", job_id, "--json").stdout)
    failure = data["failure"]
    assert failure["first_unit"] == unit_ids[1]
    assert failure["first_error"] == f"{TARGET}: {LONG_REASON}"  # in full
    assert [(e["units"], e["records"]) for e in failure["errors"]] == [(2, 7), (1, 2)]
    assert failure["errors"][1]["error"] == f"{TARGET}: {LONG_REASON}"


def test_jobs_says_why_each_failed_job_failed_and_nothing_for_the_others(
    partial_job: tuple[str, list[str]], sink: ScriptedSink, make_runner: MakeRunner
) -> None:
    failed_id, _ = partial_job
    runner, store = make_runner()
    good_id, good_units = job_of_units(store, 1)
    run_each(runner, sink, good_units, [None])

    listed = cli("jobs")
    assert listed.exit_code == 0, listed.output
    rows = listed.stdout.splitlines()
    failed_row = next(i for i, row in enumerate(rows) if row.startswith(failed_id))
    assert "partial" in rows[failed_row]
    assert rows[failed_row + 1].startswith("    first error (unit ")
    assert "2 units, 7 records: " in rows[failed_row + 3]
    good_row = next(i for i, row in enumerate(rows) if row.startswith(good_id))
    assert good_row + 1 == len(rows) or not rows[good_row + 1].startswith("    ")

    by_id = {row["id"]: row for row in json.loads(cli("jobs", "--json").stdout)}
    assert by_id[good_id]["failure"] is None
    assert by_id[failed_id]["failure"]["first_error"] == f"{TARGET}: {LONG_REASON}"


def test_records_refused_inside_a_delivered_unit_are_counted_from_the_dead_letters(
    sink: ScriptedSink, make_runner: MakeRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse_odd(ctx: RunContext[None, None]) -> Delivered:
        odd = [(r, f"row {r['i']}: amount is negative") for r in ctx.records if r["i"] == 1]
        odd += [(r, "row: currency unknown") for r in ctx.records if r["i"] >= 2]
        return Delivered(len(ctx.records) - len(odd), rejected=odd)

    monkeypatch.setattr(sink, "run", refuse_odd)
    runner, store = make_runner()
    job_id, unit_ids = job_of_units(store, 4)  # 1, 2, 3, 4 records
    for unit_id in unit_ids:
        runner.run(TARGET, unit_id)
    data = json.loads(cli("status", job_id, "--json").stdout)
    assert data["state"] == "partial"
    failure = data["failure"]
    assert failure["first_unit"] == unit_ids[1] and failure["first_error"].startswith("row 1")
    # "currency unknown": units 2 and 3 (1 + 2 records); "row 1" once in each of units 1-3.
    assert [(e["error"], e["units"], e["records"]) for e in failure["errors"]] == [
        ("row 1: amount is negative", 3, 3),
        ("row: currency unknown", 2, 3),
    ]
    assert (failure["dead_letters_counted"], failure["dead_letters_total"]) == (6, 6)


def test_a_worker_run_job_says_why_in_status_wait_and_jobs(sim: Any, start_worker: Any) -> None:
    sim.configure(poison_record_ids={"r-7", "r-23"})
    start_worker(concurrency=2)
    job_id = publish_sourcing(sample_records(40))
    waited = cli("status", job_id, "--wait", "--json")
    assert waited.exit_code == 2, waited.output  # partial: r-7 and r-23 isolated by bisection
    data = json.loads(waited.stdout[waited.stdout.index("{") :])
    failure = data["failure"]
    # Two workers race: either poisoned record's unit may fail first.
    assert re.search(r"Value 'r-(7|23)' doesn't fit", failure["first_error"])
    assert failure["first_unit"].startswith(f"{job_id}:0.")  # a half found by bisection
    # One error about two records (two queue items): counted as one kind, two texts.
    [kind] = failure["errors"]
    assert (kind["units"], kind["records"], kind["variants"]) == (2, 2, 2)
    assert "2 units, 2 records (2 texts, other ids or values): " in cli("status", job_id).output
    assert "doesn't fit" in cli("status", job_id, "--wait").output
    assert "doesn't fit" in cli("jobs").output
    assert wait_for_job(job_id).records_dead == 2


def test_reports_of_one_error_about_other_ids_count_as_one_kind() -> None:
    item = "sourcing_data: queue item {} failed: Value '{}' doesn't fit to expected format."
    first = item.format("dc2d12ed-bb83-470c-94d4-0545b84e247d", "r-7")
    second = item.format("4a431cc8-0094-4ec6-b02a-3873de2b3e83", "r-3012")
    assert kind_of(first) == kind_of(second)
    assert kind_of("blue: HTTP 404: no such course") != kind_of("blue: HTTP 409: no such course")
    assert kind_of("row 1: amount") != kind_of("row 2: amount")  # short numbers tell apart
    assert kind_of("record EMP-000123 refused") == kind_of("record EMP-004711 refused")
