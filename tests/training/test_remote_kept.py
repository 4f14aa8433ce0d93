"""A remote run whose job the service accepted (and bills) is never dropped: without its key (an app started without
it) or with a key the service refuses (401/403) it stays ``running`` in phase ``waiting``, saying why, and follows
the same job once a key is set; one whose job ended at the service is not sent again at start; a dataset zip a killed
upload left is removed. Against the loopback stand-ins of fal and Replicate, with CLI processes killed for real."""

from __future__ import annotations

import os
import subprocess
import threading

import pytest

from masuka import jobs
from masuka.remote.timing import KEPT
from masuka.testing.training import KEY
from masuka.training.runs import request_stop, resume_price, resume_remote_runs, run_status, start_training

from .conftest import add_dataset
from .test_remote import (
    REPLICATE_OPTIONS,
    ROOT,
    _accepted,
    _cli,
    _kill_after_accept,
    _wait_for,
    options,
    trainer,  # noqa: F401  (the fixture is used by name)
)


def _start(studio, backend: str) -> int:
    extra = REPLICATE_OPTIONS if backend == "replicate" else {}
    return start_training(studio, options(**extra), backend=backend, destination="me/fox-lora")


def _still_trying(studio, run_id: int) -> jobs.JobRow:
    """Wait until the run says it is kept and waiting; returns its row."""
    _wait_for(studio, run_id, lambda row: KEPT in (row["error"] or ""))
    row = jobs.get(studio.store, run_id)
    assert (row.status, row.state["phase"]) == ("running", "waiting"), row
    return row


def test_a_one_off_401_on_a_poll_keeps_the_paid_job(studio, trainer):  # noqa: F811
    server = trainer("fal")
    add_dataset(studio)
    server.fault("poll", 401, body={"detail": "Invalid API key"})
    row = studio.jobs.wait(_start(studio, "fal"), timeout=60)
    assert (row.status, row.error) == ("completed", None), row.error
    assert server.creates == 1 and len(server.uploads) == 1
    assert f"waiting: fal refused the request (HTTP 401): Invalid API key {KEPT}" in row.log
    assert "resuming" not in row.log


@pytest.mark.parametrize("backend, route", [("fal", "poll"), ("fal", "result"), ("replicate", "poll")])
def test_a_key_refused_while_following_the_job_keeps_it_until_a_key_works(studio, trainer, backend,  # noqa: F811
                                                                           route):
    """A key rotated at the service after it accepted the job: every poll (fal: or the fetch of its result) is
    refused; the run waits, and completes with the same job once the key is accepted again."""
    server = trainer(backend)
    add_dataset(studio)
    server.fault(route, 401, body={"detail": "Invalid API key"}, times=10_000)
    run_id = _start(studio, backend)
    row = _still_trying(studio, run_id)
    assert "HTTP 401" in row.error and row.state["ref"]["id"] == "job1"
    assert run_status(studio, run_id)["phase"] == "waiting"
    server.faults.clear()
    row = studio.jobs.wait(run_id, timeout=60)
    assert (row.status, row.error) == ("completed", None), row.error
    assert server.creates == 1 and run_status(studio, run_id)["lora"]


def test_an_app_started_without_the_key_keeps_the_paid_job_until_the_key_is_given(studio, trainer,  # noqa: F811
                                                                                  monkeypatch):
    server = trainer("fal")
    server.release.clear()
    add_dataset(studio)
    _kill_after_accept(studio, server)  # SIGKILL once fal accepted the job and was polled
    monkeypatch.delenv("FAL_KEY")
    studio.store.mark_interrupted()  # what the next start does, then the Train tab follows the run
    [run_id] = resume_remote_runs(studio)
    row = _still_trying(studio, run_id)
    assert row.error.startswith("No API key for fal: set FAL_KEY or save the key in Settings.")
    assert row.state["ref"]["id"] == "job1" and server.creates == 1
    monkeypatch.setenv("FAL_KEY", KEY)
    server.release.set()
    row = studio.jobs.wait(run_id, timeout=60)
    assert (row.status, row.error) == ("completed", None), row.error
    assert server.creates == 1 and len(server.uploads) == 1
    assert row.log.count("resuming: polling fal job job1") == 1


