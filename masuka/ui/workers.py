"""Long-lived daemon threads for work a UI handler streams from (an image generation and its callbacks)."""

from __future__ import annotations

import contextvars
import logging
import queue
import threading
from collections.abc import Callable

log = logging.getLogger(__name__)


class Workers:
    """Runs each submitted call on a thread that is reused once free, starting one only when all are busy.

    A fresh thread per call cost a tiny pipeline about 10 ms a request here: a new thread's state (its memory
    arena, torch's thread team) starts cold. Unlike ``ThreadPoolExecutor``'s, the threads are daemons, so a
    generation or a model load in progress never holds up the process's exit.

    Each call runs in a copy of the context variables of the thread that submitted it, as ``asyncio.to_thread``
    runs its call: Gradio's request (``gradio.context.LocalContext.request``, its event and progress) reaches the
    call as it reaches the handler. On ZeroGPU, ``spaces.GPU`` reads that request to charge the GPU call to the
    visitor's quota (their ``X-IP-Token``); without it every call would draw on the Space's own.
    """

    def __init__(self, name: str):
        self._name = name
        self._calls: queue.SimpleQueue[tuple[contextvars.Context, Callable[[], None]]] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._idle = 0
        self._started = 0

    @property
    def idle(self) -> int:
        """How many threads wait for a call."""
        return self._idle

    def submit(self, call: Callable[[], None]) -> None:
        """Run ``call()`` on a free thread, in a copy of the caller's context variables (its failures are logged:
        ``call`` should report its own)."""
        context = contextvars.copy_context()
        with self._lock:
            if self._idle:
                self._idle -= 1
            else:
                self._started += 1
                threading.Thread(target=self._serve, name=f"{self._name}-{self._started}", daemon=True).start()
        self._calls.put((context, call))

    def _serve(self) -> None:
        while True:
            context, call = self._calls.get()
            try:
                context.run(call)
            except BaseException:
                log.exception("%s: a call failed", self._name)
            del context, call  # an idle thread keeps no request (nor the call's closure) alive
            with self._lock:
                self._idle += 1
