"""Every Lua script takes its Redis keys from workers/keys.py; terminal states are listed once."""

from __future__ import annotations

import importlib
import json
import pkgutil

import pytest
import redis

import workers
from workers import keys, leases
from workers.jobs import TERMINAL_UNIT_STATES, JobStore, UnitState, encode_records, unit_fields
from workers.leases import Finish, Leases, lua_set

TARGET = "sourcing_data"
OTHER = "other:"


def lua_scripts() -> dict[str, str]:
    """Every Lua script in workers/, by module and name."""
    found = {}
    for info in pkgutil.walk_packages(workers.__path__, "workers."):
        module = importlib.import_module(info.name)
        for name, value in vars(module).items():
            if isinstance(value, str) and "redis.call(" in value:
                found[f"{info.name}.{name}"] = value
    return found


def test_no_lua_script_spells_a_redis_key() -> None:
    scripts = lua_scripts()
    assert {"workers.leases._CLAIM", "workers.leases._FINISH", "workers.leases._REAP"} <= set(
        scripts
    )
    spelled = [name for name, script in scripts.items() if keys.PREFIX in script]
    assert spelled == []


@pytest.mark.parametrize("name", ["_CLAIM", "_FINISH", "_REAP", "_RENEW", "_REMEMBER"])
def test_no_lease_script_lists_the_terminal_states_again(name: str) -> None:
    # One state may be named for what it alone means (a failed unit counts in units_failed);
    # the set of terminal states comes from workers.jobs as a generated table.
    script = getattr(leases, name).replace(lua_set("TERMINAL", TERMINAL_UNIT_STATES), "")
    spelled = [s for s in TERMINAL_UNIT_STATES if f"'{s}'" in script or f'"{s}"' in script]
    assert len(spelled) <= 1, spelled


@pytest.mark.parametrize("state", list(UnitState))
def test_a_message_for_a_unit_in_a_terminal_state_is_turned_away(
    state: UnitState, redis_client: redis.Redis
) -> None:
    store = JobStore(redis_client)
    job_id = store.create(TARGET, {})
    unit_id = store.stage_unit(job_id, TARGET, 0, [{"recordId": "r-0"}])
    store.open(job_id)
    redis_client.hset(keys.unit(unit_id), "state", state.value)
    claim = Leases(redis_client, lease_seconds=60, grace_seconds=0).claim(unit_id, max_crashes=5)
    if state in TERMINAL_UNIT_STATES:
        assert claim.status == "done"
    else:
        assert claim.status == "claimed"


@pytest.fixture
def other_prefix(monkeypatch: pytest.MonkeyPatch) -> str:
    """keys.py names every key under another prefix, as if importq's were changed there."""
    monkeypatch.setattr(keys, "PREFIX", OTHER)
    for name in ("JOBS", "STAGING", "WATCH", "DLQ_INDEX", "REAPER_LOCK"):
        monkeypatch.setattr(keys, name, OTHER + getattr(keys, name).removeprefix("importq:"))
    return OTHER


def test_claim_split_finish_and_reap_write_only_the_keys_keys_py_names(
    other_prefix: str, redis_client: redis.Redis
) -> None:
    store = JobStore(redis_client)
    leases_ = Leases(redis_client, lease_seconds=60, grace_seconds=0)
    job_id = store.create(TARGET, {})
    parent = store.stage_unit(job_id, TARGET, 0, [{"recordId": "r-0"}, {"recordId": "r-1"}],
                              rescue_ms=60_000)  # fmt: skip
    store.open(job_id)
    claim = leases_.claim(parent, max_crashes=5)
    assert claim.status == "claimed"
    children = [
        (f"{parent}.{n}", unit_fields(job_id, TARGET, 1, parent), encode_records([{"n": n}]))
        for n in range(2)
    ]
    dead = json.dumps({"record": {}, "reason": "refused", "unit": parent})
    split = Finish(UnitState.SPLIT, terminal=True, children=children, dead_letters=[dead])
    assert leases_.finish(parent, claim.token, split) == 1

    first, second = (child_id for child_id, _, _ in children)
    assert store.payload(second) == [{"n": 1}]
    running = leases_.claim(first, max_crashes=5)
    assert running.status == "claimed"
    redis_client.zadd(keys.WATCH, {first: 0})  # due now, but its lease is alive
    assert leases_.reap() == [second]  # the other child, staged and never claimed, is sent again

    written = sorted(key.decode() for key in redis_client.keys("*"))
    assert written and all(key.startswith(other_prefix) for key in written), written
    assert f"{other_prefix}stats:{TARGET}" in written
    assert redis_client.hget(keys.unit(second), "rescues") == b"1"
