"""Tokens for Dataverse: msal client credentials, one application object per app user and process.

msal caches the token and renews it five minutes before expiry, so asking before every request is
free (reference dataverse.md §1). The authority can be overridden so msal talks to the sandbox's
token endpoint; the sandbox serves HTTPS with its own CA, which ``ca_bundle`` trusts.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msal
import requests

from dynamics_bridge.errors import AuthError, ConfigError
from dynamics_bridge.settings import AppUser, DataverseSettings

__all__ = ["TokenProvider", "msal_token_provider", "session_for"]

TokenProvider = Callable[[], str]

_apps: dict[tuple[str, str], msal.ConfidentialClientApplication] = {}
_lock = threading.Lock()


def _credential(user: AppUser) -> Any:
    if user.client_secret is not None:
        return user.client_secret.get_secret_value()
    if user.certificate_path:
        path = Path(user.certificate_path)
        password = (
            user.certificate_password.get_secret_value() if user.certificate_password else None
        )
        if path.suffix.lower() in (".pfx", ".p12"):
            return {"private_key_pfx_path": str(path), "passphrase": password}
        return {"private_key": path.read_text(), "passphrase": password}
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


def msal_token_provider(settings: DataverseSettings, user: AppUser | None = None) -> TokenProvider:
    """A function that returns a bearer token for ``user`` (default: the main app user)."""
    if not settings.url:
        raise ConfigError("BRIDGE_DATAVERSE__URL: required")
    if user is None:
        if not settings.client_id:
            raise ConfigError("BRIDGE_DATAVERSE__CLIENT_ID: required")
        user = AppUser(
            client_id=settings.client_id,
            client_secret=settings.client_secret,
            certificate_path=settings.certificate_path,
            certificate_password=settings.certificate_password,
        )
    authority = settings.authority or (
        f"https://login.microsoftonline.com/{settings.tenant_id}" if settings.tenant_id else None
    )
    if not authority:
        raise ConfigError("BRIDGE_DATAVERSE__TENANT_ID (or __AUTHORITY): required")
    scope = settings.url.rstrip("/") + "/.default"
    with _lock:
        app = _apps.get((authority, user.client_id))
        if app is None:
            http = session_for(settings)
            app = msal.ConfidentialClientApplication(
                client_id=user.client_id,
                authority=authority,
                client_credential=_credential(user),
                http_client=http,
                instance_discovery=settings.authority is None,
            )
            _apps[(authority, user.client_id)] = app

    def token() -> str:
        result = app.acquire_token_for_client(scopes=[scope])
        if "access_token" not in result:
            raise AuthError(
                f"no Dataverse token for {user.client_id}: "
                f"{result.get('error')}: {result.get('error_description', '')[:200]}",
                request_id=result.get("correlation_id"),
            )
        return str(result["access_token"])

    return token
