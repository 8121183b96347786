"""Every target declares its --param options; an unknown one is refused with "did you mean"
before anything is staged, instead of being forwarded while the default is used."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import redis

from tests.helpers import jsonl, nothing_enqueued, publish_file
from workers.targets import TARGETS

UUID = "0b6f6c7e-3c1a-4b8e-9d7e-2f4a5b6c7d8e"
DATASOURCE = ["--param", "mode=upsert", "--param", "external_id=SPORTS-001",
              "--param", "name=Sports", "--param", "headers=Code,Name"]  # fmt: skip
TYPOS = [
    # (target, records, good options, the typo, what it should have been)
    ("workflow_import", jsonl({"EmployeeId": "E1"}), [], "creationpath=FOO", "creationPath"),
    ("sourcing_data", jsonl({"entityId": "E", "recordId": "1"}), [], "operationid=op1",
     "operation_id"),
    ("datasource", jsonl({"Vals": ["AH", "Air Hockey"]}), DATASOURCE, "extrenal_id=X",
     "external_id"),
    ("blueshift", jsonl({"email": "a@example.com"}), ["--param", f"uuid={UUID}"],
     "s3prefix=imports", "s3_prefix"),
]  # fmt: skip


@pytest.mark.parametrize(("target", "content", "options", "typo", "meant"), TYPOS,
                         ids=[t[0] for t in TYPOS])  # fmt: skip
def test_a_misspelt_param_is_refused_with_the_name_it_meant(
    tmp_path: Path,
    redis_client: redis.Redis,
    target: str,
    content: str,
    options: list[str],
    typo: str,
    meant: str,
) -> None:
    result = publish_file(tmp_path, target, "in.jsonl", content, *options, "--param", typo)
    assert result.exit_code == 1, result.output
    name = typo.partition("=")[0]
    assert f"unknown {target} option {name!r}" in result.output
    assert f"did you mean {meant}?" in result.output
    nothing_enqueued(redis_client, target)


def test_the_refusal_lists_what_the_target_takes_with_its_help(
    tmp_path: Path, redis_client: redis.Redis
) -> None:
    result = publish_file(tmp_path, "workflow_import", "in.jsonl", jsonl({"EmployeeId": "E1"}),
                          "--param", "colour=blue")  # fmt: skip
    assert result.exit_code == 1
    assert "did you mean" not in result.output
    assert "creationPath (text):" in result.output
    assert "WORKFLOW_IMPORT_QUERY_PARAMS" in result.output  # how to allow another query param


def test_every_target_but_blue_declares_its_params() -> None:
    for name, target in TARGETS.items():
        if name == "blue":  # the Blue package checks its own options (workers/targets/blue)
            continue
        assert target.params, name
        for param in target.params:
            assert param.name and param.type and param.help, (name, param)


def test_workflow_query_params_named_in_the_setting_are_forwarded(
    tmp_path: Path, redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    from workers import app

    env = {**app.settings().env, "WORKFLOW_IMPORT_QUERY_PARAMS": "importType, sendEmail"}
    changed = dataclasses.replace(app.settings(), env=env)
    monkeypatch.setattr(app, "settings", lambda: changed)
    result = publish_file(tmp_path, "workflow_import", "in.jsonl", jsonl({"EmployeeId": "E1"}),
                          "--param", "importType=Onboarding", "--param", "creationPath=LH",
                          "--json")  # fmt: skip
    assert result.exit_code == 0, result.output
    job = json.loads(result.output[result.output.index("{") :])
    assert job["params"] == {"importType": "Onboarding", "creationPath": "LH"}
    refused = publish_file(tmp_path, "workflow_import", "in.jsonl", jsonl({"EmployeeId": "E1"}),
                           "--param", "importtype=Onboarding")  # fmt: skip
    assert refused.exit_code == 1
    assert "did you mean importType?" in refused.output
