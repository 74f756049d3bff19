"""Typed settings: environment (``BRIDGE_`` prefix, ``__`` between levels), then ``.env``.

In Azure the same names are app settings, with secrets as Key Vault references. Every problem is
reported at once, by its environment variable name, in one ``ConfigError``.
"""

from __future__ import annotations

import ipaddress
import json
import re
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    Field,
    ModelWrapValidatorHandler,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    DotEnvSettingsSource,
    EnvSettingsSource,
    NoDecode,
    SettingsConfigDict,
    SettingsError,
)
from pydantic_settings.sources import ENV_FILE_SENTINEL

from dynamics_bridge.errors import ConfigError
from dynamics_bridge.hosting import is_key_vault_reference
from dynamics_bridge.model import MemberRefKind
from dynamics_bridge.sources.bankgirot import customer_number, parse_bankgiro

__all__ = [
    "ActivationSettings",
    "AppUser",
    "ApsisSettings",
    "BankgirotSettings",
    "BillogramSettings",
    "ConsoleSettings",
    "DataverseSettings",
    "LogSettings",
    "QueueSettings",
    "RetentionSettings",
    "Settings",
    "SparSettings",
    "SwishSettings",
    "WebhookSettings",
    "env_name",
    "load_settings",
    "settings_reference",
]

ENV_PREFIX = "BRIDGE_"
ENV_DELIMITER = "__"


class QueueSettings(BaseModel):
    backend: Literal["azure", "memory"] = Field(
        default="memory",
        description="azure (Azure Storage queues) or memory (one process: demo, tests).",
    )
    account_url: str | None = Field(
        default=None,
        description="https://<account>.queue.core.windows.net: connect with the managed identity "
        "(azure-identity) instead of a connection string.",
    )
    connection_string: SecretStr | None = Field(
        description="Storage connection string; or use ACCOUNT_URL with the managed identity.",
        default=None,
        validate_default=True,
    )
    name: str = Field(default="payment-events", description="The payment-events queue.")
    poison_name: str | None = Field(
        default=None, description="Defaults to '<name>-poison', the Functions host's convention."
    )
    max_message_bytes: int = Field(
        description="Messages are split to stay under this (Azure: 64 KiB).",
        default=64 * 1024,
        ge=1024,
        le=64 * 1024,
    )

    @field_validator("name")
    @classmethod
    def _queue_name_rules(cls, v: str) -> str:
        # Azure: 3-63 chars, lower-case letters, digits and single hyphens, not at either end.
        if not re.fullmatch(r"[a-z0-9](?:[a-z0-9]|-(?!-)){1,61}[a-z0-9]", v):
            raise ValueError("3-63 lower-case letters, digits or single hyphens")
        return v

    @field_validator("connection_string")
    @classmethod
    def _azure_needs_connection(cls, v: SecretStr | None, info: ValidationInfo) -> SecretStr | None:
        if v is None and info.data.get("backend") == "azure" and not info.data.get("account_url"):
            raise ValueError(
                "required when BRIDGE_QUEUE__BACKEND is 'azure' (or BRIDGE_QUEUE__ACCOUNT_URL)"
            )
        return v

    @property
    def poison_queue_name(self) -> str:
        return self.poison_name or f"{self.name}-poison"


class OpsSettings(BaseModel):
    """Where run history, the poison book and the audit trail are kept, and for how long."""

    backend: Literal["tables", "memory"] = Field(
        default="memory",
        description="tables (Azure Table Storage; Azurite locally) or memory (one process: demo, "
        "tests).",
    )
    account_url: str | None = Field(
        default=None,
        description="https://<account>.table.core.windows.net: connect with the managed identity "
        "instead of a connection string.",
    )
    connection_string: SecretStr | None = Field(
        default=None,
        description="Storage connection string with a TableEndpoint; empty: the queue's.",
    )
    table_prefix: str = Field(
        default="bridge",
        pattern=r"^[A-Za-z][A-Za-z0-9]{0,40}$",
        description="Tables are named <prefix>runs, <prefix>poison, <prefix>audit, ...",
    )
    retention_days: int = Field(
        default=90, ge=1, le=3650, description="Run history and audits older than this go."
    )


class ConsoleSettings(BaseModel):
    """Who may open the admin console, and how they are known."""

    auth: Literal["local", "easyauth"] = Field(
        default="local",
        description="local (dynamics-bridge console: a one-time login link) or easyauth (in Azure: "
        "App Service Authentication with Entra ID; the X-MS-CLIENT-PRINCIPAL header is trusted).",
    )
    allowed_groups: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Entra group object ids whose members may use the console (easyauth), "
        "comma-separated.",
    )
    allowed_roles: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="App roles whose holders may use the console (easyauth), comma-separated.",
    )

    @field_validator("allowed_groups", "allowed_roles", mode="before")
    @classmethod
    def _split(cls, v: Any) -> Any:
        if isinstance(v, str):
            return [part.strip() for part in v.split(",") if part.strip()]
        return v


