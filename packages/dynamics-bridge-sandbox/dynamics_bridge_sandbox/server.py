"""Run the sandbox on 127.0.0.1 over HTTPS: an Entra-like token endpoint and the Dataverse API.

``with run_sandbox() as sandbox:`` starts it on a free port in a thread and yields the settings
that point the rest of the tool at it (``sandbox.env``).
"""

from __future__ import annotations

import contextlib
import json
import socket
import ssl
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs

from dynamics_bridge_sandbox.dataverse import (
    API,
    Answer,
    Chaos,
    DataverseSandbox,
    Limits,
    operation_count,
)
from dynamics_bridge_sandbox.tls import make_certificates

__all__ = ["CONTACT", "SandboxInfo", "run_sandbox"]

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
        {"LogicalName": "birthdate", "AttributeType": "DateTime"},
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


class _Server(ThreadingHTTPServer):
    """A client that gave up (its timeout, an injected reset) is routine here, not an error."""

    daemon_threads = True

    def handle_error(self, request: object, client_address: object) -> None:
        if isinstance(sys.exc_info()[1], ConnectionError | ssl.SSLError):
            return
        super().handle_error(request, client_address)  # type: ignore[arg-type]


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


def _handler(box: DataverseSandbox, limits: Limits, base: str) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:  # quiet: tests and the demo print
            return

        def _reply(self, answer: Answer) -> None:
            body = answer.json_bytes()
            self.send_response(answer.status)
            headers = {
                "OData-Version": "4.0",
                "x-ms-service-request-id": str(uuid.uuid4()),
                **answer.headers,
            }
            if body and "Content-Type" not in headers:
                headers["Content-Type"] = "application/json; odata.metadata=minimal"
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _body(self) -> bytes:
            length = int(self.headers.get("Content-Length") or 0)
            return self.rfile.read(length) if length else b""

        def _route(self, method: str) -> None:
            body = self._body()
            path = self.path
            if path.endswith("/v2.0/.well-known/openid-configuration"):
                tenant = path.split("/")[1]
                self._reply(
                    Answer(
                        200,
                        {},
                        {
                            "issuer": f"{base}/{tenant}/v2.0",
                            "authorization_endpoint": f"{base}/{tenant}/oauth2/v2.0/authorize",
                            "token_endpoint": f"{base}/{tenant}/oauth2/v2.0/token",
                            "token_endpoint_auth_methods_supported": ["client_secret_post"],
                        },
                    )
                )
                return
            if path.endswith("/oauth2/v2.0/token") and method == "POST":
                form = {k: v[0] for k, v in parse_qs(body.decode()).items()}
                token = box.issue_token(form.get("client_id", ""), form.get("client_secret", ""))
                if token is None:
                    self._reply(
                        Answer(
                            401,
                            {},
                            {
                                "error": "invalid_client",
                                "error_description": "AADSTS7000215: Invalid "
                                "client secret provided.",
                            },
                        )
                    )
                else:
                    self._reply(
                        Answer(
                            200,
                            {},
                            {
                                "token_type": "Bearer",
                                "expires_in": 3599,
                                "ext_expires_in": 3599,
                                "access_token": token,
                            },
                        )
                    )
                return
            if not path.startswith(API):
                self._reply(
                    Answer(
                        404, {}, {"error": {"code": "0x80060888", "message": "Resource not found"}}
                    )
                )
                return
            auth = self.headers.get("Authorization", "")
            user = box.tokens.get(auth.removeprefix("Bearer ").strip())
            if user is None:
                self._reply(Answer(401, {"WWW-Authenticate": "Bearer"}, None))
                return
            if (refused := limits.admit(user)) is not None:
                self._reply(
                    Answer(
                        429,
                        {"Retry-After": f"{refused.retry_after:.2f}"},
                        {"error": {"code": refused.code, "message": refused.message}},
                    )
                )
                return
            pause = limits.service_time(operation_count(path, body))
            try:
                self._serve(method, path, body, pause, limits.chaos())
            finally:
                limits.done(user, pause)

        def _serve(
            self, method: str, path: str, body: bytes, pause: float, chaos: Chaos | None
        ) -> None:
            if chaos == "fault":
                self._reply(Answer(503, {}, None))
                return
            if chaos == "reset_before":
                self._drop()
                return
            time.sleep(pause + (limits.slow_seconds if chaos == "slow" else 0.0))
            box.requests += 1
            answer = box.handle(method, path, dict(self.headers.items()), body)
            if chaos == "reset_after":  # the work is done, the answer is lost
                self._drop()
                return
            self._reply(answer)

        def _drop(self) -> None:
            """Close the connection with no answer, as a reset or a dying front end does."""
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)

        def do_GET(self) -> None:
            self._route("GET")

        def do_POST(self) -> None:
            self._route("POST")

        def do_PATCH(self) -> None:
            self._route("PATCH")

        def do_DELETE(self) -> None:
            self._route("DELETE")

    return Handler


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def run_sandbox(
    db_path: str | Path | None = None,
    *,
    limits: Limits | None = None,
    port: int | None = None,
    app_users: int = 1,
) -> Iterator[SandboxInfo]:
    """The sandbox on ``https://127.0.0.1:<port>`` until the block ends, with ``app_users``
    application users registered (the first in the single-user settings, the others in
    ``extra_users``); the limit model gives each its own budget."""
    if app_users < 1:
        raise ValueError("app_users must be at least 1")
    with tempfile.TemporaryDirectory(prefix="bridge-sandbox-") as tmp:
        ca, cert, key = make_certificates(Path(tmp))
        port = port or free_port()
        base = f"https://127.0.0.1:{port}"
        limits = limits or Limits()
        box = DataverseSandbox(
            str(db_path) if db_path else ":memory:", base_url=base, limits=limits
        )
        if box.entity("contact") is None:
            box.define_entity(json.loads(json.dumps(CONTACT)))
        client_id, secret = str(uuid.uuid4()), uuid.uuid4().hex
        box.add_app_user(client_id, secret)
        extra = {str(uuid.uuid4()): uuid.uuid4().hex for _ in range(app_users - 1)}
        for extra_id, extra_secret in extra.items():
            box.add_app_user(extra_id, extra_secret)
        server = _Server(("127.0.0.1", port), _handler(box, limits, base))
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(str(cert), str(key))
        server.socket = context.wrap_socket(server.socket, server_side=True)
        thread = threading.Thread(target=server.serve_forever, name="sandbox", daemon=True)
        thread.start()
        try:
            yield SandboxInfo(
                base, f"{base}/{TENANT}", client_id, secret, str(ca), box, limits, extra
            )
        finally:
            server.shutdown()
            server.server_close()
