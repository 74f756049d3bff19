"""msal client credentials: secret or certificate, one app per process, errors without secrets."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
import requests
import responses
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from dynamics_bridge.dataverse import auth
from dynamics_bridge.dataverse.auth import MsalTokenProvider, msal_token_provider
from dynamics_bridge.errors import AuthError, ConfigError, TransientError
from dynamics_bridge.settings import AppUser, DataverseSettings

AUTHORITY = "https://login.sandbox.test/tenant-1"
ORG = "https://org.crm4.dynamics.com"


def pem_files(tmp_path: Path) -> tuple[str, str]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "bridge")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    cert_pem = cert.public_bytes(serialization.Encoding.PEM).decode()
    return key_pem, cert_pem


def test_a_secret_is_passed_as_is() -> None:
    user = AppUser(client_id="a", client_secret="s3cret")  # type: ignore[arg-type]
    assert auth._credential(user) == "s3cret"


def test_a_pem_with_its_certificate_lets_msal_derive_the_thumbprint(tmp_path) -> None:
    key_pem, cert_pem = pem_files(tmp_path)
    path = tmp_path / "app.pem"
    path.write_text(key_pem + cert_pem)
    credential = auth._credential(AppUser(client_id="a", certificate_path=str(path)))
    assert credential["private_key"].startswith("-----BEGIN PRIVATE KEY-----")
    assert credential["public_certificate"] == cert_pem.strip()
    assert "thumbprint" not in credential


def test_a_bare_pem_key_needs_a_thumbprint(tmp_path) -> None:
    key_pem, _ = pem_files(tmp_path)
    path = tmp_path / "key.pem"
    path.write_text(key_pem)
    with pytest.raises(ConfigError, match="thumbprint"):
        auth._credential(AppUser(client_id="a", certificate_path=str(path)))
    user = AppUser(client_id="a", certificate_path=str(path), certificate_thumbprint="AB12")
    assert auth._credential(user)["thumbprint"] == "AB12"


def test_a_pfx_is_read_by_msal_with_its_passphrase(tmp_path) -> None:
    path = tmp_path / "app.pfx"
    path.write_bytes(b"not really")
    user = AppUser(client_id="a", certificate_path=str(path), certificate_password="pw")  # type: ignore[arg-type]
    assert auth._credential(user) == {"private_key_pfx_path": str(path), "passphrase": "pw"}


@pytest.mark.parametrize("certificate", [None, "/nowhere/app.pfx"])
def test_no_usable_credential_is_a_config_error(certificate) -> None:
    with pytest.raises(ConfigError):
        auth._credential(AppUser(client_id="a", certificate_path=certificate))


class FakeApp:
    def __init__(self, result: dict) -> None:
        self.result = result
        self.removed = 0
        self.scopes: list[list[str]] = []

    def acquire_token_for_client(self, scopes: list[str]) -> dict:
        self.scopes.append(scopes)
        return self.result

    def remove_tokens_for_client(self) -> None:
        self.removed += 1


def test_the_provider_asks_for_the_environment_scope_and_can_forget_its_token() -> None:
    app = FakeApp({"access_token": "eyJ", "token_source": "cache"})
    provider = MsalTokenProvider(app, ORG + "/.default", "a")  # type: ignore[arg-type]
    assert provider() == "eyJ"
    assert app.scopes == [[ORG + "/.default"]]
    provider.invalidate()
    assert app.removed == 1


def test_a_refused_credential_is_an_auth_error_with_the_correlation_id() -> None:
    app = FakeApp(
        {
            "error": "invalid_client",
            "error_description": "AADSTS7000215: Invalid client secret provided.",
            "correlation_id": "corr-1",
        }
    )
    provider = MsalTokenProvider(app, ORG + "/.default", "a")  # type: ignore[arg-type]
    with pytest.raises(AuthError, match="invalid_client") as caught:
        provider()
    assert caught.value.request_id == "corr-1"


def settings(**overrides: object) -> DataverseSettings:
    values: dict = {
        "url": ORG,
        "authority": AUTHORITY,
        "client_id": "client-1",
        "client_secret": "s3cret",
    }
    values.update(overrides)
    return DataverseSettings(**values)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"url": None}, "URL"),
        ({"authority": None}, "TENANT_ID"),
        ({"client_id": None}, "CLIENT_ID"),
    ],
)
def test_missing_settings_are_named(overrides, message) -> None:
    with pytest.raises(ConfigError, match=message):
        msal_token_provider(settings(**overrides))


def tenant_discovery() -> None:
    """Entra's OpenID configuration for the tenant, which msal reads before its first token."""
    responses.get(
        AUTHORITY + "/v2.0/.well-known/openid-configuration",
        json={
            "issuer": AUTHORITY + "/v2.0",
            "authorization_endpoint": AUTHORITY + "/oauth2/v2.0/authorize",
            "token_endpoint": AUTHORITY + "/oauth2/v2.0/token",
        },
    )


@responses.activate
def test_one_msal_app_per_app_user_and_authority_is_reused(monkeypatch) -> None:
    monkeypatch.setattr(auth, "_apps", {})
    tenant_discovery()
    responses.post(
        AUTHORITY + "/oauth2/v2.0/token",
        json={"access_token": "tok-1", "token_type": "Bearer", "expires_in": 3599},
    )
    first = msal_token_provider(settings())
    second = msal_token_provider(settings())
    assert first.app is second.app
    assert first() == "tok-1"
    assert second() == "tok-1"  # from msal's cache
    token_calls = [c for c in responses.calls if c.request.url.endswith("/token")]
    assert len(token_calls) == 1
    assert "s3cret" not in repr(first)
    other = msal_token_provider(settings(), AppUser(client_id="client-2", client_secret="x"))  # type: ignore[arg-type]
    assert other.app is not first.app


@responses.activate
def test_an_unreachable_login_endpoint_is_one_transient_error_naming_it(monkeypatch) -> None:
    monkeypatch.setattr(auth, "_apps", {})
    responses.get(
        AUTHORITY + "/v2.0/.well-known/openid-configuration",
        body=requests.ConnectionError("Max retries exceeded ... [Errno 111] Connection refused"),
    )
    with pytest.raises(TransientError) as caught:
        msal_token_provider(settings())
    assert str(caught.value) == (
        f"login endpoint {AUTHORITY} unreachable: cannot connect (ConnectionError); check "
        "BRIDGE_DATAVERSE__TENANT_ID / __AUTHORITY and the network"
    )
    assert caught.value.__cause__ is None  # no chained traceback to print


@responses.activate
def test_a_token_request_that_cannot_connect_names_the_token_endpoint(monkeypatch) -> None:
    monkeypatch.setattr(auth, "_apps", {})
    tenant_discovery()
    responses.post(AUTHORITY + "/oauth2/v2.0/token", body=requests.Timeout("read timed out"))
    provider = msal_token_provider(settings())
    with pytest.raises(TransientError) as caught:
        provider()
    assert f"{AUTHORITY}/oauth2/v2.0/token unreachable: no answer in time" in str(caught.value)
