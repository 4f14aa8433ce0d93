"""A paid video job outlives passing faults of this machine: a database another process keeps locked, a full disk;
and a job no thread runs any more is never waited for in silence."""

from __future__ import annotations

import errno
import logging
import sqlite3
import threading

import pytest

from masuka import jobs
from masuka.cli import main
from masuka.errors import MasukaError
from masuka.video.jobs import start_video, wait_video
from masuka.video.media import check_mp4
from masuka.video.request import VideoRequest
from tests.video.conftest import wait_until


def test_a_database_locked_by_another_process_while_polling_keeps_the_paid_job(studio, fake, caplog):
    server = fake("runway")
    server.release.clear()
    studio.store.db.execute("PRAGMA busy_timeout = 200")  # the store's 30 s, shortened: the lock outlasts it
    job_id = start_video(studio, VideoRequest("runway", "gen4.5", "a fox", seconds=5))
    assert server.polled.wait(30)
    other = sqlite3.connect(studio.store.path, isolation_level=None)
    caplog.set_level(logging.WARNING, "masuka.video.jobs")
    try:
        other.execute("BEGIN EXCLUSIVE")
        assert wait_until(lambda: "The database is busy" in caplog.text), caplog.text
        assert jobs.get(studio.store, job_id).status == "running"
    finally:
        other.execute("ROLLBACK")
        other.close()
    server.release.set()
    row = wait_video(studio, job_id, timeout=60)
    assert (row.status, row.error, server.creates) == ("completed", None, 1)
    check_mp4(studio.config.absolute(row.result["video"]))


def test_a_full_disk_while_downloading_keeps_the_paid_job_and_leaves_no_part_file(studio, fake, monkeypatch):
    import masuka.video.providers.base as base

    server = fake("runway")
    full = threading.Event()
    full.set()
    written = base.save_stream

    def save_stream(response, partial, *args):
        if not full.is_set():
            return written(response, partial, *args)
        partial.write_bytes(b"\0" * 1024)  # a part of the file made it before the disk filled up
        raise OSError(errno.ENOSPC, "No space left on device", str(partial))

    monkeypatch.setattr(base, "save_stream", save_stream)
    job_id = start_video(studio, VideoRequest("runway", "gen4.5", "a fox", seconds=5))
    assert wait_until(lambda: "The disk is full" in (jobs.get(studio.store, job_id).error or "")), \
        jobs.get(studio.store, job_id)
    row = jobs.get(studio.store, job_id)
    assert (row.status, row.state["phase"]) == ("running", "waiting") and "the job is kept" in row.error
    assert not list(studio.config.outputs_dir.rglob("*.part"))
    full.clear()
    row = wait_video(studio, job_id, timeout=60)
    assert (row.status, row.error, server.creates) == ("completed", None, 1)
    check_mp4(studio.config.absolute(row.result["video"]))


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")  # the thread that ends so
def test_waiting_for_a_job_whose_thread_ended_unfinished_stops_with_a_clear_error(studio):
    runner = studio.runner()
    job_id = runner.create("video", title="a fox", provider="runway")

    def work(ctx):
        raise SystemExit  # ends the thread past every handler, the row still running

    runner.submit(job_id, work)
    with pytest.raises(MasukaError, match=f"Job {job_id} stopped in this process before it finished"):
        wait_video(studio, job_id, timeout=30)
    assert jobs.get(studio.store, job_id).status == "running"


def test_jobs_resume_exits_2_when_it_only_marked_a_job_interrupted(studio, capsys):
    sent = {"kind": "video", "status": "running", "provider": "openai", "model": "sora-2", "title": "a harbour",
            "pid": 2**22 + 1, "state": {"segments": [{"seconds": 4, "submitting": True}]}}
    job_id = studio.store.insert("jobs", sent)
    code = main(["jobs", "resume", "--data-dir", str(studio.config.data_dir)])
    err = capsys.readouterr().err
    assert code == 2 and f"job {job_id} interrupted: Needs attention" in err
    assert jobs.get(studio.store, job_id).status == "interrupted"


def test_a_busy_database_before_a_chained_clip_is_sent_sends_it_on_the_retry(studio, fake, monkeypatch):
    import masuka.video.jobs as video_jobs

    server = fake("runway")
    written = video_jobs._save
    locked = []

    def _save(studio_, job_id, state, phase, *args, **fields):
        if phase == "submitting" and len(state["segments"]) == 2 and not locked:
            locked.append(phase)  # the mark for clip 2 never reached the database: nothing was sent
            raise sqlite3.OperationalError("database is locked")
        return written(studio_, job_id, state, phase, *args, **fields)

    monkeypatch.setattr(video_jobs, "_save", _save)
    job_id = start_video(studio, VideoRequest("runway", "gen4.5", "a fox", seconds=20))
    row = wait_video(studio, job_id, timeout=60)
    assert (row.status, row.error, server.creates, locked) == ("completed", None, 2, ["submitting"])
