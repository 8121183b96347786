"""The core imports without cycles or side effects (issue 12).

Importing a module reads no setting, connects nowhere and starts nothing: the
worker app picks its Redis (perhaps starting the embedded one) on first use.

The graph is read from the source (ast), so an import inside a function counts
as much as one at the top of a module: moving an import into a function does not
hide a cycle here. An import of `a.b.c` is an edge to `a.b.c` only; Python also
runs the `a` and `a.b` packages first, but a package that gathers its own
submodules (importq/cli/, workers/targets/) is not a cycle by that alone.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("importq", "producers", "workers", "schemas", "simulators")


def module_files() -> dict[str, Path]:
    """Every first-party module by its dotted name."""
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


def imported_modules(path: Path, module: str, files: dict[str, Path]) -> Iterator[str]:
    """The first-party modules `module` imports, relative imports resolved.

    `from a import b` is an edge to the module a.b when there is one, else to a.
    """
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names if alias.name in files)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                name = f"{base}.{alias.name}"
                if name in files:
                    yield name
                elif base in files:
                    yield base


def import_graph() -> dict[str, set[str]]:
    """module -> the first-party modules it imports, at the top or inside a function."""
    files = module_files()
    return {
        module: set(imported_modules(path, module, files)) - {module}
        for module, path in files.items()
    }


def first_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a path that ends where it started, or None."""
    done: set[str] = set()
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        if node in path:
            return [*path[path.index(node) :], node]
        if node in done:
            return None
        path.append(node)
        for step in sorted(graph.get(node, ())):
            cycle = visit(step)
            if cycle:
                return cycle
        path.pop()
        done.add(node)
        return None

    for start in sorted(graph):
        cycle = visit(start)
        if cycle:
            return cycle
    return None


def test_first_party_modules_import_one_another_without_a_cycle() -> None:
    graph = import_graph()
    assert {"workers.app", "importq.cli", "producers.publish"} <= set(graph)  # all were read
    cycle = first_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_the_workers_never_import_the_producers() -> None:
    graph = import_graph()
    reaching = {
        (module, target)
        for module, targets in graph.items()
        if module.split(".")[0] == "workers"
        for target in targets
        if target.split(".")[0] == "producers"
    }
    assert reaching == set()


def test_the_cycle_check_finds_a_cycle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert first_cycle(graph) == ["a", "b", "c", "a"]
    assert first_cycle({"a": {"b"}, "b": set()}) is None


# Run in a child before importing the modules named on its command line: any connection,
# child process or settings read during an import fails it, naming the culprit.
REFUSE_SIDE_EFFECTS = """
import importlib, socket, subprocess, sys
import importq.settings

def refuse(*args, **kwargs):
    raise AssertionError("an import connected, started a process or read the settings")

socket.socket.connect = refuse
subprocess.Popen.__init__ = refuse
importq.settings.load = refuse
for name in sys.argv[1:]:
    importlib.import_module(name)
"""


def _child_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    return {**env, "IMPORTQ_HOME": str(home)}


def _processes_naming(text: str) -> list[str]:
    """Command lines of running processes that mention `text` (an embedded Redis's --dir)."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            line = cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:  # the process ended meanwhile
            continue
        if text in line:
            found.append(line)
    return found


def test_importing_the_worker_app_starts_no_redis_and_writes_nothing(tmp_path: Path) -> None:
    home = tmp_path / "home"
    subprocess.run([sys.executable, "-c", "import workers.app"], env=_child_env(home),
                   cwd=tmp_path, check=True, timeout=60)  # fmt: skip
    assert not home.exists() or not any(home.rglob("*"))
    assert _processes_naming(str(home)) == []


def test_no_first_party_module_has_an_import_time_side_effect(tmp_path: Path) -> None:
    modules = sorted(name for name in module_files() if not name.endswith("__main__"))
    done = subprocess.run([sys.executable, "-c", REFUSE_SIDE_EFFECTS, *modules],
                          env=_child_env(tmp_path / "home"), cwd=tmp_path, capture_output=True,
                          text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]


def test_the_command_line_loads_no_worker_app_nor_http_api_before_a_command_needs_them(
    tmp_path: Path,
) -> None:
    # Every `importq` run pays for what `import importq.cli` loads (the suite starts it
    # dozens of times): Celery, the targets' clients, FastAPI and the producers wait for
    # the command that uses them.
    heavy = ("celery", "fastapi", "zeep", "boto3", "producers", "workers.app",
             "workers.targets", "importq.serve", "importq.deploy")  # fmt: skip
    code = "import sys, importq.cli; print('\\n'.join(sys.modules))"
    loaded = subprocess.run([sys.executable, "-c", code], env=_child_env(tmp_path / "home"),
                            cwd=tmp_path, capture_output=True, text=True, check=True,
                            timeout=60).stdout.split()  # fmt: skip
    assert [m for m in loaded if m.startswith(heavy)] == []
