"""The function app serves the admin console at /api/console/... behind Easy Auth."""

from __future__ import annotations

import asyncio
import base64
import json
from types import SimpleNamespace

import azure.functions as func
import pytest

from dynamics_bridge.app.wiring import Services
from dynamics_bridge.ops.memory import InMemoryOpsStore
from dynamics_bridge.queue import InMemoryQueue
from dynamics_bridge.settings import load_settings

GROUP = "5b5450db-eb26-4c1a-981c-ba1d25f0483d"


def principal(groups: list[str]) -> str:
    claims = [{"typ": "preferred_username", "val": "ops@union.se"}]
    claims += [{"typ": "groups", "val": g} for g in groups]
    return base64.b64encode(json.dumps({"auth_typ": "aad", "claims": claims}).encode()).decode()


@pytest.fixture
def serve(function_app, functions, monkeypatch):
    """Call the console function as the host would, over a console configured by ``console``."""

    def call(path: str, headers: dict[str, str], **console: object) -> func.HttpResponse:
        settings = load_settings(console=console) if console else load_settings()
        services = Services(settings, queue=InMemoryQueue("q"), ops=InMemoryOpsStore())
        monkeypatch.setattr(function_app, "services", services)
        monkeypatch.setattr(function_app, "_console", None)
        request = func.HttpRequest(
            method="GET",
            url=f"https://bridge.azurewebsites.net/api/console{path}",
            headers={"accept": "text/html", **headers},
            body=b"",
            route_params={"path": path.lstrip("/")},
        )
        return asyncio.run(functions["console"](request, SimpleNamespace()))

    return call


def test_the_route_is_anonymous_for_the_host_and_takes_get_and_post(indexed) -> None:
    trigger = json.loads(indexed["console"].get_function_json())["bindings"][0]
    assert trigger["type"] == "httpTrigger"
    assert trigger["route"] == "console/{*path}"
    assert sorted(trigger["methods"]) == ["GET", "POST"]
    assert trigger["authLevel"] == "ANONYMOUS"


def test_an_allowed_principal_sees_the_overview(serve) -> None:
    answer = serve(
        "/",
        {"x-ms-client-principal": principal([GROUP])},
        auth="easyauth",
        allowed_groups=[GROUP],
    )
    assert answer.status_code == 200
    page = answer.get_body().decode()
    assert 'id="overview"' in page
    assert 'href="/api/console/poison"' in page


def test_without_a_principal_the_console_refuses(serve) -> None:
    answer = serve(
        "/poison", {"accept": "application/json"}, auth="easyauth", allowed_groups=[GROUP]
    )
    assert answer.status_code == 401
    browser = serve("/poison", {}, auth="easyauth", allowed_groups=[GROUP])
    assert browser.status_code == 302  # to App Service's Entra ID sign-in
    assert browser.headers["location"].startswith("/.auth/login/aad?")


def test_a_principal_outside_the_group_is_403(serve) -> None:
    answer = serve(
        "/",
        {"x-ms-client-principal": principal(["other"])},
        auth="easyauth",
        allowed_groups=[GROUP],
    )
    assert answer.status_code == 403


def test_without_easy_auth_configured_the_hosted_console_stays_shut(serve) -> None:
    answer = serve("/", {"x-ms-client-principal": principal([GROUP])})
    assert answer.status_code == 403
    assert "BRIDGE_CONSOLE__AUTH=easyauth" in answer.get_body().decode()
