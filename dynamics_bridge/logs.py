"""JSON log lines that Application Insights can query, with personal data and secrets scrubbed.

Every record passes :class:`ScrubFilter` (personnummer masked, configured secrets replaced) and
picks up the correlation fields bound with :func:`log_context` (``event_id`` first of all).
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from typing import Any

from dynamics_bridge.personnummer import mask_text

__all__ = [
    "JsonFormatter",
    "ScrubFilter",
    "configure_host_logging",
    "configure_logging",
    "log_context",
]

#: Libraries that log request details at INFO/DEBUG; kept at WARNING everywhere.
QUIET_LOGGERS = (
    "msal",
    "urllib3",
    "zeep",
    "azure",
    "azure.core.pipeline.policies.http_logging_policy",
)

#: Structured fields a record may carry (``extra={...}``) and the JSON line then shows.
FIELDS = (
    "event_id",
    "event_ids",
    "source",
    "kind",
    "outcome",
    "duration_ms",
    "provider",
    "status",
    "reason",
    "origin",
    "count",
    "table",
    "request_id",
    "poison_waiting",  # the poison timer's (the Bicep poison alert reads them)
    "poison_oldest_minutes",
)

_context: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar(
    "bridge_log_context", default=None
)


@contextlib.contextmanager
def log_context(**fields: Any) -> Iterator[None]:
    """Bind correlation fields (``event_id=...``) to every record logged inside the block."""
    token = _context.set({**(_context.get() or {}), **fields})
    try:
        yield
    finally:
        _context.reset(token)


class ScrubFilter(logging.Filter):
    """Masks personnummer and removes secrets from the message and every structured field."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self.secrets = sorted({s for s in secrets if len(s) >= 4}, key=len, reverse=True)

    def scrub(self, text: str, *, label: str | None = None) -> str:
        """Secrets out, then personnummer masked (``label``: the field ``text`` is the value of)."""
        for secret in self.secrets:
            text = text.replace(secret, "***")
        return mask_text(text, label=label)

    def _scrub_value(self, value: Any, key: str) -> Any:
        if isinstance(value, str):
            return self.scrub(value, label=key)
        if isinstance(value, list | tuple):
            return [self._scrub_value(v, key) for v in value]
        return value

    def filter(self, record: logging.LogRecord) -> bool:
        for key, value in (_context.get() or {}).items():
            if not hasattr(record, key):
                setattr(record, key, value)
        record.msg = self.scrub(record.getMessage())
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.scrub(record.exc_text)
        record.exc_info = None
        for key in FIELDS:
            if hasattr(record, key):
                setattr(record, key, self._scrub_value(getattr(record, key), key))
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, and the structured fields."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key in FIELDS:
            value = getattr(record, key, None)
            if value is not None:
                line[key] = value
        if record.exc_text:
            line["exception"] = record.exc_text
        return json.dumps(line, ensure_ascii=False, default=str)


def configure_logging(
    level: str = "INFO",
    *,
    secrets: Iterable[str] = (),
    json_format: bool = True,
    stream: Any = None,
) -> logging.Handler:
    """Install one scrubbing handler on the root logger (idempotent) and quiet chatty libraries."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "_bridge", False):
            root.removeHandler(handler)
    handler = logging.StreamHandler(stream)
    handler._bridge = True  # type: ignore[attr-defined]
    handler.addFilter(ScrubFilter(secrets))
    handler.setFormatter(
        JsonFormatter()
        if json_format
        else logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    )
    root.addHandler(handler)
    root.setLevel(level.upper())
    _quiet_libraries()
    return handler


def configure_host_logging(level: str = "INFO", *, secrets: Iterable[str] = ()) -> None:
    """Under the Azure Functions Python worker: its handler on the root logger forwards
    ``self.format(record)`` to the host (Application Insights ``traces.message``), so it gets
    the scrubbing filter and the JSON formatter. Without the worker (tests, a laptop), the
    stderr handler of :func:`configure_logging` does the same job."""
    root = logging.getLogger()
    worker = [h for h in root.handlers if type(h).__name__ == "AsyncLoggingHandler"]
    if not worker:
        configure_logging(level, secrets=secrets)
        return
    for handler in worker:
        for old in [f for f in handler.filters if isinstance(f, ScrubFilter)]:
            handler.removeFilter(old)
        handler.addFilter(ScrubFilter(secrets))
        handler.setFormatter(JsonFormatter())
    root.setLevel(level.upper())
    _quiet_libraries()


def _quiet_libraries() -> None:
    for noisy in QUIET_LOGGERS:
        logging.getLogger(noisy).setLevel(logging.WARNING)
