"""What a queued image task gets to talk to its ``queue`` row: pause and cancel requests, progress and a log."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from masuka.errors import Cancelled
from masuka.store import now
from masuka.studio import Studio

log = logging.getLogger(__name__)


class Paused(Exception):
    """The user paused a running job: it stops between images and waits to be resumed."""


class TurnOver(Exception):
    """A running job gave its turn to another user's waiting job between images: it is ``queued`` again
    (:func:`masuka.queue.jobs.end_turn`) and resumes from its finished images."""


@dataclass
class QueueContext:
    """What a task gets to talk to its row: stop requests, progress and a log."""

    studio: Studio
    job_id: int
    stop: threading.Event = field(default_factory=threading.Event)  # set mid-image when the job is cancelled
    #: set when the worker stops (the app closes): the job ends at its next step, to be resumed as after a restart
    closing: threading.Event = field(default_factory=threading.Event)
    #: when this turn's first image was finished (:func:`masuka.queue.jobs.turn_clock`): the turn's clock, which a
    #: model load or a wait for the GPU before it does not run; None until then
    turn_began: float | None = None

    def close(self) -> None:
        """The worker stops: end the job at its next step (or its wait for the GPU) without finishing it."""
        self.closing.set()
        self.stop.set()

    def check_stop(self) -> None:
        """Between images: raise :class:`Cancelled` or :class:`Paused` when the user asked for it (or the worker
        stops)."""
        control = self._control()
        if control == "cancel":
            raise Cancelled("the images already made are kept")
        if control == "pause":
            raise Paused

    def stop_asked(self) -> bool:
        """Whether the user asked to cancel or pause (or the worker stops): the check a job makes while it waits
        for the GPU."""
        return self._control() in ("cancel", "pause")

    @contextmanager
    def waiting_for_gpu(self) -> Iterator[None]:
        """Around work that waits for the GPU asking :meth:`stop_asked`: the wait ends with :class:`Cancelled`,
        which a pause turns into :class:`Paused` (the job waits to be resumed, its finished images kept)."""
        try:
            yield
        except Cancelled:
            if self._control() == "pause":
                raise Paused from None
            raise

    def on_step(self, _index: int, _step: int, _total: int) -> None:
        """Within an image (a step callback): a cancel stops at the next step; a pause waits for the image."""
        if self._control() == "cancel":
            self.stop.set()

    def progress(self, done: int, total: int) -> None:
        self.studio.store.update("queue", self.job_id, done=done, total=total, updated_at=now())

    def log(self, message: str) -> None:
        """Append a line to the job's log (shown in the Queue view and ``queue list --json``)."""
        log.info("queue job %s: %s", self.job_id, message)
        row = self.studio.store.get("queue", self.job_id) or {}
        self.studio.store.update("queue", self.job_id, log=(row.get("log") or "") + message.rstrip() + "\n")

    def _control(self) -> str | None:
        if self.closing.is_set():
            return "cancel"
        row = self.studio.store.get("queue", self.job_id)
        return "cancel" if row is None else row["control"]