class BillogramSettings(BaseModel):
    sign_key: SecretStr | None = Field(
        default=None, description="Billogram's sign key; without it callbacks are refused (401)."
    )
    tolerance_seconds: int = Field(
        description="How far the signed timestamp may be from now.", default=300, ge=1
    )
    allow_legacy_md5: bool = Field(
        default=False, description="Also accept the legacy MD5 body signature."
    )
    allow_unsigned: bool = Field(
        default=False,
        description="Accept callbacks when no sign key is set (development only).",
    )
    member_ref_order: Annotated[list[MemberRefKind], NoDecode] = Field(
        default_factory=lambda: [
            MemberRefKind.CUSTOMER_NUMBER,
            MemberRefKind.OCR,
            MemberRefKind.INVOICE,
        ],
        description="Which invoice field names the member, first present wins.",
    )

    @field_validator("member_ref_order", mode="before")
    @classmethod
    def _split_order(cls, v: Any) -> Any:
        if isinstance(v, str):
            return [part.strip() for part in v.split(",") if part.strip()]
        return v


class SwishSettings(BaseModel):
    callback_identifier: SecretStr | None = Field(
        default=None,
        description="The callbackIdentifier set on payment requests; missing or wrong: 401. "
        "Not set: every Swish callback is refused (503).",
    )
    identifier_header: str = Field(
        default="callbackIdentifier",
        description="Where Swish returns the identifier is not verified: header name to read.",
    )
    identifier_in_body: bool = Field(
        default=True,
        description="Also accept the identifier as the body field 'callbackIdentifier'.",
    )
    allowed_ips: Annotated[list[str], NoDecode] = Field(
        description="Comma-separated CIDRs Swish calls from; empty = no IP check.",
        default_factory=list,
    )
    member_ref_pattern: str = Field(
        default=r"^(?P<value>[0-9]{1,16})$",
        description="Regex over payeePaymentReference (ASCII, must match all of it); group "
        "'value' is the member number.",
    )
    member_ref_kind: MemberRefKind = Field(
        default=MemberRefKind.MEMBER_NUMBER,
        description="What the pattern's value names (member_ref kind).",
    )
    currency: str = Field(default="SEK", description="Currency of Swish amounts.")
    confirm_with_api: bool = Field(
        default=False,
        description="GET the payment from the Swish API (mTLS) before trusting a callback.",
    )
    api_base_url: str = Field(
        default="https://cpc.getswish.net/swish-cpcapi/api/",
        description="Swish API for confirmation.",
    )
    client_cert: str | None = Field(
        default=None, description="PEM client certificate for the Swish API."
    )
    client_key: str | None = Field(default=None, description="PEM private key for the Swish API.")
    ca_bundle: str | None = Field(default=None, description="CA to trust for the Swish API.")

    @field_validator("allowed_ips", mode="before")
    @classmethod
    def _split_cidrs(cls, v: Any) -> Any:
        if isinstance(v, str):
            return [part.strip() for part in v.split(",") if part.strip()]
        return v

    @field_validator("allowed_ips")
    @classmethod
    def _valid_cidrs(cls, v: list[str]) -> list[str]:
        for cidr in v:
            try:
                ipaddress.ip_network(cidr, strict=False)
            except ValueError:
                raise ValueError(f"not an IP network: {cidr!r}") from None
        return v

    def problems(self) -> list[str]:
        """Why Swish callbacks would be refused, by variable name (``check``, ``/api/health``)."""
        if self.callback_identifier is None:
            return [
                "BRIDGE_SWISH__CALLBACK_IDENTIFIER: not set, so every Swish callback is refused "
                "(503) until it is"
            ]
        return []

    @field_validator("member_ref_pattern")
    @classmethod
    def _valid_pattern(cls, v: str) -> str:
        try:
            compiled = re.compile(v, re.ASCII)  # as sources/swish.py applies it
        except (re.error, ValueError) as exc:
            raise ValueError(f"not a regular expression: {exc}") from None
        if "value" not in compiled.groupindex:
            raise ValueError("needs a named group (?P<value>...)")
        return v


class BankgirotSettings(BaseModel):
    ocr_scheme: Literal["luhn", "luhn_length", "plain"] = Field(
        default="luhn",
        description="How an OCR reference carries the member number (see sources/ocr.py).",
    )
    events_per_message_batch: int = Field(
        description="Events handed to the queue at a time.", default=1000, ge=1, le=10000
    )
    payee_bankgiros: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="The union's own payee bankgiro numbers, comma-separated (991-2346). A file "
        "naming another is refused; none set: every file is refused.",
    )
    customer_numbers: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="The union's Bankgirot customer numbers (Autogiro opening records), "
        "comma-separated; a file naming another is refused. Empty: not checked.",
    )
    accept_any_payee: bool = Field(
        default=False,
        description="Development only: with no payee bankgiros set, accept files for any payee.",
    )

    @field_validator("payee_bankgiros", "customer_numbers", mode="before")
    @classmethod
    def _split_numbers(cls, v: Any) -> Any:
        if isinstance(v, str):
            return [part.strip() for part in v.split(",") if part.strip()]
        return v

    @field_validator("payee_bankgiros")
    @classmethod
    def _bankgiros(cls, v: list[str]) -> list[str]:
        return sorted({parse_bankgiro(number) for number in v})  # ValueError names the number

    @field_validator("customer_numbers")
    @classmethod
    def _customer_numbers(cls, v: list[str]) -> list[str]:
        return sorted({customer_number(number) for number in v})

    def problems(self) -> list[str]:
        """What ingesting Bankgirot files still needs, by environment variable name."""
        if self.payee_bankgiros or self.accept_any_payee:
            return []
        return [
            f"{env_name(('bankgirot', 'payee_bankgiros'))}: required to ingest Bankgirot files: "
            "the union's own payee bankgiro number(s), e.g. 991-2346 (payer numbers are unique "
            "per payee only, so a file for another payee is refused)"
        ]


