"""``$batch`` bodies: build a multipart request and read each part's answer (dataverse.md §4).

Pure and symmetric: the client writes with :func:`build_batch` and reads with
:func:`parse_batch_response`; the sandbox reads requests with :func:`parse_batch_request`.
:func:`correlate` turns the answers into one :class:`OperationResult` per request sent, which is
where the batch rules live: a failed change set rolls back all of its operations, and parts that
never came back (processing stopped at a failure) were not executed.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from dynamics_bridge.dataverse.policy import classify
from dynamics_bridge.errors import BridgeError
from dynamics_bridge.http_policy import header

__all__ = [
    "BatchPart",
    "BatchRequest",
    "BatchResult",
    "ChangeSet",
    "OperationResult",
    "build_batch",
    "correlate",
    "operations",
    "parse_batch_request",
    "parse_batch_response",
    "render_batch_response",
]


@dataclass
class BatchRequest:
    """One operation. ``content_id`` lets later parts of the same change set say ``$<id>``."""

    method: str
    url: str  # relative to the service root, e.g. "contacts(mbr_memberno='1')"
    headers: dict[str, str] = field(default_factory=dict)
    body: Any = None
    content_id: str | None = None


@dataclass
class ChangeSet:
    """Requests that commit or roll back together."""

    requests: list[BatchRequest]


def operations(items: Sequence[BatchRequest | ChangeSet]) -> list[BatchRequest]:
    """Every operation of a batch in order, change sets opened (what the 1,000 limit counts)."""
    return [r for i in items for r in (i.requests if isinstance(i, ChangeSet) else [i])]


@dataclass
class BatchPart:
    """One operation's answer. ``content_id`` correlates change-set parts."""

    status: int
    headers: dict[str, str]
    body: Any
    content_id: str | None = None
    change_set: int | None = None  # index of the change set in the request, if any
    position: int | None = None  # index of the top-level part (request or change set)


def _request_text(req: BatchRequest, root_path: str) -> str:
    lines = ["Content-Type: application/http", "Content-Transfer-Encoding: binary"]
    if req.content_id is not None:
        lines.append(f"Content-ID: {req.content_id}")
    target = req.url if req.url.startswith(("/", "http", "$")) else f"{root_path}{req.url}"
    lines += ["", f"{req.method} {target} HTTP/1.1"]
    headers = dict(req.headers)
    if req.body is not None:
        headers.setdefault("Content-Type", "application/json; type=entry")
    lines += [f"{k}: {v}" for k, v in headers.items()]
    lines.append("")
    lines.append(
        json.dumps(req.body, separators=(",", ":"), ensure_ascii=False)
        if req.body is not None
        else ""
    )
    return "\r\n".join(lines)


def build_batch(
    items: Sequence[BatchRequest | ChangeSet],
    *,
    root_path: str = "/api/data/v9.2/",
    boundary: str | None = None,
) -> tuple[str, bytes]:
    """``(content type, body)`` of a ``$batch`` POST."""
    boundary = boundary or f"batch_{uuid.uuid4().hex}"
    out: list[str] = []
    for item in items:
        out.append(f"--{boundary}")
        if isinstance(item, ChangeSet):
            cs = f"changeset_{uuid.uuid4().hex}"
            out.append(f'Content-Type: multipart/mixed; boundary="{cs}"')
            out.append("")
            for req in item.requests:
                out.append(f"--{cs}")
                out.append(_request_text(req, root_path))
            out.append(f"--{cs}--")
            out.append("")
        else:
            out.append(_request_text(item, root_path))
    out.append(f"--{boundary}--")
    out.append("")
    return f'multipart/mixed; boundary="{boundary}"', "\r\n".join(out).encode("utf-8")


def _parse_http(payload: bytes) -> tuple[str, dict[str, str], Any]:
    """An embedded HTTP message → (first line, headers, JSON body or text or None)."""
    text = payload.decode("utf-8", errors="replace").replace("\r\n", "\n")
    head, _, body = text.partition("\n\n")
    first, *header_lines = head.strip("\n").split("\n")
    headers: dict[str, str] = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        if name:
            headers[name.strip()] = value.strip()
    body = body.strip()
    parsed: Any = None
    if body:
        try:
            parsed = json.loads(body)
        except ValueError:
            parsed = body
    return first.strip(), headers, parsed


