"""Background work that outlives a click: each job is a row in ``jobs`` that this process owns.

:class:`JobRunner` runs a job function in a thread, keeps its row's status honest (``running`` →
``completed`` / ``failed`` / ``cancelled``), and runs jobs that share a lane (the GPU lane for training,
for instance) one after another.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
import traceback
from collections.abc import Callable

from masuka.errors import Cancelled, GPUBusy, MasukaError, as_disk_full
from masuka.store import UNFINISHED, Store, now

log = logging.getLogger(__name__)
JobFunction = Callable[[int], object]


class JobRunner:
    """Runs job functions in background threads; lanes serialise jobs that must not overlap."""

    def __init__(self, store: Store, max_queued_per_user: int | None = None):
        self.store = store
        self.max_queued_per_user = max_queued_per_user
        self._lanes: dict[str, queue.Queue] = {}
        self._threads: dict[int, threading.Thread] = {}
        self._lock = threading.Lock()

    def submit(self, job_id: int, work: JobFunction, lane: str | None = None) -> None:
        """Start ``work(job_id)`` now, or after the jobs already queued in ``lane``.

        With a per-user limit, a job whose owner already has that many jobs queued or running is refused
        (its row becomes ``failed`` with the reason) so one person cannot fill the GPU queue.
        """
        self._check_fair_share(job_id)
        if lane is None:
            thread = threading.Thread(target=self._run, args=(job_id, work), name=f"job-{job_id}", daemon=True)
            with self._lock:
                self._threads[job_id] = thread
            thread.start()
            return
        with self._lock:
            lane_queue = self._lanes.get(lane)
            if lane_queue is None:
                lane_queue = self._lanes[lane] = queue.Queue()
                threading.Thread(target=self._drain, args=(lane_queue,), name=f"lane-{lane}", daemon=True).start()
        self.store.update("jobs", job_id, status="queued")
        lane_queue.put((job_id, work))

    def _check_fair_share(self, job_id: int) -> None:
        if not self.max_queued_per_user:
            return
        row = self.store.get("jobs", job_id)
        if row is None or row["started_at"]:  # resuming started work (after a restart) is not a new request
            return
        waiting = self.store.count("jobs", f"owner = ? and id != ? and status in ({','.join('?' * len(UNFINISHED))})",
                                   [row["owner"], job_id, *UNFINISHED])
        if waiting >= self.max_queued_per_user:
            message = (f"You already have {waiting} jobs queued or running (the limit is "
                       f"{self.max_queued_per_user} per user): wait for one to finish or stop one.")
            self.store.update("jobs", job_id, status="failed", error=message, finished_at=now())
            raise GPUBusy(message)

    def wait(self, job_id: int, timeout: float | None = None) -> dict | None:
        """Block until the job's row leaves queued/running (for the CLI and tests); return the row."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            row = self.store.get("jobs", job_id)
            if row is None or row["status"] not in UNFINISHED:
                return row
            if deadline is not None and time.monotonic() > deadline:
                return row
            time.sleep(0.1)

    def _drain(self, lane_queue: queue.Queue) -> None:
        while True:
            job_id, work = lane_queue.get()
            self._run(job_id, work)

    def _run(self, job_id: int, work: JobFunction) -> None:
        row = self.store.get("jobs", job_id)
        if row is None or row["status"] in ("cancelled", "completed"):
            return
        if row["stop_requested"]:
            self.store.update("jobs", job_id, status="cancelled", finished_at=now())
            return
        self.store.update("jobs", job_id, status="running", pid=os.getpid(), started_at=row["started_at"] or now(),
                          error=None)
        try:
            work(job_id)
        except Cancelled as error:
            self._finish(job_id, "cancelled", str(error))
        except MasukaError as error:
            self._finish(job_id, "failed", str(error))
        except Exception as error:  # a bug or a fault: record it, never leave the row "running"
            log.exception("job %s failed", job_id)
            full = as_disk_full(error)
            self._finish(job_id, "failed", str(full) if full else f"{type(error).__name__}: {error}",
                         traceback.format_exc())
        else:
            row = self.store.get("jobs", job_id)
            if row and row["status"] == "running":
                self._finish(job_id, "completed", None)

    def _finish(self, job_id: int, status: str, error: str | None, detail: str | None = None) -> None:
        fields = {"status": status, "error": error, "finished_at": now()}
        if detail:
            row = self.store.get("jobs", job_id)
            fields["log"] = ((row or {}).get("log") or "") + detail
        self.store.update("jobs", job_id, **fields)
