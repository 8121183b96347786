"""What a worker would refuse for certain is refused at publish, when the producer can know."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import redis

from tests.helpers import jsonl, nothing_enqueued, publish_file

UUID = "0b6f6c7e-3c1a-4b8e-9d7e-2f4a5b6c7d8e"
CUSTOMERS = jsonl({"email": "a@example.com"}, {"email": "b@example.com"})


@pytest.fixture
def no_bucket(monkeypatch: pytest.MonkeyPatch) -> None:
    from workers import app

    env = {k: v for k, v in app.settings().env.items() if k != "BLUESHIFT_S3_BUCKET"}
    changed = dataclasses.replace(app.settings(), env=env)
    monkeypatch.setattr(app, "settings", lambda: changed)
    monkeypatch.delenv("BLUESHIFT_S3_BUCKET", raising=False)


def test_blueshift_records_without_a_bucket_are_refused_at_publish(
    tmp_path: Path, redis_client: redis.Redis, no_bucket: None
) -> None:
    result = publish_file(tmp_path, "blueshift", "in.jsonl", CUSTOMERS, "--param", f"uuid={UUID}")
    assert result.exit_code == 1, result.output
    assert "BLUESHIFT_S3_BUCKET" in result.output and "bare trigger" in result.output
    nothing_enqueued(redis_client, "blueshift")


def test_the_dry_run_refuses_them_too(
    tmp_path: Path, redis_client: redis.Redis, no_bucket: None
) -> None:
    result = publish_file(tmp_path, "blueshift", "in.jsonl", CUSTOMERS, "--param", f"uuid={UUID}",
                          "--dry-run")  # fmt: skip
    assert result.exit_code == 1
    assert "BLUESHIFT_S3_BUCKET" in result.output
    assert redis_client.keys("*") == []


def test_a_bare_trigger_needs_no_bucket(redis_client: redis.Redis, no_bucket: None) -> None:
    from click.testing import CliRunner

    from importq.cli import main

    result = CliRunner().invoke(main, ["publish", "blueshift", "--param", f"uuid={UUID}"])
    assert result.exit_code == 0, result.output
    assert redis_client.llen("blueshift") == 1
