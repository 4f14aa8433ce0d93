"""What work of this process is using (LoRA files, model repos), counted per thing, so that deleting one can be
refused meanwhile; a deletion takes :attr:`Holds.lock` from its check to its last removed file, so no work takes
a thing that is being deleted."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Hashable, Iterable, Iterator
from contextlib import contextmanager
from typing import Generic, TypeVar

T = TypeVar("T", bound=Hashable)


class Holds(Generic[T]):
    """Things held by running work; several works may hold the same thing."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self._held: Counter[T] = Counter()

    @contextmanager
    def holding(self, things: Iterable[T], check: Callable[[T], None] | None = None) -> Iterator[None]:
        """Hold ``things`` until the block ends; ``check(thing)`` runs under the lock first (to refuse one
        deleted since the work was checked)."""
        held = list(things)
        with self.lock:
            for thing in held if check else ():
                check(thing)
            self._held.update(held)
        try:
            yield
        finally:
            with self.lock:
                self._held.subtract(held)
                self._held = +self._held  # drops the things no work holds any more

    def held(self) -> set[T]:
        """What is held now (read under :attr:`lock` to act on it)."""
        return set(self._held)
