"""Client-side pacing so APSIS rarely has to say 429: sliding windows with an injectable clock.

APSIS limits are counts in a window (reference apsis.md §4): 100 requests/s per account (all API
keys together), 10 consecutive requests/s per profile key, 10/min on the token endpoint, 10/min
for imports. A :class:`Pacer` never lets more than ``limit`` requests start in any ``window``
seconds, per account and per profile, and pauses everyone after a 429. It only *computes* the
delay; the caller sleeps, so this module is pure and imports no I/O library.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable

__all__ = ["Pacer", "Rate", "SlidingWindow"]

#: ``(requests, seconds)``: at most that many requests in any window of that length.
Rate = tuple[int, float]


class SlidingWindow:
    """The start times of the last ``limit`` requests; not thread-safe on its own."""

    def __init__(self, rate: Rate) -> None:
        self.limit, self.window = rate
        self._starts: deque[float] = deque(maxlen=self.limit)

    def earliest(self, at: float) -> float:
        """The first moment from ``at`` on when one more request fits in the window."""
        if len(self._starts) < self.limit:
            return at
        return max(at, self._starts[0] + self.window)

    def commit(self, start: float) -> None:
        self._starts.append(start)

    def idle(self, now: float) -> bool:
        """True when nothing in the window constrains a request at ``now`` any more."""
        return not self._starts or self._starts[-1] <= now - self.window


class Pacer:
    """Reserves a start time for each request under an account window, an optional window per
    profile key, and a pause that a 429 imposes on every worker of the account.

    ``reserve`` books the slot and returns how long to wait before sending; booking both windows
    at the same start time under one lock keeps concurrent workers honest.
    """

    def __init__(
        self,
        account: Rate,
        profile: Rate | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_tracked_profiles: int = 4096,
    ) -> None:
        self.clock = clock
        self._account = SlidingWindow(account)
        self._profile_rate = profile
        self._profiles: dict[str, SlidingWindow] = {}
        self._max_tracked = max_tracked_profiles
        self._paused_until = 0.0
        self._lock = threading.Lock()
        #: How often a 429 paused the account (for logs and the demo).
        self.pauses = 0

    def reserve(self, profile_key: str | None = None) -> float:
        """Book the next allowed start for a request (about ``profile_key``); seconds to wait."""
        with self._lock:
            now = self.clock()
            start = max(now, self._paused_until)
            start = self._account.earliest(start)
            window = None
            if profile_key is not None and self._profile_rate is not None:
                window = self._profiles.get(profile_key)
                if window is None:
                    self._forget_idle(now)
                    window = self._profiles[profile_key] = SlidingWindow(self._profile_rate)
                # earliest() is max(at, a bound), so one pass over both windows settles both.
                start = window.earliest(start)
            self._account.commit(start)
            if window is not None:
                window.commit(start)
            return start - now

    def pause(self, seconds: float) -> None:
        """Nobody on this account starts a request for ``seconds`` (after a 429)."""
        with self._lock:
            self.pauses += 1
            self._paused_until = max(self._paused_until, self.clock() + seconds)

    @property
    def tracked_profiles(self) -> int:
        """Profile windows held in memory (idle ones are dropped as new keys arrive)."""
        return len(self._profiles)

    def _forget_idle(self, now: float) -> None:
        if len(self._profiles) < self._max_tracked:
            return
        for key in [k for k, w in self._profiles.items() if w.idle(now)]:
            del self._profiles[key]
