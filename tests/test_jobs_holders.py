"""Who holds a job: the studio whose runner queued or runs it (its token with the pid), so that opening another
studio in the same process (a notebook, an in-process CLI call, tests) leaves the first one's work alone."""

import json
import os
import subprocess
import sys
import threading
import time
import zipfile

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
    for table in ("jobs", "generations"):
        old.db.execute(f"alter table {table} drop column holder")  # as an older MASUKA made it
    gone_pid = _gone_pid()
    dead = old.insert("jobs", {"kind": "train", "status": "running", "pid": gone_pid})
    restarted = old.insert("jobs", {"kind": "download", "status": "running", "pid": os.getpid()})  # a reused pid
    elsewhere = old.insert("jobs", {"kind": "train", "status": "running", "pid": os.getppid()})  # a live process
    queued = old.insert("jobs", {"kind": "download", "status": "queued", "lane": "download", "pid": gone_pid})
    made = {pid: old.insert("generations", {"kind": "image", "status": "running", "pid": pid})
            for pid in (gone_pid, os.getpid(), os.getppid())}
    old.close()
    studio = Studio.open(config)
    try:
        assert all("holder" in studio.store.db[table].columns_dict for table in ("jobs", "generations"))
        status = {job: jobs.get(studio.store, job).status for job in (dead, restarted, elsewhere, queued)}
        assert status == {dead: "interrupted", restarted: "interrupted", elsewhere: "running", queued: "queued"}
        assert jobs.get(studio.store, dead).holder is None  # rows from before name no holder
        made_status = {pid: studio.store.get("generations", row)["status"] for pid, row in made.items()}
        assert made_status == {gone_pid: "interrupted", os.getpid(): "interrupted", os.getppid(): "running"}
    finally:
        studio.close()


def test_a_job_a_studio_creates_is_its_own_before_its_runner_takes_it(config, monkeypatch):
    """The row is held from its creation: a studio opened between the app recording a download and queueing it
    (here, inside the submit) marked it interrupted, the creator's pid being its own."""
    from masuka.models.manage import start_download
    from tests.models.fake_hub import FakeRepo, hub_online

    repos = {"acme/tiny-pipe": FakeRepo({"model_index.json": b"{}", "vae/model.safetensors": bytes(4096)})}
    seen = []
    with hub_online(monkeypatch, repos, config.data_dir.parent / "hf-cache"):
        first = Studio.open(config)
        submit = first.jobs.submit

        def opened_meanwhile(job_id, *args, **kwargs):
            second = Studio.open(config)
            seen.append(jobs.get(second.store, job_id))
            second.close()
            submit(job_id, *args, **kwargs)

        monkeypatch.setattr(first.jobs, "submit", opened_meanwhile)
        try:
            job_id = start_download(first, "local", "acme/tiny-pipe")
            assert [(row.status, row.holder) for row in seen] == [("queued", first.jobs.token)]
            assert first.jobs.wait(job_id, timeout=60).status == "completed"
        finally:
            first.close()


def test_a_job_queued_again_is_held_until_its_runner_takes_it(config, monkeypatch):
    """A run queued again (a Resume) stays its studio's while another studio opens and adopts the lane: it had no
    holder then, so the other studio marked it interrupted, or took it from its lane (it keeps its old one)."""
    monkeypatch.setitem(jobs.KINDS, "echo", "tests.test_jobs:echo_job")
    first = Studio.open(config)
    try:
        job_id = first.jobs.create("echo", title="stopped, then resumed", lane="gpu")
        jobs.finish(first.store, job_id, "interrupted", "the app stopped before this finished")
        first.jobs.requeue(job_id)
        second = Studio.open(config)
        try:
            second.jobs.adopt("gpu")
            assert second.jobs.claim("gpu") is None
            row = jobs.get(second.store, job_id)
            assert (row.status, row.holder) == ("queued", first.jobs.token)
        finally:
            second.close()
    finally:
        first.close()


