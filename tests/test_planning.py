"""Cutting a record stream into units within the vendor's limits."""

from __future__ import annotations

import itertools
import random
import string
from collections.abc import Iterator

import pytest

from importq.errors import ConfigError, InputError
from importq.settings import Settings
from workers.targets.base import Located, Record, batched, record_size
from workers.targets.sourcing_data.limits import SourcingDataLimits
from workers.targets.sourcing_data.sink import SourcingDataSink


def random_records(rng: random.Random, count: int, widest: int) -> list[Located]:
    """Records of random width, each with the place it came from."""
    located = []
    for number in range(count):
        text = "".join(rng.choices(string.ascii_letters + "éü€", k=rng.randint(0, widest)))
        record = {"entityId": "E", "recordId": f"r-{number}", "data": {"Name": text}}
        located.append((record, f"input.jsonl:{number + 1}"))
    return located


def cost(batch: list[Record]) -> int:
    """The byte budget a batch uses: each record's compact JSON plus its separator."""
    return sum(record_size(r) + 1 for r in batch)


@pytest.mark.parametrize("seed", range(40))
def test_batches_respect_both_limits_keep_order_and_lose_nothing(seed: int) -> None:
    rng = random.Random(seed)
    located = random_records(rng, rng.randint(0, 400), widest=rng.choice((10, 200, 2000)))
    widest_cost = max((record_size(r) + 1 for r, _ in located), default=1)
    max_records = rng.randint(1, 60)
    max_bytes = rng.randint(widest_cost, widest_cost * 12)

    batches = list(batched(iter(located), max_records, max_bytes))

    assert [r for batch in batches for r in batch] == [r for r, _ in located]
    assert all(batch for batch in batches)  # no empty unit
    for batch in batches:
        assert len(batch) <= max_records
        assert cost(batch) <= max_bytes
    for batch, following in itertools.pairwise(batches):
        # Greedy: a unit is only closed when the next record would not have fitted.
        full = len(batch) == max_records
        assert full or cost(batch) + record_size(following[0]) + 1 > max_bytes


def test_batches_are_produced_lazily_from_a_stream() -> None:
    pulled = 0

    def stream() -> Iterator[Located]:
        nonlocal pulled
        for number in range(1_000_000):
            pulled += 1
            yield {"entityId": "E", "recordId": str(number)}, f"s:{number}"

    first = next(batched(stream(), max_records=10, max_bytes=10_000))
    assert len(first) == 10
    assert pulled <= 11


def test_record_over_the_byte_budget_is_refused_naming_where_it_came_from() -> None:
    small: Record = {"entityId": "E", "recordId": "1"}
    wide: Record = {"entityId": "E", "recordId": "2", "data": {"Blob": "x" * 500}}
    located = [(small, "people.csv:2"), (wide, "people.csv:3")]
    with pytest.raises(InputError) as caught:
        list(batched(located, max_records=100, max_bytes=200, what="queue item"))
    assert caught.value.where == "people.csv:3"
    message = str(caught.value)
    assert message.startswith("people.csv:3: ")
    assert "200-byte queue item budget" in message
    assert f"{record_size(wide) + 1} bytes" in message


def test_record_that_exactly_fills_the_budget_stands_alone() -> None:
    record = {"entityId": "E", "recordId": "1"}
    budget = record_size(record) + 1
    batches = list(batched([(record, "a:1"), (record, "a:2")], 10, budget))
    assert batches == [[record], [record]]


def test_record_size_counts_utf8_bytes_of_compact_json() -> None:
    assert record_size({"a": "é"}) == len('{"a":"é"}'.encode())
    assert record_size({"a": [1, 2]}) == len('{"a":[1,2]}')


# --- SourcingData limits -----------------------------------------------------------------------


def limits(**env: str) -> SourcingDataLimits:
    return SourcingDataLimits.from_settings(Settings(env=env))


def test_unset_limits_are_the_vendor_documented_ones() -> None:
    found = limits()
    assert (found.records_per_request, found.records_per_item) == (500, 4000)
    assert found.bytes_per_item == 3_000_000


@pytest.mark.parametrize(("setting", "effective"), [("900", 500), ("500", 500), ("200", 200)])
def test_records_per_request_setting_may_only_tighten_the_vendor_limit(
    setting: str, effective: int
) -> None:
    assert limits(SOURCING_DATA_RECORDS_PER_REQUEST=setting).records_per_request == effective


@pytest.mark.parametrize(("setting", "effective"), [("9000", 4000), ("1000", 1000), ("1", 1)])
def test_records_per_item_setting_may_only_tighten_the_vendor_limit(
    setting: str, effective: int
) -> None:
    assert limits(SOURCING_DATA_RECORDS_PER_ITEM=setting).records_per_item == effective


def test_tunable_limits_follow_their_settings() -> None:
    found = limits(
        SOURCING_DATA_BYTES_PER_ITEM="123456",
        SOURCING_DATA_ITEMS_IN_FLIGHT="3",
        SOURCING_DATA_POLL_BUDGET="9.5",
        SOURCING_DATA_POLL_INTERVAL="0.02",
        SOURCING_DATA_TIMEOUT="12",
    )
    assert found.bytes_per_item == 123456
    assert found.items_in_flight_per_operation == 3
    assert (found.poll_budget_seconds, found.poll_interval_seconds) == (9.5, 0.02)
    assert found.request_timeout_seconds == 12.0


def test_limit_that_is_not_a_number_is_a_config_error_naming_it() -> None:
    with pytest.raises(ConfigError, match="SOURCING_DATA_RECORDS_PER_REQUEST"):
        limits(SOURCING_DATA_RECORDS_PER_REQUEST="lots")


def test_sink_plans_queue_items_within_the_tightened_limits() -> None:
    located: list[Located] = [
        ({"entityId": "E", "recordId": str(n)}, f"f:{n}") for n in range(9_001)
    ]
    found = limits(SOURCING_DATA_RECORDS_PER_ITEM="9000")
    units = list(SourcingDataSink().plan(iter(located), found, {}))
    assert [len(u) for u in units] == [4000, 4000, 1001]


def test_sink_plans_smaller_queue_items_for_wide_records() -> None:
    wide = {"entityId": "E", "recordId": "w-00", "data": {"Text": "x" * 9_000}}
    located: list[Located] = [(dict(wide, recordId=f"w-{n:02}"), f"f:{n}") for n in range(40)]
    per_item = 100_000 // (record_size(wide) + 1)  # 11 records of ~9 kB
    found = limits(SOURCING_DATA_BYTES_PER_ITEM="100000")
    units = list(SourcingDataSink().plan(iter(located), found, {}))
    assert [len(u) for u in units] == [per_item, per_item, per_item, 40 - 3 * per_item]
    assert all(cost(u) <= 100_000 for u in units)
