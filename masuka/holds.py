"""What running work is using (LoRA files, model repos), counted per thing, so that deleting one can be refused
meanwhile, whichever process on the data dir (the app, the CLI) runs the work or the deletion.

Each hold is counted in this process and written as a ``holds`` row of the store (kind, key, this process's
``pid`` and :data:`TOKEN`): an insert per thing as it starts, one delete as it ends. A row whose holder is gone
(:func:`~masuka.store.holder_alive`: killed before it could remove it) is ignored, and deleted by the next deletion
that sees it. A deletion (:meth:`Holds.deleting`) keeps the lock of its :class:`Holds` and a write transaction of
the store from its check to its last removed file (other writers of the database wait that long), so no work takes
a thing that is being deleted: work that starts meanwhile, in this process or another, waits for the deletion's
end, then finds the thing gone (its ``check``; a model repo is fetched again)."""

from __future__ import annotations

import os
import threading
import uuid
from collections import Counter
from collections.abc import Callable, Hashable, Iterable, Iterator
from contextlib import contextmanager
from typing import Generic, TypeVar

from masuka.store import Store, holder_alive

T = TypeVar("T", bound=Hashable)
TABLE = "holds"
#: this process's holder token in its ``holds`` rows, with its pid (a later process given the same pid differs)
TOKEN = uuid.uuid4().hex


class Holds(Generic[T]):
    """Things of one ``kind`` held by running work; several works may hold the same thing. A thing is stored as
    ``str(thing)`` and read back with ``parse``."""

    def __init__(self, kind: str, parse: Callable[[str], T]) -> None:
        self.kind = kind
        self.parse = parse
        self._lock = threading.Lock()
        self._held: Counter[T] = Counter()

    @contextmanager
    def holding(self, store: Store, things: Iterable[T], check: Callable[[T], None] | None = None) -> Iterator[None]:
        """Hold ``things`` until the block ends, visible to the deletions of every process on ``store``;
        ``check(thing)`` runs once no deletion can be under way (to refuse one deleted since the work was
        checked)."""
        held = list(things)
        if not held:
            yield
            return
        with self._lock, store.transaction():
            for thing in held if check else ():
                check(thing)
            rows = [store.insert(TABLE, {"kind": self.kind, "key": str(thing), "holder": TOKEN,
                                         "pid": os.getpid()}) for thing in held]
            self._held.update(held)
        try:
            yield
        finally:
            with self._lock:
                self._held.subtract(held)
                self._held = +self._held  # drops the things no work holds any more
                store.delete_where(TABLE, f"id in ({', '.join('?' * len(rows))})", rows)

    @contextmanager
    def deleting(self, store: Store) -> Iterator[set[T]]:
        """What is held now, by this process or a live other one on ``store``, for a deletion that runs in the
        block: no work takes a hold before it ends."""
        with self._lock:
            self._elsewhere(store)  # dead holders' rows go now: a refusal's rollback would keep them
            with store.transaction():
                yield set(self._held) | self._elsewhere(store)

    def _elsewhere(self, store: Store) -> set[T]:
        """The things other live processes hold on ``store``; the rows of holders that are gone are deleted."""
        rows = store.query(f"select id, key, holder, pid from {TABLE} where kind = ? and not (holder = ? and "
                           "pid = ?)", [self.kind, TOKEN, os.getpid()])
        gone = [row["id"] for row in rows if not holder_alive(row["pid"], row["holder"])]
        if gone:
            store.delete_where(TABLE, f"id in ({', '.join('?' * len(gone))})", gone)
        return {self.parse(row["key"]) for row in rows if row["id"] not in gone}