def test_a_second_studio_leaves_the_first_ones_running_generation_alone(config, tiny_model):
    """A generation row names the studio making it: one opened mid-generation in the same process (a notebook
    launching the app twice) marked it interrupted, its pid being this process's."""
    from masuka.image.generate import ImageRequest, generate_images

    first = Studio.open(config)
    seen = []

    def open_another(*_step):
        if not seen:
            second = Studio.open(config)
            seen.append(second.store.find("generations", limit=1)[0])
            second.close()

    try:
        made = generate_images(first, ImageRequest(prompt="a fox", model=str(tiny_model("flux")), steps=2, width=64,
                                                   height=64, seed=1), on_step=open_another)
        assert [(row["status"], row["holder"]) for row in seen] == [("running", first.jobs.token)]
        assert first.store.get("generations", made[0].id)["status"] == "completed"
    finally:
        first.close()
    third = Studio.open(config)  # a closed studio's generation rows are a gone holder's: as after a restart
    try:
        third.store.update("generations", made[0].id, status="running")
        assert third.store.mark_interrupted()["generations"] == [made[0].id]
    finally:
        third.close()


def test_the_holder_of_a_generation_stays_out_of_history(studio, tiny_model):
    import gradio as gr

    from masuka.history.actions import export_zip
    from masuka.image.generate import ImageRequest, generate_images
    from masuka.ui import history

    made = generate_images(studio, ImageRequest(prompt="a fox", model=str(tiny_model("flux")), steps=1, width=64,
                                                height=64, seed=1))[0]
    assert studio.store.get("generations", made.id)["holder"] == studio.jobs.token
    with zipfile.ZipFile(export_zip(studio, "local", False, [f"g{made.id}"])) as archive:
        record = json.loads(archive.read("metadata.jsonl"))
    shown = history.show(studio, f"g{made.id}", gr.Request(username="local"))[3]
    assert record["prompt"] == shown["prompt"] == "a fox"
    assert not {"pid", "holder"} & (set(record) | set(shown)), "which process made it is not the user's to keep"


def test_a_video_job_names_its_holder_in_the_column_only(studio, fake):
    from masuka.video.jobs import start_video, wait_video
    from masuka.video.request import VideoRequest

    fake("openai")
    job_id = start_video(studio, VideoRequest("openai", "sora-2", "a fox"))
    row = wait_video(studio, job_id, timeout=60)
    assert row.status == "completed", row.error
    assert row.holder == studio.jobs.token and "runner" not in row.state


def test_video_jobs_of_an_older_database_keep_their_holder_in_the_column(config):
    """Older video rows kept their runner's token in ``state``: the upgrade moves it into ``holder``, so a live
    holder's job is still left alone and a gone one's taken up."""
    from masuka.video.jobs import resume_video_jobs

    first = Studio.open(config)  # an app whose video job was written the old way
    try:
        old = Store(config.db_path)
        old.db.execute("alter table jobs drop column holder")
        local = {"kind": "video", "provider": "local", "status": "running", "step": 1, "total": 2}
        live = old.insert("jobs", {**local, "pid": os.getpid(),
                                   "state": {"phase": "running", "runner": first.jobs.token, "segments": []}})
        gone = old.insert("jobs", {**local, "pid": _gone_pid(),
                                   "state": {"phase": "running", "runner": "a closed studio's", "segments": []}})
        old.close()
        second = Studio.open(config)
        try:
            rows = {job: jobs.get(second.store, job) for job in (live, gone)}
            assert {job: (row.holder, "runner" in row.state) for job, row in rows.items()} == \
                {live: (first.jobs.token, False), gone: ("a closed studio's", False)}
            adopted = resume_video_jobs(second)
            assert (adopted.interrupted, adopted.resumed, adopted.queued) == ([gone], [], [])
            assert jobs.get(second.store, live).status == "running"
        finally:
            second.close()
    finally:
        first.close()
