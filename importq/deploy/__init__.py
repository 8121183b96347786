"""The deployment files, written from the registry: nothing per target is copied by hand.

`importq deploy-files` writes the Procfile, docker-compose.yml, .env.example and the
README's settings tables from the core's settings table (importq/settings_table.py) and
the registered targets (their names, whether they run one process, the variables they
declare); `--check` names the files that are out of date instead (a test runs it).

    procfile.py      one process per target, plus Flower and the metrics
    compose.py       one service per target, given only its own variables, with health checks
    env_example.py   what an operator fills in
    readme.py        the settings tables between their markers in README.md
    (and schemas/openapi/serve.json, the document `importq serve` answers at /openapi.json)
    common.py        what they share: the Deployable protocol, the generated mark
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

from importq.deploy import compose, env_example, procfile, readme
from importq.deploy.common import Deployable, DeployFile
from importq.serve.app import OPENAPI_PATH, openapi_text


def registered() -> list[Deployable]:
    from workers.targets import TARGETS

    return list(TARGETS.values())


def files(root: Path, targets: Sequence[Deployable]) -> list[DeployFile]:
    return [
        DeployFile("Procfile", procfile.text(targets)),
        DeployFile("docker-compose.yml", compose.text(targets)),
        DeployFile(".env.example", env_example.text(targets)),
        DeployFile("README.md", readme.text((root / "README.md").read_text(), targets)),
        DeployFile(OPENAPI_PATH, openapi_text()),
    ]


def stale(root: Path, wanted: Iterable[DeployFile]) -> list[str]:
    """The files whose text differs from what the registry says they should be."""
    return [f.path for f in wanted if _text(root / f.path) != f.text]


def _text(path: Path) -> str | None:
    return path.read_text() if path.exists() else None


def write(root: Path, wanted: Iterable[DeployFile]) -> list[str]:
    written = stale(root, wanted := list(wanted))
    for f in wanted:
        if f.path in written:
            (root / f.path).parent.mkdir(parents=True, exist_ok=True)
            (root / f.path).write_text(f.text)
    return written
