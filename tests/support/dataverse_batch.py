"""Dataverse $batch answers as tests write them: the multipart shape of reference dataverse.md
§4 (one change set per list of parts), never our own client's output."""

from __future__ import annotations

__all__ = ["batch_response", "part"]


def part(status: str, content_id: str, body: str = "") -> str:
    return (
        "Content-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n"
        f"Content-ID: {content_id}\r\n\r\nHTTP/1.1 {status}\r\nOData-Version: 4.0\r\n"
        + ("Content-Type: application/json; odata.metadata=minimal\r\n" if body else "")
        + f"\r\n{body}\r\n"
    )


def batch_response(*change_sets: list[str]) -> bytes:
    out = []
    for i, parts in enumerate(change_sets):
        out.append(f"--batchresponse_1\r\nContent-Type: multipart/mixed; boundary=cs{i}\r\n\r\n")
        out.extend(f"--cs{i}\r\n{p}" for p in parts)
        out.append(f"--cs{i}--\r\n")
    out.append("--batchresponse_1--\r\n")
    return "".join(out).encode()
