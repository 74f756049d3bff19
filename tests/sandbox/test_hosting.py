"""One way to serve every stand-in: a core answers, the hosting helper talks HTTP(S)."""

from __future__ import annotations

import http.client
import inspect
import socket

import pytest
import requests
from dynamics_bridge_sandbox import hosting
from dynamics_bridge_sandbox.apsis import ApsisStandIn, run_apsis_standin
from dynamics_bridge_sandbox.hosting import Answer, Headers, StandInServer
from dynamics_bridge_sandbox.server import EntraDataverse, run_sandbox
from dynamics_bridge_sandbox.spar import SparResponder, run_spar_responder
from dynamics_bridge_sandbox.tls import make_certificates


def echo(method: str, path: str, headers: Headers, body: bytes) -> Answer:
    """A core that says back what it was asked."""
    if path == "/drop":
        return Answer(0, drop=True)
    if path == "/fail":
        return Answer(409, {}, {"title": "Conflict"})
    if path == "/xml":
        return Answer(200, {"Content-Type": "text/xml"}, b"<ok/>")
    return Answer(
        200,
        {"X-Seen": "yes"},
        {"method": method, "path": path, "agent": headers["USER-AGENT"], "body": body.decode()},
    )


def test_a_core_is_served_on_loopback_and_sees_the_request() -> None:
    with StandInServer(name="echo") as server:
        server.start(echo)
        assert server.url.startswith("http://127.0.0.1:")
        answer = requests.patch(f"{server.url}/a?b=1", data=b"hej", timeout=5)
    assert answer.status_code == 200
    assert answer.headers["Content-Type"] == "application/json"
    assert answer.headers["X-Seen"] == "yes"
    assert answer.json() == {
        "method": "PATCH",
        "path": "/a?b=1",
        "agent": answer.request.headers["User-Agent"],
        "body": "hej",
    }


def test_an_error_is_a_problem_and_bytes_keep_their_content_type() -> None:
    with StandInServer(name="echo") as server:
        server.start(echo)
        failed = requests.get(f"{server.url}/fail", timeout=5)
        xml = requests.get(f"{server.url}/xml", timeout=5)
    assert (failed.status_code, failed.headers["Content-Type"]) == (409, "application/problem+json")
    assert (xml.content, xml.headers["Content-Type"]) == (b"<ok/>", "text/xml")


def test_a_dropped_answer_closes_the_connection_without_a_status() -> None:
    with StandInServer(name="echo") as server:
        server.start(echo)
        connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
        connection.request("GET", "/drop")
        with pytest.raises((http.client.RemoteDisconnected, ConnectionError)):
            connection.getresponse()
        connection.close()


def test_with_certificates_it_serves_https_that_trusts_only_its_ca(tmp_path) -> None:
    certificates = make_certificates(tmp_path)
    with StandInServer(name="echo", certificates=certificates) as server:
        server.start(echo)
        assert server.url.startswith("https://127.0.0.1:")
        assert requests.get(server.url, verify=str(certificates.ca), timeout=5).ok
        with pytest.raises(requests.exceptions.SSLError):
            requests.get(server.url, timeout=5)  # the system store does not know this CA


def test_stopping_frees_the_port() -> None:
    server = StandInServer(name="echo")
    server.start(echo)
    port = server.port
    server.stop()
    server.stop()  # twice is harmless
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))


def test_headers_are_found_whatever_their_case() -> None:
    headers = Headers([("Content-Type", "a/b"), ("prefer", "x")])
    assert headers["content-type"] == headers.get("CONTENT-TYPE") == "a/b"
    assert "Prefer" in headers
    assert headers.get("missing", "default") == "default"


def test_the_three_stand_ins_are_served_by_the_one_helper(monkeypatch, tmp_path) -> None:
    started: dict[str, type] = {}
    original = StandInServer.start

    def spy(self: StandInServer, handle: hosting.Handle) -> StandInServer:
        started[self.name] = type(handle.__self__)  # type: ignore[attr-defined]
        return original(self, handle)

    monkeypatch.setattr(StandInServer, "start", spy)
    with run_sandbox(), run_apsis_standin(), run_spar_responder():
        pass
    assert started == {
        "dataverse": EntraDataverse,
        "apsis": ApsisStandIn,
        "spar": SparResponder,
    }


@pytest.mark.parametrize("core", [EntraDataverse, ApsisStandIn, SparResponder])
def test_every_core_answers_through_the_same_signature(core: type) -> None:
    parameters = list(inspect.signature(core.handle).parameters)
    assert parameters == ["self", "method", "path", "headers", "body"]
    assert inspect.signature(core.handle).return_annotation in ("Answer", Answer)


def test_spar_answers_only_a_posted_envelope() -> None:
    answer = SparResponder().handle("GET", "/personsok", Headers(), b"")
    assert (answer.status, answer.headers) == (405, {"Allow": "POST"})
