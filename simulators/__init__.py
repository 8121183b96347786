"""Local stand-ins for the target APIs, served over real HTTP on 127.0.0.1.

Each target has a module `simulators/<target>.py` that provides:

    SIMULATOR                      a class whose instances are httpx handlers
                                   (request -> response) with `base_path`,
                                   `configure(**fields)`, `reset()` and `ledger()`
    client_env(server_url)         the environment a worker needs to use that
                                   simulator with its default (fake) credentials
    demo_job(count)                (params, records) the demo publishes
    summarize(ledger)              lines for the demo's summary
    scale_plan(sim, count, stack)  the scale run's jobs for `count` records, the settings
                                   they need and what the simulator committed
                                   (simulators/scale.py; `make bench`)

`load(target)` returns the module; the demo, the tests, `importq simulate` and the
scale run find every registered target's simulator this way.
"""

from __future__ import annotations

import importlib
from types import ModuleType


def load(target: str) -> ModuleType:
    return importlib.import_module(f"simulators.{target}")