class AppUser(BaseModel):
    """One Dataverse application user: its own throttling budget (limits are per user)."""

    client_id: str
    client_secret: SecretStr | None = None
    certificate_path: str | None = Field(default=None, description="PFX, or PEM key + cert.")
    certificate_password: SecretStr | None = None
    certificate_thumbprint: str | None = Field(
        default=None, description="SHA-1 thumbprint, only for a PEM file without its certificate."
    )


class DataverseSettings(BaseModel):
    """Dataverse Web API (reference dataverse.md). The single-user fields name the main app user;
    ``app_users`` adds more, each with its own service-protection budget, and work is spread
    over all of them."""

    url: str | None = Field(default=None, description="https://<org>.crm4.dynamics.com")
    tenant_id: str | None = Field(default=None, description="Entra tenant of the app user.")
    client_id: str | None = Field(
        default=None, description="The app user's application (client) id."
    )
    client_secret: SecretStr | None = Field(
        default=None, description="The app user's client secret (or a certificate)."
    )
    certificate_path: str | None = Field(default=None, description="PFX or PEM private key.")
    certificate_password: SecretStr | None = Field(
        default=None, description="Password of the certificate."
    )
    certificate_thumbprint: str | None = Field(
        default=None, description="Thumbprint (computed from a PEM when unset)."
    )
    app_users: Annotated[list[AppUser], NoDecode] = Field(
        default_factory=list,
        description='JSON list of further app users: [{"client_id": ..., "client_secret": ...}]',
    )
    authority: str | None = Field(
        default=None, description="Override https://login.microsoftonline.com/<tenant>."
    )
    ca_bundle: str | None = Field(default=None, description="Trust this CA (the sandbox's).")
    api_version: str = Field(default="v9.2", description="Web API version.")
    max_concurrency: int = Field(default=8, ge=1, le=52, description="Per app user.")
    max_attempts: int = Field(default=6, ge=1, le=20, description="Tries for transient failures.")
    max_throttle_seconds: float = Field(
        default=900.0, gt=0, description="Give up on one call after this much Retry-After waiting."
    )
    timeout_seconds: float = Field(description="Per request.", default=60.0, gt=0)
    page_size: int = Field(
        description="odata.maxpagesize for queries.", default=5000, ge=1, le=5000
    )
    keys_per_query: int = Field(
        description="Keys per In-query chunk (also bounded by URL length).",
        default=100,
        ge=1,
        le=500,
    )
    max_filter_chars: int = Field(
        description="Longest URL-encoded In-filter of one query (Dataverse refuses URLs over "
        "about 32 KB).",
        default=6000,
        ge=200,
        le=30000,
    )
    suppress_flows: bool = Field(
        default=False, description="MSCRM.SuppressCallbackRegistrationExpanderJob: true"
    )
    bypass_business_logic: str | None = Field(
        default=None, description="MSCRM.BypassBusinessLogicExecution, e.g. CustomSync,CustomAsync"
    )
    duplicate_detection: bool = Field(
        default=False, description="MSCRM.SuppressDuplicateDetection: false"
    )
    solution: str | None = Field(
        default=None, description="MSCRM.SolutionUniqueName for metadata writes (provision)."
    )
    label_languages: Annotated[list[int], NoDecode] = Field(
        default_factory=lambda: [1053],
        description="LCIDs the labels provision writes carry (e.g. 1053,1033); the "
        "environment's base language is always added.",
    )

    @field_validator("url")
    @classmethod
    def _https_url(cls, v: str | None) -> str | None:
        """The Web API is HTTPS only; ``crm4.dynamics.com`` without a scheme is a common slip."""
        if v is None:
            return v
        if not re.match(r"(?i)^https://[^/\s]+", v):
            raise ValueError("must start with https:// (e.g. https://<org>.crm4.dynamics.com)")
        return v

    @field_validator("label_languages", mode="before")
    @classmethod
    def _language_list(cls, v: Any) -> Any:
        """``1053,1033`` or ``[1053, 1033]`` from the environment."""
        if isinstance(v, str):
            text = v.strip().strip("[]")
            return [int(part) for part in text.replace(";", ",").split(",") if part.strip()]
        return v

    @field_validator("app_users", mode="before")
    @classmethod
    def _json_users(cls, v: Any) -> Any:
        if isinstance(v, str):
            try:
                return json.loads(v) if v.strip() else []
            except ValueError as exc:
                raise ValueError(f"not a JSON list of app users: {exc}") from None
        return v

    def users(self) -> list[AppUser]:
        """Every configured app user, the main one first."""
        main = (
            [
                AppUser(
                    client_id=self.client_id,
                    client_secret=self.client_secret,
                    certificate_path=self.certificate_path,
                    certificate_password=self.certificate_password,
                    certificate_thumbprint=self.certificate_thumbprint,
                )
            ]
            if self.client_id
            else []
        )
        return main + [u for u in self.app_users if u.client_id != self.client_id]

    def behaviour_headers(self) -> dict[str, str]:
        """The opt-in ``MSCRM.*`` headers, put on every write (and every ``$batch`` part)."""
        headers: dict[str, str] = {}
        if self.suppress_flows:
            headers["MSCRM.SuppressCallbackRegistrationExpanderJob"] = "true"
        if self.bypass_business_logic:
            headers["MSCRM.BypassBusinessLogicExecution"] = self.bypass_business_logic
        if self.duplicate_detection:
            headers["MSCRM.SuppressDuplicateDetection"] = "false"
        return headers

    @property
    def configured(self) -> bool:
        return bool(self.url and any(u.client_secret or u.certificate_path for u in self.users()))

    def problems(self) -> list[str]:
        """Everything a Dataverse connection still needs, all at once, by variable name."""
        problems: list[str] = []
        if not self.url:
            problems.append(
                f"{env_name(('dataverse', 'url'))}: required (https://<org>.crm4.dynamics.com)"
            )
        if not (self.tenant_id or self.authority):
            problems.append(
                f"{env_name(('dataverse', 'tenant_id'))}: required (or "
                f"{env_name(('dataverse', 'authority'))}): the app user's Entra tenant"
            )
        users = self.users()
        if not users:
            problems.append(
                f"{env_name(('dataverse', 'client_id'))}: required (or "
                f"{env_name(('dataverse', 'app_users'))}): the app user's application id"
            )
        problems += [
            f"{env_name(('dataverse', 'client_secret'))}: required for app user {u.client_id} "
            f"(or {env_name(('dataverse', 'certificate_path'))})"
            for u in users
            if not (u.client_secret or u.certificate_path)
        ]
        return problems


