"""Working the queue: a claimed job runs its task with one :class:`~masuka.queue.context.QueueContext`;
workers loop over claims.

The app starts a :class:`QueueWorker` (one thread per GPU slot); ``python -m masuka queue run`` calls
:func:`work_until_empty` instead. Queued work takes the GPU one image at a time as background work, so
interactive requests go first (see :meth:`masuka.gpu.GPURunner.hold`).
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import traceback
from collections.abc import Callable

from masuka.errors import Cancelled, MasukaError
from masuka.queue.context import Paused, QueueContext
from masuka.queue.jobs import claim, finish
from masuka.queue.tasks import TASKS
from masuka.studio import Studio

log = logging.getLogger(__name__)
POLL_S = 1.0


def run_job(studio: Studio, job: dict) -> str:
    """Run a claimed job's task to its end and record the outcome; returns the final status."""
    ctx = QueueContext(studio, job["id"])
    try:
        TASKS[job["task"]](studio, job, ctx)
    except Paused:
        status, error = "paused", None
    except Cancelled as stopped:
        status, error = "cancelled", str(stopped)
    except MasukaError as failure:
        status, error = "failed", str(failure)
    except Exception as failure:  # a bug or a fault: recorded, never left "running"
        log.exception("queue job %s failed", job["id"])
        ctx.log(traceback.format_exc())
        status, error = "failed", f"{type(failure).__name__}: {failure}"
    else:
        status, error = "completed", None
    finish(studio, job["id"], status, error)
    return status


def work_until_empty(studio: Studio, on_job: Callable[[dict, str], None] | None = None) -> int:
    """Work waiting jobs one after another until none waits (paused jobs stay); returns how many ran."""
    count = 0
    while (job := claim(studio)) is not None:
        status = run_job(studio, job)
        count += 1
        if on_job:
            on_job(job, status)
    return count


class QueueWorker:
    """Background threads, one per GPU slot, that claim and run jobs while the app is up."""

    def __init__(self, studio: Studio, poll_s: float = POLL_S):
        self.studio = studio
        self.poll_s = poll_s
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self) -> "QueueWorker":
        for slot in range(self.studio.config.gpu_concurrency):
            thread = threading.Thread(target=self._loop, name=f"queue-worker-{slot}", daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self) -> None:
        """Claim nothing more; a job being worked finishes its current image first."""
        self._stopping.set()

    def _loop(self) -> None:
        while not self._stopping.is_set():
            try:
                job = claim(self.studio)
                if job is not None:
                    run_job(self.studio, job)
                    continue
            except sqlite3.ProgrammingError:  # the studio was closed: the app is shutting down
                return
            except Exception:  # the database busy for a moment: log, wait, try again
                log.exception("the queue worker could not claim a job")
            self._stopping.wait(self.poll_s)
