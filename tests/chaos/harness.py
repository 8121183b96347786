"""What the chaos scenarios share: a Redis seen from the test, worker fleets, per-target jobs
and the verdict read from the simulators' ledgers.

Every scenario is judged only from the ledgers (each record committed once, none
twice) and from the job's final state. Waits have generous deadlines; times are
printed as figures, never asserted.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis
from celery import Celery
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from importq import broker
from importq.broker import RedisChoice
from importq.processes import Process, celery_worker_command
from tests.chaos.diagnose import quick_client, stall_report
from tests.helpers import finished_job, wait_until
from workers.dlq import DeadLetters
from workers.jobs import JobStore, JobView

ROUNDS = max(1, int(os.environ.get("CHAOS_ROUNDS", "2")))
RANDOM = random.Random(os.environ.get("CHAOS_SEED"))  # unseeded: each run tries other moments
JOB_TIMEOUT = 180.0
HEADWAY_TIMEOUT = 120.0  # nothing reached the vendor for this long: the scenario stalled
_WORKER_NUMBERS = itertools.count()  # node names and logs unique across a test's fleets
# What every chaos worker and producer runs with, on top of tests/conftest.py's TEST_ENV:
# a unit staying unclaimed this long (its message lost) is sent again (issue 10, defect 4).
CHAOS_ENV = {"IMPORTQ_RESCUE_SECONDS": "3"}

# Waits that cost no attempt and foreign-import checks happen within a second.
BLUE_ENV = {"BLUE_FOREIGN_RETRY": "0.5", "BLUE_BUSY_RETRY": "0.2"}
DS_HEADERS = "Code:Title,Name:SubLeft,Info"
DS_SOURCE = "chaos-sports"


def patient_client(url: str) -> redis.Redis:
    """A client that rides out a Redis restart: reconnects with backoff for about a minute."""
    retry = Retry(ExponentialBackoff(cap=1.0, base=0.05), retries=80)
    return redis.Redis.from_url(
        url,
        socket_timeout=5,
        socket_connect_timeout=2,
        retry=retry,
        retry_on_error=[redis.ConnectionError, redis.TimeoutError],
    )


class Site:
    """One Redis as the test sees it: job state, publishing, waiting. Not workers.app's globals."""

    def __init__(self, url: str, choice: RedisChoice | None = None) -> None:
        """`choice`: a Redis Sentinel group's (broker.choose), followed through failovers."""
        self.url = url
        self.choice = choice
        self.redis = broker.connect(choice) if choice else patient_client(url)
        self.store = JobStore(self.redis)
        broker_url = choice.broker_url() if choice else url
        self._celery = Celery("importq-chaos", broker=broker_url, set_as_current=False)
        options: dict[str, object] = {"socket_timeout": 10, "socket_connect_timeout": 5}
        options.update(choice.transport_options() if choice else {})
        self._celery.conf.update(
            task_serializer="json",
            accept_content=["json"],
            broker_connection_retry_on_startup=True,
            broker_transport_options=options,
        )

    def publish_unit(self, unit_id: str, target: str, countdown: float | None = None) -> None:
        """The small message that wakes a worker (the same envelope as workers.app sends)."""
        from workers import app, keys

        envelope = {"unit_id": unit_id, "job_id": keys.job_of(unit_id), "target": target,
                    "schema_version": 1}  # fmt: skip
        self._celery.send_task(app.task_name(target), args=[envelope], queue=target,
                               countdown=countdown, argsrepr=f"unit={unit_id}")  # fmt: skip

    def publish(
        self,
        target: str,
        records: Iterable[dict[str, Any]],
        params: dict[str, Any],
        publish_unit: Callable[[str, str, float | None], None] | None = None,
        env: dict[str, str] | None = None,
    ) -> str:
        """Publish a job as a producer would; `env` overrides the settings it plans units by."""
        from importq.settings import load
        from producers.publish import locate, publish

        settings = load({**os.environ, **CHAOS_ENV, **(env or {})})
        wake = publish_unit or self.publish_unit
        return publish(target, locate(records), params, settings=settings, store=self.store,
                       publish_unit=wake)  # fmt: skip

    def publish_job(self, spec: TargetJob, **kwargs: Any) -> str:
        return self.publish(spec.target, spec.records, spec.params, env=spec.publish_env, **kwargs)

    def job(self, job_id: str) -> JobView | None:
        try:
            return self.store.get(job_id)
        except redis.RedisError:
            return None  # Redis is down for a moment: ask again later

    def wait_job(
        self, job_id: str, timeout: float = JOB_TIMEOUT, fleet: Fleet | None = None
    ) -> JobView:
        """The job once finished; past `timeout` the failure carries a stall report."""
        try:
            return finished_job(job_id, self.job, timeout)
        except AssertionError as error:
            raise AssertionError(f"{error}{self.stall_report(job_id, fleet)}") from None

    def stall_report(
        self,
        job_id: str | None,
        fleet: Fleet | None = None,
        vendor: Callable[[], Any] | None = None,
    ) -> str:
        """tests/chaos/diagnose.py's report of this Redis, the fleet's workers and the vendor."""
        client = self.redis if self.choice else quick_client(self.url)
        try:
            return stall_report(client, job_id, fleet.workers if fleet else (), vendor)
        finally:
            if client is not self.redis:
                client.close()

    def unit(self, unit_id: str) -> dict[str, str]:
        try:
            return self.store.unit(unit_id)
        except redis.RedisError:
            return {}

    def close(self) -> None:
        self._celery.close()
        self.redis.close()


