"""Paths checked against the published (third-party, generated) OpenAPI files in ../shared.

They cover only the token, keyspaces, delete and lock operations, and declare the token
endpoint as GET by mistake (see their SOURCE.txt): only server and paths are compared here.
"""

from __future__ import annotations

import json

import pytest
import yaml
from dynamics_bridge_sandbox.apsis import ApsisStandIn

from dynamics_bridge.settings import ApsisSettings
from tests.apsis.conftest import BASE, KEYSPACE
from tests.conftest import shared_samples


def spec(name: str) -> dict:
    return yaml.safe_load((shared_samples("apsis") / name).read_text())


@pytest.fixture
def audience() -> dict:
    return spec("apsis19b1-audience-api-openapi.yml")


def path_with(audience: dict, method: str) -> str:
    return next(p for p, ops in audience["paths"].items() if method in ops)


def test_the_default_host_is_the_published_server(audience) -> None:
    assert ApsisSettings().base_url == audience["servers"][0]["url"] == BASE


def test_the_token_path_is_the_published_one() -> None:
    assert "/oauth/token" in spec("apsis19b1-oauth-api-openapi.yml")["paths"]


def test_erasure_deletes_at_the_published_path(client, api, audience) -> None:
    template = path_with(audience, "delete")
    call = api.delete(
        BASE + template.format(keyspaceDiscriminator=KEYSPACE, profileKey="M-1"), status=204
    )
    client.delete_profile("M-1")
    assert call.call_count == 1


def test_locking_puts_at_the_published_path(client, api, audience) -> None:
    template = path_with(audience, "put")
    call = api.put(
        BASE + template.format(keyspaceDiscriminator=KEYSPACE, profileKey="M-1"), status=204
    )
    client.lock_profile("M-1")
    assert call.call_count == 1


def test_the_stand_in_serves_the_published_keyspaces_path(audience) -> None:
    box = ApsisStandIn()
    path = path_with(audience, "get")
    credentials = {
        "grant_type": "client_credentials",
        "client_id": box.client_id,
        "client_secret": box.client_secret,
    }
    grant = box.handle("POST", "/oauth/token", {}, json.dumps(credentials).encode()).body
    answer = box.handle("GET", path, {"authorization": f"Bearer {grant['access_token']}"}, b"")
    assert answer.status == 200
    assert KEYSPACE in {k["discriminator"] for k in answer.body["items"]}
