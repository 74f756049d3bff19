"""Ingest Bankgirot files: parse, validate against the file's own totals, then queue.

Events are spooled to a temporary file while the whole file is checked, so a bad total found on
the last line still means nothing from that file is queued (the file itself is the durable copy),
and memory stays flat however large the file is.
"""

from __future__ import annotations

import json
import tempfile
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Literal

from dynamics_bridge.errors import InputError
from dynamics_bridge.model import PaymentEvent
from dynamics_bridge.queue import EventQueue
from dynamics_bridge.settings import BankgirotSettings
from dynamics_bridge.sources import autogiro, bgmax
from dynamics_bridge.sources.bankgirot import Readable

__all__ = ["FileFormat", "IngestReport", "detect_format", "ingest_file", "iter_files"]

FileFormat = Literal["auto", "autogiro", "bgmax"]


@dataclass
class IngestReport:
    path: str
    format: str
    events: int = 0
    #: kind → currency → [count, sum in minor units]
    totals: dict[str, dict[str, list[int]]] = field(
        default_factory=lambda: defaultdict(lambda: defaultdict(lambda: [0, 0]))
    )
    queued: bool = False

    def add(self, event: PaymentEvent) -> None:
        self.events += 1
        entry = self.totals[event.kind.value][event.currency]
        entry[0] += 1
        entry[1] += event.amount_minor

    def to_json(self) -> dict:
        return {
            "path": self.path,
            "format": self.format,
            "events": self.events,
            "queued": self.queued,
            "by_kind": {
                kind: {cur: {"count": c, "sum_minor": s} for cur, (c, s) in by_cur.items()}
                for kind, by_cur in sorted(self.totals.items())
            },
        }


def detect_format(head: bytes) -> Literal["autogiro", "bgmax"]:
    """BgMax files open with ``01BGMAX``; everything else is read as an Autogiro report."""
    for line in head.splitlines() or [head]:
        stripped = line.lstrip()
        if stripped[:2].isdigit():
            return "bgmax" if stripped[2:7] == b"BGMAX" else "autogiro"
    return "autogiro"


def parse_stream(
    stream: Readable, name: str, fmt: Literal["autogiro", "bgmax"], settings: BankgirotSettings
) -> Iterator[PaymentEvent]:
    if fmt == "bgmax":
        return bgmax.parse(stream, name, ocr_scheme=settings.ocr_scheme)
    return autogiro.parse(stream, name)


def ingest_file(
    path: Path,
    *,
    fmt: FileFormat = "auto",
    queue: EventQueue | None = None,
    settings: BankgirotSettings | None = None,
    on_event: Callable[[PaymentEvent], None] | None = None,
    wrap: Callable[[BinaryIO], Readable] | None = None,
) -> IngestReport:
    """Validate the whole file, then hand its events to ``on_event`` and/or ``queue``.

    Raises InputError (naming ``FILE:LINE``) and queues nothing when the file is bad.
    """
    settings = settings or BankgirotSettings()
    name = str(path)
    with path.open("rb") as raw:
        chosen = fmt if fmt != "auto" else detect_format(raw.read(4096))
        raw.seek(0)
        stream: Readable = wrap(raw) if wrap else raw
        report = IngestReport(name, chosen)
        with tempfile.TemporaryFile("w+", encoding="utf-8") as spool:
            for event in parse_stream(stream, name, chosen, settings):
                report.add(event)
                spool.write(json.dumps(event.to_json(), ensure_ascii=False) + "\n")
            spool.seek(0)
            batch: list[PaymentEvent] = []
            for line in spool:
                event = PaymentEvent.from_json(json.loads(line))
                if on_event:
                    on_event(event)
                if queue is not None:
                    batch.append(event)
                    if len(batch) >= settings.events_per_message_batch:
                        queue.send(batch)
                        batch = []
            if queue is not None and batch:
                queue.send(batch)
    report.queued = queue is not None
    return report


def iter_files(paths: list[Path]) -> Iterator[Path]:
    """Files as given, and the files inside given directories (sorted, hidden ones skipped)."""
    for path in paths:
        if path.is_dir():
            yield from sorted(
                p
                for p in path.rglob("*")
                if p.is_file()
                and not any(part.startswith(".") for part in p.relative_to(path).parts)
            )
        elif path.exists():
            yield path
        else:
            raise InputError("no such file or directory", location=str(path))