class Fleet:
    """Real `celery worker` processes of one test, each in its own process group."""

    def __init__(self, log_dir: Path, base_env: dict[str, str]) -> None:
        self.log_dir = log_dir
        self.base_env = base_env
        self.workers: list[Process] = []
        self.kills = 0

    def start(
        self, queues: str, concurrency: int = 1, env: dict[str, str] | None = None
    ) -> Process:
        """A worker on these queues, once it is ready (its log says so)."""
        worker = self.launch(queues, concurrency, env)
        worker.wait_ready()
        return worker

    def launch(
        self, queues: str, concurrency: int = 1, env: dict[str, str] | None = None
    ) -> Process:
        """A worker on these queues, started but not waited for (see Process.wait_ready)."""
        number = next(_WORKER_NUMBERS)
        name = f"chaos{number}-{os.getpid()}@localhost"
        command = celery_worker_command(queues, concurrency, name)
        log_path = self.log_dir / f"worker{number}.log"
        worker = Process(command, {**self.base_env, **(env or {})}, log_path)
        self.workers.append(worker)
        return worker

    def kill(self, worker: Process) -> None:
        """kill -9 of the whole group: main process and pool children."""
        worker.kill()
        self.kills += 1

    def terminate(self, worker: Process, timeout: float = 60) -> None:
        """SIGTERM to the main process only (what `docker stop` sends), and wait for it."""
        os.kill(worker.process.pid, signal.SIGTERM)
        worker.process.wait(timeout=timeout)

    def stop_all(self) -> None:
        """Stop every worker: the scenario has been judged, so kill -9 (a warm shutdown of
        each would cost the suite a second or two per worker)."""
        for worker in self.workers:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(worker.process.pid, signal.SIGKILL)
        for worker in self.workers:
            worker.stop()  # reaps it and closes its log


# -- the jobs each target runs, and how its ledger is read ------------------------------


@dataclass
class Verdict:
    expected: int
    committed: int  # distinct records the vendor holds
    twice: int  # records committed more than once
    held: int = 0  # records held for review that the vendor does not hold (workflow)
    review: int = 0  # records held for review (workflow: a possible duplicate batch)
    notes: list[str] = field(default_factory=list)

    @property
    def lost(self) -> int:
        return max(0, self.expected - self.committed - self.held)

    def line(self) -> str:
        held = f", {self.review} held for review" if self.review else ""
        extra = f" ({'; '.join(self.notes)})" if self.notes else ""
        return f"{self.lost} lost, {self.twice} twice{held}{extra}"


@dataclass
class TargetJob:
    """One job for one target: its records, parameters, worker env and ledger reading."""

    target: str
    records: list[dict[str, Any]]
    params: dict[str, Any]
    concurrency: int
    worker_env: dict[str, str]
    configure: dict[str, Any]
    publish_env: dict[str, str] = field(default_factory=dict)  # settings the producer plans by
    jitter: float = 1.0  # a fault lands up to this many seconds after the vendor saw headway

    @property
    def size(self) -> int:
        return len(self.records)

    def prepare(self, sims: dict[str, Any]) -> Any:
        sim = sims[self.target]
        sim.configure(**self.configure)
        if self.target == "sourcing_data":  # the credentials tests/conftest.py gives workers
            env = os.environ
            sim.configure(token=env["SOURCING_DATA_TOKEN"], agents={env["SOURCING_DATA_AGENT_ID"]})
        return sim

    def progress(self, sims: dict[str, Any]) -> int:
        """Requests the vendor has seen: grows while the job makes headway."""
        ledger = sims[self.target].ledger()
        if self.target == "blue":
            return int(sum(ledger["requests"].values()))
        return int(ledger["requests"])

    def verdict(self, sims: dict[str, Any], job: JobView | None, site: Site) -> Verdict:
        ledger = sims[self.target].ledger()
        return _VERDICTS[self.target](self, ledger, job, site)


