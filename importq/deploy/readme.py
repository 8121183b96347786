"""The README's settings tables, written between their markers from the settings tables."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

from importq.deploy.common import Deployable
from importq.settings_table import CORE, EnvSetting

CORE_MARKERS = (
    "<!-- core settings: written by `importq deploy-files` from importq/settings_table.py -->",
    "<!-- end of core settings -->",
)
TARGET_MARKERS = (
    "<!-- target settings: written by `importq deploy-files` from the targets -->",
    "<!-- end of target settings -->",
)
_HEADER = ["| variable | default | meaning |", "|---|---|---|"]


def text(readme: str, targets: Sequence[Deployable]) -> str:
    readme = _between(readme, CORE_MARKERS, "\n".join(_HEADER + _rows(CORE)))
    return _between(readme, TARGET_MARKERS, _target_tables(targets))


def _rows(settings: Iterable[EnvSetting]) -> list[str]:
    rows = []
    for setting in settings:
        names = " / ".join(f"`{name}`" for name in setting.names)
        help_text = setting.help + (" (secret)" if setting.secret else "")
        rows.append(f"| {names} | {setting.default} | {help_text} |")
    return rows


def _target_tables(targets: Sequence[Deployable]) -> str:
    blocks = [
        "\n".join([f"**{t.title}** (`{t.name}`)", "", *_HEADER, *_rows(t.settings)])
        for t in targets
    ]
    return "\n\n".join(blocks)


def _between(readme: str, markers: tuple[str, str], block: str) -> str:
    begin, end = markers
    pattern = re.compile(re.escape(begin) + r"\n.*?" + re.escape(end), re.S)
    if not pattern.search(readme):
        raise ValueError(f"README.md lacks the markers {begin!r} ... {end!r}")
    return pattern.sub(lambda _: f"{begin}\n{block}\n{end}", readme, count=1)