class ApsisSettings(BaseModel):
    """APSIS One (reference apsis.md). Rates are ``N/<seconds>s`` or ``N/min``: APSIS may change
    its limits without notice, so none is a constant. Name maps take JSON, e.g.
    ``BRIDGE_APSIS__EVENT_TYPES='{"payment_confirmed": "com.apsis1.events.transaction.custom-…"}'``.
    """

    base_url: str = Field(
        default="https://api.apsis.one", description="EU; APAC is https://api-apac.apsis.one"
    )
    client_id: str | None = Field(default=None, description="APSIS One API key client id.")
    client_secret: SecretStr | None = Field(default=None, description="APSIS One API key secret.")
    keyspace: str = Field(
        default="com.apsis1.keyspaces.crm-id",
        description="Keyspace of the profile key (apsis.yaml may say otherwise).",
    )
    section: str | None = Field(default=None, description="Section discriminator to write in.")
    attributes: dict[str, str] = Field(
        default_factory=dict, description="Our attribute name -> APSIS attribute discriminator."
    )
    event_types: dict[str, str] = Field(
        default_factory=dict, description="Our event type -> APSIS event discriminator."
    )
    tags: dict[str, str] = Field(
        default_factory=dict, description="Our tag name -> APSIS tag discriminator."
    )
    topics: dict[str, str] = Field(
        default_factory=dict, description="Our consent topic -> APSIS topic discriminator."
    )
    account_rate: Annotated[tuple[int, float], NoDecode] = Field(
        default=(100, 1.0), description="Requests per account, all API keys together."
    )
    profile_rate: Annotated[tuple[int, float], NoDecode] = Field(
        default=(10, 1.0), description="Consecutive requests for one profile key."
    )
    token_rate: Annotated[tuple[int, float], NoDecode] = Field(
        description="Token requests (APSIS: 10 a minute).", default=(10, 60.0)
    )
    import_rate: Annotated[tuple[int, float], NoDecode] = Field(
        description="Bulk import requests.", default=(10, 60.0)
    )
    token_renew_margin_seconds: float = Field(
        default=3600.0, ge=0, description="Renew this long before expiry (APSIS's modules: 1 h)."
    )
    refresh_on_forbidden: bool = Field(
        default=True,
        description="A gateway-style 403 ({'message': ...}) means an expired token [unverified].",
    )
    max_attempts: int = Field(description="Tries for passing failures.", default=5, ge=1, le=20)
    backoff_cap_seconds: float = Field(
        description="Longest wait between tries.", default=60.0, gt=0
    )
    timeout_seconds: float = Field(description="Per request.", default=30.0, gt=0)
    concurrency: int = Field(description="Requests in flight per process.", default=8, ge=1, le=64)
    tag_body_format: Literal["add_remove", "boolean", "true_null"] = Field(
        default="add_remove",
        description="Tag PATCH values [unverified]: 'add'/'remove', true/false, or true/null.",
    )
    erase_mode: Literal["delete", "lock"] = Field(
        default="delete", description="delete (APSIS's advice) or lock (also blocks re-creation)."
    )
    consent_source: str = Field(
        default="dynamics-bridge", description="Source named on consents we write."
    )
    events_per_request: int = Field(default=100, ge=1, description="Cap per POST [unverified].")
    max_body_bytes: int = Field(default=100_000, ge=1024, description="APSIS: 100 kB -> 413.")
    spread_equal_event_times: bool = Field(
        default=True, description="+1 s per event sharing a timestamp, as APSIS's modules do."
    )
    bulk_threshold: int = Field(
        default=500, ge=1, description="More profiles than this in one change -> bulk import."
    )
    import_poll_seconds: float = Field(
        description="Between bulk import status polls.", default=5.0, gt=0
    )
    import_timeout_seconds: float = Field(
        description="Give up on a bulk import after this.", default=1800.0, gt=0
    )
    max_import_bytes: int = Field(
        description="Largest CSV one import uploads.", default=50 * 1024 * 1024, ge=1024
    )
    event_export_path: str = Field(
        default="/audience/profiles/exports",
        description="Profile data export (events), read back by the trigger sweep [path from "
        "APSIS's reference page; request and file fields unverified].",
    )
    event_export_attribute: str = Field(
        default="com.apsis1.attributes.crmid",
        description="Attribute asked for in an event export (APSIS lists no profile without one).",
    )
    event_export_rate: Annotated[tuple[int, float], NoDecode] = Field(
        description="Event export requests (APSIS: 1 a minute).", default=(1, 60.0)
    )
    event_export_poll_seconds: float = Field(
        description="Between polls of an event export.", default=10.0, gt=0
    )
    event_export_timeout_seconds: float = Field(
        description="Give up on an event export after this (the sweep tries again).",
        default=600.0,
        gt=0,
    )

    @field_validator(
        "account_rate",
        "profile_rate",
        "token_rate",
        "import_rate",
        "event_export_rate",
        mode="before",
    )
    @classmethod
    def _parse_rate(cls, v: Any) -> Any:
        if not isinstance(v, str):
            return v
        match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d*\.?\d+)?\s*(s|min)\s*", v)
        if not match:
            raise ValueError("a rate like '100/1s', '10/s' or '10/min'")
        count, number, unit = match.groups()
        seconds = float(number or 1) * (60 if unit == "min" else 1)
        return (int(count), seconds)

    @field_validator(
        "account_rate", "profile_rate", "token_rate", "import_rate", "event_export_rate"
    )
    @classmethod
    def _positive_rate(cls, v: tuple[int, float]) -> tuple[int, float]:
        if v[0] < 1 or v[1] <= 0:
            raise ValueError("needs at least one request per positive number of seconds")
        return v

    @property
    def configured(self) -> bool:
        return bool(self.client_id and self.client_secret and self.section)