_BOUNDARY = re.compile(r'boundary\s*=\s*(?:"([^"]+)"|([^;\s]+))', re.IGNORECASE)

MimePart = tuple[dict[str, str], bytes]  # headers (lower-case names) and payload


def _boundary(content_type: str) -> str | None:
    m = _BOUNDARY.search(content_type)
    return (m.group(1) or m.group(2)) if m else None


def _mime_parts(content_type: str, body: bytes) -> list[MimePart]:
    """The parts of a ``multipart/mixed`` body, split on its boundary lines (RFC 2046).

    Hand-rolled because the ``email`` package spends milliseconds per part on header objects,
    which made a 1,000-operation answer cost more than the request itself.
    """
    boundary = _boundary(content_type)
    if boundary is None:
        return []
    parts: list[MimePart] = []
    for chunk in body.split(b"--" + boundary.encode())[1:]:
        if chunk.startswith(b"--"):
            break  # the close delimiter; what follows is the epilogue
        chunk = chunk.split(b"\n", 1)[1] if b"\n" in chunk else b""  # rest of the boundary line
        chunk = chunk.removesuffix(b"\n").removesuffix(b"\r")  # the CRLF belongs to the delimiter
        head, sep, payload = chunk.partition(b"\r\n\r\n")
        if not sep:
            head, _, payload = chunk.partition(b"\n\n")
        headers: dict[str, str] = {}
        for line in head.decode("latin-1").splitlines():
            name, colon, value = line.partition(":")
            if colon:
                headers[name.strip().lower()] = value.strip()
        parts.append((headers, payload))
    return parts


def _is_change_set(headers: dict[str, str]) -> bool:
    return headers.get("content-type", "").lower().startswith("multipart/mixed")


def parse_batch_response(content_type: str, body: bytes) -> list[BatchPart]:
    """Each part's status, headers and body, in order; change-set parts carry their Content-ID."""
    parts: list[BatchPart] = []
    for index, (headers, payload) in enumerate(_mime_parts(content_type, body)):
        if _is_change_set(headers):
            for inner in _mime_parts(headers["content-type"], payload):
                parts.append(_leaf(inner, index, index))
        else:
            parts.append(_leaf((headers, payload), None, index))
    return parts


def _leaf(part: MimePart, change_set: int | None, position: int) -> BatchPart:
    mime_headers, payload = part
    first, headers, body = _parse_http(payload)
    try:
        status = int(first.split()[1])
    except (IndexError, ValueError):
        status = 0
    content_id = mime_headers.get("content-id")
    return BatchPart(status, headers, body, content_id or None, change_set, position)


State = Literal["ok", "failed", "rolled_back", "not_executed"]


@dataclass
class OperationResult:
    """What became of one request of a ``$batch``.

    ``failed``: this operation's own answer was an error (``error`` is classified as for a single
    request). ``rolled_back``: another operation of its change set failed, so nothing of the
    change set was saved (``error`` is that operation's). ``not_executed``: Dataverse stopped
    before reaching it (no ``odata.continue-on-error``), so it is safe to send again.
    """

    request: BatchRequest
    state: State
    status: int | None = None
    headers: dict[str, str] = field(default_factory=dict)
    body: Any = None
    error: BridgeError | None = None
    change_set: int | None = None

    @property
    def ok(self) -> bool:
        return self.state == "ok"


@dataclass
class BatchResult:
    """Every part as it came back, and one result per request sent (in request order)."""

    parts: list[BatchPart]
    operations: list[OperationResult]

    @property
    def ok(self) -> bool:
        return all(op.ok for op in self.operations)

    def failures(self) -> list[OperationResult]:
        return [op for op in self.operations if op.state == "failed"]


def _error_for(req: BatchRequest, part: BatchPart) -> BridgeError | None:
    if_match = header(req.headers, "If-Match")
    return classify(
        part.status,
        part.headers,
        part.body,
        create_only=header(req.headers, "If-None-Match") == "*",
        conditional=if_match is not None and if_match != "*",
    )


