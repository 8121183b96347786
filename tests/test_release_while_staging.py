"""Workers start while the producer still works, and a bad record still enqueues nothing.

A file (or a list) is read twice: every record is checked first, then each unit is
staged and sent at once. A one-pass iterable is staged whole and sent after it passed.
"""

from __future__ import annotations

import collections
import gc
import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from importq import settings as importq_settings
from importq.errors import InputError
from producers import firstpass
from producers.publish import fewer_gc_passes, locate, publish
from producers.readers import RecordFile, records_of
from tests.helpers import nothing_enqueued, sample_records
from workers import keys
from workers.jobs import JobState, JobStore
from workers.targets.base import Located

TARGET = "sourcing_data"
SETTINGS = {"SOURCING_DATA_AGENT_ID": "agent-for-tests", "SOURCING_DATA_RECORDS_PER_ITEM": "2"}


class Sends:
    """publish_unit: notes, for each unit sent, how many units of its job were staged then."""

    def __init__(self, store: JobStore) -> None:
        self.store = store
        self.staged_when_sent: list[int] = []

    def __call__(self, unit_id: str, target: str, countdown: float | None) -> None:
        self.staged_when_sent.append(len(self.store.unit_ids(keys.job_of(unit_id))))


def _publish(store: JobStore, records: Iterable[Located] | None, sends: Sends) -> str:
    settings = importq_settings.load(SETTINGS)
    return publish(TARGET, records, {"operation_id": "op-1"}, settings=settings, store=store,
                   publish_unit=sends)  # fmt: skip


def _file(tmp_path: Path, records: Iterable[Any]) -> Path:
    path = tmp_path / "records.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def test_a_file_sends_its_first_unit_before_its_last_is_staged(
    tmp_path: Path, redis_client: redis.Redis
) -> None:
    store = JobStore(redis_client)
    sends = Sends(store)
    job_id = _publish(store, records_of(_file(tmp_path, sample_records(10))), sends)
    assert sends.staged_when_sent == [1, 2, 3, 4, 5]  # each unit sent as soon as staged
    job = store.get(job_id)
    assert job is not None
    assert (job.units_total, job.records_total, job.state) == (5, 10, JobState.QUEUED)
    assert redis_client.zscore(keys.STAGING, job_id) is None
    assert redis_client.zcard(keys.WATCH) == 5  # the reaper watches every unit sent


def test_a_bad_record_at_the_end_of_a_file_sends_nothing(
    tmp_path: Path, redis_client: redis.Redis
) -> None:
    store = JobStore(redis_client)
    sends = Sends(store)
    path = _file(tmp_path, [*sample_records(9), {"entityId": "ORG_DEPT"}])
    with pytest.raises(InputError) as refused:
        _publish(store, records_of(path), sends)
    assert refused.value.where == f"{path}:10"
    assert sends.staged_when_sent == []
    nothing_enqueued(redis_client, TARGET)


def test_a_list_sends_its_first_unit_before_its_last_is_staged(
    redis_client: redis.Redis,
) -> None:
    store = JobStore(redis_client)
    sends = Sends(store)
    records = list(sample_records(10))
    job_id = _publish(store, locate(records), sends)  # what publish_records passes
    assert sends.staged_when_sent == [1, 2, 3, 4, 5]
    staged = [store.payload(unit_id) for unit_id in store.unit_ids(job_id)]
    assert [r for unit in staged for r in unit or []] == records


