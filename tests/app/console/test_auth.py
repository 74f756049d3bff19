"""No anonymous access: the local one-time sign-in, and Easy Auth's principal in Azure.

The principal header's format is App Service Authentication's (Microsoft Learn, "Work with user
identities in Azure App Service authentication"): base64 of JSON with ``auth_typ``,
``name_typ``, ``role_typ`` and ``claims`` as ``{"typ", "val"}`` pairs; Entra ID puts group
object ids in ``groups`` claims and app roles in ``roles``.
"""

from __future__ import annotations

import base64
import json
import re
from datetime import UTC, datetime

import pytest
from starlette.testclient import TestClient

from dynamics_bridge.app.console import create_app
from dynamics_bridge.app.wiring import Services
from dynamics_bridge.ops.model import PoisonFilter
from tests.app.console.conftest import TOKEN, csrf_of

GROUP = "5b5450db-eb26-4c1a-981c-ba1d25f0483d"
OTHER_GROUP = "14a87ffa-0801-49bf-a515-3d259a2a9f8f"
ROLE_TYPE = "http://schemas.microsoft.com/ws/2008/06/identity/claims/role"
NAME_TYPE = "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/emailaddress"


def principal(*, groups: list[str] = (), roles: list[str] = (), name: str = "ops@union.se") -> str:
    claims = [
        {"typ": "http://schemas.microsoft.com/identity/claims/objectidentifier", "val": "oid-1"},
        {"typ": NAME_TYPE, "val": name},
        {"typ": "preferred_username", "val": name},
        *({"typ": "groups", "val": g} for g in groups),
        *({"typ": "roles", "val": r} for r in roles),
    ]
    body = {"auth_typ": "aad", "name_typ": NAME_TYPE, "role_typ": ROLE_TYPE, "claims": claims}
    return base64.b64encode(json.dumps(body).encode()).decode()


def easyauth(services: Services, **allowed) -> TestClient:
    app = create_app(services, auth="easyauth", base="/api/console", **allowed)
    return TestClient(app, base_url="https://bridge.example", headers={"accept": "text/html"})


# --- local ---------------------------------------------------------------------------------


def test_an_anonymous_browser_is_sent_to_sign_in_and_gets_nothing(console) -> None:
    with TestClient(console, headers={"accept": "text/html"}) as anon:
        answer = anon.get("/poison", follow_redirects=False)
        assert answer.status_code == 303
        assert answer.headers["location"] == "/login"
        login = anon.get("/login")
        assert login.status_code == 401
        assert "msg-0001" not in login.text


@pytest.mark.parametrize("path", ["/", "/overview.json", "/poison.json", "/poison/msg-0001-bgmax"])
def test_an_anonymous_api_call_is_401(console, path: str) -> None:
    with TestClient(console) as anon:
        answer = anon.get(path, follow_redirects=False)
        assert answer.status_code == 401


def test_an_anonymous_replay_is_refused(console, services: Services) -> None:
    with TestClient(console) as anon:
        answer = anon.post("/poison/replay", data={"scope": "matching"})
        assert answer.status_code == 401
    assert services.poison_book.count(PoisonFilter()) == 3


def test_the_sign_in_link_works_once(console) -> None:
    with TestClient(console, headers={"accept": "text/html"}) as first:
        assert first.get(f"/login?token={TOKEN}", follow_redirects=False).status_code == 303
        assert first.get("/").status_code == 200
    with TestClient(console, headers={"accept": "text/html"}) as second:
        assert second.get(f"/login?token={TOKEN}").status_code == 401


def test_a_wrong_token_signs_nobody_in(console) -> None:
    with TestClient(console, headers={"accept": "text/html"}) as c:
        assert c.get("/login?token=guess").status_code == 401
        assert c.get("/", follow_redirects=False).status_code == 303
        # and the right one still works afterwards
        assert c.get(f"/login?token={TOKEN}", follow_redirects=False).status_code == 303


def test_the_session_cookie_is_httponly_and_samesite_strict(console) -> None:
    with TestClient(console) as c:
        cookie = c.get(f"/login?token={TOKEN}", follow_redirects=False).headers["set-cookie"]
    assert "HttpOnly" in cookie
    assert "samesite=strict" in cookie.lower()


def test_signing_out_ends_the_session(client) -> None:
    csrf = csrf_of(client.get("/").text)
    assert client.post("/logout", data={"csrf": csrf}, follow_redirects=False).status_code == 303
    assert client.get("/", follow_redirects=False).status_code == 303


def test_the_local_console_ignores_an_easy_auth_header(console) -> None:
    """Anyone can send the header to a local console: only App Service strips and sets it."""
    with TestClient(console) as c:
        answer = c.get("/", headers={"x-ms-client-principal": principal(groups=[GROUP])})
        assert answer.status_code == 401


