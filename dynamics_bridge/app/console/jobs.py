"""Long replays and purges run in a thread; the page polls their progress.

A replay of thousands of poison messages takes longer than a browser waits for an answer, so
the console starts it here and shows ``/jobs/<id>`` (progress, then the result). Jobs live in
this process only: enough for one console; a restart forgets finished jobs, never records (the
poison book and its audit trail are the record).
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from dynamics_bridge.errors import BridgeError

__all__ = ["Job", "JobBoard"]

log = logging.getLogger("dynamics_bridge.console")

#: Finished jobs are forgotten after this long.
KEEP_SECONDS = 3600


@dataclass
class Job:
    job_id: str
    action: str  # "replay" | "purge"
    what: str  # the filter in words, or the ids
    who: str
    done: int = 0
    total: int = 0
    finished: bool = False
    result: dict[str, Any] = field(default_factory=dict)
    error: str = ""
    started: float = field(default_factory=time.monotonic)
    _event: threading.Event = field(default_factory=threading.Event, repr=False)

    def progress(self, done: int, total: int) -> None:
        self.done, self.total = done, total

    def wait(self, timeout: float | None = None) -> bool:
        """True once finished (tests, and the CLI's ``--demo`` shutdown)."""
        return self._event.wait(timeout)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.job_id,
            "action": self.action,
            "what": self.what,
            "who": self.who,
            "done": self.done,
            "total": self.total,
            "finished": self.finished,
            "result": self.result,
            "error": self.error,
        }


class JobBoard:
    def __init__(self) -> None:
        self._jobs: dict[str, Job] = {}
        self._lock = threading.Lock()

    def start(
        self,
        action: str,
        what: str,
        who: str,
        work: Callable[[Job], dict[str, Any]],
    ) -> Job:
        """Run ``work(job)`` in a thread; it reports through ``job.progress`` and returns the
        result to show."""
        job = Job(secrets.token_hex(8), action, what, who)
        with self._lock:
            self._forget_old()
            self._jobs[job.job_id] = job

        def run() -> None:
            try:
                job.result = work(job)
            except BridgeError as exc:
                job.error = f"{type(exc).__name__}: {exc}"
                log.warning("console %s failed: %s", action, job.error)
            except Exception as exc:  # a thread must not die silently: say it on the page
                job.error = f"{type(exc).__name__}: unexpected failure (see the log)"
                log.exception("console %s failed", action)
            finally:
                job.finished = True
                job._event.set()

        threading.Thread(target=run, name=f"console-{action}-{job.job_id}", daemon=True).start()
        return job

    def get(self, job_id: str) -> Job | None:
        with self._lock:
            return self._jobs.get(job_id)

    def _forget_old(self) -> None:
        cutoff = time.monotonic() - KEEP_SECONDS
        for key in [k for k, j in self._jobs.items() if j.finished and j.started < cutoff]:
            del self._jobs[key]
