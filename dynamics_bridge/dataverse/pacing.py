"""Pacing per app user: one shared pause and a concurrency bound, and a pool over several users.

Dataverse's service-protection limits are per user (reference dataverse.md §5): when one request
gets a 429, every other request of that app user would get one too, and pushing on lengthens the
penalty. So the pause lives in an :class:`AppUserGate` that every worker of that user consults
before each request, not in the retrying thread. Several app users have separate budgets; an
:class:`AppUserPool` gives each request to the least-loaded user that is not paused.
No network code here: clock and sleep are injectable, so tests run on fake time.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

__all__ = ["MAX_CONCURRENCY", "AppUserGate", "AppUserLane", "AppUserPool"]

#: Dataverse's default concurrency limit per user; the bound never goes above it.
MAX_CONCURRENCY = 52


@dataclass
class AppUserGate:
    """What all workers of one app user share: a pause-until time and a concurrency bound."""

    max_concurrency: int = 8
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep
    paused_until: float = 0.0
    throttled: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _slots: threading.BoundedSemaphore = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if self.max_concurrency < 1:
            raise ValueError("max_concurrency must be at least 1")
        self.max_concurrency = min(self.max_concurrency, MAX_CONCURRENCY)
        self._slots = threading.BoundedSemaphore(self.max_concurrency)

    def pause(self, seconds: float) -> None:
        """Hold back every worker of this user for ``seconds`` (a later pause never shortens)."""
        with self._lock:
            self.throttled += 1
            self.paused_until = max(self.paused_until, self.clock() + seconds)

    def remaining(self) -> float:
        """Seconds until the pause ends (0 when not paused)."""
        return max(self.paused_until - self.clock(), 0.0)

    def wait(self) -> None:
        """Sleep until no pause is in force (a pause may be extended while we sleep)."""
        while (left := self.remaining()) > 0:
            self.sleep(left)

    @contextlib.contextmanager
    def turn(self) -> Iterator[None]:
        """One request's slot: at most ``max_concurrency`` at a time, and never while paused."""
        with self._slots:
            self.wait()
            yield


@dataclass
class AppUserLane:
    """One app user as the client sees it: a name for logs, a token source and its gate."""

    name: str
    token: Callable[[], str]
    gate: AppUserGate
    load: int = 0  # requests given to this user and not yet finished (waiting or in flight)
    requests: int = 0


class AppUserPool:
    """Spreads requests over app users: the least-loaded one that is not paused.

    When every user is paused, the one whose pause ends first is chosen; its gate then waits.
    """

    def __init__(self, lanes: Sequence[AppUserLane]) -> None:
        if not lanes:
            raise ValueError("an app user pool needs at least one app user")
        self.lanes = list(lanes)
        self._lock = threading.Lock()

    @classmethod
    def single(cls, token: Callable[[], str], gate: AppUserGate | None = None) -> AppUserPool:
        return cls([AppUserLane("default", token, gate or AppUserGate())])

    def pick(self) -> AppUserLane:
        """The lane the next request should use (does not reserve it; see :meth:`lease`)."""
        return min(
            self.lanes,
            key=lambda lane: (
                lane.gate.remaining(),
                lane.load / lane.gate.max_concurrency,
                lane.requests,
            ),
        )

    @contextlib.contextmanager
    def lease(self) -> Iterator[AppUserLane]:
        """A lane for one request, holding one of its concurrency slots for the block."""
        with self._lock:
            lane = self.pick()
            lane.load += 1
            lane.requests += 1
        try:
            with lane.gate.turn():
                yield lane
        finally:
            with self._lock:
                lane.load -= 1

    @property
    def throttled(self) -> int:
        """429s seen over all app users."""
        return sum(lane.gate.throttled for lane in self.lanes)
