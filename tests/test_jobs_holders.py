"""Who holds a job: the studio whose runner queued or runs it (its token with the pid), so that opening another
studio in the same process (a notebook, an in-process CLI call, tests) leaves the first one's work alone."""

import os
import subprocess
import sys
import threading
import time

from masuka import jobs
from masuka.store import Store
from masuka.studio import Studio


def _gone_pid() -> int:
    """The pid of a process that has ended."""
    return int(subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                              text=True, check=True).stdout)


def test_a_second_studio_leaves_the_first_ones_jobs_alone_until_it_closes(config, monkeypatch):
    monkeypatch.setitem(jobs.KINDS, "echo", "tests.test_jobs:echo_job")
    first = Studio.open(config)
    started, gate = threading.Event(), threading.Event()
    try:
        running = jobs.create(first.store, "echo", title="a download that is running")
        first.jobs.submit(running, lambda ctx: (started.set(), gate.wait(120)), lane="gpu")
        waiting = jobs.create(first.store, "echo", title="queued behind it")
        first.jobs.submit(waiting, lane="gpu")
        assert started.wait(120)
        assert jobs.get(first.store, running).holder == first.jobs.token

        second = Studio.open(config)  # the same data dir, the same process: its open must not end the first's work
        try:
            assert jobs.get(second.store, running).status == "running"
            second.jobs.adopt("gpu")  # a live studio's queue is not another's to take
            assert second.jobs.claim("gpu") is None
            assert jobs.get(second.store, waiting).status == "queued"
        finally:
            second.close()

        first.jobs.close()  # what closing the studio does first: from now on its rows are a gone holder's
        third = Studio.open(config)
        try:
            row = jobs.get(third.store, running)
            assert (row.status, row.error) == ("interrupted", "the app stopped before this finished")
            third.jobs.adopt("gpu")  # the closed studio's queue is adopted, as after a restart
            adopted = third.jobs.wait(waiting, timeout=120)
            assert (adopted.status, adopted.result, adopted.holder) == \
                ("completed", {"ran_in": "adopting app"}, third.jobs.token)
        finally:
            third.close()
    finally:
        gate.set()
        while first.jobs.runs(running):  # its thread ends before the store closes under it
            time.sleep(0.05)
        first.close()
    store = Store(config.db_path)
    assert jobs.get(store, running).status == "interrupted"  # the late end changes nothing
    store.close()


def test_a_database_from_before_holders_opens_and_marks_work_as_before(config):
    old = Store(config.db_path)
    old.db.execute("alter table jobs drop column holder")  # as an older MASUKA made it
    gone_pid = _gone_pid()
    dead = old.insert("jobs", {"kind": "train", "status": "running", "pid": gone_pid})
    restarted = old.insert("jobs", {"kind": "download", "status": "running", "pid": os.getpid()})  # a reused pid
    elsewhere = old.insert("jobs", {"kind": "train", "status": "running", "pid": os.getppid()})  # a live process
    queued = old.insert("jobs", {"kind": "download", "status": "queued", "lane": "download", "pid": gone_pid})
    old.close()
    studio = Studio.open(config)
    try:
        assert "holder" in studio.store.db["jobs"].columns_dict
        status = {job: jobs.get(studio.store, job).status for job in (dead, restarted, elsewhere, queued)}
        assert status == {dead: "interrupted", restarted: "interrupted", elsewhere: "running", queued: "queued"}
        assert jobs.get(studio.store, dead).holder is None  # rows from before name no holder
    finally:
        studio.close()
