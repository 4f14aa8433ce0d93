"""Sign-in throttling: after repeated wrong passwords an account, and the address they came from, wait a while.

After ``attempts`` failures in a row, an account (or a client address) is locked for ``lockout_s`` seconds;
each further failure locks it again, so guessing costs one try per lockout. A right password clears the account's
count only: the address's stays, or someone guessing other accounts would reset it by signing in to their own.
Failures are forgotten after a quiet hour. A lockout is never forgotten before it ends: when the table is full,
the oldest failures that earned no lockout make room, so a flood of made-up names cannot free a locked account.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

log = logging.getLogger(__name__)
FORGET_S = 3600.0
MAX_TRACKED = 10_000


@dataclass
class Strikes:
    failures: int = 0
    last: float = 0.0
    locked_until: float = 0.0


class LoginThrottle:
    """Failed sign-ins per account and per client address, and the lockouts they earn."""

    def __init__(self, attempts: int = 5, lockout_s: float = 60.0, clock: Callable[[], float] = time.monotonic):
        self.attempts = max(1, attempts)
        self.lockout_s = lockout_s
        self.clock = clock
        self._strikes: dict[tuple[str, str], Strikes] = {}
        self._lock = threading.Lock()

    def wait_s(self, user: str, client: str) -> int:
        """Seconds (rounded up) before this account may try again from this address; 0: it may now."""
        now = self.clock()
        with self._lock:
            waits = [s.locked_until - now for key in _keys(user, client) if (s := self._strikes.get(key))]
        return max([0, *(math.ceil(w) for w in waits)])

    def failed(self, user: str, client: str) -> None:
        now = self.clock()
        with self._lock:
            self._forget(now)
            for key in _keys(user, client):
                strikes = self._strikes.setdefault(key, Strikes())
                strikes.failures += 1
                strikes.last = now
                if strikes.failures >= self.attempts:
                    strikes.locked_until = now + self.lockout_s
                    log.warning("sign-in locked for %.0f s: %s %s after %d failed attempts", self.lockout_s,
                                key[0], _shown(key[1]), strikes.failures)
        log.warning("failed sign-in for account %s from %s", _shown(user), _shown(client))

    def succeeded(self, user: str) -> None:
        """A right password for ``user``: the account's failures are forgotten (not its address's)."""
        with self._lock:
            self._strikes.pop(("account", user), None)

    def status(self) -> list[dict]:
        """Accounts and addresses with recent failures: kind, name, failures, seconds still locked."""
        now = self.clock()
        with self._lock:
            self._forget(now)
            return [{"kind": kind, "name": name, "failures": s.failures,
                     "locked_for_s": max(0, round(s.locked_until - now))}
                    for (kind, name), s in sorted(self._strikes.items(), key=lambda item: -item[1].last)]

    def _forget(self, now: float) -> None:
        for key in [k for k, s in self._strikes.items() if now - s.last > FORGET_S and now >= s.locked_until]:
            del self._strikes[key]
        while len(self._strikes) >= MAX_TRACKED:
            unlocked = [key for key, s in self._strikes.items() if now >= s.locked_until]
            if not unlocked:  # every entry is a running lockout (each took ``attempts`` failures): keep them all
                return
            del self._strikes[min(unlocked, key=lambda k: self._strikes[k].last)]


def _keys(user: str, client: str) -> list[tuple[str, str]]:
    """What a failure counts against: the account named (none for a wrong API token, which names no account) and
    the address."""
    return [("account", user)] * bool(user) + [("address", client)]


def _shown(text: str) -> str:
    """A name typed by a stranger, safe to put in a log line."""
    return repr(text[:64])
