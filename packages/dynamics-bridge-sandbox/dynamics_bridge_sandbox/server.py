"""Run the sandbox on 127.0.0.1 over HTTPS: an Entra-like token endpoint and the Dataverse API.

``with run_sandbox() as sandbox:`` starts it on a free port in a thread and yields the settings
that point the rest of the tool at it (``sandbox.env``). :class:`EntraDataverse` is the core
(``handle(method, path, headers, body) -> Answer``); :mod:`.hosting` serves it.
"""

from __future__ import annotations

import contextlib
import json
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs

from dynamics_bridge_sandbox.dataverse import API, Chaos, DataverseSandbox, Limits, operation_count
from dynamics_bridge_sandbox.hosting import Answer, Headers, StandInServer
from dynamics_bridge_sandbox.tls import make_certificates

__all__ = [
    "ACCOUNT",
    "CONTACT",
    "QUEUE",
    "QUEUEITEM",
    "STANDARD_TABLES",
    "TASK",
    "TEAM",
    "EntraDataverse",
    "SandboxInfo",
    "run_sandbox",
]

TENANT = "00000000-0000-0000-0000-00000000sbx0".replace("sbx0", "5b00")

#: The standard contact table as a fresh environment has it (the columns the bridge touches).
CONTACT = {
    "LogicalName": "contact",
    "SchemaName": "Contact",
    "EntitySetName": "contacts",
    "PrimaryIdAttribute": "contactid",
    "ChangeTrackingEnabled": True,
    "Attributes": [
        {"LogicalName": "contactid", "AttributeType": "Uniqueidentifier"},
        {"LogicalName": "firstname", "AttributeType": "String", "MaxLength": 50},
        {"LogicalName": "lastname", "AttributeType": "String", "MaxLength": 50},
        {"LogicalName": "emailaddress1", "AttributeType": "String", "MaxLength": 100},
        {"LogicalName": "governmentid", "AttributeType": "String", "MaxLength": 50},
        {
            "LogicalName": "birthdate",
            "AttributeType": "DateTime",
            "Format": "DateOnly",
            "DateTimeBehavior": {"Value": "DateOnly"},
        },
        {"LogicalName": "parentcustomerid", "AttributeType": "Customer"},
        {"LogicalName": "statecode", "AttributeType": "State"},
        {"LogicalName": "createdon", "AttributeType": "DateTime"},
        {"LogicalName": "address1_line1", "AttributeType": "String", "MaxLength": 250},
        {"LogicalName": "address1_line2", "AttributeType": "String", "MaxLength": 250},
        {"LogicalName": "address1_line3", "AttributeType": "String", "MaxLength": 250},
        {"LogicalName": "address1_postalcode", "AttributeType": "String", "MaxLength": 20},
        {"LogicalName": "address1_city", "AttributeType": "String", "MaxLength": 80},
        {"LogicalName": "address1_country", "AttributeType": "String", "MaxLength": 80},
    ],
    "Keys": [],
}


#: The standard account table (the employer a contact's parentcustomerid points to).
ACCOUNT = {
    "LogicalName": "account",
    "SchemaName": "Account",
    "EntitySetName": "accounts",
    "PrimaryIdAttribute": "accountid",
    "PrimaryNameAttribute": "name",
    "ChangeTrackingEnabled": True,
    "Attributes": [
        {"LogicalName": "accountid", "AttributeType": "Uniqueidentifier"},
        {"LogicalName": "name", "AttributeType": "String", "MaxLength": 160},
        {"LogicalName": "sic", "AttributeType": "String", "MaxLength": 20},
        {"LogicalName": "accountnumber", "AttributeType": "String", "MaxLength": 20},
        {"LogicalName": "address1_city", "AttributeType": "String", "MaxLength": 80},
        {"LogicalName": "statecode", "AttributeType": "State"},
        {"LogicalName": "createdon", "AttributeType": "DateTime"},
    ],
    "Keys": [],
}


#: The standard task activity table (Microsoft Learn, Dataverse table reference ``task``): the
#: columns an advisor task uses. ``regardingobjectid`` is polymorphic (a contact is bound through
#: ``regardingobjectid_contact_task``), ``ownerid`` is a user or a team (``ownerid@odata.bind``
#: to ``/teams(<id>)``); the sandbox's binds check both (dataverse.STANDARD_NAVIGATIONS).
TASK = {
    "LogicalName": "task",
    "SchemaName": "Task",
    "EntitySetName": "tasks",
    "PrimaryIdAttribute": "activityid",
    "PrimaryNameAttribute": "subject",
    "ChangeTrackingEnabled": True,
    "IsActivity": True,
    "Attributes": [
        {"LogicalName": "activityid", "AttributeType": "Uniqueidentifier"},
        {"LogicalName": "subject", "AttributeType": "String", "MaxLength": 200},
        {"LogicalName": "description", "AttributeType": "Memo", "MaxLength": 2000},
        {
            "LogicalName": "scheduledend",
            "AttributeType": "DateTime",
            "Format": "DateAndTime",
            "DateTimeBehavior": {"Value": "UserLocal"},
        },
        {"LogicalName": "actualend", "AttributeType": "DateTime", "Format": "DateOnly"},
        {"LogicalName": "prioritycode", "AttributeType": "Picklist"},
        {"LogicalName": "statecode", "AttributeType": "State"},
        {"LogicalName": "statuscode", "AttributeType": "Status"},
        {"LogicalName": "regardingobjectid", "AttributeType": "Lookup"},
        {"LogicalName": "ownerid", "AttributeType": "Owner"},
        {"LogicalName": "createdon", "AttributeType": "DateTime"},
        {"LogicalName": "modifiedon", "AttributeType": "DateTime"},
    ],
    "Keys": [],
}

