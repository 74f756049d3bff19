"""The stand-ins an admin practises against keep their settings between runs."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
import requests
from dynamics_bridge_sandbox.standins import STANDINS, SandboxState, run_standins
from dynamics_bridge_sandbox.tls import make_certificates

from dynamics_bridge.apsis.client import ApsisClient
from dynamics_bridge.dataverse.auth import msal_token_provider, session_for
from dynamics_bridge.errors import ConfigError
from dynamics_bridge.registry.spar import SparClient
from dynamics_bridge.settings import load_settings

API = "/api/data/v9.2/"


def test_the_written_env_file_lets_each_client_in(tmp_path: Path) -> None:
    with run_standins(STANDINS, tmp_path / "state") as running:
        settings = load_settings(_env_file=running.env_file)
        assert settings.dataverse.url == running.urls["dataverse"]
        assert settings.apsis.base_url == running.urls["apsis"]
        assert settings.spar.endpoint == running.urls["spar"]

        dataverse = settings.dataverse
        token = msal_token_provider(dataverse)()
        contact = session_for(dataverse).get(
            f"{dataverse.url}{API}EntityDefinitions(LogicalName='contact')",
            headers={"Authorization": f"Bearer {token}"},
            timeout=10,
        )
        assert contact.status_code == 200, contact.text
        assert contact.json()["EntitySetName"] == "contacts"

        sections = ApsisClient.from_settings(settings.apsis).definitions("attributes")
        assert sections, "the APSIS stand-in answered no attribute definitions"
        assert running.apsis is not None
        assert running.apsis.tokens_issued == 1

        record = SparClient.from_settings(settings.spar).lookup("196503129816")
        assert record.to_json(show_pnr=True)["personnummer"] == "196503129816"
        assert running.spar is not None
        assert running.spar.lookups == ["196503129816"]


def test_a_wrong_secret_is_refused_so_the_check_above_means_something(tmp_path: Path) -> None:
    with run_standins(["dataverse"], tmp_path) as running:
        settings = load_settings(_env_file=running.env_file)
        answer = requests.post(
            f"{settings.dataverse.authority}/oauth2/v2.0/token",
            data={
                "client_id": settings.dataverse.client_id,
                "client_secret": "not-the-secret",
                "grant_type": "client_credentials",
            },
            verify=settings.dataverse.ca_bundle,
            timeout=10,
        )
    assert answer.status_code == 401


def test_credentials_ports_and_ca_survive_a_restart(tmp_path: Path) -> None:
    with run_standins(STANDINS, tmp_path) as first:
        env, env_text = dict(first.env), first.env_file.read_text()
        ca = Path(env["BRIDGE_DATAVERSE__CA_BUNDLE"]).read_bytes()
    with run_standins(STANDINS, tmp_path) as second:
        assert second.env == env
        assert second.env_file.read_text() == env_text
        assert Path(second.env["BRIDGE_DATAVERSE__CA_BUNDLE"]).read_bytes() == ca
        assert second.apsis is not None
        assert second.apsis.client_id == env["BRIDGE_APSIS__CLIENT_ID"]


def test_a_taken_port_moves_the_stand_in_and_the_env_file_follows(tmp_path: Path) -> None:
    with run_standins(["apsis"], tmp_path) as first:
        url = first.urls["apsis"]
        # while the first still holds its port, a second run from the same state moves
        with run_standins(["apsis"], tmp_path) as second:
            moved = second.urls["apsis"]
            assert moved != url
            assert f"BRIDGE_APSIS__BASE_URL='{moved}'" in second.env_file.read_text()
            assert second.apsis is not None
            assert first.apsis is not None
            assert second.apsis.client_secret == first.apsis.client_secret


def test_more_app_users_keep_the_first_and_add_one(tmp_path: Path) -> None:
    with run_standins(["dataverse"], tmp_path) as first:
        assert first.dataverse is not None
        primary = (first.dataverse.client_id, first.dataverse.client_secret)
    with run_standins(["dataverse"], tmp_path, app_users=2) as second:
        assert second.dataverse is not None
        assert (second.dataverse.client_id, second.dataverse.client_secret) == primary
        assert len(second.dataverse.extra_users) == 1
        users = json.loads(second.env["BRIDGE_DATAVERSE__APP_USERS"])
        assert [u["client_id"] for u in users] == list(second.dataverse.extra_users)


def test_rows_written_in_one_run_are_there_in_the_next(tmp_path: Path) -> None:
    with run_standins(["dataverse"], tmp_path) as first:
        assert first.dataverse is not None
        first.dataverse.dataverse.handle("POST", API + "contacts", {}, b'{"lastname": "Berg"}')
    with run_standins(["dataverse"], tmp_path) as second:
        assert second.dataverse is not None
        rows = second.dataverse.dataverse._rows("contact")
        assert [data["lastname"] for _, data, _ in rows] == ["Berg"]


def test_each_stand_in_writes_its_own_section_and_keeps_the_others(tmp_path: Path) -> None:
    with run_standins(["spar"], tmp_path):
        pass
    with run_standins(["apsis"], tmp_path) as running:
        text = running.env_file.read_text()
    assert "BRIDGE_SPAR__ENDPOINT=" in text
    assert "BRIDGE_APSIS__CLIENT_ID=" in text
    assert "BRIDGE_DATAVERSE__" not in text


def test_an_env_file_the_sandbox_did_not_write_is_left_alone(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("BRIDGE_DATAVERSE__URL=https://org.crm4.dynamics.com\n")
    with (
        pytest.raises(ConfigError, match=r"\.env: exists and was not written by the sandbox"),
        run_standins(["spar"], tmp_path),
    ):
        pass
    assert (
        tmp_path / ".env"
    ).read_text() == "BRIDGE_DATAVERSE__URL=https://org.crm4.dynamics.com\n"


def test_secrets_are_readable_by_the_owner_only(tmp_path: Path) -> None:
    with run_standins(["apsis"], tmp_path) as running:
        state = SandboxState(tmp_path)
        for path in (state.file, running.env_file):
            assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_a_broken_state_file_is_named(tmp_path: Path) -> None:
    (tmp_path / "state.json").write_text("{not json")
    with (
        pytest.raises(ConfigError, match=r"state\.json: not JSON"),
        run_standins(["spar"], tmp_path),
    ):
        pass


def test_an_unknown_stand_in_is_named(tmp_path: Path) -> None:
    with (
        pytest.raises(ValueError, match="no stand-in named billogram"),
        run_standins(["billogram"], tmp_path),
    ):
        pass


def test_the_ca_is_the_state_directorys(tmp_path: Path) -> None:
    with run_standins(["dataverse"], tmp_path) as running:
        bundle = Path(running.env["BRIDGE_DATAVERSE__CA_BUNDLE"])
    assert bundle.is_absolute()
    assert bundle == make_certificates(tmp_path / "tls").ca.resolve()


def test_a_relative_state_dir_still_gives_a_ca_bundle_found_from_anywhere(
    tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with run_standins(["dataverse"], Path("rel")) as running:
        bundle = running.env["BRIDGE_DATAVERSE__CA_BUNDLE"]
    assert bundle == str(tmp_path.resolve() / "rel" / "tls" / "ca.pem")