@pytest.mark.parametrize("block", [3, 4096])
def test_a_bad_record_at_the_end_of_a_list_sends_nothing(
    block: int, redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(firstpass, "BLOCK_RECORDS", block)
    store = JobStore(redis_client)
    sends = Sends(store)
    with pytest.raises(InputError) as refused:
        _publish(store, locate([*sample_records(9), {"entityId": "ORG_DEPT"}]), sends)
    assert refused.value.where == "record 10"
    assert sends.staged_when_sent == []
    nothing_enqueued(redis_client, TARGET)


def test_a_deque_is_read_once_and_published(redis_client: redis.Redis) -> None:
    store = JobStore(redis_client)
    sends = Sends(store)
    _publish(store, locate(collections.deque(sample_records(10))), sends)  # not sliceable
    assert sends.staged_when_sent == [5] * 5


@pytest.mark.parametrize(
    "change", ["a bad record", "one more record", "one record fewer", "a record grown"]
)
def test_a_list_changed_while_it_is_sent_cancels_the_job_with_what_was_sent(
    change: str, redis_client: redis.Redis
) -> None:
    store = JobStore(redis_client)
    records = list(sample_records(6))

    def send_and_change(unit_id: str, target: str, countdown: float | None) -> None:
        if unit_id.endswith(":0"):  # the first unit is out: the caller's list changes
            if change == "a bad record":
                records[4] = {"entityId": "ORG_DEPT"}
            elif change == "one more record":
                records.append(next(sample_records(1)))
            elif change == "a record grown":  # still valid, now past the byte budget
                records[4]["data"]["Description"] = "x" * 2000
            else:
                records.pop()

    settings = importq_settings.load({**SETTINGS, "SOURCING_DATA_BYTES_PER_ITEM": "1500"})
    with pytest.raises(InputError, match="the input changed while it was published"):
        publish(TARGET, locate(records), {"operation_id": "op-1"}, settings=settings,
                store=store, publish_unit=send_and_change)  # fmt: skip
    (job,) = store.recent()
    sent = 3 if change == "one more record" else 2  # the change is seen after the last
    assert job.cancelled and job.units_total == len(store.unit_ids(job.id)) == sent


def test_a_generator_is_sent_once_all_of_it_passed(redis_client: redis.Redis) -> None:
    store = JobStore(redis_client)
    sends = Sends(store)
    _publish(store, locate(sample_records(10)), sends)
    assert sends.staged_when_sent == [5] * 5


class Changing:
    """Input read twice that grows a bad record the second time (a file being rewritten)."""

    def __init__(self) -> None:
        self.reads = 0

    def __iter__(self) -> Iterator[Located]:
        self.reads += 1
        records = list(sample_records(6))
        if self.reads > 1:
            records[4] = {"entityId": "ORG_DEPT"}
        return iter(locate(records))


def test_input_that_changes_between_the_passes_cancels_the_job_with_what_was_sent(
    redis_client: redis.Redis,
) -> None:
    store = JobStore(redis_client)
    sends = Sends(store)
    with pytest.raises(InputError, match="the input changed while it was published"):
        _publish(store, Changing(), sends)
    assert sends.staged_when_sent == [1, 2]
    (job,) = store.recent()
    assert (job.units_total, job.records_total, job.cancelled) == (2, 4, True)
    assert redis_client.zcard(keys.STAGING) == 0


def test_a_file_rewritten_after_its_check_is_refused(tmp_path: Path) -> None:
    path = _file(tmp_path, sample_records(2))
    records = RecordFile(path)
    assert len(list(records)) == 2
    path.write_text(path.read_text() + json.dumps({"entityId": "E", "recordId": "x"}) + "\n")
    with pytest.raises(InputError, match="the file changed while it was published"):
        iter(records)


def test_the_reaper_cancels_a_job_whose_producer_died_while_sending_it(
    redis_client: redis.Redis,
) -> None:
    store = JobStore(redis_client)
    job_id = store.create(TARGET, {})
    store.expect(job_id, units=3, records=6)
    store.stage_unit(job_id, TARGET, 0, [{"n": 1}, {"n": 2}], rescue_ms=1000, counted=False)
    assert store.forget_abandoned_staging(older_than_seconds=-1) == [job_id]
    job = store.get(job_id)
    assert job is not None  # its unit may have run: kept, not discarded
    assert (job.units_total, job.records_total, job.cancelled) == (1, 2, True)
    assert "its producer stopped" in job.cancel_reason


def test_overlapping_publishes_put_the_gc_threshold_back_as_they_found_it() -> None:
    before = gc.get_threshold()
    with fewer_gc_passes():
        during = gc.get_threshold()
        assert during[0] >= 50_000
        with fewer_gc_passes():  # a second thread's publish
            pass
        assert gc.get_threshold() == during  # still publishing: not put back yet
        with pytest.raises(RuntimeError), fewer_gc_passes():
            raise RuntimeError("a publish that fails")
    assert gc.get_threshold() == before
