"""The Celery settings the reliability design depends on (shared/notes, section 7)."""

from __future__ import annotations

from workers import app


def test_messages_are_json_only_and_acked_late() -> None:
    conf = app.app.conf
    assert conf.accept_content == ["json"] and conf.task_serializer == "json"
    assert conf.task_acks_late and conf.task_reject_on_worker_lost
    assert conf.worker_prefetch_multiplier == 1
    assert conf.worker_send_task_events
    assert not conf.result_extended
    assert conf.worker_cancel_long_running_tasks_on_connection_loss is False


def test_visibility_timeout_is_a_safety_net_far_beyond_the_lease() -> None:
    timeout = app.app.conf.broker_transport_options["visibility_timeout"]
    assert timeout >= 3 * 3600  # a Blue prepare runs for an hour
    assert timeout > 100 * app.settings().lease_seconds


def test_every_target_has_its_own_queue_and_task() -> None:
    from workers.targets import TARGETS

    assert {q.name for q in app.app.conf.task_queues} == set(TARGETS)
    for name in TARGETS:
        assert app.task_name(name) in app.app.tasks
        assert app.app.conf.task_routes[app.task_name(name)] == {"queue": name}


def test_message_carries_ids_only(redis_client: object) -> None:
    import base64
    import json

    import redis as redis_lib

    import schemas

    client = redis_lib.Redis.from_url(app.redis_url())
    app.publish_unit("job1:0", "sourcing_data")
    message = json.loads(client.lpop("sourcing_data") or b"{}")
    assert message["headers"]["argsrepr"] == "job=job1 unit=job1:0"
    assert message["content-type"] == "application/json"
    args, kwargs, _ = json.loads(base64.b64decode(message["body"]))
    assert kwargs == {}
    schemas.validator("envelope").validate(args[0])  # the published contract
    assert args[0] == {"unit_id": "job1:0", "job_id": "job1", "target": "sourcing_data",
                       "schema_version": 1}  # fmt: skip


def test_a_units_message_leaves_its_time_limit_to_the_worker(redis_client: object) -> None:
    """Celery stamps a registered task's limits into the messages it sends, and a worker obeys
    the message's: a unit published by a producer (or a worker) whose IMPORTQ_UNIT_TIME_LIMIT
    differs ran its first attempt under that limit, not the worker's own."""
    import json

    import redis as redis_lib

    client = redis_lib.Redis.from_url(app.redis_url())
    assert app.app.tasks[app.task_name("sourcing_data")].soft_time_limit  # this process's own
    app.publish_unit("job1:0", "sourcing_data")
    message = json.loads(client.lpop("sourcing_data") or b"{}")
    assert message["headers"]["timelimit"] == [None, None]
