"""In-memory simulator of Blueshift's trigger customer import, with per-import states and faults.

Each import uuid has a state (launched, not_s3, not_launched, processing); the
last three answer 405 with the vendor's one message, as Blueshift does. An
accepted trigger can keep the import "processing" for a while, so triggers in
that window get 405 too. A lost answer (`lose_next`) is a trigger Blueshift
accepted whose answer a gateway replaced with a 502 or 504 (`lost_answer`).
The ledger counts triggers per uuid, those accepted (two for one job: the
import ran twice), how many ran at once, and triggers that came back before a
429's Retry-After had passed.
"""

from __future__ import annotations

import base64
import csv
import io
import json
import logging
import random
import threading
import time
import uuid as uuids
from collections import Counter
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Any

import httpx

from simulators.http import SimulatorBase, admin_response
from simulators.scale import Committed, ScaleJob, ScalePlan, job_sizes

BASE_PATH = ""  # the API lives at the root of https://api.getblueshift.com
TRIGGER_PATH = "/api/v1/customer_attributes/trigger_import"
FAKE_API_KEY = "fake-blueshift-user-api-key"
DEMO_UUID = "5f0c6a2e-8b1d-4c3e-9a7f-2d4b6e8c0a13"
STATES = ("launched", "not_s3", "not_launched", "processing")

# The vendor doc's example bodies, word for word.
_NOT_FOUND = {"errors": [{"title": "error", "detail": "Error: Resource not found"}]}
_NOT_SUPPORTED = {"errors": [{"title": "error", "detail": "Error: Action not supported"}]}
BODIES: dict[int, dict[str, Any]] = {
    200: {"status": "ok"},
    401: {"message": "Not authorized"},
    404: _NOT_FOUND,
    405: _NOT_SUPPORTED,
    429: {"message": "Rate limit exceeded"},
    500: {"message": "Internal Server Error - Please contact support for more information."},
    502: {"message": "Bad Gateway - Please retry the request."},
    503: {"message": "Service Unavailable - Try again later."},
    504: {"message": "Gateway Timeout - Retry with exponential backoff."},
}

TriggerHook = Callable[[str], None]


@dataclass
class SimConfig:
    """Knobs of the simulator; mutable at runtime via configure() or POST /_sim/config."""

    api_key: str = FAKE_API_KEY
    imports: dict[str, str] = field(default_factory=lambda: {DEMO_UUID: "launched"})
    busy_triggers: dict[str, int] = field(default_factory=dict)  # first N find a run going
    answers: dict[str, list[int]] = field(default_factory=dict)  # statuses of the first triggers
    processing_seconds: float = 0.0  # how long an accepted trigger keeps the import busy
    lose_next: int = 0  # the next N accepted triggers are answered `lost_answer` instead
    lost_answer: str = "504"  # "502" or "504": the gateway's answer after Blueshift took it
    latency_seconds: float = 0.0
    fault_rate: float = 0.0
    fault_statuses: tuple[int, ...] = (429, 500, 502, 503, 504)
    retry_after_seconds: int = 1
    seed: int | None = None


def answer(status: int, retry_after: int | None = None) -> httpx.Response:
    headers = {"Retry-After": str(retry_after)} if retry_after is not None else None
    return httpx.Response(status, json=BODIES[status], headers=headers)


def _uuid_of(request: httpx.Request) -> str | None:
    try:
        body = json.loads(request.content or b"null")
    except ValueError:
        return None
    uuid = body.get("uuid") if isinstance(body, dict) else None
    return uuid if isinstance(uuid, str) and uuid else None


