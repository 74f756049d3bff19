"""SPAR PersonSok over SOAP: one lookup by personnummer, answered as an :class:`AddressRecord`.

One network seam: the client takes a ``requests.Session`` (zeep's ``Transport(session=...)``),
so tests mock the endpoint with ``responses`` and production sets the mTLS certificate and CA
on the session (:func:`session_for`). What happens on one lookup:

1. the personnummer is parsed (a bad one is an :class:`InputError` and nothing is sent);
2. zeep renders the request from the WSDL, and a plugin validates it against the XSD with lxml
   (zeep checks no patterns), again before anything is sent;
3. the answer is parsed by zeep (strict), turned into plain data and mapped by
   :mod:`.spar_mapping`; SOAP faults, HTTP and network failures become the project's errors.

zeep's ``zeep.transports`` logger writes whole request and response bodies at DEBUG
(personnummer, names, addresses): the client pins the ``zeep`` loggers to WARNING and drops
anything below WARNING from ``zeep.transports`` whatever level is set later.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
import weakref
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import requests
import zeep
from zeep.exceptions import Error as ZeepError
from zeep.exceptions import Fault, TransportError, ValidationError, XMLParseError, XMLSyntaxError
from zeep.helpers import serialize_object
from zeep.plugins import Plugin

from dynamics_bridge.errors import (
    AuthError,
    BridgeError,
    ConfigError,
    InputError,
    PermanentError,
    TransientError,
)
from dynamics_bridge.personnummer import Personnummer, mask_text
from dynamics_bridge.registry.spar_contract import BUNDLED_WSDL, SparContract
from dynamics_bridge.registry.spar_errors import SparFaultError, SparNotFoundError, http_error
from dynamics_bridge.registry.spar_mapping import AddressRecord, map_answer
from dynamics_bridge.settings import SparSettings, env_name

__all__ = ["OPERATION", "SparClient", "quiet_zeep_logging", "session_for"]

log = logging.getLogger(__name__)

#: The one operation PersonSok has.
OPERATION = "PersonSok"

_SOAP_ENV = "http://schemas.xmlsoap.org/soap/envelope/"


def quiet_zeep_logging() -> None:
    """Keep zeep's loggers at WARNING and never let ``zeep.transports`` emit a body (DEBUG)."""
    for name in ("zeep", "zeep.transports"):
        logger = logging.getLogger(name)
        if logger.level < logging.WARNING:
            logger.setLevel(logging.WARNING)
    transports = logging.getLogger("zeep.transports")
    if not any(isinstance(f, _BelowWarningDropped) for f in transports.filters):
        transports.addFilter(_BelowWarningDropped())


