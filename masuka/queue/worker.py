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
import time
import traceback
from collections.abc import Callable

from masuka.errors import Cancelled, MasukaError
from masuka.queue.context import Paused, QueueContext, TurnOver
from masuka.queue.jobs import claim, finish, recover
from masuka.queue.tasks import TASKS
from masuka.store import busy
from masuka.studio import Studio

log = logging.getLogger(__name__)
POLL_S = 1.0
#: how long closing the app waits for the jobs being run to stop (a step, a model load that cannot be cut short)
STOP_WAIT_S = 30.0
#: the first and the longest pause before a job's end is written again while the database is busy
RECORD_RETRY_S = 0.5
RECORD_RETRY_MAX_S = 30.0
#: why a job the database's lock cut short waits again
BUSY = "the database was busy (another process held it); the job resumes from its finished images"


def run_job(studio: Studio, job: dict, ctx: QueueContext | None = None) -> str:
    """Run a claimed job's task to its end and record the outcome; returns the final status. A job its worker
    stopped (:meth:`QueueContext.close`) stays ``running`` for :meth:`QueueWorker.stop` to leave as a restart
    would find it (``interrupted``); one that failed or completed meanwhile is recorded so. A job that gave its turn
    to another user's (:class:`TurnOver`) is ``queued`` again: it returns ``"queued"``."""
    ctx = ctx or QueueContext(studio, job["id"])
    try:
        TASKS[job["task"]](studio, job, ctx)
    except TurnOver:  # queued again (by end_turn) for another user's turn: nothing more to record
        return "queued"
    except Paused:
        status, error = "paused", None
    except Cancelled as stopped:
        status, error = "cancelled", str(stopped)
    except MasukaError as failure:
        status, error = "failed", str(failure)
    except Exception as failure:  # a bug or a fault: recorded, never left "running"
        if busy(failure):  # another process held the database: the job resumes from its finished images
            log.warning("queue job %s interrupted: %s", job["id"], failure)
            _record(studio, job["id"], "interrupted", BUSY)
            return "interrupted"
        log.exception("queue job %s failed", job["id"])
        ctx.log(traceback.format_exc())
        status, error = "failed", f"{type(failure).__name__}: {failure}"
    else:
        status, error = "completed", None
    if ctx.closing.is_set() and status == "cancelled":  # ended by the worker's stop (a cancel asked meanwhile: recover)
        return "interrupted"
    _record(studio, job["id"], status, error)
    return status


def _record(studio: Studio, job_id: int, status: str, error: str | None) -> None:
    """:func:`finish` the job, trying again after a growing pause while the database is busy: a job is never left
    ``running`` under a live worker, which nothing would recover."""
    pause = RECORD_RETRY_S
    while True:
        try:
            finish(studio, job_id, status, error)
            return
        except sqlite3.OperationalError as failure:
            if not busy(failure):
                raise
            log.warning("queue job %s could not be recorded as %s (%s); trying again", job_id, status, failure)
        time.sleep(pause)
        pause = min(2 * pause, RECORD_RETRY_MAX_S)


def work_until_empty(studio: Studio, on_job: Callable[[dict, str], None] | None = None) -> int:
    """Work waiting jobs one after another until none waits (paused jobs stay); returns how many turns ran (a job
    that gave its turn to another user's and was taken up again counts once a turn). ``on_job`` is told each turn's
    job and how it ended (``"queued"``: its turn ended, and it waits again)."""
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
        self._working: list[QueueContext] = []  # the jobs being run, one per busy thread
        self._stopped: list[int] = []  # the jobs the worker's stop ended (left running for stop() to interrupt)
        self._lock = threading.Lock()

    def start(self) -> "QueueWorker":
        for slot in range(self.studio.config.gpu_concurrency):
            thread = threading.Thread(target=self._loop, name=f"queue-worker-{slot}", daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self, wait_s: float = STOP_WAIT_S) -> None:
        """Claim nothing more and end the jobs being run at their next step (or their wait for the GPU or a
        download); those whose threads end within ``wait_s`` are ``interrupted``, as a restart finds them: the next
        worker resumes them from their finished images. A job still running then is logged and left to end on its
        own (a restart, or a studio opened again, finds it interrupted). Call it before the studio closes."""
        with self._lock:
            self._stopping.set()
            for ctx in self._working:
                ctx.close()
        deadline = time.monotonic() + wait_s
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        with self._lock:
            stopped, running = list(self._stopped), [ctx.job_id for ctx in self._working]
        if running:
            log.warning("queue job(s) %s did not stop within %.0f s of the app closing; left to end on their own",
                        running, wait_s)
        with self.studio.store.transaction():
            recover(self.studio, stopped)

    def _loop(self) -> None:
        while not self._stopping.is_set():
            try:
                job = claim(self.studio, cancel_off_list=True)  # the app's sign-in list is the studio's
                if job is not None:
                    self._run(job)
                    continue
            except sqlite3.ProgrammingError:  # the studio was closed: the app is shutting down
                return
            except Exception:  # the database busy for a moment: log, wait, try again
                log.exception("the queue worker could not claim a job")
            self._stopping.wait(self.poll_s)

    def _run(self, job: dict) -> None:
        ctx = QueueContext(self.studio, job["id"])
        with self._lock:
            self._working.append(ctx)
            if self._stopping.is_set():  # claimed as the worker stopped
                ctx.close()
        status = None
        try:
            status = run_job(self.studio, job, ctx)
        finally:
            with self._lock:  # in one step, so stop() finds the job either running or ended
                self._working.remove(ctx)
                if status == "interrupted" and ctx.closing.is_set():  # not one a busy database cut short
                    self._stopped.append(job["id"])
