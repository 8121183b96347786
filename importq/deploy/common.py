"""What the deployment file writers share: what they know of a target, the generated mark."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from importq.settings_table import EnvSetting

GENERATED = "# Written by `importq deploy-files` from the target registry: edit there, then run it."


class Deployable(Protocol):
    """What the files need to know of a target."""

    @property
    def name(self) -> str: ...
    @property
    def title(self) -> str: ...
    @property
    def one_process(self) -> bool: ...
    @property
    def settings(self) -> tuple[EnvSetting, ...]: ...


@dataclass(frozen=True)
class DeployFile:
    path: str
    text: str


def is_own(setting: EnvSetting, target: Deployable) -> bool:
    """The target's own variable (SOURCING_DATA_...), not one a library reads (AWS_...)."""
    return setting.name.startswith(target.name.upper() + "_")
