"""How every stand-in is served: one threaded HTTP(S) server on 127.0.0.1 around one core.

Each stand-in (Entra + Dataverse, APSIS, SPAR) is a core with the same signature,
``handle(method, path, headers, body) -> Answer``, and no sockets: tests call it directly, and
:class:`StandInServer` serves it. Keeping the plumbing here means one place decides what a
stand-in does with a client that hangs up, TLS, quiet logs and a clean stop.
"""

from __future__ import annotations

import contextlib
import json
import socket
import ssl
import sys
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

from dynamics_bridge_sandbox.tls import Certificates

__all__ = ["Answer", "Handle", "Headers", "StandInServer"]


@dataclass
class Answer:
    """One HTTP answer: ``body`` is bytes as they are, None for none, else a JSON value.

    ``drop`` closes the connection without an answer (a reset, a dying front end)."""

    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: Any = None
    drop: bool = False

    def payload(self) -> tuple[bytes, str | None]:
        """(bytes to send, the content type they imply): JSON, as a problem for an error."""
        if self.body is None:
            return b"", None
        if isinstance(self.body, bytes):
            return self.body, None
        kind = "application/problem+json" if self.status >= 400 else "application/json"
        return json.dumps(self.body, ensure_ascii=False).encode("utf-8"), kind


class Headers(dict[str, str]):
    """Request headers, looked up without regard to case as HTTP says (keys kept lower-case)."""

    def __init__(self, items: Iterable[tuple[str, str]] = ()) -> None:
        super().__init__((k.lower(), v) for k, v in items)

    def __getitem__(self, key: str) -> str:
        return super().__getitem__(key.lower())

    def __contains__(self, key: object) -> bool:
        return super().__contains__(key.lower() if isinstance(key, str) else key)

    def get(self, key: str, default: Any = None) -> Any:
        return super().get(key.lower(), default)


#: A stand-in's core: one request → one answer, no sockets.
Handle = Callable[[str, str, Headers, bytes], Answer]


class _Server(ThreadingHTTPServer):
    """A client that gave up (its timeout, an injected reset) is routine here, not an error."""

    daemon_threads = True
    handle: Handle

    def handle_error(self, request: object, client_address: object) -> None:
        if isinstance(sys.exc_info()[1], ConnectionError | ssl.SSLError):
            return
        super().handle_error(request, client_address)  # type: ignore[arg-type]


class _RequestHandler(BaseHTTPRequestHandler):
    """Headers and body go out in two writes: with Nagle's algorithm on (the kernel's default)
    the body waits for the client's delayed ACK, about 40 ms on Linux."""

    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, *args: object) -> None:  # quiet: requests hold personnummer
        return

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        answer = self.server.handle(self.command, self.path, Headers(self.headers.items()), body)
        if answer.drop:
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)
            return
        payload, kind = answer.payload()
        self.send_response(answer.status)
        for name, value in answer.headers.items():
            self.send_header(name, value)
        if kind and not any(n.lower() == "content-type" for n in answer.headers):
            self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _serve


class _NoDelayRequestHandler(_RequestHandler):
    disable_nagle_algorithm = True


class StandInServer:
    """A threaded server on ``127.0.0.1:<port>`` (0: a free one), HTTPS when given certificates.

    It binds when built, so a core can be made knowing :attr:`url`; :meth:`start` serves it and
    leaving the ``with`` block (or :meth:`stop`) closes the port::

        with StandInServer(name="apsis") as server:
            core = ApsisStandIn(url=server.url)
            server.start(core.handle)
    """

    def __init__(
        self,
        *,
        name: str,
        port: int = 0,
        certificates: Certificates | None = None,
        no_delay: bool = False,
    ) -> None:
        """``no_delay`` sends each answer at once (TCP_NODELAY). Off, an answer waits for the
        client's delayed ACK as the Dataverse and APSIS stand-ins always have: the benchmarks'
        429 counts were measured so (with it on, bench/dataverse.py sees about three times as
        many 429s at the same rows/s)."""
        self.name = name
        handler = _NoDelayRequestHandler if no_delay else _RequestHandler
        self._server = _Server(("127.0.0.1", port), handler, bind_and_activate=True)
        self.scheme = "http"
        if certificates is not None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(str(certificates.cert), str(certificates.key))
            self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
            self.scheme = "https"
        self.port = int(self._server.server_address[1])
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}"

    def start(self, handle: Handle) -> StandInServer:
        """Serve ``handle`` in a daemon thread until :meth:`stop`."""
        if self._thread is not None:
            raise RuntimeError(f"{self.name} stand-in already started")
        self._server.handle = handle
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"{self.name}-standin",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and free the port (safe to call twice, or before :meth:`start`)."""
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join()
            self._thread = None
        self._server.server_close()

    def __enter__(self) -> StandInServer:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