class ActivationSettings(BaseModel):
    """How triggers reach APSIS when events come late, answers get lost or a sender crashes
    (mappings/triggers.yaml says which triggers there are)."""

    late_trigger_days: float = Field(
        default=7.0,
        ge=0,
        description="An event that arrives after a later one of its member still starts its "
        "triggers when it happened at most this many days ago (older: skipped, counted).",
    )
    first_payment_hold_minutes: float = Field(
        default=30.0,
        ge=0,
        description="A first-payment trigger (welcome) waits this long in the outbox, so an "
        "earlier payment of the member that arrives late can take it over.",
    )
    readback: bool = Field(
        default=False,
        description="Resolve unconfirmed triggers by reading APSIS's event export [its format "
        "is unverified: confirm at onboarding]; off: an admin resolves them (triggers resolve).",
    )
    trigger_sweep_schedule: str = Field(
        default="0 */5 * * * *",
        description="NCRONTAB of the function app's trigger-outbox sweep (the app reads it).",
    )


class RetentionSettings(BaseModel):
    """Retention analytics (mappings/retention.yaml): opt-in, since they profile members."""

    enabled: bool = Field(
        default=False,
        description="Run the retention timer (train, themes, score, tasks, report) and show its "
        "state in health. Off until the union's DPO has settled the legal basis.",
    )
    directory: str = Field(
        default=".dynamics_bridge/retention",
        description="Where models, metrics and reports are versioned when BRIDGE_OPS__BACKEND is "
        "not tables (with tables: the <prefix>artifacts table).",
    )


#: This machine as a URL's host (the sandbox responder), up to the port or path.
_LOOPBACK_HOST = r"(127\.0\.0\.1|localhost|\[::1\])([:/]|$)"


