"""A target is added by its package, its schema, its simulator and one name in the registry.

http_batch, the sixth target, was added that way: no core module, command, deployment
file or demo line names it. These tests hold every later target to the same rule, and
check that registration alone gives it a queue and task, a worker in `importq worker`,
a schema check at publish, the deployment files, and a run in `importq demo`.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from importq import deploy
from importq.cli import main
from importq.errors import InputError
from importq.processes import worker_commands
from importq.serve.app import OPENAPI_PATH
from producers.validate import validate
from workers import app
from workers.targets import REGISTERED, TARGETS

ROOT = Path(__file__).resolve().parent.parent
NEW = "http_batch"
# Where a target may be named: its own files, the tests, the docs, and the registry line.
OWN = (f"workers/targets/{NEW}/", f"schemas/{NEW}.json", f"simulators/{NEW}.py", "tests/")
DOCS = (".md",)
GENERATED = {"Procfile", "docker-compose.yml", ".env.example"}


def _tracked() -> list[str]:
    listed = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True)
    if listed.returncode != 0:
        pytest.skip("not a git checkout: the tracked files cannot be listed")
    return listed.stdout.split()


def test_the_new_target_is_named_only_in_its_own_files_and_one_registry_line() -> None:
    named_elsewhere = []
    for path in _tracked():
        if path.startswith(OWN) or path.endswith(DOCS) or path in GENERATED:
            continue
        text = (ROOT / path).read_text(errors="replace")
        lines = [line for line in text.splitlines() if NEW in line]
        if path == "workers/targets/__init__.py":
            assert lines == [f'    "{NEW}",'], lines  # the one registration line
            continue
        named_elsewhere += [f"{path}: {line.strip()}" for line in lines]
    assert named_elsewhere == []


def test_the_deployment_files_and_the_settings_table_are_what_the_registry_says() -> None:
    result = CliRunner().invoke(main, ["deploy-files", "--check", "--root", str(ROOT)])
    assert result.exit_code == 0, result.output
    wanted = {f.path: f.text for f in deploy.files(ROOT, deploy.registered())}
    assert f"worker_{NEW}: exec celery -A workers.app worker -Q {NEW} " in wanted["Procfile"]
    assert f"  worker_{NEW}:\n" in wanted["docker-compose.yml"]
    for setting in TARGETS[NEW].settings:
        for name in setting.names:
            assert f"`{name}`" in wanted["README.md"]
            assert f"{name}=" in wanted[".env.example"]


def test_a_stale_deployment_file_is_named_and_rewritten(tmp_path: Path) -> None:
    for name in ("README.md", *GENERATED, OPENAPI_PATH):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text((ROOT / name).read_text())
    procfile = tmp_path / "Procfile"
    procfile.write_text(re.sub(rf"^worker_{NEW}:.*\n", "", procfile.read_text(), flags=re.M))
    check = CliRunner().invoke(main, ["deploy-files", "--check", "--root", str(tmp_path)])
    assert check.exit_code == 1 and "Procfile is out of date" in check.output
    written = CliRunner().invoke(main, ["deploy-files", "--root", str(tmp_path)])
    assert written.exit_code == 0 and written.output.strip() == "wrote Procfile"
    assert procfile.read_text() == (ROOT / "Procfile").read_text()


def test_registration_gives_a_queue_a_task_a_worker_and_a_schema_check() -> None:
    assert REGISTERED.count(NEW) == 1
    assert NEW in {queue.name for queue in app.app.conf.task_queues}
    assert app.task_name(NEW) in app.app.tasks
    queues = [command[command.index("-Q") + 1] for command in worker_commands(
        list(TARGETS), None, None)]  # fmt: skip
    assert any(NEW in queue.split(",") for queue in queues)  # `importq worker` (all) runs it
    with pytest.raises(InputError, match=r"in\.jsonl:2"):
        list(validate(NEW, [({"id": 1}, "in.jsonl:1"), ({}, "in.jsonl:2")]))


# The demo runs every registered target: tests/test_redis_choice.py checks each one's job.