def sourcing_data_job(records: int, latency: float = 0.05, concurrency: int = 2) -> TargetJob:
    rows = [{"entityId": "CHAOS", "recordId": f"r-{n}", "data": {"Code": f"C{n}"}}
            for n in range(records)]  # fmt: skip
    return TargetJob("sourcing_data", rows, {"operation_id": "op-chaos"}, concurrency, {},
                     {"latency_seconds": latency, "processing_seconds": 0.01})  # fmt: skip


def sourcing_whole_job(records: int, per_item: int, latency: float) -> TargetJob:
    """Queue items of one request each and no --operation-id: every start carries its whole
    item under an operationId of its own (a lost answer is settled by finding the item). A
    short request timeout keeps the wait for a start that found nothing short."""
    rows = [{"entityId": "CHAOS", "recordId": f"w-{n}", "data": {"Code": f"C{n}"}}
            for n in range(records)]  # fmt: skip
    per = {"SOURCING_DATA_RECORDS_PER_ITEM": str(per_item)}
    return TargetJob("sourcing_data", rows, {}, 2, {**per, "SOURCING_DATA_TIMEOUT": "5"},
                     {"latency_seconds": latency, "processing_seconds": 0.01},
                     publish_env=per)  # fmt: skip


def workflow_job(records: int, per_batch: int = 200, latency: float = 0.05) -> TargetJob:
    rows = [{"EmployeeId": f"E{n:06d}", "Name": f"Person {n}"} for n in range(records)]
    env = {"WORKFLOW_IMPORT_RECORDS_PER_BATCH": str(per_batch)}  # batches are cut at publish
    sim = {"latency_seconds": latency, "key_column": "EmployeeId", "retry_after_seconds": 0}
    return TargetJob("workflow_import", rows, {}, 2, env, sim, publish_env=env)


def datasource_job(rows: int, per_request: int = 500, latency: float = 0.1) -> TargetJob:
    vals = [{"Vals": [f"K{n}", f"Sport {n}", f"about {n}"]} for n in range(rows)]
    params = {"mode": "replace", "external_id": DS_SOURCE, "name": "Chaos sports",
              "headers": DS_HEADERS}  # fmt: skip
    env = {"DATASOURCE_ROWS_PER_REQUEST": str(per_request),
           "DATASOURCE_NEW_ROWS_PER_REQUEST": str(per_request)}  # fmt: skip
    sim = {"latency_seconds": latency, "data_sources": {DS_SOURCE}}
    return TargetJob("datasource", vals, params, 1, env, sim, jitter=0.8)


def blue_job(rows: int, per_push: int = 100, latency: float = 0.02) -> TargetJob:
    users = [{"USER_ID": f"u{n:05d}", "FIRST_NAME": f"First {n}", "LAST_NAME": f"Last {n}",
              "EMAIL": f"u{n:05d}@example.edu"} for n in range(rows)]  # fmt: skip
    env = {"BLUE_ROWS_PER_PUSH": str(per_push), **BLUE_ENV}
    sim = {"latency_seconds": latency, "prepare_seconds": 0.3}
    return TargetJob("blue", users, {"datasource": "Users"}, 1, env, sim, jitter=0.5)


def _sourcing(spec: TargetJob, ledger: dict[str, Any], job: Any, site: Site) -> Verdict:
    commits: dict[str, int] = ledger["commits"]
    wanted = {f"{r['entityId']}/{r['recordId']}" for r in spec.records}
    twice = sum(1 for n in commits.values() if n > 1)
    notes = [f"{ledger['items']['Canceled']} items cancelled"]
    notes += [f"committed twice through item {json.dumps(item)}" for item in ledger["twice_items"]]
    return Verdict(spec.size, len(wanted & set(commits)), twice, notes=notes)


def _workflow(spec: TargetJob, ledger: dict[str, Any], job: Any, site: Site) -> Verdict:
    # The ledger keys a record by "<creationPath>/<key column>".
    committed = {k.rsplit("/", 1)[-1]: n for k, n in ledger["records_by_key"].items()}
    wanted = {r["EmployeeId"] for r in spec.records}
    landed = wanted & set(committed)
    twice = sum(1 for n in committed.values() if n > 1)
    held: set[str] = set()
    if job is not None:  # a batch whose POST may have landed waits for review, by design
        for entry in DeadLetters(site.redis).entries(job.id):
            if "possible duplicate" in entry["reason"]:
                held.add(entry["record"]["EmployeeId"])
    notes = [f"{ledger['batches']} batches"]
    if held:
        notes.append(f"{len(held & landed)} of {len(held)} held records did land")
    return Verdict(spec.size, len(landed), twice, held=len(held - landed), review=len(held),
                   notes=notes)  # fmt: skip


