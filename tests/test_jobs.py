"""Job rows, the job context and the job runner: typed rows, one way to stop, a queue that survives a restart."""

import subprocess
import sys
import textwrap
import threading
import time

import pytest

from masuka import jobs
from masuka.config import Config
from masuka.errors import Cancelled, InvalidInput
from masuka.jobs import JobContext, JobRow, JobRunner
from masuka.remote.timing import UNREACHABLE_WAIT_S, RemoteSettings
from masuka.store import Store
from masuka.studio import Studio


def echo_job(studio, ctx: JobContext) -> None:
    """A job kind for these tests: it says it ran."""
    ctx.progress(1, 1, result={"ran_in": "adopting app"})
    ctx.log("ran after the restart")


def test_rows_are_typed_from_create_to_finish(studio):
    job_id = jobs.create(studio.store, "download", "alice", title="Download acme/model", model="acme/model")
    row = jobs.get(studio.store, job_id)
    assert isinstance(row, JobRow) and (row.kind, row.owner, row.status) == ("download", "alice", "queued")
    assert (row.state, row.params, row.result) == ({}, {}, {})  # never None: no `or {}` in readers
    jobs.progress(studio.store, job_id, 3, 12, state={"rate": 5.0})
    jobs.log_line(studio.store, job_id, "three of twelve")
    row = jobs.get(studio.store, job_id)
    assert (row.step, row.total, row.progress, row.state) == (3, 12, 0.25, {"rate": 5.0})
    assert row.log.strip().endswith("three of twelve") and row["step"] == 3
    jobs.finish(studio.store, job_id, "completed", result={"path": "x"})
    row = jobs.get(studio.store, job_id)
    assert row.finished and row.finished_at and row.result == {"path": "x"}
    with pytest.raises(ValueError):
        jobs.finish(studio.store, job_id, "running")


def test_every_stop_reads_the_same_way():
    assert str(Cancelled()) == "Stopped by the user."
    assert str(Cancelled("the images already made are kept")) == \
        "Stopped by the user; the images already made are kept."
    assert str(Cancelled("checkpoint saved", at="at step 3")) == "Stopped by the user at step 3; checkpoint saved."
    assert str(Cancelled(by="Runway")) == "Stopped by Runway."


def test_the_context_stops_saves_or_discards_and_reports(studio):
    job_id = jobs.create(studio.store, "caption", status="running")
    seen = []
    interrupt = threading.Event()
    ctx = JobContext(studio.store, job_id, interrupt=interrupt, watch=seen.append)
    ctx.check_stop()  # nothing asked: goes on
    ctx.progress(2, 8, message="cat.jpg")
    assert [(p.step, p.total, p.fraction, p.message) for p in seen] == [(2, 8, 0.25, "cat.jpg")]
    jobs.request_stop(studio.store, job_id)
    assert ctx.stop_mode() == "save"
    told = []
    with pytest.raises(Cancelled, match=r"^Stopped by the user; the captions made so far are kept\.$"):
        ctx.check_stop(before=lambda: told.append("provider told"), kept="the captions made so far are kept")
    assert told == ["provider told"]
    jobs.request_stop(studio.store, job_id, discard=True)
    assert ctx.stop_mode() == "discard"
    interrupt.set()
    assert ctx.stop_mode() == "interrupt"


def test_a_pause_looks_for_a_stop_between_slices(studio):
    job_id = jobs.create(studio.store, "video", status="running")
    ctx = JobContext(studio.store, job_id)
    checks = []
    ctx.pause(2.5 * jobs.STOP_CHECK_S, lambda: checks.append("checked"))
    assert checks == ["checked"] * 3  # after every slice, the last (shorter) one too
    ctx.pause(0.0)  # nothing to wait: no check
    jobs.request_stop(studio.store, job_id)
    started = time.monotonic()
    with pytest.raises(Cancelled):
        ctx.pause(60.0)  # check_stop unless told otherwise: the stop ends the wait after one slice
    assert time.monotonic() - started < 10 * jobs.STOP_CHECK_S


def test_a_paid_job_waits_for_its_provider_ten_polls_or_the_default():
    assert RemoteSettings().retry_wait_s() == UNREACHABLE_WAIT_S
    assert RemoteSettings(poll_s=0.05).retry_wait_s() == pytest.approx(0.5)


def test_work_run_here_records_its_outcome_and_raises_it(studio):
    done = jobs.create(studio.store, "caption")
    assert studio.jobs.run_here(done, lambda ctx: ctx.progress(1, 1) or "answer") == "answer"
    assert jobs.get(studio.store, done).status == "completed"
    refused = jobs.create(studio.store, "caption")

    def bad_input(ctx):
        raise InvalidInput("No such dataset.")

    with pytest.raises(InvalidInput):
        studio.jobs.run_here(refused, bad_input)
    row = jobs.get(studio.store, refused)
    assert (row.status, row.error) == ("failed", "No such dataset.")


