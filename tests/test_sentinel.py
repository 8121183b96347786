"""Redis Sentinel: every client follows the group's primary, and a failover mid-job loses no
record and commits none twice (the slow variant: tests/chaos/test_sentinel_failover.py)."""

from __future__ import annotations

import asyncio
import os
import signal
import threading
from pathlib import Path
from typing import Any

import pytest
import structlog

from importq import broker, doctor, sentinel
from importq.errors import ConfigError, RedisUnavailable
from importq.settings import load
from tests.failover import run_failovers
from tests.helpers import wait_until
from tests.sentinel import SentinelGroup
from workers import keys, ratelimit
from workers.jobs import JobStore
from workers.leases import Leases
from workers.signals import ReplicaUnconfirmed

FAKE_PASSWORD = "fake-primary-password-1234"
FAKE_SENTINEL_PASSWORD = "fake-sentinel-password-5678"


def test_the_sentinel_settings_give_the_broker_and_the_rate_limiter_one_group() -> None:
    settings = load({
        "REDIS_URL": "redis://elsewhere.invalid:6379/0",
        "REDIS_SENTINELS": "s1.internal:26379, s2.internal:26380,s3.internal",
        "REDIS_SENTINEL_MASTER": "importq",
        "REDIS_PASSWORD": FAKE_PASSWORD,
        "REDIS_SENTINEL_PASSWORD": FAKE_SENTINEL_PASSWORD,
    })  # fmt: skip
    choice = broker.choose(settings, start=False)
    hosts = "s1.internal:26379,s2.internal:26380,s3.internal:26379"
    assert choice.url == f"redis+sentinel://{hosts}/importq"  # the limits library's form
    assert "REDIS_URL is ignored" in choice.describe()
    assert FAKE_PASSWORD not in choice.describe() and FAKE_PASSWORD not in choice.url
    # kombu: one sentinel:// per sentinel, ';' between and none trailing.
    assert choice.broker_url() == ";".join(
        f"sentinel://:{FAKE_PASSWORD}@{host}/0" for host in hosts.split(",")
    )
    options = choice.transport_options()
    assert options["master_name"] == "importq"
    assert options["sentinel_kwargs"]["password"] == FAKE_SENTINEL_PASSWORD
    assert sentinel.replica_wait_ms(settings) == sentinel.DEFAULT_WAIT_MS
    # Never as long as the client's socket timeout: the WAIT would time out and be retried,
    # and the guarded write with it.
    fast = broker.client("redis://127.0.0.1:1/0", socket_timeout=0.4)
    assert sentinel.replica_wait_ms(settings, fast) == 200


def test_without_sentinels_nothing_changes_and_a_bad_entry_names_the_setting() -> None:
    plain = load({"REDIS_URL": "redis://127.0.0.1:1/0"})
    assert broker.choose(plain, start=False).transport_options() == {}
    assert sentinel.replica_wait_ms(plain) == 0
    with pytest.raises(ConfigError, match=r"REDIS_SENTINELS=.*'s1:port' is not host:port"):
        broker.choose(load({"REDIS_SENTINELS": "s1:port"}), start=False)
    with pytest.raises(ConfigError, match="IMPORTQ_REPLICA_WAIT_MS"):
        sentinel.replica_wait_ms(load({"IMPORTQ_REPLICA_WAIT_MS": "soon"}))


def test_passwords_reach_the_broker_the_job_state_and_doctor_and_show_nowhere(
    tmp_path: Path,
) -> None:
    from tests.chaos.harness import Site

    group = SentinelGroup(tmp_path / "group", FAKE_PASSWORD, FAKE_SENTINEL_PASSWORD)
    try:
        group.start()
        settings = _group_settings(group)
        choice = broker.choose(settings, start=False)
        broker.check(choice)  # the job-state client logs in to the sentinels and the primary
        site = Site(choice.url, choice)  # a producer: Celery over kombu's sentinel:// transport
        try:
            site.publish_unit("pw-job:0", "sourcing_data")
        finally:
            site.close()
        assert group.client(group.primary_port()).llen("sourcing_data") == 1
        checks = {c.name: c for c in doctor.check_redis(settings)}
        assert checks["redis sentinel"].status == "ok", checks["redis sentinel"]
        shown = " ".join([choice.describe(), *(c.detail for c in checks.values())])
        assert FAKE_PASSWORD not in shown and FAKE_SENTINEL_PASSWORD not in shown
        wrong = _group_settings(group, REDIS_PASSWORD="fake-wrong-password-0000")
        with pytest.raises(RedisUnavailable, match="fix the password in REDIS_PASSWORD"):
            broker.check(broker.choose(wrong, start=False))
    finally:
        group.stop()


