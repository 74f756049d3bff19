"""Who is asking, and may they: the console's sign-in, as ASGI middleware, and its CSRF check.

Two ways in, chosen by whoever builds the app, never by the request:

- ``local`` (``dynamics-bridge console``): a one-time token printed on the terminal;
  ``/login?token=…`` trades it for a session kept in this process's memory (an opaque random
  cookie, HttpOnly, SameSite=Strict). The session holds the CSRF token.
- ``easyauth`` (the function app, behind App Service Authentication with Entra ID): the platform
  signs the user in and hands the app the ``X-MS-CLIENT-PRINCIPAL`` header, base64 of
  ``{"auth_typ", "name_typ", "role_typ", "claims": [{"typ", "val"}, ...]}``; external requests
  cannot set it. The user must hold an allowed group (claims ``groups``: object ids) or app
  role (claims of ``role_typ`` / ``roles``). Easy Auth lets anonymous requests through (the
  webhooks on the same app need that), so a browser without a principal is sent to
  ``/.auth/login/aad`` and back. No server state: the CSRF token is a random
  ``__Host-`` cookie (Secure, SameSite=Strict, no subdomain can set it) that every form repeats.

Everything else (no principal, a principal outside the groups, a POST from another site, a form
without the token) is refused before a page or an action runs.
"""

from __future__ import annotations

import base64
import binascii
import getpass
import hmac
import json
import secrets
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import quote

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

__all__ = [
    "CSRF_FIELD",
    "AuthMode",
    "ConsoleAuth",
    "ConsoleUser",
    "Refused",
    "checked_form",
    "principal_user",
]

AuthMode = Literal["local", "easyauth"]

PRINCIPAL_HEADER = "x-ms-client-principal"
#: App Service Authentication's sign-in endpoint for the Microsoft (Entra ID) provider.
EASY_AUTH_LOGIN = "/.auth/login/aad"
SESSION_COOKIE = "bridge_console"
CSRF_COOKIE = "__Host-bridge_csrf"  # easyauth: the double-submit cookie (https only)
CSRF_FIELD = "csrf"
#: A local session lasts a working day.
SESSION_SECONDS = 12 * 3600

ROLE_CLAIMS = ("roles", "http://schemas.microsoft.com/ws/2008/06/identity/claims/role")
GROUP_CLAIMS = ("groups", "http://schemas.microsoft.com/ws/2008/06/identity/claims/groups")
NAME_CLAIMS = (
    "preferred_username",
    "name",
    "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/upn",
    "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/emailaddress",
)
OID_CLAIMS = ("http://schemas.microsoft.com/identity/claims/objectidentifier", "oid")