def test_an_end_the_work_recorded_itself_stands(studio):
    """A remote run cancelled at its service records its end, then raises: the runner leaves that row as written
    (its words and its time), so a reader that saw it finished never sees it change."""
    job_id = jobs.create(studio.store, "train")

    def ended_at_the_service(ctx):
        jobs.finish(studio.store, job_id, "cancelled", "Stopped by the user; cancelled at the service too.")
        ended.update(studio.store.get("jobs", job_id))
        time.sleep(0.01)  # the runner's own end would carry a later time
        raise Cancelled()

    ended: dict = {}
    with pytest.raises(Cancelled):
        studio.jobs.run_here(job_id, ended_at_the_service)
    assert studio.store.get("jobs", job_id) == ended


def test_a_lane_runs_its_jobs_one_after_another_in_queue_order(studio):
    order, gate = [], threading.Event()
    first, second, third = (jobs.create(studio.store, "caption") for _ in range(3))
    studio.jobs.submit(first, lambda ctx: (gate.wait(10), order.append(ctx.job_id)), lane="gpu")
    studio.jobs.submit(second, lambda ctx: order.append(ctx.job_id), lane="gpu")
    studio.jobs.submit(third, lambda ctx: order.append(ctx.job_id), lane="gpu")
    assert jobs.get(studio.store, second).status == "queued"
    gate.set()
    assert studio.jobs.wait(third, timeout=30).status == "completed"
    assert order == [first, second, third]


def test_a_queued_job_is_claimed_by_one_runner_only(config):
    left = Store(config.db_path)
    orphan = jobs.create(left, "echo", lane="gpu", pid=2**22 + 7)  # queued by a process that is gone
    runners = [JobRunner(Store(config.db_path)) for _ in range(4)]
    for runner in runners:
        runner._adopting.add("gpu")
    claimed = []
    threads = [threading.Thread(target=lambda r=runner: claimed.append(r.claim("gpu"))) for runner in runners]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [row.id for row in claimed if row] == [orphan]
    assert jobs.get(left, orphan).status == "running"


QUEUE_THEN_DIE = textwrap.dedent("""
    import sys, time
    from masuka import jobs
    from masuka.config import Config
    from masuka.studio import Studio

    studio = Studio.open(Config.from_env(data_dir=sys.argv[1]))
    running = jobs.create(studio.store, "echo", title="running when the app stopped")
    waiting = jobs.create(studio.store, "echo", title="queued when the app stopped")
    studio.jobs.submit(running, lambda ctx: time.sleep(600), lane="gpu")
    studio.jobs.submit(waiting, lane="gpu")
    while jobs.get(studio.store, running).status != "running":
        time.sleep(0.05)
    print(running, waiting, flush=True)
    time.sleep(600)
""")


def test_a_restart_keeps_the_queue_and_runs_it(tmp_path, monkeypatch):
    monkeypatch.setitem(jobs.KINDS, "echo", "tests.test_jobs:echo_job")
    data_dir = tmp_path / "data"
    app = subprocess.Popen([sys.executable, "-c", QUEUE_THEN_DIE, str(data_dir)], stdout=subprocess.PIPE, text=True)
    try:
        running, waiting = map(int, app.stdout.readline().split())
    finally:
        app.kill()  # the app stops without any chance to tidy up
        app.wait()
    studio = Studio.open(Config.from_env(data_dir=data_dir))
    try:
        assert jobs.get(studio.store, running).status == "interrupted"  # it had started: nothing resumes it
        assert jobs.get(studio.store, waiting).status == "queued"  # still in the queue, not "interrupted"
        studio.jobs.adopt()
        row = studio.jobs.wait(waiting, timeout=30)
        assert (row.status, row.result, row.progress) == ("completed", {"ran_in": "adopting app"}, 1.0)
        assert "ran after the restart" in row.log
    finally:
        studio.close()



def test_resuming_a_stopped_run_counts_against_the_owners_share(tmp_path):
    """A user resuming stopped training asks for a new share of the GPU queue, as a new job does; restoring
    work the app had in hand when it stopped does not."""
    from masuka.errors import GPUBusy
    from masuka.training.runs import KIND, resume_run

    studio = Studio.open(Config.from_env(data_dir=tmp_path / "data", auth="ann:pw,bob:pw", max_queued_per_user=1))
    try:
        jobs.create(studio.store, "download", "ann")  # ann's one queued job
        stopped = jobs.create(studio.store, KIND, "ann", status="cancelled", started_at=jobs.now())
        with pytest.raises(GPUBusy, match="the limit is 1 per user"):
            resume_run(studio, stopped, "ann", admin=False)
        assert jobs.get(studio.store, stopped).status == "cancelled"  # still resumable, nothing lost
        with pytest.raises(GPUBusy):
            studio.runner().check_share("ann", stopped)
        studio.runner().check_share("bob", stopped)  # bob's share is his own
    finally:
        studio.close()
