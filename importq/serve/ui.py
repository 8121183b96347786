"""The dashboard (/ui/): server-rendered pages that read only the API, as a browser's user.

A person signs in with an API token; it is kept in an HttpOnly, SameSite=Strict cookie,
and every page asks the API (in process, through ASGI, with that token as its bearer)
for what it shows, so the dashboard sees and may do exactly what the token may. Each
form carries a CSRF value derived from the token (HMAC-SHA256): a page of another site
cannot compute it, and the cookie is not even sent with its requests.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from importq.serve.auth import Unauthenticated
from importq.serve.services import of

COOKIE = "importq_ui"
router = APIRouter(prefix="/ui", include_in_schema=False)
templates = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))


def csrf_value(token: str) -> str:
    return hmac.new(token.encode(), b"importq-ui-csrf", hashlib.sha256).hexdigest()


def _when(epoch: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(epoch)) if epoch else "-"


templates.env.filters["when"] = _when


class SignIn(Exception):
    """No usable token in the cookie: the sign-in page."""


async def _api(request: Request, method: str, path: str, **kw: Any) -> httpx.Response:
    token = request.cookies.get(COOKIE)
    if not token:
        raise SignIn
    transport = httpx.ASGITransport(app=request.app)
    async with httpx.AsyncClient(transport=transport, base_url=str(request.base_url)) as api:
        answer = await api.request(method, path, headers={"Authorization": f"Bearer {token}"},
                                   timeout=60, **kw)  # fmt: skip
    if answer.status_code == 401:
        raise SignIn
    return answer


def _page(request: Request, name: str, **context: Any) -> HTMLResponse:
    token = request.cookies.get(COOKIE, "")
    said = request.query_params.get("said", "")
    return templates.TemplateResponse(
        request, name, {"csrf": csrf_value(token), "said": said, **context}
    )


def _back(path: str, said: str) -> RedirectResponse:
    return RedirectResponse(f"{path}?said={quote(said)}", status_code=303)


def _checked(request: Request, csrf: str) -> None:
    expected = csrf_value(request.cookies.get(COOKIE, ""))
    if not request.cookies.get(COOKIE) or not hmac.compare_digest(csrf, expected):
        raise CsrfRefused


class CsrfRefused(Exception):
    """A form without the CSRF value of the signed-in token: 403."""


async def refused(request: Request, error: Exception) -> Response:
    if isinstance(error, CsrfRefused):
        return HTMLResponse("refused: the form's CSRF value is missing or wrong; reload the "
                            "page and try again", 403)  # fmt: skip
    return RedirectResponse("/ui/signin", status_code=303)


@router.get("/signin")
async def signin_form(request: Request) -> Response:
    return _page(request, "signin.html", failed=None)


@router.post("/signin")
async def signin(request: Request, token: str = Form(...)) -> Response:
    try:
        of(request).tokens.check(f"Bearer {token}")
    except Unauthenticated:
        return RedirectResponse("/ui/signin?failed=1", status_code=303)
    back = RedirectResponse("/ui/", status_code=303)
    secure = request.url.scheme == "https"
    back.set_cookie(COOKIE, token, httponly=True, samesite="strict", secure=secure, path="/ui")
    return back


@router.post("/signout")
async def signout(request: Request, csrf: str = Form("")) -> Response:
    _checked(request, csrf)
    back = RedirectResponse("/ui/signin", status_code=303)
    back.delete_cookie(COOKIE, path="/ui")
    return back


@router.get("/")
async def jobs_page(request: Request) -> Response:
    jobs = (await _api(request, "GET", "/v1/jobs", params={"limit": 50})).json()
    return _page(request, "jobs.html", jobs=jobs)


@router.get("/jobs/{job_id}")
async def job_page(request: Request, job_id: str) -> Response:
    answer = await _api(request, "GET", f"/v1/jobs/{job_id}")
    if answer.status_code != 200:
        return _page(request, "missing.html", detail=answer.json()["detail"])
    letters = (await _api(request, "GET", f"/v1/jobs/{job_id}/dead-letters")).json()
    return _page(request, "job.html", job=answer.json(), letters=letters)


@router.get("/targets")
async def targets_page(request: Request) -> Response:
    views = (await _api(request, "GET", "/v1/targets")).json()
    return _page(request, "targets.html", targets=views)


@router.post("/jobs/{job_id}/{action}")
async def job_action(request: Request, job_id: str, action: str, csrf: str = Form("")) -> Response:
    _checked(request, csrf)
    if action not in ("replay", "cancel"):
        return _back(f"/ui/jobs/{job_id}", f"no action {action}")
    answer = await _api(request, "POST", f"/v1/jobs/{job_id}/{action}")
    if answer.status_code >= 300:
        return _back(f"/ui/jobs/{job_id}", f"{action} refused: {answer.json()['detail']}")
    if action == "replay":
        new_job = answer.json()["new_job"]["id"]
        return _back(f"/ui/jobs/{new_job}", f"replayed {job_id}'s dead letters as {new_job}")
    return _back(f"/ui/jobs/{job_id}", "cancelled")


@router.post("/targets/{target}/{action}")
async def target_action(
    request: Request, target: str, action: str, csrf: str = Form(""), reason: str = Form("")
) -> Response:
    _checked(request, csrf)
    if action not in ("pause", "resume"):
        return _back("/ui/targets", f"no action {action}")
    body = {"reason": reason or "paused from the dashboard"} if action == "pause" else None
    answer = await _api(request, "POST", f"/v1/targets/{target}/{action}", json=body)
    if answer.status_code >= 300:
        return _back("/ui/targets", f"{action} refused: {answer.json()['detail']}")
    return _back("/ui/targets", f"{target}: {action}d")
