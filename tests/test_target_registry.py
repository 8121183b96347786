"""The registry of targets and the declaration each target package makes (issue 12)."""

from __future__ import annotations

import typing
from typing import Any

import pytest
import redis

from importq.errors import InputError
from importq.settings import Settings
from tests.scripted import ScriptedSink, nothing
from workers import keys, targets
from workers.target_state import Claim, TargetState
from workers.targets.base import Sink, Target, registry


def sink_types(sink: Sink[Any, Any]) -> tuple[type, type]:
    """(LimitsT, ClientT) as the sink's class declares them: class X(Sink[Limits, Client])."""
    for base in type(sink).__orig_bases__:  # type: ignore[attr-defined]
        if typing.get_origin(base) is Sink:
            limits, client = typing.get_args(base)
            return limits, client
    raise AssertionError(f"{type(sink).__name__} does not subclass Sink[Limits, Client]")


def test_the_registry_refuses_two_targets_with_one_name() -> None:
    one = Target(name="twin", limits=nothing, client=nothing, sink=ScriptedSink())
    other = Target(name="twin", limits=nothing, client=nothing, sink=ScriptedSink())
    with pytest.raises(ValueError, match="two targets are named 'twin'"):
        registry(one, other)


def test_an_unknown_target_is_refused_naming_the_known_ones() -> None:
    with pytest.raises(InputError) as caught:
        targets.get("sourcing-data")
    assert all(name in str(caught.value) for name in targets.TARGETS)


@pytest.mark.parametrize("name", sorted(targets.TARGETS))
def test_a_targets_limits_and_client_are_what_its_sink_plans_and_runs_with(name: str) -> None:
    target = targets.get(name)
    assert target.name == name
    limits_type, client_type = sink_types(target.sink)
    assert isinstance(target.limits(Settings()), limits_type)
    assert typing.get_type_hints(target.client)["return"] is client_type


@pytest.mark.parametrize("name", sorted(targets.TARGETS))
def test_a_target_declares_the_settings_only_it_reads(name: str) -> None:
    declared = targets.get(name).settings
    assert declared, name
    for setting in declared:
        assert setting.name and setting.help, setting
        assert "(secret)" not in setting.help  # said by secret=True, once
    others = {s.name for other in targets.TARGETS.values() if other.name != name
              for s in other.settings}  # fmt: skip
    assert not others & {s.name for s in declared}
    assert any(s.secret for s in declared), f"{name} declares no credential"


def test_a_fenced_lock_passes_on_when_its_holders_lease_is_gone(
    redis_client: redis.Redis,
) -> None:
    redis_client.set(keys.lease("job:1"), "first")
    first = TargetState(redis_client, "scripted", "job:1").lock("turn", "x", ttl_ms=60_000)
    second = TargetState(redis_client, "scripted", "job:2").lock("turn", "x", ttl_ms=60_000)
    assert first.take() and first.take()  # taken, and taken again by its holder
    assert not second.take()
    redis_client.delete(keys.lease("job:1"))  # its worker died
    assert second.take()
    first.release()  # no longer the holder: leaves the lock alone
    assert redis_client.get(keys.target_key("scripted", "turn", "x")) == b"job:2 -"


def test_a_waiter_for_a_fenced_lock_is_woken_by_its_release(redis_client: redis.Redis) -> None:
    redis_client.set(keys.lease("job:1"), "-")  # both holders' workers are alive
    redis_client.set(keys.lease("job:2"), "-")
    first = TargetState(redis_client, "scripted", "job:1").lock("turn", "y", ttl_ms=60_000)
    second = TargetState(redis_client, "scripted", "job:2").lock("turn", "y", ttl_ms=60_000)
    assert first.take() and not second.take()
    assert not second.wait(0.05)  # nothing released: the wait runs out
    first.release()
    assert second.wait(5.0)  # woken by the release (no 5 s wait), and the lock is free
    assert second.take()
    assert not first.wait(0.05)  # one release wakes one waiter: the token was taken
    second.release()
    second.release()  # not the holder any more: wakes nobody
    assert first.wait(0.05) and not first.wait(0.05)


def test_claims_are_found_under_another_key_and_only_indexed_keys_are_touched(
    redis_client: redis.Redis,
) -> None:
    state = TargetState(redis_client, "scripted", "job:1")
    here, there = (state.claims("things", name, index="names") for name in ("a", "b"))
    there.hold("42", Claim("job:3", "t"))
    assert here.holder("42") is None
    assert here.elsewhere("42") == (there.key, Claim("job:3", "t"))
    with pytest.raises(ValueError):
        here.drop("42", keys.unit("job:3"))  # not a key of the index: never another unit's
    here.drop("42", there.key)
    assert there.holder("42") is None