class _BelowWarningDropped(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.WARNING


def session_for(settings: SparSettings) -> requests.Session:
    """A session with the organisation certificate (mTLS) and SPAR's CA from settings.

    Files come from ``BRIDGE_SPAR__CLIENT_CERT``/``__CLIENT_KEY``/``__CA_BUNDLE``; PEM text
    (``__CLIENT_CERT_PEM``/``__CLIENT_KEY_PEM``/``__CA_PEM``, Key Vault in Azure) is written to
    files of mode 0600 in a private temporary folder, because ``requests`` reads certificates
    from files only. They live as long as the session and are removed with it (or at exit).
    """
    missing = [
        f"{env_name(('spar', name))}: no file at {value}"
        for name in ("client_cert", "client_key", "ca_bundle")
        if (value := getattr(settings, name)) and not Path(value).expanduser().is_file()
    ]
    if missing:
        raise ConfigError(missing)
    session = requests.Session()
    written = _write_pem_files(session, settings)
    cert = settings.client_cert or written.get("client_cert_pem")
    key = settings.client_key or written.get("client_key_pem")
    ca = settings.ca_bundle or written.get("ca_pem")
    if key and not cert:
        raise ConfigError(
            "BRIDGE_SPAR__CLIENT_KEY(_PEM) is set without BRIDGE_SPAR__CLIENT_CERT(_PEM)"
        )
    if cert:
        session.cert = (cert, key) if key else cert
    if ca:
        session.verify = ca
        session.trust_env = False  # else REQUESTS_CA_BUNDLE would override our CA
    return session


def _write_pem_files(session: requests.Session, settings: SparSettings) -> dict[str, str]:
    """The ``*_pem`` settings as files only this user can read; removed with the session."""
    texts = {
        name: value.get_secret_value()
        for name in ("client_cert_pem", "client_key_pem", "ca_pem")
        if (value := getattr(settings, name)) is not None
    }
    if not texts:
        return {}
    folder = tempfile.mkdtemp(prefix="spar-tls-")  # mode 0700
    paths: dict[str, str] = {}
    for name, text in texts.items():
        path = os.path.join(folder, f"{name.removesuffix('_pem')}.pem")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        paths[name] = path
    weakref.finalize(session, _remove_files, folder, list(paths.values()))
    return paths


def _remove_files(folder: str, paths: list[str]) -> None:
    for path in paths:
        with contextlib.suppress(OSError):
            os.remove(path)
    with contextlib.suppress(OSError):
        os.rmdir(folder)


def _app_path(value: str | None) -> str | None:
    """A relative contract path, taken from the function app's folder when running under the
    Functions host (``AzureWebJobsScriptRoot``), else from the current folder."""
    if not value:
        return value
    path = Path(value).expanduser()
    root = os.environ.get("AzureWebJobsScriptRoot")  # noqa: SIM112 - the host's own name
    return str(Path(root) / path) if root and not path.is_absolute() else str(path)


class _ValidateRequest(Plugin):
    """Validates the rendered body against the XSD; raising here means nothing is sent."""

    def __init__(self, contract: SparContract) -> None:
        self._contract = contract

    def egress(
        self, envelope: Any, http_headers: dict[str, str], operation: Any, binding_options: Any
    ) -> tuple[Any, dict[str, str]]:
        body = envelope.find(f"{{{_SOAP_ENV}}}Body")
        problems = [p for element in body for p in self._contract.validate(element)]
        if problems:
            raise InputError(
                "the PersonSok request does not match the schema: " + "; ".join(problems),
                field="request",
            )
        return envelope, http_headers


class SparClient:
    """PersonSok against one endpoint, on behalf of one SPAR customer and assignment."""

    def __init__(
        self,
        session: requests.Session,
        *,
        endpoint: str,
        customer_number: int,
        assignment_id: int,
        end_user_id: str,
        delivery_customer_number: int | None = None,
        contract: SparContract | None = None,
        timeout: float = 20.0,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        quiet_zeep_logging()
        self.contract = contract or SparContract.from_paths()
        self.endpoint = endpoint
        self.timeout = timeout
        self._identity = {
            "KundNrLeveransMottagare": delivery_customer_number or customer_number,
            "KundNrSlutkund": customer_number,
            "UppdragId": assignment_id,
        }
        self._end_user_id = end_user_id
        self._clock = clock
        try:
            self._zeep = zeep.Client(
                str(self.contract.wsdl_path),
                transport=self.contract.transport(session, timeout=timeout),
                settings=zeep.Settings(strict=True, forbid_dtd=True),
                plugins=[_ValidateRequest(self.contract)],
            )
        except (ZeepError, XMLSyntaxError, ValueError) as exc:
            raise ConfigError(f"SPAR contract {self.contract.wsdl_path}: {exc}") from None
        self._service = self._zeep.create_service(_binding_name(self._zeep), endpoint)

    @classmethod
    def from_settings(
        cls, settings: SparSettings, session: requests.Session | None = None
    ) -> SparClient:
        """A client from ``BRIDGE_SPAR__*``; one ConfigError lists everything still missing."""
        endpoint, customer = settings.endpoint, settings.customer_number
        assignment, end_user = settings.assignment_id, settings.end_user_id
        if endpoint is None or customer is None or assignment is None or end_user is None:
            raise ConfigError(settings.problems())
        if contract_problems := settings.contract_problems():
            raise ConfigError(contract_problems)
        contract = SparContract.from_paths(
            _app_path(settings.wsdl_path), _app_path(settings.schema_root)
        )
        if contract.wsdl_path == BUNDLED_WSDL and not settings.endpoint_is_loopback:
            raise ConfigError(
                f"BRIDGE_SPAR__WSDL_PATH: {BUNDLED_WSDL} is the bridge's demo contract, for the"
                " local sandbox only: set it to the personsok.wsdl SPAR gave you"
            )
        return cls(
            session or session_for(settings),
            endpoint=endpoint,
            customer_number=customer,
            delivery_customer_number=settings.delivery_customer_number,
            assignment_id=assignment,
            end_user_id=end_user,
            contract=contract,
            timeout=settings.timeout_seconds,
        )

    def lookup(
        self, personnummer: Personnummer | str, *, end_user_id: str | None = None
    ) -> AddressRecord:
        """Ask SPAR about one person.

        Args:
            personnummer: parsed, or text that :meth:`Personnummer.parse` accepts.
            end_user_id: ``SlutAnvandarId`` for this lookup (the person asking), when it is not
                the configured one.

        Raises:
            InputError: an invalid personnummer or request; nothing was sent.
            SparNotFoundError, SparTooManyHitsError, SparUndantagError, SparFaultError: SPAR's
                answers other than one record.
            TransientError: timeout, network failure, HTTP 5xx.
            AuthError: the TLS handshake or HTTP 401/403 (certificate or CA).
            PermanentError: an answer that does not fit the contract.
        """
        pnr = (
            personnummer
            if isinstance(personnummer, Personnummer)
            else Personnummer.parse(personnummer)
        )
        identity = {**self._identity, "SlutAnvandarId": end_user_id or self._end_user_id}
        try:
            answer = self._service.PersonSok(
                Identifieringsinformation=identity, PersonsokningFraga={"IdNummer": pnr.digits}
            )
            record = map_answer(serialize_object(answer, dict), pnr, looked_up_at=self._clock())
        except BridgeError as exc:
            log.info(
                "SPAR lookup %s: %s",
                pnr.masked,
                type(exc).__name__,
                extra={
                    "outcome": "not_found" if isinstance(exc, SparNotFoundError) else "failed",
                    "reason": str(exc),
                    "request_id": exc.request_id,
                },
            )
            raise
        except (ZeepError, requests.RequestException) as exc:
            error = self._translate(exc)
            log.warning(
                "SPAR lookup %s: %s",
                pnr.masked,
                error,
                extra={"outcome": "failed", "reason": type(error).__name__},
            )
            raise error from (exc if isinstance(exc, requests.RequestException) else None)
        log.info(
            "SPAR lookup %s: %s%s",
            pnr.masked,
            record.status,
            " (protected identity)" if record.protected_identity else "",
            extra={"outcome": record.status, "request_id": record.spar_uuid},
        )
        return record

    def _translate(self, exc: Exception) -> BridgeError:
        """The project's error for a zeep or requests failure; the message never quotes the
        answer's body (zeep puts it in its own messages)."""
        if isinstance(exc, Fault):
            return SparFaultError(exc.code, exc.message)
        if isinstance(exc, TransportError):
            if exc.status_code == 200:
                return PermanentError(f"SPAR's answer is not XML; {self._contract_hint()}")
            return http_error(exc.status_code) or PermanentError(
                f"SPAR answered HTTP {exc.status_code}", status=exc.status_code
            )
        if isinstance(exc, XMLParseError | XMLSyntaxError):
            return PermanentError(
                f"SPAR's answer does not fit the contract; {self._contract_hint()}"
            )
        if isinstance(exc, ValidationError):
            return InputError(
                f"the PersonSok request is incomplete: {mask_text(exc.message)}", field="request"
            )
        if isinstance(exc, requests.exceptions.SSLError):
            return AuthError(
                "TLS with SPAR failed: check BRIDGE_SPAR__CLIENT_CERT(_PEM), "
                "BRIDGE_SPAR__CLIENT_KEY(_PEM) and BRIDGE_SPAR__CA_BUNDLE (or __CA_PEM)"
            )
        if isinstance(exc, requests.Timeout):
            return TransientError(f"SPAR did not answer within {self.timeout:g} s")
        if isinstance(exc, requests.RequestException):
            return TransientError(f"SPAR unreachable: {type(exc).__name__}")
        return PermanentError(f"SPAR lookup failed: {type(exc).__name__}")

    def _contract_hint(self) -> str:
        return f"is BRIDGE_SPAR__WSDL_PATH ({self.contract.wsdl_path}) the version SPAR serves?"


def _binding_name(client: zeep.Client) -> str:
    """The SOAP binding that has PersonSok (its namespace changes with SPAR's version)."""
    for name, binding in client.wsdl.bindings.items():
        if OPERATION in binding.all():
            return str(name)
    raise ConfigError(f"SPAR contract: the WSDL has no binding with the {OPERATION} operation")