def correlate(
    items: Sequence[BatchRequest | ChangeSet], parts: Sequence[BatchPart]
) -> list[OperationResult]:
    """One result per request: top-level parts by position, change-set parts by Content-ID.

    A failed change set may answer with just its failing part; if that part carries no
    Content-ID the failure cannot be pinned on one operation, and all of them are rolled back.
    """
    by_position: dict[int, list[BatchPart]] = {}
    for index, part in enumerate(parts):
        position = part.position if part.position is not None else index
        by_position.setdefault(position, []).append(part)
    results: list[OperationResult] = []
    for position, item in enumerate(items):
        answered = by_position.get(position, [])
        if isinstance(item, BatchRequest):
            if not answered:
                results.append(OperationResult(item, "not_executed"))
                continue
            part = answered[0]
            error = _error_for(item, part)
            results.append(
                OperationResult(
                    item, "failed" if error else "ok", part.status, part.headers, part.body, error
                )
            )
            continue
        results.extend(_change_set_results(item, answered, position))
    return results


def _change_set_results(
    change_set: ChangeSet, answered: list[BatchPart], position: int
) -> list[OperationResult]:
    if not answered:
        return [
            OperationResult(r, "not_executed", change_set=position) for r in change_set.requests
        ]
    failing = next((p for p in answered if p.status >= 400), None)
    if failing is None:
        by_id = {p.content_id: p for p in answered if p.content_id is not None}
        out = []
        for index, req in enumerate(change_set.requests):
            part = by_id.get(req.content_id) if req.content_id is not None else None
            if part is None and index < len(answered):
                part = answered[index]
            if part is None:
                out.append(OperationResult(req, "not_executed", change_set=position))
            else:
                out.append(
                    OperationResult(
                        req, "ok", part.status, part.headers, part.body, change_set=position
                    )
                )
        return out
    culprit = next(
        (r for r in change_set.requests if r.content_id and r.content_id == failing.content_id),
        change_set.requests[0] if len(change_set.requests) == 1 else None,
    )
    error = _error_for(culprit or change_set.requests[0], failing)
    out = []
    for req in change_set.requests:
        if req is culprit:
            out.append(
                OperationResult(
                    req, "failed", failing.status, failing.headers, failing.body, error, position
                )
            )
        else:
            out.append(OperationResult(req, "rolled_back", error=error, change_set=position))
    return out


def parse_batch_request(content_type: str, body: bytes) -> list[BatchRequest | ChangeSet]:
    """The sandbox's side: the operations of an incoming ``$batch``."""
    items: list[BatchRequest | ChangeSet] = []
    for headers, payload in _mime_parts(content_type, body):
        if _is_change_set(headers):
            inner = _mime_parts(headers["content-type"], payload)
            items.append(ChangeSet([_request(part) for part in inner]))
        else:
            items.append(_request((headers, payload)))
    return items


def _request(part: MimePart) -> BatchRequest:
    mime_headers, payload = part
    first, headers, body = _parse_http(payload)
    method, _, rest = first.partition(" ")
    url = rest.rsplit(" HTTP/", 1)[0]
    return BatchRequest(method, url, headers, body, mime_headers.get("content-id"))


def render_batch_response(groups: Sequence[list[BatchPart] | BatchPart]) -> tuple[str, bytes]:
    """The sandbox's side: a multipart response, change sets as nested parts."""
    boundary = f"batchresponse_{uuid.uuid4().hex}"
    out: list[str] = []

    def leaf(part: BatchPart) -> list[str]:
        lines = ["Content-Type: application/http", "Content-Transfer-Encoding: binary"]
        if part.content_id is not None:
            lines.append(f"Content-ID: {part.content_id}")
        lines += ["", f"HTTP/1.1 {part.status} {_REASONS.get(part.status, 'Status')}"]
        lines += [f"{k}: {v}" for k, v in part.headers.items()]
        lines.append("")
        lines.append(json.dumps(part.body) if part.body is not None else "")
        return lines

    for group in groups:
        out.append(f"--{boundary}")
        if isinstance(group, list):
            cs = f"changesetresponse_{uuid.uuid4().hex}"
            out += [f"Content-Type: multipart/mixed; boundary={cs}", ""]
            for part in group:
                out.append(f"--{cs}")
                out += leaf(part)
            out += [f"--{cs}--", ""]
        else:
            out += leaf(group)
    out += [f"--{boundary}--", ""]
    return f"multipart/mixed; boundary={boundary}", "\r\n".join(out).encode("utf-8")


_REASONS = {
    200: "OK",
    201: "Created",
    204: "No Content",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    412: "Precondition Failed",
    429: "Too Many Requests",
    500: "Internal Server Error",
    503: "Service Unavailable",
}