#: The standard team table (an owner of user-owned rows such as tasks).
TEAM = {
    "LogicalName": "team",
    "SchemaName": "Team",
    "EntitySetName": "teams",
    "PrimaryIdAttribute": "teamid",
    "PrimaryNameAttribute": "name",
    "Attributes": [
        {"LogicalName": "teamid", "AttributeType": "Uniqueidentifier"},
        {"LogicalName": "name", "AttributeType": "String", "MaxLength": 160},
        {"LogicalName": "createdon", "AttributeType": "DateTime"},
    ],
    "Keys": [],
}

#: The standard queue table, and its items: a task is put in a queue by creating a queue item
#: (``POST queueitems`` with ``objectid_task@odata.bind`` and ``queueid@odata.bind``; Microsoft
#: Learn, table reference ``queueitem``, message Create; navigation properties ``objectid_task``
#: and ``queueid`` in the Web API queueitem EntityType reference).
QUEUE = {
    "LogicalName": "queue",
    "SchemaName": "Queue",
    "EntitySetName": "queues",
    "PrimaryIdAttribute": "queueid",
    "PrimaryNameAttribute": "name",
    "Attributes": [
        {"LogicalName": "queueid", "AttributeType": "Uniqueidentifier"},
        {"LogicalName": "name", "AttributeType": "String", "MaxLength": 400},
        {"LogicalName": "createdon", "AttributeType": "DateTime"},
    ],
    "Keys": [],
}

QUEUEITEM = {
    "LogicalName": "queueitem",
    "SchemaName": "QueueItem",
    "EntitySetName": "queueitems",
    "PrimaryIdAttribute": "queueitemid",
    "PrimaryNameAttribute": "title",
    "Attributes": [
        {"LogicalName": "queueitemid", "AttributeType": "Uniqueidentifier"},
        {"LogicalName": "objectid", "AttributeType": "Lookup"},
        {"LogicalName": "queueid", "AttributeType": "Lookup"},
        {"LogicalName": "title", "AttributeType": "String", "MaxLength": 300},
        {"LogicalName": "createdon", "AttributeType": "DateTime"},
    ],
    "Keys": [],
}

#: Every standard table a fresh sandbox has.
STANDARD_TABLES = (CONTACT, ACCOUNT, TASK, TEAM, QUEUE, QUEUEITEM)


@dataclass
class SandboxInfo:
    url: str
    authority: str
    client_id: str
    client_secret: str
    ca_bundle: str
    dataverse: DataverseSandbox
    limits: Limits
    extra_users: dict[str, str] = field(default_factory=dict)  # client id → secret

    @property
    def env(self) -> dict[str, str]:
        """The BRIDGE_* settings that make the tool use this sandbox (with every app user)."""
        env = {
            "BRIDGE_DATAVERSE__URL": self.url,
            "BRIDGE_DATAVERSE__TENANT_ID": TENANT,
            "BRIDGE_DATAVERSE__AUTHORITY": self.authority,
            "BRIDGE_DATAVERSE__CLIENT_ID": self.client_id,
            "BRIDGE_DATAVERSE__CLIENT_SECRET": self.client_secret,
            "BRIDGE_DATAVERSE__CA_BUNDLE": self.ca_bundle,
        }
        if self.extra_users:
            env["BRIDGE_DATAVERSE__APP_USERS"] = json.dumps(
                [{"client_id": c, "client_secret": s} for c, s in self.extra_users.items()],
                separators=(",", ":"),
            )
        return env


