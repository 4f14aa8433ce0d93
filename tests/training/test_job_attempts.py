"""A job resumed while the thread of its previous attempt is still ending: that thread's end write and its exit
leave the newer attempt alone (a run's Stop records ``cancelled`` itself, then its thread hands the end to the
runner; a Resume in between read ``cancelled`` again). The interleavings are fixed with events, not timing."""

from __future__ import annotations

import threading

from masuka import jobs
from masuka.errors import Cancelled
from masuka.studio import Studio


def _attempt_that_ends_itself(ended: threading.Event, release: threading.Event, threads: list):
    """Work that records its own end (``cancelled``, as a remote run cancelled at its service does), then waits for
    ``release`` before raising, so the runner's end write comes after whatever the test does meanwhile."""

    def work(ctx):
        threads.append(threading.current_thread())
        jobs.finish(ctx.store, ctx.job_id, "cancelled", "Stopped by the user; cancelled at the service too.")
        ended.set()
        release.wait(30)
        raise Cancelled("cancelled at the service too")

    return work


def _held_attempt(started: threading.Event, go: threading.Event):
    def work(ctx):
        started.set()
        go.wait(30)
        return "done"

    return work


def test_the_late_end_of_a_finished_attempt_leaves_the_resumed_one_running(studio):
    runner = studio.runner()
    job_id = runner.create("test", title="stopped, then resumed")
    ended, release, started, go, threads = (threading.Event(), threading.Event(), threading.Event(),
                                            threading.Event(), [])
    runner.submit(job_id, _attempt_that_ends_itself(ended, release, threads))
    assert ended.wait(30) and runner.wait(job_id, timeout=30).status == "cancelled"
    runner.requeue(job_id)  # Resume, as soon as the row reads cancelled
    runner.submit(job_id, _held_attempt(started, go))
    assert started.wait(30)
    release.set()  # the first attempt's thread ends now: the runner's end write, then its bookkeeping
    threads[0].join(30)
    assert not threads[0].is_alive()
    row = jobs.get(studio.store, job_id)
    assert (row.status, row.error) == ("running", None)
    assert runner.runs(job_id)  # still running here: not taken for a dropped job
    go.set()
    assert runner.wait(job_id, timeout=30).status == "completed"
    assert not runner.runs(job_id)


def _ended_itself(runner, title: str):
    """A job whose attempt recorded its own end and waits on ``release`` to hand it to the runner: its id, the
    release, a held next attempt's ``started`` and ``go``, and the first attempt's threads."""
    job_id = runner.create("test", title=title)
    ended, release, started, go, threads = (threading.Event(), threading.Event(), threading.Event(),
                                            threading.Event(), [])
    runner.submit(job_id, _attempt_that_ends_itself(ended, release, threads))
    assert ended.wait(30)
    return job_id, release, started, go, threads


def test_a_late_end_between_the_requeue_and_the_start_leaves_the_queued_job_alone(studio):
    runner = studio.runner()
    job_id, release, started, go, threads = _ended_itself(runner, "stopped, then resumed")
    runner.requeue(job_id)
    release.set()
    threads[0].join(30)
    assert jobs.get(studio.store, job_id).status == "queued"
    runner.submit(job_id, _held_attempt(started, go))
    go.set()
    assert runner.wait(job_id, timeout=30).status == "completed"


def test_a_job_resumed_by_another_studio_is_not_ended_by_the_first_ones_late_write(studio):
    runner = studio.runner()
    job_id, release, started, go, threads = _ended_itself(runner, "stopped here, resumed by another process")
    other = Studio.open(studio.config)  # the CLI's `train --resume`, say
    try:
        other.runner().requeue(job_id)
        other.runner().submit(job_id, _held_attempt(started, go))
        assert started.wait(30)
        release.set()
        threads[0].join(30)
        assert jobs.get(studio.store, job_id).status == "running"
        go.set()
        assert other.runner().wait(job_id, timeout=30).status == "completed"
    finally:
        go.set()
        other.close()
