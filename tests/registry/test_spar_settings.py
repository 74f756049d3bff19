"""SPAR settings: what a lookup needs, by variable name; mTLS files on the session."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from dynamics_bridge.errors import ConfigError
from dynamics_bridge.registry import SparClient, session_for
from dynamics_bridge.settings import SparSettings, load_settings


def test_missing_identification_is_listed_by_variable_name() -> None:
    settings = load_settings().spar
    with pytest.raises(ConfigError) as caught:
        SparClient.from_settings(settings)
    text = str(caught.value)
    for name in ("ENDPOINT", "CUSTOMER_NUMBER", "ASSIGNMENT_ID", "END_USER_ID"):
        assert f"BRIDGE_SPAR__{name}" in text


def test_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BRIDGE_SPAR__ENDPOINT", "https://spar.test.invalid/2021.1/")
    monkeypatch.setenv("BRIDGE_SPAR__CUSTOMER_NUMBER", "500243")
    monkeypatch.setenv("BRIDGE_SPAR__ASSIGNMENT_ID", "637")
    monkeypatch.setenv("BRIDGE_SPAR__END_USER_ID", "union:address-refresh")
    spar = load_settings().spar
    assert spar.configured
    client = SparClient.from_settings(spar)
    assert client.endpoint == "https://spar.test.invalid/2021.1/"


@pytest.mark.parametrize(
    "endpoint", ["http://spar.example.invalid/", "ftp://x", "http://127.0.0.2.example/"]
)
def test_plain_http_only_on_loopback(endpoint: str) -> None:
    with pytest.raises(ValidationError):
        SparSettings(endpoint=endpoint)
    assert SparSettings(endpoint="http://127.0.0.1:8080/personsok").endpoint


def test_customer_numbers_are_in_spar_range() -> None:
    with pytest.raises(ValidationError):
        SparSettings(customer_number=7)


def test_session_carries_the_certificate_and_ca(tmp_path: Path) -> None:
    cert, key, ca = (tmp_path / n for n in ("org.crt", "org.key", "spar-ca.pem"))
    for path in (cert, key, ca):
        path.write_text("-----BEGIN-----")
    session = session_for(
        SparSettings(client_cert=str(cert), client_key=str(key), ca_bundle=str(ca))
    )
    assert session.cert == (str(cert), str(key))
    assert session.verify == str(ca)
    assert session.trust_env is False  # REQUESTS_CA_BUNDLE must not replace SPAR's CA


def test_missing_certificate_file_names_the_variable(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="BRIDGE_SPAR__CLIENT_CERT"):
        session_for(SparSettings(client_cert=str(tmp_path / "absent.pem")))