class SparSettings(BaseModel):
    """SPAR PersonSok over SOAP (reference soap.md). The identification fields are SPAR's
    ``Identifieringsinformation``, assigned at onboarding. mTLS takes PEM files (convert a .p12)
    or, in Azure, PEM text from Key Vault (``*_PEM``), written at run time to files only this
    process's user can read."""

    endpoint: str | None = Field(
        default=None,
        description="PersonSok address; https, or http on 127.0.0.1/localhost (the sandbox).",
    )
    wsdl_path: str | None = Field(
        default=None,
        description="SPAR's personsok.wsdl (relative: to the function app's folder). Unset: the "
        "bridge's own demo copy, accepted only for a loopback endpoint (the sandbox).",
    )
    schema_root: str | None = Field(
        default=None,
        description="Folder mirroring http://xmls.statenspersonadressregister.se/se/spar/; "
        "unset: three levels above a WSDL under granssnitt/personsok/<version>/.",
    )
    customer_number: int | None = Field(
        default=None, ge=500001, le=599999, description="KundNrSlutkund: the permit holder."
    )
    delivery_customer_number: int | None = Field(
        default=None,
        ge=500001,
        le=599999,
        description="KundNrLeveransMottagare: the certificate owner; unset = customer_number.",
    )
    assignment_id: int | None = Field(default=None, ge=1, description="UppdragId from SPAR.")
    end_user_id: str | None = Field(
        default=None,
        min_length=1,
        max_length=256,
        description="SlutAnvandarId: must trace to one person (SPAR logs it).",
    )
    client_cert: str | None = Field(default=None, description="PEM certificate (or cert + key).")
    client_key: str | None = Field(default=None, description="PEM private key, unencrypted.")
    ca_bundle: str | None = Field(default=None, description="Trust only this CA for SPAR.")
    client_cert_pem: SecretStr | None = Field(
        default=None,
        description="PEM certificate as text (Key Vault); may hold the private key too (a Key "
        "Vault certificate of content type PEM does). Instead of client_cert.",
    )
    client_key_pem: SecretStr | None = Field(
        default=None, description="PEM private key as text, unencrypted. Instead of client_key."
    )
    ca_pem: SecretStr | None = Field(
        default=None, description="SPAR's CA certificate(s) as PEM text. Instead of ca_bundle."
    )
    timeout_seconds: float = Field(description="Per lookup.", default=20.0, gt=0)

    @field_validator("client_cert_pem", "client_key_pem", "ca_pem", mode="before")
    @classmethod
    def _pem_text(cls, v: Any) -> Any:
        text = v.get_secret_value() if isinstance(v, SecretStr) else v
        if not isinstance(text, str):
            return v
        if "\n" not in text and "\\n" in text:  # one line, with escaped newlines
            text = text.replace("\\n", "\n")
        if "-----BEGIN " not in text:
            raise ValueError("PEM text (-----BEGIN ...-----), not a path or base64 PFX")
        return text.strip() + "\n"

    @model_validator(mode="after")
    def _path_or_text(self) -> SparSettings:
        pairs = (
            ("client_cert", "client_cert_pem"),
            ("client_key", "client_key_pem"),
            ("ca_bundle", "ca_pem"),
        )
        both = [
            f"{env_name(('spar', path))} and {env_name(('spar', text))}"
            for path, text in pairs
            if getattr(self, path) and getattr(self, text)
        ]
        if both:
            raise ValueError("set one of " + "; one of ".join(both))
        return self

    @field_validator("endpoint")
    @classmethod
    def _https_or_loopback(cls, v: str | None) -> str | None:
        if v is None:
            return v
        if not re.match(rf"(?i)^(https://[^/\s]+|http://{_LOOPBACK_HOST})", v):
            raise ValueError("https://..., or http:// only on 127.0.0.1 or localhost")
        return v

    def problems(self) -> list[str]:
        """What a lookup still needs, by environment variable name."""
        needed = ("endpoint", "customer_number", "assignment_id", "end_user_id")
        return [
            f"{env_name(('spar', name))}: required for SPAR lookups"
            for name in needed
            if getattr(self, name) is None
        ]

    @property
    def endpoint_is_loopback(self) -> bool:
        """The endpoint is on this machine (the sandbox responder), not SPAR."""
        return bool(self.endpoint and re.match(rf"(?i)^https?://{_LOOPBACK_HOST}", self.endpoint))

    def contract_problems(self) -> list[str]:
        """The bundled contract is the bridge's demo copy: refused for anything but the sandbox."""
        if self.endpoint and not self.wsdl_path and not self.endpoint_is_loopback:
            return [
                f"{env_name(('spar', 'wsdl_path'))}: required when {env_name(('spar', 'endpoint'))}"
                " is SPAR: set it to the personsok.wsdl SPAR gave you (the bundled contract is a"
                " demo copy, for the local sandbox only)"
            ]
        return []

    @property
    def configured(self) -> bool:
        return not self.problems()


class WebhookSettings(BaseModel):
    max_body_bytes: int = Field(
        description="Larger callbacks are refused (413), by Content-Length before the body is "
        "read where the host allows.",
        default=1024 * 1024,
        ge=1,
    )
    max_json_depth: int = Field(
        description="Callbacks nested deeper are refused (400) before they are parsed.",
        default=32,
        ge=2,
        le=200,
    )
    max_number_length: int = Field(
        description="Callbacks with a longer number literal are refused (400) unconverted.",
        default=40,
        ge=20,
        le=1000,
    )


class LogSettings(BaseModel):
    level: str = Field(
        default="INFO",
        description="Log level of the handlers and jobs (the CLI's default is WARNING).",
    )
    json_format: bool = Field(
        description="JSON lines (false: plain text for a terminal).", default=True, alias="json"
    )

    model_config = {"populate_by_name": True}


