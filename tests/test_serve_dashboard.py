"""The dashboard in a real headless Chromium (Playwright driving /usr/bin/chromium).

A job published through the API shows on the jobs page; its page shows the dead letter
with the vendor's reason; the replay button publishes it again, and that job succeeds.
A form posted without the page's CSRF value is refused.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.helpers import jsonl, wait_for_job
from tests.serving import READER, WRITER, Api, api
from tests.test_http_batch_e2e import CANARY_SECRET, events

__all__ = ["api"]  # the fixture
CHROMIUM = Path("/usr/bin/chromium")
TARGET = "http_batch"
REFUSED = "ev-000004"


@pytest.fixture
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is not installed (`make chromium` installs Debian's)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="`make` installs playwright")
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def worker(start_worker: Any, fresh_simulators: dict[str, Any]) -> Any:
    settings = {"auth_secret": CANARY_SECRET, "key_column": "eventId", "retry_after_seconds": 0}
    fresh_simulators[TARGET].configure(**settings)
    return functools.partial(start_worker, TARGET, HTTP_BATCH_AUTH_SECRET=CANARY_SECRET)


def signed_in(browser: Any, api: Api, token: str) -> Any:
    page = browser.new_page(viewport={"width": 1280, "height": 600})
    page.goto(f"{api.url}/ui/")
    assert page.url.endswith("/ui/signin")  # no cookie yet
    page.fill("input[name=token]", token)
    page.click("text=Sign in")
    page.wait_for_url(f"{api.url}/ui/")
    return page


def test_a_published_job_its_dead_letter_and_its_replay_in_the_browser(
    api: Api, browser: Any, worker: Any, fresh_simulators: dict[str, Any], redis_client: Any
) -> None:
    sim = fresh_simulators[TARGET]
    sim.configure(refuse_values={REFUSED})
    worker(concurrency=1)
    with api.client(WRITER) as client:
        body, kind = jsonl(*events(12)), {"Content-Type": "application/x-ndjson"}
        job_id = client.post(f"/v1/targets/{TARGET}/jobs", content=body, headers=kind).json()["id"]
    assert wait_for_job(job_id).state == "partial"
    page = signed_in(browser, api, WRITER)
    row = page.locator(f"tr[data-job='{job_id}']")
    assert "partial" in row.inner_text() and "11 delivered, 1 dead of 12" in row.inner_text()
    if shot := os.environ.get("IMPORTQ_DASHBOARD_SCREENSHOT"):  # docs/dashboard-jobs.png
        page.screenshot(path=shot, full_page=True)
    page.click(f"a[href='/ui/jobs/{job_id}']")
    letters = page.locator("#dead-letters").inner_text()
    assert REFUSED in letters and f"Value eventId='{REFUSED}' is not accepted." in letters
    sim.configure(refuse_values=set())
    page.click("#replay")
    page.wait_for_selector("#said")
    said = page.inner_text("#said")
    assert said.startswith(f"replayed {job_id}'s dead letters as ")
    new_job = said.rsplit(" ", 1)[1]
    assert wait_for_job(new_job).state == "succeeded"
    page.reload()
    assert page.inner_text("#state") == "succeeded"


def test_pause_from_the_targets_page_and_forms_without_csrf_are_refused(
    api: Api, browser: Any, redis_client: Any
) -> None:
    page = signed_in(browser, api, WRITER)
    page.goto(f"{api.url}/ui/targets")
    page.click(f"tr[data-target='{TARGET}'] button")
    assert page.inner_text("#said") == f"{TARGET}: paused"
    assert "by operator: paused from the dashboard" in page.inner_text(
        f"tr[data-target='{TARGET}']"
    )
    cookie = {c["name"]: c["value"] for c in page.context.cookies()}
    forged = httpx.post(f"{api.url}/ui/targets/{TARGET}/resume", cookies=cookie,
                        data={"csrf": "0" * 64}, follow_redirects=False)  # fmt: skip
    assert forged.status_code == 403 and "CSRF" in forged.text
    page.click(f"tr[data-target='{TARGET}'] button")
    assert page.inner_text("#said") == f"{TARGET}: resumed"
    reader = signed_in(browser, api, READER)  # the dashboard may do what its token may
    reader.goto(f"{api.url}/ui/targets")
    reader.click(f"tr[data-target='{TARGET}'] button")
    assert "may only read" in reader.inner_text("#said")