def _datasource(spec: TargetJob, ledger: dict[str, Any], job: Any, site: Site) -> Verdict:
    source = ledger["data_sources"].get(DS_SOURCE, {"rows": []})
    now = {tuple(vals) for vals in source["rows"]}
    wanted = {tuple(r["Vals"]) for r in spec.records}
    ops = [op for op in ledger["operations"] if op["data_source"] == DS_SOURCE]
    # Rows written after the data source's last full replace: each published row once.
    last = max((i for i, op in enumerate(ops) if op["kind"] == "Rows"), default=0)
    written = sum(op["rows"] for op in ops[last:])
    twice = max(0, written - spec.size)
    most = ledger["max_in_flight_per_data_source"]
    notes = [f"{sum(1 for op in ops if op['kind'] == 'Rows')} replaces begun",
             f"most requests at once on the data source {most}"]  # fmt: skip
    if most > 1:
        twice = max(twice, 1)  # two writers on one data source: the limit was broken
    stray = len(now - wanted)
    if stray:
        notes.append(f"{stray} rows not published")
    return Verdict(spec.size, len(now & wanted), twice, notes=notes)


def _blue(spec: TargetJob, ledger: dict[str, Any], job: Any, site: Site) -> Verdict:
    states = ledger["transactions"]
    notes = [f"{states.get('cancelled', 0)} transactions cancelled",
             f"most open at once {ledger['max_open']}"]  # fmt: skip
    twice = int(ledger["duplicates"])
    if ledger["max_open"] > 1:
        twice = max(twice, 1)
    return Verdict(spec.size, int(ledger["committed_rows"]) - twice, twice, notes=notes)


_VERDICTS: dict[str, Callable[[TargetJob, dict[str, Any], Any, Site], Verdict]] = {
    "sourcing_data": _sourcing,
    "workflow_import": _workflow,
    "datasource": _datasource,
    "blue": _blue,
}


def client_ids(client: redis.Redis) -> list[int]:
    """Every client connection of the server except the one asking."""
    mine = int(client.client_id())
    return [int(c["id"]) for c in client.client_list() if int(c["id"]) != mine]


def finished(site: Site, job_id: str) -> bool:
    job = site.job(job_id)
    return job is not None and job.finished


def mid_job(spec: TargetJob, sims: dict[str, Any], site: Site, job_id: str, fleet: Fleet) -> bool:
    """Wait until the vendor sees the job at work, then a random moment more; False if done.
    A job that makes no headway for HEADWAY_TIMEOUT fails with a stall report."""
    seen = spec.progress(sims)

    def headway() -> bool:
        return spec.progress(sims) > seen or finished(site, job_id)

    try:
        wait_until("the job to make headway", headway, timeout=HEADWAY_TIMEOUT)
    except AssertionError as error:
        vendor = sims[spec.target].ledger
        raise AssertionError(f"{error}{site.stall_report(job_id, fleet, vendor)}") from None
    time.sleep(RANDOM.uniform(0.0, spec.jitter))
    return not finished(site, job_id)


def publish_wait_command(records: Path) -> list[str]:
    """`importq publish sourcing_data <records> --wait` of this checkout (-c rather than the
    console script: the importq the workers run), on the chaos operation."""
    main = "import sys; from importq.cli import main; sys.exit(main())"
    return [sys.executable, "-c", main, "publish", "sourcing_data", str(records),
            "--operation-id", "op-chaos", "--wait"]  # fmt: skip


def latest_job_id(site: Site) -> str | None:
    """The newest job's id, or None (none yet, or Redis away for a moment)."""
    try:
        jobs = site.store.recent(1)
    except Exception:
        return None
    return jobs[0].id if jobs else None


@dataclass
class PublishWait:
    """How `importq publish --wait` ended, and the job it waited for."""

    exit_code: int | None  # None: still running after the deadline (then stopped)
    job: JobView
    verdict: Verdict
    said: str  # its output, for a failing assertion


def publish_wait_end(
    cli: Process, site: Site, spec: TargetJob, sims: dict[str, Any], job_id: str, fleet: Fleet
) -> PublishWait:
    """Wait up to 300 s for `publish --wait` to exit (then stop it), then for the job."""
    try:
        code: int | None = cli.process.wait(timeout=300)
    except subprocess.TimeoutExpired:
        code = None
    cli.stop()
    job = site.wait_job(job_id, fleet=fleet)
    verdict = spec.verdict(sims, job, site)
    return PublishWait(code, job, verdict, cli.log_path.read_text(errors="replace"))