class Settings(BaseSettings):
    """The root of every setting; nested per outside system."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter=ENV_DELIMITER,
        env_file=".env",
        env_file_encoding="utf-8",
        # An empty value means unset (the field's default): Bicep and local.settings.json write
        # "" for what a union does not use, and "" is not a valid number, URL or identifier.
        env_ignore_empty=True,
        extra="ignore",
    )

    queue: QueueSettings = Field(default_factory=QueueSettings)
    billogram: BillogramSettings = Field(default_factory=BillogramSettings)
    swish: SwishSettings = Field(default_factory=SwishSettings)
    webhook: WebhookSettings = Field(default_factory=WebhookSettings)
    bankgirot: BankgirotSettings = Field(default_factory=BankgirotSettings)
    dataverse: DataverseSettings = Field(default_factory=DataverseSettings)
    apsis: ApsisSettings = Field(default_factory=ApsisSettings)
    activation: ActivationSettings = Field(default_factory=ActivationSettings)
    spar: SparSettings = Field(default_factory=SparSettings)
    log: LogSettings = Field(default_factory=LogSettings)
    ops: OpsSettings = Field(default_factory=OpsSettings)
    console: ConsoleSettings = Field(default_factory=ConsoleSettings)
    retention: RetentionSettings = Field(default_factory=RetentionSettings)
    mappings_dir: str | None = Field(
        default=None,
        description="Folder of dataverse.yaml, apsis.yaml, triggers.yaml and segments.yaml "
        "(every command, the timers and the function app read it); unset: the bridge's own "
        "mappings/.",
    )
    start_check_minutes: float = Field(
        default=60,
        ge=0,
        description="How long the function app keeps its start check (`dynamics-bridge check`, "
        "with the Dataverse metadata and APSIS definitions it asks for) before checking again; "
        "the timers and /api/health refuse to work while it fails. 0: check on every use.",
    )

    @property
    def mappings(self) -> Path:
        """The mappings folder in use."""
        from dynamics_bridge.mapping.loader import MAPPINGS_DIR

        return Path(self.mappings_dir) if self.mappings_dir else MAPPINGS_DIR

    @model_validator(mode="wrap")
    @classmethod
    def _no_key_vault_references(
        cls, data: Any, handler: ModelWrapValidatorHandler[Settings]
    ) -> Settings:
        """Refuse a value that is still ``@Microsoft.KeyVault(...)``: App Service could not
        resolve the reference and would hand the app the literal text (as a sign key, a client
        secret...). One ConfigError names each such variable, and every other problem too."""
        found = sorted(_key_vault_references(data))
        if not found:
            return handler(data)
        problems = [
            f"{env_name(loc)}: an unresolved Key Vault reference (check the secret exists, and "
            "the app's identity has 'Key Vault Secrets User' on the vault)"
            for loc in found
        ]
        named = {env_name(loc) for loc in found}
        try:
            handler(_without(data, found))
        except ValidationError as exc:
            problems += [p for p in _validation_problems(exc) if p.split(":", 1)[0] not in named]
        raise ConfigError(problems)

    def secrets(self) -> list[str]:
        """Every configured secret's value, so the log filter can scrub them."""
        found: list[str] = []

        def walk(value: Any) -> None:
            if isinstance(value, SecretStr):
                found.append(value.get_secret_value())
            elif isinstance(value, BaseModel):
                for name in type(value).model_fields:
                    walk(getattr(value, name))
            elif isinstance(value, list):
                for item in value:
                    walk(item)

        walk(self)
        return [s for s in found if s]


