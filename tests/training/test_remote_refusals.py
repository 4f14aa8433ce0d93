"""Which refusals keep a paid remote job waiting and which end the run: a 401/403 on a request that carries the key
(poll, result) waits, said once; one on the keyless download of the LoRA (an expired signed URL) fails the run, and
its Resume fetches it again. An interrupted run whose job ended at the service runs nowhere: History deletes it and
its Stop sends nothing. Against the loopback stand-in of fal."""

from __future__ import annotations

import pytest

from masuka import jobs
from masuka.errors import InvalidInput
from masuka.history.actions import delete_entries
from masuka.training.runs import request_stop, resume_run, run_status, still_runs_at

from .conftest import add_dataset
from .test_remote import trainer  # noqa: F401  (the fixture is used by name)
from .test_remote_kept import _start


def test_a_refused_download_fails_the_run_and_its_resume_fetches_the_lora(studio, trainer):  # noqa: F811
    server = trainer("fal")
    add_dataset(studio)
    server.fault("download", 403, body={"detail": "Request has expired"})
    row = studio.jobs.wait(_start(studio, "fal"), timeout=60)
    assert row.status == "failed" and "403" in row.error and "Request has expired" in row.error, row.error
    assert "waiting:" not in row.log
    assert len(server.requests_to("/files/job1")) == 1, "downloaded once, not again and again"
    resume_run(studio, row.id)
    row = studio.jobs.wait(row.id, timeout=60)
    assert (row.status, row.error) == ("completed", None), row.error
    assert server.creates == 1 and run_status(studio, row.id)["lora"]


def test_a_key_refused_twice_while_following_the_job_is_said_once(studio, trainer):  # noqa: F811
    """A 401 on a poll, then good polls (which clear the row's error), then a 401 on the fetch of the result."""
    server = trainer("fal")
    add_dataset(studio)
    server.fault("poll", 401, body={"detail": "Invalid API key"})
    server.fault("result", 401, body={"detail": "Invalid API key"})
    row = studio.jobs.wait(_start(studio, "fal"), timeout=60)
    assert (row.status, row.error) == ("completed", None), row.error
    assert row.log.count("waiting:") == 1, row.log
    assert server.creates == 1


def _ended_and_interrupted(studio, server) -> jobs.JobRow:
    """A run whose job failed at fal, left ``interrupted`` (its Resume queued, the app stopped before it ran)."""
    server.fail_jobs = True
    add_dataset(studio)
    row = studio.jobs.wait(_start(studio, "fal"), timeout=60)
    assert (row.status, row.state["phase"], row.state["ref"]["id"]) == ("failed", "failed", "job1")
    studio.store.update("jobs", row.id, status="interrupted")
    return jobs.get(studio.store, row.id)


def test_an_interrupted_run_whose_job_ended_at_the_service_can_be_deleted(studio, trainer):  # noqa: F811
    row = _ended_and_interrupted(studio, trainer("fal"))
    assert still_runs_at(row) is None
    assert "Deleted 1 entry" in delete_entries(studio, "local", False, [f"j{row.id}"])
    assert studio.store.get("jobs", row.id) is None


def test_stopping_an_interrupted_run_whose_job_ended_sends_no_cancel(studio, trainer):  # noqa: F811
    server = trainer("fal")
    row = _ended_and_interrupted(studio, server)
    reason = row.error
    with pytest.raises(InvalidInput, match="nothing to stop"):  # Stop in the Train tab, the CLI: nothing to cancel
        request_stop(studio, row.id)
    row = jobs.get(studio.store, row.id)
    assert server.cancels == 0 and row.status == "interrupted" and row.error == reason  # its reason stays
    assert "reports the training failed" in reason