def _group_settings(group: SentinelGroup, **extra: str) -> Any:
    return load({**os.environ, **group.env, **extra})


def test_doctor_names_the_primary_its_replica_and_their_lag(sentinel_group: SentinelGroup) -> None:
    sentinel_group.wait_settled()
    checks = {c.name: c for c in doctor.check_redis(_group_settings(sentinel_group))}
    assert checks["redis"].status == "ok" and "Sentinel group" in checks["redis"].detail
    found = checks["redis sentinel"]
    primary, replica = sentinel_group.primary_port(), sentinel_group.data_ports
    other = next(port for port in replica if port != primary)
    assert found.status == "ok", found
    assert f"primary 127.0.0.1:{primary}" in found.detail
    assert f"127.0.0.1:{other} online" in found.detail and "bytes and" in found.detail
    assert "3 sentinels see it (quorum 2)" in found.detail


def test_the_rate_limiter_keeps_its_window_on_the_primary(sentinel_group: SentinelGroup) -> None:
    settings = _group_settings(sentinel_group, IMPORTQ_RATE_LIMIT_SOURCING_DATA="100/minute")
    choice = broker.choose(settings, start=False)
    throttle = ratelimit.throttle_for("sourcing_data", settings, choice.url)
    assert throttle is not None
    throttle.wait()
    primary = sentinel_group.client(sentinel_group.primary_port())
    assert primary.keys(keys.PREFIX + "ratelimit*"), "the window is not on the primary"


def test_flower_reads_queue_lengths_from_the_primary(sentinel_group: SentinelGroup) -> None:
    from flower.utils.broker import Broker
    from kombu import Connection

    choice = broker.choose(_group_settings(sentinel_group), start=False)
    primary = sentinel_group.client(sentinel_group.primary_port())
    primary.delete("sourcing_data")
    primary.lpush("sourcing_data", "a message", "another")
    # What Flower's broker page builds from the app's connection and transport options
    # (kombu gives it the first sentinel's URL).
    with Connection(choice.broker_url()) as connection:
        url = connection.as_uri(include_password=True)
    flower_broker = Broker(url, broker_options=choice.transport_options())
    lengths = asyncio.run(flower_broker.queues(["sourcing_data"]))
    primary.delete("sourcing_data")
    assert lengths == [{"name": "sourcing_data", "messages": 2}]


def test_claims_and_staged_jobs_go_on_once_a_replica_holds_them_and_say_when_none_does(
    sentinel_group: SentinelGroup,
) -> None:
    settings = _group_settings(sentinel_group)
    client = broker.connect(broker.choose(settings, start=False), socket_timeout=2)
    leases = Leases(client, 4, 5, replica_wait_ms=200)
    client.hset(keys.unit("ha-job:0"), mapping={"state": "queued", "target": "sourcing_data"})
    assert leases.claim("ha-job:0", 5).status == "claimed"
    replica_port = next(p for p in sentinel_group.data_ports if p != sentinel_group.primary_port())
    replica = sentinel_group.client(replica_port)
    assert replica.hget(keys.unit("ha-job:0"), "state") == "running"  # WAIT 1: it is there
    store = JobStore(client)
    assert store.confirm_replicated("ha-job", 200)  # a producer's staged job, likewise
    # A replica that cannot confirm (stopped): the claim still goes on, and a warning says so.
    client.hset(keys.unit("ha-job:1"), mapping={"state": "queued", "target": "sourcing_data"})
    process = sentinel_group.processes[replica_port]
    process.send_signal(signal.SIGSTOP)
    try:
        with structlog.testing.capture_logs() as logs:
            claim = leases.claim("ha-job:1", 5)
        assert claim.status == "claimed"
        assert not store.confirm_replicated("ha-job", 200)
        # A remote id recorded before a vendor call: the sink stops before that call instead.
        with pytest.raises(ReplicaUnconfirmed, match="unit ha-job:1: no replica confirmed"):
            leases.remember("ha-job:1", claim.token, {"remote.queue_item_id": "item-1"})
    finally:
        process.send_signal(signal.SIGCONT)
    assert any("no replica confirmed" in entry["event"] for entry in logs), logs
    client.close()


