"""Resident models: pipelines and captioners load on first use and stay for the next request.

One model per GPU slot at most (``capacity``, ``MASUKA_GPU_CONCURRENCY``). A job holding a GPU slot works
inside :meth:`ModelCache.session`: the model it gets is its own until the session ends, so a second job never
shares its pipeline (LoRA adapters, scheduler state) nor frees it under it; the second job gets another
resident copy, or waits for one to be free. Loading a model when the cache is full frees an idle one first, so
switching never holds more models than slots.
"""

from __future__ import annotations

import gc
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

#: held while a model is loaded or built, or adapters are built into one (:func:`building`)
_BUILDING = threading.RLock()


@contextmanager
def building() -> Iterator[None]:
    """Hold the process's model-building lock: diffusers patches torch for the whole process while it loads a
    model (accelerate's ``init_empty_weights``, its ``no_init_weights``), so a module built in another thread
    meanwhile (a LoRA's layers, a tiny model) lands on the ``meta`` device, and two loads at once can leave the
    patch in place for good. Every load, and every adapter built into a loaded model, runs inside it."""
    with _BUILDING:
        yield


def _new_building_lock() -> None:
    """A forked process (a ZeroGPU worker) gets a free lock: the thread that held the parent's is not there."""
    global _BUILDING
    _BUILDING = threading.RLock()


os.register_at_fork(after_in_child=_new_building_lock)


@dataclass(eq=False)
class _Resident:
    key: tuple
    model: Any
    holder: int | None = None  # the thread whose session uses it
    pinned: bool = False  # kept whatever else is asked for (a ZeroGPU Space's model), outside the capacity


class ModelCache:
    """Keeps up to ``capacity`` loaded models, keyed by what each was loaded from and how."""

    def __init__(self, capacity: int = 1) -> None:
        self.capacity = max(1, capacity)
        self._resident: list[_Resident] = []  # least recently used first
        self._changed = threading.Condition(threading.RLock())
        self._sessions = threading.local()
        self._pid = os.getpid()
        self.loads = 0

    @contextmanager
    def session(self) -> Iterator[None]:
        """Models got by this thread inside the session are its own until it ends (they stay loaded)."""
        outer = getattr(self._sessions, "active", False)
        self._sessions.active = True
        try:
            yield
        finally:
            self._sessions.active = outer
            if not outer:
                with self._changed:
                    for resident in self._resident:
                        if resident.holder == threading.get_ident():
                            resident.holder = None
                    self._changed.notify_all()

    def get(self, key: tuple, loader: Callable[[], Any]) -> Any:
        """Return a resident model for ``key`` that no other session uses, or free an idle one (this thread's
        other model first) and call ``loader``; waits while every slot is used by other sessions."""
        me = threading.get_ident()
        dropped = False
        with self._changed:
            for resident in [r for r in self._resident if r.holder == me]:
                if resident.key == key:
                    return self._use(resident)
                self._drop(resident)  # one model per job: switching frees the one it had
                dropped = True
            while True:
                idle = [r for r in self._resident if r.holder is None]
                found = next((r for r in idle if r.key == key), None)
                if found is not None:
                    return self._use(found)
                if sum(not r.pinned for r in self._resident) < self.capacity:
                    break
                if droppable := [r for r in idle if not r.pinned]:
                    self._drop(droppable[0])
                    dropped = True
                else:
                    self._changed.wait()
            resident = _Resident(key, None, holder=me)  # its slot, taken while it loads (lock not held)
            self._resident.append(resident)
        if dropped:  # what was dropped above goes before the new model comes (outside the lock); a collection
            self._free_memory()  # is slow, so a load with room skips it
        try:
            with building():
                model = loader()
        except BaseException:
            with self._changed:
                self._resident.remove(resident)
                self._changed.notify_all()
            self._free_memory()  # what the failed load had taken
            raise
        with self._changed:
            resident.model = model
            self.loads += 1
            return self._use(resident)

    @property
    def key(self) -> tuple | None:
        """The key of the model got last, while it is loaded."""
        return next((r.key for r in reversed(self._resident) if r.model is not None), None)

    def release(self) -> None:
        """Drop this thread's model and every idle one, and give their memory back (models other sessions use
        stay, and a pinned one)."""
        with self._changed:
            dropped = [r for r in self._resident if r.holder in (None, threading.get_ident()) and not r.pinned]
            for resident in dropped:
                self._drop(resident)
            if dropped:
                self._free_memory()

    def pin(self, key: tuple) -> None:
        """Keep the resident model of ``key`` for good (a ZeroGPU Space's model, placed at start-up): never
        freed by a switch or :meth:`release`, and not counted against the capacity."""
        with self._changed:
            for resident in self._resident:
                if resident.key == key:
                    resident.pinned = True

    def in_this_process(self) -> None:
        """In a process forked from the one that made the cache (a ZeroGPU worker): locks, sessions and holders
        of its own, since the parent's threads (one may have held the lock, or a model) do not exist here."""
        if self._pid == os.getpid():
            return
        self._pid = os.getpid()
        self._changed = threading.Condition(threading.RLock())
        self._sessions = threading.local()
        self._resident = [r for r in self._resident if r.model is not None]  # loads cut off by the fork
        for resident in self._resident:
            resident.holder = None

    def _use(self, resident: _Resident) -> Any:
        resident.holder = threading.get_ident() if getattr(self._sessions, "active", False) else None
        self._resident.remove(resident)
        self._resident.append(resident)
        return resident.model

    def _drop(self, resident: _Resident) -> None:
        self._resident.remove(resident)
        resident.model = None
        self._changed.notify_all()

    @staticmethod
    def _free_memory() -> None:
        """Give the memory of dropped models back (once after a set of drops: a collection is slow)."""
        gc.collect()
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