# --- Easy Auth -------------------------------------------------------------------------------


def test_without_a_principal_the_console_refuses(services: Services) -> None:
    with easyauth(services, allowed_groups=[GROUP]) as c:
        answer = c.get("/api/console/", headers={"accept": "application/json"})
        assert answer.status_code == 401
        answer = c.post("/api/console/poison/replay", data={"scope": "matching"})
        assert answer.status_code == 401
    assert services.poison_book.count(PoisonFilter()) == 3


def test_a_browser_without_a_principal_is_sent_to_the_entra_sign_in(services: Services) -> None:
    with easyauth(services, allowed_groups=[GROUP]) as c:
        answer = c.get("/api/console/poison?source=bgmax", follow_redirects=False)
        assert answer.status_code == 302
        assert answer.headers["location"] == (
            "/.auth/login/aad?post_login_redirect_uri=/api/console/poison%3Fsource%3Dbgmax"
        )


def test_a_principal_outside_the_allowed_group_is_403(services: Services) -> None:
    with easyauth(services, allowed_groups=[GROUP]) as c:
        answer = c.get(
            "/api/console/poison",
            headers={"x-ms-client-principal": principal(groups=[OTHER_GROUP])},
        )
        assert answer.status_code == 403
        assert "msg-0001" not in answer.text


def test_a_member_of_the_allowed_group_gets_in(services: Services) -> None:
    with easyauth(services, allowed_groups=[GROUP]) as c:
        answer = c.get(
            "/api/console/poison",
            headers={"x-ms-client-principal": principal(groups=[OTHER_GROUP, GROUP])},
        )
        assert answer.status_code == 200
        assert "ops@union.se" in answer.text
        assert 'href="/api/console/poison/msg-0001-bgmax"' in answer.text  # links keep the base


def test_an_allowed_app_role_gets_in(services: Services) -> None:
    with easyauth(services, allowed_roles=["Console.Operator"]) as c:
        ok = c.get(
            "/api/console/",
            headers={"x-ms-client-principal": principal(roles=["Console.Operator"])},
        )
        assert ok.status_code == 200
        other = c.get(
            "/api/console/", headers={"x-ms-client-principal": principal(roles=["Reader"])}
        )
        assert other.status_code == 403


def test_with_no_group_or_role_configured_nobody_gets_in(services: Services) -> None:
    with easyauth(services) as c:
        answer = c.get(
            "/api/console/", headers={"x-ms-client-principal": principal(groups=[GROUP])}
        )
        assert answer.status_code == 403
        assert "BRIDGE_CONSOLE__ALLOWED_GROUPS" in answer.text


def test_a_garbled_principal_is_401(services: Services) -> None:
    with easyauth(services, allowed_groups=[GROUP]) as c:
        answer = c.get("/api/console/", headers={"x-ms-client-principal": "not base64 json!"})
        assert answer.status_code == 401


def test_easy_auth_replays_need_the_csrf_cookie_and_field_and_audit_the_user(
    services: Services,
) -> None:
    app = create_app(services, auth="easyauth", base="/api/console", allowed_groups=[GROUP])
    headers = {"x-ms-client-principal": principal(groups=[GROUP], name="karin@union.se")}
    with TestClient(app, base_url="https://bridge.example", headers=headers) as c:
        page = c.get("/api/console/poison")
        assert "__Host-bridge_csrf" in page.headers["set-cookie"]
        assert "Secure" in page.headers["set-cookie"]
        csrf = csrf_of(page.text)
        refused = c.post(
            "/api/console/poison/replay",
            data={"ids": "msg-0001-bgmax", "scope": "selected", "csrf": "x" * 43},
        )
        assert refused.status_code == 403
        answer = c.post(
            "/api/console/poison/replay",
            data={"ids": "msg-0001-bgmax", "scope": "selected", "csrf": csrf},
            follow_redirects=False,
        )
        assert answer.status_code == 303
        assert answer.headers["location"].startswith("/api/console/jobs/")
        job = app.jobs.get(answer.headers["location"].rsplit("/", 1)[-1])
        assert job.wait(10)
    (audit,) = services.ops.audits(datetime(2000, 1, 1, tzinfo=UTC))
    assert (audit.who, audit.via) == ("karin@union.se", "console")


def test_easy_auth_mode_has_no_login_route(services: Services) -> None:
    with easyauth(services, allowed_groups=[GROUP]) as c:
        answer = c.get(f"/api/console/login?token={TOKEN}", follow_redirects=False)
        assert answer.status_code == 302
        assert answer.headers["location"].startswith("/.auth/login/aad?")
        assert not re.search("bridge_console=", answer.headers.get("set-cookie", ""))