def test_stop_while_waiting_for_a_key_cancels_at_the_service_once_a_key_is_set(studio, trainer,  # noqa: F811
                                                                               monkeypatch):
    server = trainer("replicate")
    server.release.clear()
    add_dataset(studio)
    run_id = _start(studio, "replicate")
    _wait_for(studio, run_id, _accepted)
    server.fault("poll", 403, body={"detail": "You did not pass a valid authentication token"}, times=10_000)
    _still_trying(studio, run_id)
    monkeypatch.delenv("REPLICATE_API_TOKEN")  # and the key is taken away: Stop cannot cancel at the service
    request_stop(studio, run_id)
    row = studio.jobs.wait(run_id, timeout=30)
    assert row.status == "interrupted" and row.state["ref"]["id"] == "job1"
    assert row.error.startswith("Stop could not cancel the job at Replicate (No API key for Replicate")
    assert not server.jobs["job1"]["cancelled"]
    monkeypatch.setenv("REPLICATE_API_TOKEN", KEY)
    assert request_stop(studio, run_id)["status"] == "cancelled"  # Stop again, with a key: cancelled there
    assert server.jobs["job1"]["cancelled"] and server.creates == 1


@pytest.mark.parametrize("backend", ["fal", "replicate"])
def test_a_run_whose_job_ended_at_the_service_is_not_sent_again_at_start(studio, trainer, backend):  # noqa: F811
    """A process killed after the service said the job failed, before the run's end was written (an earlier version
    wrote them apart) leaves an ``interrupted`` run in phase ``failed``: the next start leaves it to its user's
    confirmed Resume (a new, billed job) instead of sending it again by itself."""
    server = trainer(backend)
    server.fail_jobs = True
    add_dataset(studio)
    row = studio.jobs.wait(_start(studio, backend), timeout=60)
    assert (row.status, row.state["phase"], row.state["ref"]["id"]) == ("failed", "failed", "job1")
    studio.store.update("jobs", row.id, status="interrupted", error="the app stopped before this finished")
    server.fail_jobs = False
    assert resume_remote_runs(studio) == []
    assert studio.store.get("jobs", row.id)["status"] == "interrupted" and server.creates == 1
    assert resume_price(studio, row.id) == (backend, pytest.approx(row.cost_usd))  # its Resume asks first


def test_a_run_cancelled_at_the_service_records_its_phase_and_end_together(studio, trainer):  # noqa: F811
    server = trainer("fal")
    server.release.clear()
    add_dataset(studio)
    run_id = _start(studio, "fal")
    _wait_for(studio, run_id, _accepted)
    request_stop(studio, run_id)
    row = studio.jobs.wait(run_id, timeout=30)
    assert (row.status, row.state["phase"]) == ("cancelled", "cancelled") and server.cancels == 1
    studio.store.update("jobs", run_id, status="interrupted")
    assert resume_remote_runs(studio) == [] and server.creates == 1


def test_a_dataset_zip_a_killed_upload_left_is_removed_at_the_next_start(studio, trainer, monkeypatch):  # noqa: F811
    server = trainer("fal")
    add_dataset(studio)
    uploading, let_go = threading.Event(), threading.Event()
    take_fault = server.take_fault

    def slow_upload(route: str):
        if route == "upload":  # the zip is being sent: the process is killed now
            uploading.set()
            let_go.wait(60)
        return take_fault(route)

    monkeypatch.setattr(server, "take_fault", slow_upload)
    child = subprocess.Popen(_cli(studio.config.data_dir), cwd=ROOT, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL, env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        assert uploading.wait(120)
        assert list(studio.config.data_dir.rglob("dataset.zip"))  # it exists while it uploads
    finally:
        child.kill()
        child.wait(60)
        let_go.set()
    [row] = studio.store.find("jobs", "kind = 'train'")
    studio.store.mark_interrupted()  # what the next start does
    assert jobs.get(studio.store, row["id"]).status == "interrupted"
    assert resume_remote_runs(studio) == []  # nothing was sent: nothing to follow
    assert not list(studio.config.data_dir.rglob("dataset.zip")) and server.creates == 0