class EntraDataverse:
    """The core: Entra's discovery and token endpoints, then the Dataverse Web API behind the
    limit model (per-user budgets, service time, injected faults)."""

    def __init__(self, box: DataverseSandbox, limits: Limits, base: str) -> None:
        self.box, self.limits, self.base = box, limits, base

    def handle(self, method: str, path: str, headers: Headers, body: bytes) -> Answer:
        """One HTTP request → one answer (``Answer.drop`` for an injected reset)."""
        if path.endswith("/v2.0/.well-known/openid-configuration"):
            return self._reply(self._discovery(path.split("/")[1]))
        if path.endswith("/oauth2/v2.0/token") and method == "POST":
            return self._reply(self._token(body))
        if not path.startswith(API):
            error = {"code": "0x80060888", "message": "Resource not found"}
            return self._reply(Answer(404, {}, {"error": error}))
        auth = headers.get("Authorization", "")
        user = self.box.tokens.get(auth.removeprefix("Bearer ").strip())
        if user is None:
            return self._reply(Answer(401, {"WWW-Authenticate": "Bearer"}, None))
        limits = self.limits
        if (refused := limits.admit(user)) is not None:
            return self._reply(
                Answer(
                    429,
                    {"Retry-After": f"{refused.retry_after:.2f}"},
                    {"error": {"code": refused.code, "message": refused.message}},
                )
            )
        pause = limits.service_time(operation_count(path, body))
        try:
            return self._serve(method, path, headers, body, pause, limits.chaos())
        finally:
            limits.done(user, pause)

    def _discovery(self, tenant: str) -> Answer:
        base = self.base
        return Answer(
            200,
            {},
            {
                "issuer": f"{base}/{tenant}/v2.0",
                "authorization_endpoint": f"{base}/{tenant}/oauth2/v2.0/authorize",
                "token_endpoint": f"{base}/{tenant}/oauth2/v2.0/token",
                "token_endpoint_auth_methods_supported": ["client_secret_post"],
            },
        )

    def _token(self, body: bytes) -> Answer:
        form = {k: v[0] for k, v in parse_qs(body.decode()).items()}
        token = self.box.issue_token(form.get("client_id", ""), form.get("client_secret", ""))
        if token is None:
            return Answer(
                401,
                {},
                {
                    "error": "invalid_client",
                    "error_description": "AADSTS7000215: Invalid client secret provided.",
                },
            )
        return Answer(
            200,
            {},
            {
                "token_type": "Bearer",
                "expires_in": 3599,
                "ext_expires_in": 3599,
                "access_token": token,
            },
        )

    def _serve(
        self,
        method: str,
        path: str,
        headers: Headers,
        body: bytes,
        pause: float,
        chaos: Chaos | None,
    ) -> Answer:
        if chaos == "fault":
            return self._reply(Answer(503, {}, None))
        if chaos == "reset_before":
            return Answer(0, drop=True)
        # The modelled service time includes the stand-in's own work (as Dataverse's includes
        # its own): work first, then wait out what is left, so a busy machine does not make a
        # request take longer than the model says (it would slow the client, not Dataverse).
        started = time.monotonic()
        self.box.requests += 1
        answer = self.box.handle(method, path, headers, body)
        rest = pause - (time.monotonic() - started)
        time.sleep(max(rest, 0.0) + (self.limits.slow_seconds if chaos == "slow" else 0.0))
        if chaos == "reset_after":  # the work is done, the answer is lost
            return Answer(0, drop=True)
        return self._reply(answer)

    @staticmethod
    def _reply(answer: Answer) -> Answer:
        """The headers every Dataverse answer carries; JSON is OData's unless said otherwise."""
        headers = {
            "OData-Version": "4.0",
            "x-ms-service-request-id": str(uuid.uuid4()),
            **answer.headers,
        }
        if answer.body is not None and "Content-Type" not in headers:
            headers["Content-Type"] = "application/json; odata.metadata=minimal"
        return Answer(answer.status, headers, answer.body)


@contextlib.contextmanager
def run_sandbox(
    db_path: str | Path | None = None,
    *,
    limits: Limits | None = None,
    port: int | None = None,
    app_users: int = 1,
    users: dict[str, str] | None = None,
    certificates: Path | None = None,
    base_language: int = 1033,
) -> Iterator[SandboxInfo]:
    """The sandbox on ``https://127.0.0.1:<port>`` until the block ends, with ``app_users``
    application users registered (the first in the single-user settings, the others in
    ``extra_users``); the limit model gives each its own budget.

    ``users`` (client id → secret, first the primary) are registered as they are, new ones made
    up to ``app_users``; ``certificates`` is a directory whose CA is kept (a throwaway one by
    default). The CLI passes both from its state directory so a restart changes nothing.
    ``base_language``: the environment's base language (labels must carry it)."""
    if app_users < 1:
        raise ValueError("app_users must be at least 1")
    known = dict(users or {})
    while len(known) < app_users:
        known[str(uuid.uuid4())] = uuid.uuid4().hex
    with contextlib.ExitStack() as stack:
        folder = certificates or Path(
            stack.enter_context(tempfile.TemporaryDirectory(prefix="bridge-sandbox-"))
        )
        tls = make_certificates(folder)
        server = stack.enter_context(
            StandInServer(name="dataverse", port=port or 0, certificates=tls)
        )
        limits = limits or Limits()
        box = DataverseSandbox(
            str(db_path) if db_path else ":memory:",
            base_url=server.url,
            limits=limits,
            base_language=base_language,
        )
        for standard in STANDARD_TABLES:
            if box.entity(str(standard["LogicalName"])) is None:
                box.define_entity(json.loads(json.dumps(standard)))
        for client_id, secret in known.items():
            box.add_app_user(client_id, secret)
        (client_id, secret), *others = known.items()
        server.start(EntraDataverse(box, limits, server.url).handle)
        yield SandboxInfo(
            server.url,
            f"{server.url}/{TENANT}",
            client_id,
            secret,
            str(tls.ca),
            box,
            limits,
            dict(others),
        )