class BlueshiftSimulator(SimulatorBase):
    """An httpx handler (MockTransport or serve()) that behaves like the trigger endpoint."""

    base_path = BASE_PATH

    def __init__(self, config: SimConfig | None = None) -> None:
        self.config = config or SimConfig()
        # Called with the uuid of each accepted trigger before it is answered: where a test
        # looks at what Blueshift would read from S3 at that moment.
        self.trigger_hooks: list[TriggerHook] = []
        self._lock = threading.Lock()
        self._rng = random.Random(self.config.seed)
        self._counts: dict[str, Counter[str]] = {}
        self._in_flight: Counter[str] = Counter()
        self._statuses: Counter[int] = Counter()
        self._limited_until: dict[str, float] = {}  # uuid -> end of its 429 window
        self._busy_until: dict[str, float] = {}  # uuid -> end of its accepted run
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self._counts = {
                name: Counter()
                for name in (
                    "triggers",
                    "accepted",
                    "refused_405",
                    "max_concurrent",
                    "early",
                    "faults",
                    "lost_answers",
                )
            }
            for state in (self._in_flight, self._statuses, self._limited_until, self._busy_until):
                state.clear()
            self.trigger_hooks.clear()
            self._rng = random.Random(self.config.seed)

    def ledger(self) -> dict[str, Any]:
        with self._lock:
            counts = {name: dict(counter) for name, counter in self._counts.items()}
            return {
                "triggers": counts["triggers"],
                "accepted": counts["accepted"],
                "accepted_total": sum(counts["accepted"].values()),
                "refused_405": counts["refused_405"],
                "max_concurrent": counts["max_concurrent"],
                "early_triggers": counts["early"],
                "statuses": {str(status): n for status, n in sorted(self._statuses.items())},
                "faults": sum(counts["faults"].values()),
                "lost_answers": sum(counts["lost_answers"].values()),
            }

    def __call__(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path.rstrip("/")
        if path.startswith("/_sim/"):
            return admin_response(self, request)
        if path != TRIGGER_PATH:
            return answer(404)
        if request.method != "POST":
            return answer(405)
        uuid = _uuid_of(request)
        if uuid is None:
            detail = "Error: uuid is required"
            return httpx.Response(400, json={"errors": [{"title": "error", "detail": detail}]})
        arrived = time.monotonic()
        number = self._arrive(uuid)
        try:
            if self.config.latency_seconds > 0:
                # Outside the lock so overlapping triggers really overlap.
                time.sleep(self.config.latency_seconds)
            with self._lock:
                response = self._vendor(request, uuid, number, arrived)
                self._statuses[response.status_code] += 1
            if response.status_code == 200:
                for hook in list(self.trigger_hooks):
                    hook(uuid)
            return response
        finally:
            with self._lock:
                self._in_flight[uuid] -= 1

    def _arrive(self, uuid: str) -> int:
        """Count the trigger and how many of this uuid are in flight; its number for uuid."""
        with self._lock:
            self._counts["triggers"][uuid] += 1
            self._in_flight[uuid] += 1
            peak = self._counts["max_concurrent"]
            peak[uuid] = max(peak[uuid], self._in_flight[uuid])
            return self._counts["triggers"][uuid]

    def _vendor(
        self, request: httpx.Request, uuid: str, number: int, arrived: float
    ) -> httpx.Response:
        cfg = self.config
        if arrived < self._limited_until.get(uuid, 0.0):
            self._counts["early"][uuid] += 1
        if cfg.fault_statuses and self._rng.random() < cfg.fault_rate:
            self._counts["faults"][uuid] += 1
            return self._fault(uuid, self._rng.choice(cfg.fault_statuses))
        if not self._authorized(request):
            return answer(401)
        state = cfg.imports.get(uuid)
        if state is None:
            return answer(404)
        script = cfg.answers.get(uuid, [])
        if number <= len(script):
            return self._fault(uuid, script[number - 1])
        now = time.monotonic()
        busy = number <= cfg.busy_triggers.get(uuid, 0) or now < self._busy_until.get(uuid, 0.0)
        if state != "launched" or busy:
            self._counts["refused_405"][uuid] += 1
            return answer(405)
        self._counts["accepted"][uuid] += 1
        self._busy_until[uuid] = now + cfg.processing_seconds
        if cfg.lose_next > 0:  # accepted; the gateway's error goes back instead of the 200
            cfg.lose_next -= 1
            self._counts["lost_answers"][uuid] += 1
            return answer(int(cfg.lost_answer))
        return answer(200)

    def _fault(self, uuid: str, status: int) -> httpx.Response:
        if status == 405:
            self._counts["refused_405"][uuid] += 1
        if status != 429:
            return answer(status)
        seconds = self.config.retry_after_seconds
        self._limited_until[uuid] = time.monotonic() + seconds
        return answer(429, retry_after=seconds)

    def _authorized(self, request: httpx.Request) -> bool:
        # HTTP Basic with the User API Key as username and an empty password ("key:").
        scheme, _, encoded = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            decoded = base64.b64decode(encoded.strip(), validate=True).decode()
        except ValueError:  # binascii.Error and UnicodeDecodeError are ValueErrors
            return False
        return decoded == f"{self.config.api_key}:"


SIMULATOR = BlueshiftSimulator  # what `importq simulate` serves for this target


def client_env(server_url: str) -> dict[str, str]:
    """What a worker needs to trigger imports on this simulator with its default fake key."""
    return {"BLUESHIFT_URL": f"{server_url}{BASE_PATH}", "BLUESHIFT_API_KEY": FAKE_API_KEY}


def demo_job(count: int) -> tuple[dict[str, Any], None]:
    """The demo's job: a bare trigger of the demo import (no S3 in the demo, so no records)."""
    return {"uuid": DEMO_UUID}, None


def summarize(ledger: dict[str, Any]) -> list[str]:
    refused = sum(ledger["refused_405"].values())
    peak = max(ledger["max_concurrent"].values(), default=0)
    return [
        f"{ledger['accepted_total']} triggers accepted for {len(ledger['accepted'])} imports, "
        f"{refused} answered 405, {ledger['faults']} faults injected, "
        f"at most {peak} at once per import"
    ]


SCALE_RECORDS_PER_JOB = 10_000  # one CSV file and one trigger a job
SCALE_BUCKET = "importq-scale"
SCALE_PREFIX = "scale"
# moto's S3 takes any credentials: these are obviously not real ones.
SCALE_AWS = {
    "AWS_ACCESS_KEY_ID": "fake-scale-access-key-id",
    "AWS_SECRET_ACCESS_KEY": "fake-scale-secret-access-key",
    "AWS_DEFAULT_REGION": "us-east-1",
}


def customer(n: int) -> dict[str, Any]:
    return {
        "customer_id": f"c-{n:07d}",
        "email": f"c{n}@example.com",
        "firstname": f"Ann{n}",
        "vip": n % 5 == 0,
    }


def scale_plan(
    sim: BlueshiftSimulator, count: int, stack: ExitStack, *, largest: bool = False
) -> ScalePlan:
    """The scale run's share: files of 10,000 customers staged in moto's S3 (in this
    process), each job triggering an import of its own (one trigger per import at a time).
    Blueshift caps no file's records, so `largest` changes nothing."""
    import boto3  # the AWS SDK and moto (a dev dependency) only for this run
    from moto.server import ThreadedMotoServer

    from importq.broker import free_port

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's server logs every request
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=free_port(), verbose=False)
    server.start()
    stack.callback(server.stop)
    host, port = server.get_host_and_port()
    env = {
        **SCALE_AWS,
        "AWS_ENDPOINT_URL": f"http://{host}:{port}",
        "BLUESHIFT_S3_BUCKET": SCALE_BUCKET,
        "BLUESHIFT_S3_PREFIX": SCALE_PREFIX,
    }
    s3 = boto3.client(
        "s3",
        endpoint_url=env["AWS_ENDPOINT_URL"],
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
        region_name="us-east-1",
    )
    s3.create_bucket(Bucket=SCALE_BUCKET)
    sizes = job_sizes(count, SCALE_RECORDS_PER_JOB)
    imports = [
        str(uuids.uuid5(uuids.NAMESPACE_URL, f"scale-import-{n}")) for n in range(len(sizes))
    ]
    sim.configure(imports={**sim.config.imports, **dict.fromkeys(imports, "launched")})
    jobs, first = [], 0
    for uuid, size in zip(imports, sizes, strict=True):
        jobs.append(ScaleJob({"uuid": uuid}, map(customer, range(first, first + size))))
        first += size

    def committed() -> Committed:
        # A record is committed when its file is in S3 and its job's import was triggered:
        # a file triggered twice counts its records twice, one never triggered not at all.
        staged: Counter[str] = Counter()
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=SCALE_BUCKET):
            for item in page.get("Contents", []):
                body = s3.get_object(Bucket=SCALE_BUCKET, Key=item["Key"])["Body"].read()
                staged.update(
                    row["customer_id"] for row in csv.DictReader(io.StringIO(body.decode()))
                )
        accepted = sim.ledger()["accepted"]
        unaccepted = sum(
            size for uuid, size in zip(imports, sizes, strict=True) if not accepted.get(uuid)
        )
        retriggered = sum(
            size * (accepted.get(uuid, 0) - 1)
            for uuid, size in zip(imports, sizes, strict=True)
            if accepted.get(uuid, 0) > 1
        )
        twice = sum(1 for n in staged.values() if n > 1) + retriggered
        return Committed(len(staged) - unaccepted, twice)

    note = f"jobs of {SCALE_RECORDS_PER_JOB:,} records, one file and one import each"
    return ScalePlan(jobs, committed, env, note)