def test_a_remembered_id_on_a_redis_the_sentinels_do_not_name_stops_before_the_vendor_call(
    sentinel_group: SentinelGroup, redis_client: Any
) -> None:
    """Issue 16: a worker wrote to the old primary, back on its address after a failover
    with the data of its last sync and no replica. "No replica connected, so no failover can
    take the write" let the unit open and commit a queue item there; the sentinels demoted
    that server and its sync wiped the claim and the item id, and the unit ran again."""
    group = sentinel.config(_group_settings(sentinel_group))
    assert group is not None
    # The session's Redis stands in for that server: a primary with no replica, holding the
    # unit, that the sentinels do not name.
    stale = Leases(redis_client, 4, 5, replica_wait_ms=50, named_primary=group.named_primary)
    redis_client.hset(keys.unit("stale-job:0"), mapping={"state": "queued",
                                                         "target": "sourcing_data"})  # fmt: skip
    claim = stale.claim("stale-job:0", 5)
    assert claim.status == "claimed"  # claims go on (said in the log): the remember guards
    with pytest.raises(ReplicaUnconfirmed, match="not the primary the sentinels name"):
        stale.remember("stale-job:0", claim.token, {"remote.start_sent_at": "now"})
    # The group's primary is the one the sentinels name: there a write with no replica to
    # confirm it goes on (nothing could be promoted in its place).
    port = sentinel_group.primary_port()
    named = group.named_primary()
    assert named is not None
    run_id = sentinel_group.client(port).info("server")["run_id"]
    assert named.is_server(run_id, f"127.0.0.1:{port}")
    # A few seconds after a failover the sentinels do not know its run id yet: its address.
    fresh = sentinel.NamedPrimary("", f"127.0.0.1:{port}")
    assert fresh.is_server("any-run-id", f"127.0.0.1:{port}")
    assert not fresh.is_server("any-run-id", "127.0.0.1:1")


def test_after_a_failover_writes_never_land_on_the_old_primary_restarted(
    tmp_path: Path,
) -> None:
    """The killed primary comes back on its address (with its last sync's RDB) and stays a
    primary for about 10 s until the sentinels demote it (then wipe it with a sync). A
    client that reconnected to the address it had before (redis-py #3874) wrote there, and
    every such write was lost: the lost claims and remembered ids of issue 16. Reconnects
    ask the sentinels instead."""
    group = SentinelGroup(tmp_path / "group")
    landed: list[tuple[int, int]] = []  # (the port a write landed on, the value it made)
    stop = threading.Event()
    try:
        group.start()
        choice = broker.choose(_group_settings(group), start=False)
        client = broker.connect(choice, socket_timeout=2)

        def write() -> None:
            while not stop.is_set():
                pipe = client.pipeline(transaction=False)
                pipe.incr("ha-counter")
                pipe.info("server")
                pipe.wait(2, 100)  # never two replicas: a request is in flight when it dies
                value, server, _ = pipe.execute()
                landed.append((int(server["tcp_port"]), int(value)))

        writer = threading.Thread(target=write, daemon=True)
        writer.start()
        wait_until("the first writes", lambda: len(landed) > 3)
        old = group.primary_port()
        new = group.kill_primary()
        group.restart_old(in_sync=False)  # a stale primary on the old address, for a while
        count = len(landed)
        wait_until("writes after the failover", lambda: len(landed) > count + 8, timeout=20)
        stop.set()
        writer.join(timeout=10)
    finally:
        stop.set()
        group.stop()
    after_kill = landed[count:]
    assert {port for port, _ in after_kill} == {new}, f"writes landed on {old}: {after_kill[:5]}"
    values = [value for _, value in landed]
    assert values == sorted(values), "the counter went back: writes were lost"


def test_primary_killed_mid_job_every_record_committed_once_and_the_job_finishes(
    sentinel_group: SentinelGroup, fresh_simulators: dict[str, Any], tmp_path: Path
) -> None:
    run = run_failovers(sentinel_group, fresh_simulators, tmp_path, records=1500, kills=1)
    print(run.line("sentinel failover (make test)"))
    assert run.failovers == 1, "the primary was never killed: the job ended first"
    end = run.end
    assert (end.verdict.lost, end.verdict.twice) == (0, 0), end.verdict
    assert end.job.state == "succeeded", end.job
    assert end.exit_code == 0, end.said[-3000:]
    assert "Traceback" not in end.said, end.said[-3000:]