def _key_vault_references(data: Any, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Where raw settings input (nested dicts of strings) holds a Key Vault reference."""
    if isinstance(data, SecretStr):
        data = data.get_secret_value()
    if isinstance(data, dict):
        return [
            loc
            for key, value in data.items()
            if isinstance(key, str)
            for loc in _key_vault_references(value, (*path, key))
        ]
    return [path] if path and is_key_vault_reference(data) else []


def _without(data: dict[str, Any], locs: list[tuple[str, ...]]) -> dict[str, Any]:
    """``data`` with the values at ``locs`` left out (so their defaults apply)."""
    out = dict(data)
    for loc in locs:
        node = out
        for key in loc[:-1]:
            node[key] = dict(node[key])
            node = node[key]
        node.pop(loc[-1], None)
    return out


def env_name(loc: tuple[int | str, ...]) -> str:
    """``("queue", "name")`` → ``BRIDGE_QUEUE__NAME``: the name an operator actually sets."""
    parts = [str(p) for p in loc if not isinstance(p, int)]
    return ENV_PREFIX + ENV_DELIMITER.join(p.upper() for p in parts)


def _default_text(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, Enum):
        return f"`{value.value}`"
    if isinstance(value, tuple) and len(value) == 2:  # a rate: (count, seconds)
        return f"`{value[0]}/{value[1]:g}s`"
    if isinstance(value, list | dict) and not value:
        return "empty"
    if isinstance(value, list):
        return "`" + ",".join(str(v.value if isinstance(v, Enum) else v) for v in value) + "`"
    return f"`{value}`"


def settings_reference() -> str:
    """Every variable with its default and description, as the README's settings tables.

    Generated from the models so the documentation cannot drift from the code (a test compares
    it with README.md; ``dynamics-bridge settings`` prints it).
    """
    out: list[str] = []

    def walk(model: type[BaseModel], prefix: str) -> None:
        for name, info in model.model_fields.items():
            key = (info.alias or name).upper()
            annotation = info.annotation
            if isinstance(annotation, type) and issubclass(annotation, BaseModel):
                out.extend(
                    ["", f"**{key.lower()}**", "", "| variable | default | |", "|---|---|---|"]
                )
                walk(annotation, prefix + key + ENV_DELIMITER)
                continue
            text = (info.description or "").replace("|", "\\|")
            if "SecretStr" in str(annotation):
                text = f"Secret. {text}".strip()
            default = _default_text(info.get_default(call_default_factory=True))
            out.append(f"| `{prefix}{key}` | {default} | {text} |")

    walk(Settings, ENV_PREFIX)
    return "\n".join(out).strip() + "\n"


def load_settings(**overrides: Any) -> Settings:
    """Build settings or raise one ConfigError that lists every problem by env var name.

    Besides validation errors, pydantic-settings raises ``SettingsError`` before validating when
    a complex value (a JSON object or list, e.g. ``BRIDGE_APSIS__ATTRIBUTES``) is not JSON; that
    error names only the section, so the variables to blame are looked for again here.
    """
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        raise ConfigError(_validation_problems(exc)) from None
    except SettingsError as exc:
        env_file = overrides.get("_env_file", ENV_FILE_SENTINEL)
        raise ConfigError(_undecodable_problems(exc, env_file)) from None


def salvage_settings(problems: list[str], **overrides: Any) -> Settings | None:
    """The settings with every value ``problems`` names left at its default (a section, when a
    problem names a whole section), or None when they still cannot be read.

    For ``check``, which reports every problem in one run: one invalid value (a URL without
    https) must not hide what the rest of the settings lack. The problems stand; nothing runs
    on salvaged settings."""
    patch: dict[str, Any] = {}
    for problem in problems:
        name = problem.split(":", 1)[0].split(" ", 1)[0]
        if not name.startswith(ENV_PREFIX):
            return None
        parts = name[len(ENV_PREFIX) :].lower().split(ENV_DELIMITER)
        loc, default = _default_at(parts)
        if not loc:
            return None
        node = patch
        for key in loc[:-1]:
            if not isinstance(node.get(key), dict):
                if key in node:  # the whole section is reset already
                    break
                node[key] = {}
            node = node[key]
        else:
            node[loc[-1]] = default
    merged = {**overrides}
    for key, value in patch.items():
        given = merged.get(key)
        if isinstance(given, dict) and isinstance(value, dict):
            value = {**given, **value}
        merged[key] = value
    try:
        return Settings(**merged)
    except (ValidationError, SettingsError, ConfigError):
        return None


def _default_at(parts: list[str]) -> tuple[list[str], Any]:
    """The deepest field ``parts`` (an environment name's levels) reach, and its default: a
    nested section's default is a fresh instance (so it replaces what the environment set)."""
    model: Any = Settings
    loc: list[str] = []
    default: Any = None
    for part in parts:
        fields = getattr(model, "model_fields", None)
        if not isinstance(fields, dict):
            break
        found = next(
            (n for n, info in fields.items() if part in (n, (info.alias or "").lower())), None
        )
        if found is None:
            break
        info = fields[found]
        loc.append(found)
        default = info.get_default(call_default_factory=True)
        model = info.annotation
    return loc, default


def _validation_problems(exc: ValidationError) -> list[str]:
    """One ``BRIDGE_…: message`` per error: the variable an operator sets, never its value."""
    problems = []
    for err in exc.errors():
        loc = tuple(p for p in err["loc"] if p not in ("function-after", "function-before"))
        problems.append(f"{env_name(loc)}: {err['msg']}")
    return problems


def _undecodable_problems(exc: SettingsError, env_file: Any) -> list[str]:
    """The variables (environment, then ``.env``) of the section ``exc`` names whose field is
    decoded as JSON and whose value is not JSON."""
    found = re.search(r'field "([^"]+)"', str(exc))
    top = found.group(1) if found else None
    why = str(exc.__cause__ or exc)
    env = EnvSettingsSource(Settings)
    values = {**DotEnvSettingsSource(Settings, env_file=env_file).env_vars, **env.env_vars}
    prefix = ENV_PREFIX.lower()
    culprits = []
    for key, value in values.items():
        if not key.startswith(prefix) or not value or not value.strip():
            continue
        names = key[len(prefix) :].split(ENV_DELIMITER)
        if (
            (top is None or names[0] == top)
            and _decoded_as_json(env, names)
            and not _is_json(value)
        ):
            culprits.append(key.upper())
    if culprits:
        return [f"{name}: not valid JSON ({why})" for name in sorted(culprits)]
    if top is not None:
        where = env_name((top,))
        return [f"{where} (or one of {where}__*): value could not be decoded ({why})"]
    return [f"settings could not be read: {exc}"]


def _decoded_as_json(source: EnvSettingsSource, names: list[str]) -> bool:
    """Whether ``BRIDGE_A__B`` names a field pydantic-settings decodes as JSON (complex, and
    not marked ``NoDecode``)."""
    model: Any = Settings
    info = None
    for name in names:
        info = getattr(model, "model_fields", {}).get(name)
        if info is None:
            return False
        model = info.annotation
    return info is not None and NoDecode not in info.metadata and source.field_is_complex(info)


def _is_json(text: str) -> bool:
    try:
        json.loads(text)
    except ValueError:
        return False
    return True