class Refused(Exception):
    """A request the console will not serve: the status and the words to say why."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True, slots=True)
class ConsoleUser:
    """The signed-in user: ``name`` goes into audits (``who``)."""

    name: str
    user_id: str
    csrf: str
    via: AuthMode


def _claims(principal: Mapping[str, Any]) -> list[tuple[str, str]]:
    found = []
    for claim in principal.get("claims") or []:
        if isinstance(claim, dict) and "typ" in claim and "val" in claim:
            found.append((str(claim["typ"]), str(claim["val"])))
    return found


def principal_user(
    header: str,
    *,
    allowed_groups: Iterable[str],
    allowed_roles: Iterable[str],
    name_header: str = "",
    id_header: str = "",
) -> tuple[str, str]:
    """(name, id) of the Easy Auth principal in ``header`` when it holds an allowed group or
    role; :class:`Refused` (401 unreadable, 403 not allowed) otherwise."""
    try:
        principal = json.loads(base64.b64decode(header.strip(), validate=False))
    except (binascii.Error, ValueError) as exc:
        raise Refused(401, "the X-MS-CLIENT-PRINCIPAL header is not base64 JSON") from exc
    if not isinstance(principal, dict):
        raise Refused(401, "the X-MS-CLIENT-PRINCIPAL header holds no principal")
    claims = _claims(principal)
    role_types = {*ROLE_CLAIMS, str(principal.get("role_typ") or "roles")}
    groups = {v for t, v in claims if t in GROUP_CLAIMS}
    roles = {v for t, v in claims if t in role_types}
    wanted_groups = {g.strip().lower() for g in allowed_groups if g.strip()}
    wanted_roles = {r.strip() for r in allowed_roles if r.strip()}
    if not (wanted_groups or wanted_roles):
        raise Refused(
            403,
            "no group or role may use the console: set BRIDGE_CONSOLE__ALLOWED_GROUPS or "
            "BRIDGE_CONSOLE__ALLOWED_ROLES",
        )
    if not ({g.lower() for g in groups} & wanted_groups or roles & wanted_roles):
        raise Refused(403, "you are signed in, but not in a group or role allowed here")
    name_types = (str(principal.get("name_typ") or ""), *NAME_CLAIMS)
    name = next((v for t in name_types for c, v in claims if c == t and v), "") or name_header
    user_id = next((v for c, v in claims if c in OID_CLAIMS), "") or id_header
    return name or user_id or "unknown", user_id or name


@dataclass
class _Session:
    user: ConsoleUser
    until: float


class ConsoleAuth:
    """The console's gate: wraps the app; see the module docstring for the two modes."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        mode: AuthMode,
        base: str = "",
        login_token: str | None = None,
        allowed_groups: Iterable[str] = (),
        allowed_roles: Iterable[str] = (),
        local_user: str | None = None,
    ) -> None:
        self.app = app
        self.mode: AuthMode = mode
        self.base = base
        self._token = login_token
        self._groups = list(allowed_groups)
        self._roles = list(allowed_roles)
        self._local_user = local_user or f"{_os_user()} (local console)"
        self._sessions: dict[str, _Session] = {}
        self._lock = threading.Lock()
        #: the console's replays and purges (set by ``create_app``)
        self.jobs: Any = None

    # -- ASGI ---------------------------------------------------------------------------
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        path = scope["path"][len(self.base) :] if scope["path"].startswith(self.base) else ""
        if path.startswith("/static/"):
            await self.app(scope, receive, send)
            return
        if self.mode == "local" and path == "/login":
            await self._login(request)(scope, receive, send)
            return
        try:
            if request.method not in ("GET", "HEAD") and _cross_site(request):
                raise Refused(403, "a form from another site is refused")
            user, new_csrf = self._user(request)
        except Refused as refused:
            await self._refusal(request, refused)(scope, receive, send)
            return
        scope["console.user"] = user

        async def send_with_cookie(message: Any) -> None:
            if new_csrf and message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                cookie = (
                    f"{CSRF_COOKIE}={new_csrf}; Path=/; Secure; HttpOnly; SameSite=Strict"
                ).encode("latin-1")
                headers.append((b"set-cookie", cookie))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_cookie)

    # -- who -----------------------------------------------------------------------------
    def _user(self, request: Request) -> tuple[ConsoleUser, str | None]:
        if self.mode == "easyauth":
            header = request.headers.get(PRINCIPAL_HEADER)
            if not header:
                raise Refused(401, "sign in through App Service Authentication (Entra ID)")
            name, user_id = principal_user(
                header,
                allowed_groups=self._groups,
                allowed_roles=self._roles,
                name_header=request.headers.get("x-ms-client-principal-name", ""),
                id_header=request.headers.get("x-ms-client-principal-id", ""),
            )
            csrf = request.cookies.get(CSRF_COOKIE) or ""
            new = None
            if len(csrf) < 32:
                csrf = new = secrets.token_urlsafe(32)
            return ConsoleUser(name, user_id, csrf, "easyauth"), new
        sid = request.cookies.get(SESSION_COOKIE, "")
        with self._lock:
            session = self._sessions.get(sid)
            if session is not None and session.until < time.monotonic():
                del self._sessions[sid]
                session = None
        if session is None:
            raise Refused(401, "sign in with the link dynamics-bridge console printed")
        return session.user, None

    def _login(self, request: Request) -> Response:
        offered = request.query_params.get("token", "")
        with self._lock:
            good = bool(self._token and offered and hmac.compare_digest(offered, self._token))
            if good:
                self._token = None  # one time only
                sid = secrets.token_urlsafe(32)
                user = ConsoleUser(self._local_user, "local", secrets.token_urlsafe(32), "local")
                self._sessions[sid] = _Session(user, time.monotonic() + SESSION_SECONDS)
        if not good:
            return _page(
                401,
                "Sign in",
                "This console opens with the one-time link <code>dynamics-bridge console</code> "
                "printed. That link was used already, or this one is not it: start the console "
                "again for a new one.",
            )
        response = RedirectResponse(f"{self.base}/", status_code=303)
        response.set_cookie(
            SESSION_COOKIE,
            sid,
            max_age=SESSION_SECONDS,
            path=self.base or "/",
            httponly=True,
            samesite="strict",
        )
        return response

    def end_session(self, request: Request) -> None:
        with self._lock:
            self._sessions.pop(request.cookies.get(SESSION_COOKIE, ""), None)

    def new_login_token(self) -> str:
        """A fresh one-time token (the CLI prints it in the sign-in link)."""
        with self._lock:
            self._token = secrets.token_urlsafe(24)
            return self._token

    def _refusal(self, request: Request, refused: Refused) -> Response:
        wants_html = "text/html" in request.headers.get("accept", "")
        browsing = refused.status == 401 and request.method == "GET" and wants_html
        if browsing and self.mode == "local":
            return RedirectResponse(f"{self.base}/login", status_code=303)
        if browsing and PRINCIPAL_HEADER not in request.headers:
            # Easy Auth lets anonymous requests through (the webhooks need that): send the
            # browser to its Entra ID sign-in, and back here afterwards.
            back = quote(request.url.path + (f"?{request.url.query}" if request.url.query else ""))
            return RedirectResponse(
                f"{EASY_AUTH_LOGIN}?post_login_redirect_uri={back}", status_code=302
            )
        if wants_html:
            title = "Sign in" if refused.status == 401 else "Not allowed"
            return _page(refused.status, title, _escape(refused.message))
        return PlainTextResponse(refused.message, status_code=refused.status)


