"""A pipeline manifest (YAML or JSON): the ordered steps of `importq publish blue --manifest`.

# steps.yaml: users and courses before the relationship between them
allow_partial: false        # optional: true lets a step with dead letters start the next
steps:
  - file: users.jsonl       # relative to the manifest's own directory
    params: {datasource: Users}
  - file: courses.jsonl
    params: {datasource: Courses}
  - file: course_students.jsonl
    format: jsonl           # optional: else from the file's extension
    target: blue            # optional: else the command's TARGET
    params: {datasource: CourseStudents, id_columns: "COURSE_ID,USER_ID"}
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from importq.errors import InputError
from importq.settings import Settings
from producers.pipeline import Step, publish_pipeline
from producers.readers import read_records
from workers.dispatch import Publish
from workers.jobs import JobStore

STEP_FIELDS = ("file", "format", "target", "params")


@dataclass(frozen=True)
class ManifestStep:
    target: str
    file: Path | None
    fmt: str | None
    params: dict[str, Any]


@dataclass(frozen=True)
class Manifest:
    steps: list[ManifestStep]
    allow_partial: bool


def read_manifest(path: str | Path, default_target: str) -> Manifest:
    """The manifest at `path`; InputError says which step and field is wrong."""
    source = Path(path)
    try:
        text = source.read_text(encoding="utf-8")
        data = json.loads(text) if source.suffix.lower() == ".json" else yaml.safe_load(text)
    except OSError as error:
        raise InputError(f"cannot read the manifest: {error.strerror}", str(source)) from None
    except (ValueError, yaml.YAMLError) as error:
        raise InputError(f"not valid YAML or JSON: {error}", str(source)) from None
    if not isinstance(data, dict) or not isinstance(data.get("steps"), list) or not data["steps"]:
        raise InputError("expected a mapping with a non-empty list under 'steps'", str(source))
    unknown = sorted(set(data) - {"steps", "allow_partial"})
    if unknown:
        raise InputError(f"unknown field(s) {', '.join(unknown)} (known: steps, allow_partial)",
                         str(source))  # fmt: skip
    steps = [
        _step(item, f"{source}: steps[{n}]", source.parent, default_target)
        for n, item in enumerate(data["steps"])
    ]
    return Manifest(steps, bool(data.get("allow_partial", False)))


def _step(item: Any, where: str, base: Path, default_target: str) -> ManifestStep:
    if not isinstance(item, dict):
        raise InputError("a step is a mapping with file and params", where)
    unknown = sorted(set(item) - set(STEP_FIELDS))
    if unknown:
        raise InputError(f"unknown field(s) {', '.join(unknown)} (known: {', '.join(STEP_FIELDS)})",
                         where)  # fmt: skip
    params = item.get("params") or {}
    if not isinstance(params, dict):
        raise InputError("params must be a mapping of option: value", where)
    file = item.get("file")
    if file is not None and not isinstance(file, str):
        raise InputError("file must be a path", where)
    return ManifestStep(
        target=str(item.get("target") or default_target),
        file=(base / file) if file else None,
        fmt=item.get("format"),
        params=dict(params),
    )


def publish_manifest(
    path: str | Path,
    target: str,
    extra_params: dict[str, Any],
    *,
    settings: Settings,
    store: JobStore,
    publish_unit: Publish,
    check_target: bool = True,
    notify: Callable[[str], None] = lambda message: None,
) -> str:
    """Validate and stage every step of the manifest, start the first; the pipeline id."""
    manifest = read_manifest(path, target)
    steps = [
        Step(
            step.target,
            read_records(step.file, step.fmt, target=step.target) if step.file else None,
            {**extra_params, **step.params},
        )
        for step in manifest.steps
    ]
    return publish_pipeline(
        steps,
        settings=settings,
        store=store,
        publish_unit=publish_unit,
        allow_partial=manifest.allow_partial,
        check_target=check_target,
        notify=notify,
    )
