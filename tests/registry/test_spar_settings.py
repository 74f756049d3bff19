"""SPAR settings: what a lookup needs, by variable name; mTLS files on the session."""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path

import pytest
from pydantic import ValidationError

from dynamics_bridge.errors import ConfigError
from dynamics_bridge.registry import BUNDLED_WSDL, SparClient, session_for
from dynamics_bridge.settings import SparSettings, load_settings


def test_missing_identification_is_listed_by_variable_name() -> None:
    settings = load_settings().spar
    with pytest.raises(ConfigError) as caught:
        SparClient.from_settings(settings)
    text = str(caught.value)
    for name in ("ENDPOINT", "CUSTOMER_NUMBER", "ASSIGNMENT_ID", "END_USER_ID"):
        assert f"BRIDGE_SPAR__{name}" in text


@pytest.fixture
def spar_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """SPAR's identification in BRIDGE_SPAR__*, and a copy of a contract as SPAR ships it."""
    monkeypatch.setenv("BRIDGE_SPAR__ENDPOINT", "https://spar.test.invalid/2021.1/")
    monkeypatch.setenv("BRIDGE_SPAR__CUSTOMER_NUMBER", "500243")
    monkeypatch.setenv("BRIDGE_SPAR__ASSIGNMENT_ID", "637")
    monkeypatch.setenv("BRIDGE_SPAR__END_USER_ID", "union:address-refresh")
    shutil.copytree(BUNDLED_WSDL.parents[3], tmp_path / "spar")
    return tmp_path / "spar" / "granssnitt" / "personsok" / "2021.1" / "personsok.wsdl"


def test_settings_come_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, spar_env: Path
) -> None:
    monkeypatch.setenv("BRIDGE_SPAR__WSDL_PATH", str(spar_env))
    spar = load_settings().spar
    assert spar.configured
    client = SparClient.from_settings(spar)
    assert client.endpoint == "https://spar.test.invalid/2021.1/"
    assert client.contract.wsdl_path == spar_env


def test_empty_values_mean_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    """What the Bicep and local.settings.json write for a part a union does not use."""
    for name in ("ENDPOINT", "CUSTOMER_NUMBER", "ASSIGNMENT_ID", "END_USER_ID", "CA_PEM"):
        monkeypatch.setenv(f"BRIDGE_SPAR__{name}", "")
    spar = load_settings().spar
    assert spar.customer_number is None
    assert spar.ca_pem is None
    assert not spar.configured


def test_spar_refuses_the_bundled_demo_contract(spar_env: Path) -> None:
    """Without BRIDGE_SPAR__WSDL_PATH the bridge would talk to SPAR with its own demo copy."""
    with pytest.raises(ConfigError, match="BRIDGE_SPAR__WSDL_PATH: required when") as caught:
        SparClient.from_settings(load_settings().spar)
    assert "SPAR gave you" in str(caught.value)


def test_spar_refuses_the_bundled_contract_named_explicitly(
    monkeypatch: pytest.MonkeyPatch, spar_env: Path
) -> None:
    monkeypatch.setenv("BRIDGE_SPAR__WSDL_PATH", str(BUNDLED_WSDL))
    with pytest.raises(ConfigError, match="demo contract"):
        SparClient.from_settings(load_settings().spar)


@pytest.mark.parametrize(
    "endpoint", ["http://127.0.0.1:8080/personsok", "http://localhost/x", "https://[::1]:9/"]
)
def test_the_sandbox_may_use_the_bundled_contract(endpoint: str) -> None:
    settings = SparSettings(
        endpoint=endpoint, customer_number=500243, assignment_id=637, end_user_id="sandbox"
    )
    assert settings.endpoint_is_loopback
    assert SparClient.from_settings(settings).contract.wsdl_path == BUNDLED_WSDL


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


CERT = "-----BEGIN CERTIFICATE-----\nMIIBcert\n-----END CERTIFICATE-----\n"
KEY = "-----BEGIN PRIVATE KEY-----\nMIIBkey-s3cret\n-----END PRIVATE KEY-----\n"
CA = "-----BEGIN CERTIFICATE-----\nMIIBspar-ca\n-----END CERTIFICATE-----\n"


def test_pem_text_from_key_vault_is_written_to_private_files_for_requests(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("BRIDGE_SPAR__CLIENT_CERT_PEM", CERT)
    monkeypatch.setenv("BRIDGE_SPAR__CLIENT_KEY_PEM", KEY)
    monkeypatch.setenv("BRIDGE_SPAR__CA_PEM", CA)
    settings = load_settings()
    assert "MIIBkey-s3cret" not in repr(settings)  # SecretStr: never in a repr or a log line
    assert KEY.strip() in [s.strip() for s in settings.secrets()]  # ... and scrubbed from logs
    session = session_for(settings.spar)
    assert isinstance(session.cert, tuple)
    cert, key = session.cert
    assert isinstance(session.verify, str)
    for path, text in ((cert, CERT), (key, KEY), (session.verify, CA)):
        assert Path(path).read_text() == text
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(Path(key).parent).st_mode) == 0o700
    assert session.trust_env is False
    del session  # the files go with the session
    assert not Path(key).exists()


def test_one_pem_holding_key_and_certificate_is_one_file() -> None:
    """A Key Vault certificate of content type PEM gives key and certificate in one secret."""
    session = session_for(SparSettings(client_cert_pem=KEY + CERT))  # type: ignore[arg-type]
    assert isinstance(session.cert, str)
    assert Path(session.cert).read_text() == KEY + CERT
    assert session.verify is True  # no CA set: the platform's trust store


def test_escaped_newlines_in_one_line_pem_are_restored() -> None:
    one_line = CERT.strip().replace("\n", "\\n")
    settings = SparSettings(client_cert_pem=one_line)  # type: ignore[arg-type]
    assert settings.client_cert_pem is not None
    assert settings.client_cert_pem.get_secret_value() == CERT


def test_pem_settings_that_are_not_pem_name_the_variable_not_the_value(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("BRIDGE_SPAR__CLIENT_KEY_PEM", "/home/site/org.key")
    with pytest.raises(ConfigError) as caught:
        load_settings()
    assert caught.value.problems[0].startswith("BRIDGE_SPAR__CLIENT_KEY_PEM: ")
    assert "/home/site/org.key" not in str(caught.value)


def test_a_path_and_pem_text_for_the_same_file_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="BRIDGE_SPAR__CA_BUNDLE and BRIDGE_SPAR__CA_PEM"):
        SparSettings(ca_bundle=str(tmp_path / "ca.pem"), ca_pem=CA)  # type: ignore[arg-type]


def test_a_key_without_a_certificate_is_refused() -> None:
    with pytest.raises(ConfigError, match="without BRIDGE_SPAR__CLIENT_CERT"):
        session_for(SparSettings(client_key_pem=KEY))  # type: ignore[arg-type]