def _os_user() -> str:
    try:
        return getpass.getuser()
    except (OSError, KeyError):  # no user name in a container
        return "admin"


def _cross_site(request: Request) -> bool:
    """A browser says where a form came from: refuse what another site sent (with the tokens,
    a second wall, as Datasette's csrf check)."""
    site = request.headers.get("sec-fetch-site")
    if site is not None:
        return site not in ("same-origin", "none")
    origin = request.headers.get("origin")
    if origin and origin != "null":
        host = request.headers.get("host", "")
        return origin.split("://", 1)[-1] != host
    return False


def _escape(text: str) -> str:
    from html import escape

    return escape(text)


def _page(status: int, title: str, html_message: str) -> HTMLResponse:
    body = (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{title} · dynamics-bridge</title></head><body>"
        f'<main id="refused" data-status="{status}"><h1>{title}</h1><p>{html_message}</p></main>'
        "</body></html>"
    )
    return HTMLResponse(body, status_code=status)


async def checked_form(request: Request) -> FormData:
    """The POSTed form when it carries this session's CSRF token; :class:`Refused` (403)
    otherwise."""
    user: ConsoleUser = request.scope["console.user"]
    form = await request.form()
    offered = form.get(CSRF_FIELD)
    if not isinstance(offered, str) or not hmac.compare_digest(offered, user.csrf):
        raise Refused(403, "the form's CSRF token is missing or wrong: reload the page")
    return form
