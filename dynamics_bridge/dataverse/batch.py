"""``$batch`` bodies: build a multipart request and read each part's answer (dataverse.md §4).

Pure and symmetric: the client writes with :func:`build_batch` and reads with
:func:`parse_batch_response`; the sandbox reads requests with :func:`parse_batch_request`.
"""

from __future__ import annotations

import email
import email.policy
import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "BatchPart",
    "BatchRequest",
    "ChangeSet",
    "build_batch",
    "parse_batch_request",
    "parse_batch_response",
    "render_batch_response",
]


@dataclass
class BatchRequest:
    method: str
    url: str  # relative to the service root, e.g. "contacts(mbr_memberno='1')"
    headers: dict[str, str] = field(default_factory=dict)
    body: Any = None
    content_id: str | None = None


@dataclass
class ChangeSet:
    """Requests that commit or roll back together."""

    requests: list[BatchRequest]


@dataclass
class BatchPart:
    """One operation's answer. ``content_id`` correlates change-set parts."""

    status: int
    headers: dict[str, str]
    body: Any
    content_id: str | None = None
    change_set: int | None = None  # index of the change set in the request, if any


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


def _message(content_type: str, body: bytes) -> email.message.EmailMessage:
    raw = b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + body
    return email.message_from_bytes(raw, policy=email.policy.HTTP)


def parse_batch_response(content_type: str, body: bytes) -> list[BatchPart]:
    """Each part's status, headers and body, in order; change-set parts carry their Content-ID."""
    parts: list[BatchPart] = []
    for index, part in enumerate(_message(content_type, body).iter_parts()):
        if part.get_content_type() == "multipart/mixed":
            for inner in part.iter_parts():
                parts.append(_leaf(inner, index))
        else:
            parts.append(_leaf(part, None))
    return parts


def _leaf(part: email.message.Message, change_set: int | None) -> BatchPart:
    payload = part.get_payload(decode=True)
    first, headers, body = _parse_http(payload if isinstance(payload, bytes) else b"")
    try:
        status = int(first.split()[1])
    except (IndexError, ValueError):
        status = 0
    return BatchPart(status, headers, body, part.get("Content-ID"), change_set)


def parse_batch_request(content_type: str, body: bytes) -> list[BatchRequest | ChangeSet]:
    """The sandbox's side: the operations of an incoming ``$batch``."""
    items: list[BatchRequest | ChangeSet] = []
    for part in _message(content_type, body).iter_parts():
        if part.get_content_type() == "multipart/mixed":
            items.append(ChangeSet([_request(inner) for inner in part.iter_parts()]))
        else:
            items.append(_request(part))
    return items


def _request(part: email.message.Message) -> BatchRequest:
    payload = part.get_payload(decode=True)
    first, headers, body = _parse_http(payload if isinstance(payload, bytes) else b"")
    method, _, rest = first.partition(" ")
    url = rest.rsplit(" HTTP/", 1)[0]
    return BatchRequest(method, url, headers, body, part.get("Content-ID"))


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
