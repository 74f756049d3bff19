"""Tokens for Dataverse: msal client credentials, one application object per app user and process.

msal caches the token and renews it five minutes before expiry, so asking before every request is
free (reference dataverse.md §1); constructing the application costs an authority-discovery call,
so it is built once per (authority, client id) and reused. The authority can be overridden so msal
talks to the sandbox's token endpoint; the sandbox serves HTTPS with its own CA (``ca_bundle``).
No token or secret is ever logged or put into an error message.
"""

from __future__ import annotations

import re
import threading
from pathlib import Path
from typing import Any

import msal
import requests

from dynamics_bridge.errors import AuthError, ConfigError, TransientError
from dynamics_bridge.settings import AppUser, DataverseSettings

__all__ = ["MsalTokenProvider", "TokenProvider", "msal_token_provider", "session_for"]

_apps: dict[tuple[str, str], msal.ConfidentialClientApplication] = {}
_lock = threading.Lock()
_CERTIFICATE = re.compile(r"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", re.DOTALL)


class TokenProvider:
    """Anything that returns a bearer token; :meth:`invalidate` drops a token the server refused.

    A plain ``Callable[[], str]`` works wherever a provider is taken (tests pass a lambda).
    """

    def __call__(self) -> str:  # pragma: no cover - interface
        raise NotImplementedError

    def invalidate(self) -> None:
        """Forget the cached token, so the next call asks the identity provider."""


def _credential(user: AppUser) -> Any:
    if user.client_secret is not None:
        return user.client_secret.get_secret_value()
    if user.certificate_path:
        path = Path(user.certificate_path)
        if not path.is_file():
            raise ConfigError(f"app user {user.client_id}: no certificate file at {path}")
        password = (
            user.certificate_password.get_secret_value() if user.certificate_password else None
        )
        if path.suffix.lower() in (".pfx", ".p12"):  # msal ≥ 1.29 reads it, SHA-256 thumbprint
            return {"private_key_pfx_path": str(path), "passphrase": password}
        pem = path.read_text()
        credential: dict[str, Any] = {"private_key": pem, "passphrase": password}
        if user.certificate_thumbprint:  # SHA-1, deprecated by Entra but still accepted
            credential["thumbprint"] = user.certificate_thumbprint
        elif match := _CERTIFICATE.search(pem):  # msal ≥ 1.35 derives a SHA-256 thumbprint
            credential["public_certificate"] = match.group(0)
        else:
            raise ConfigError(
                f"app user {user.client_id}: the PEM file needs the certificate next to the "
                "private key, or set the certificate thumbprint"
            )
        return credential
    raise ConfigError(f"app user {user.client_id}: give a client secret or a certificate")


def session_for(settings: DataverseSettings) -> requests.Session:
    """A session that trusts ``ca_bundle`` when one is set.

    requests lets REQUESTS_CA_BUNDLE in the environment override a session's own ``verify``, so
    with a bundle of ours the environment is not consulted at all.
    """
    session = requests.Session()
    if settings.ca_bundle:
        session.verify = settings.ca_bundle
        session.trust_env = False
    return session


class MsalTokenProvider(TokenProvider):
    """Client-credentials tokens for one app user from a process-wide msal application."""

    def __init__(self, app: msal.ConfidentialClientApplication, scope: str, client_id: str):
        self.app = app
        self.scope = scope
        self.client_id = client_id

    def __call__(self) -> str:
        try:
            result = self.app.acquire_token_for_client(scopes=[self.scope])
        except (requests.RequestException, OSError) as exc:
            raise _unreachable(self.app.authority, exc) from None
        if "access_token" not in result:
            raise AuthError(
                f"no Dataverse token for {self.client_id}: "
                f"{result.get('error')}: {str(result.get('error_description', ''))[:200]}",
                request_id=result.get("correlation_id"),
            )
        return str(result["access_token"])

    def invalidate(self) -> None:
        self.app.remove_tokens_for_client()

    def __repr__(self) -> str:
        return f"MsalTokenProvider(client_id={self.client_id!r}, scope={self.scope!r})"


def msal_token_provider(
    settings: DataverseSettings, user: AppUser | None = None
) -> MsalTokenProvider:
    """A token source for ``user`` (default: the main app user of ``settings``)."""
    if not settings.url:
        raise ConfigError("BRIDGE_DATAVERSE__URL: required")
    if user is None:
        users = settings.users()
        if not users:
            raise ConfigError("BRIDGE_DATAVERSE__CLIENT_ID (or __APP_USERS): required")
        user = users[0]
    authority = settings.authority or (
        f"https://login.microsoftonline.com/{settings.tenant_id}" if settings.tenant_id else None
    )
    if not authority:
        raise ConfigError("BRIDGE_DATAVERSE__TENANT_ID (or __AUTHORITY): required")
    scope = settings.url.rstrip("/") + "/.default"
    with _lock:
        app = _apps.get((authority, user.client_id))
        if app is None:
            try:  # msal reads the authority's discovery document here
                app = msal.ConfidentialClientApplication(
                    client_id=user.client_id,
                    authority=authority,
                    client_credential=_credential(user),
                    http_client=session_for(settings),
                    instance_discovery=settings.authority is None,
                )
            except (requests.RequestException, OSError) as exc:
                raise _unreachable(authority, exc) from None
            except ValueError as exc:  # msal: the authority answered, but not as one
                raise AuthError(f"login endpoint {authority}: {str(exc)[:200]}") from None
            _apps[(authority, user.client_id)] = app
    return MsalTokenProvider(app, scope, user.client_id)


def _unreachable(authority: Any, exc: Exception) -> TransientError:
    """One line for a login endpoint that cannot be reached (DNS, refused, TLS, timeout), in
    place of msal's and urllib3's hundred lines of traceback."""
    where = getattr(authority, "token_endpoint", None) or authority
    kind = type(exc).__name__
    if isinstance(exc, requests.exceptions.SSLError):
        reason = "its TLS certificate is not trusted (BRIDGE_DATAVERSE__CA_BUNDLE?)"
    elif isinstance(exc, requests.Timeout):
        reason = "no answer in time"
    else:
        reason = "cannot connect"
    return TransientError(
        f"login endpoint {where} unreachable: {reason} ({kind}); check "
        "BRIDGE_DATAVERSE__TENANT_ID / __AUTHORITY and the network"
    )
