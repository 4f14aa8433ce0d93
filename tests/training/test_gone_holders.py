"""A training run, caption pass or download whose process died (a CLI killed mid-run) does not read ``running``
for as long as the app is up: the app's recovery poll marks it interrupted, and Stop ends it at once."""

from __future__ import annotations

import os

from masuka import jobs
from masuka.training.runs import request_stop

DEAD_PID = 2**22 + 1  # past the kernel's pid_max: no process has it


def _running(studio, kind: str, pid: int, **columns) -> int:
    return studio.store.insert("jobs", {"kind": kind, "status": "running", "title": kind, "pid": pid,
                                        "started_at": jobs.now(), **columns})


def test_the_recovery_poll_interrupts_the_jobs_of_a_dead_process_only(studio):
    dead = {kind: _running(studio, kind, DEAD_PID) for kind in jobs.ENDS_WITH_PROCESS}
    queued = studio.store.insert("jobs", {"kind": "train", "status": "queued", "lane": "gpu-train", "pid": DEAD_PID})
    live = _running(studio, "train", os.getppid())  # the process that started these tests lives
    studio.runner().recover()  # what the app runs at start-up and every ADOPT_POLL_S
    for job_id in dead.values():
        row = jobs.get(studio.store, job_id)
        assert (row.status, row.error) == ("interrupted", jobs.GONE)
    assert [jobs.get(studio.store, job).status for job in (queued, live)] == ["queued", "running"]


def test_stop_ends_a_run_whose_process_died_at_once(studio):
    run_id = _running(studio, "train", DEAD_PID, params={"steps": 10}, total=10, step=3)
    request_stop(studio, run_id)
    row = jobs.get(studio.store, run_id)
    assert (row.status, row.error) == ("cancelled", "Stopped by the user.")
