"""Stopping queued work: closing the app, or a user's Cancel, ends a job's wait for a model download (the download
goes on); closing waits a bounded time for its jobs and leaves only those it ended interrupted; two studios open in
one process leave each other's running jobs alone."""

from __future__ import annotations

import logging
import os
import threading
import time

import pytest

from masuka.errors import Cancelled, ModelUnavailable
from masuka.models import manage
from masuka.queue import tasks
from masuka.queue.context import QueueContext
from masuka.queue.jobs import claim, control_job, queue_images, recover
from masuka.queue.worker import QueueWorker, run_job
from masuka.studio import Studio
from tests.models.fake_hub import FakeRepo, hub_online
from tests.models.test_download import WEIGHTS, held
from tests.queue.test_queue import request

FILE = "model-Q8_0.gguf"


@pytest.fixture
def held_gguf(monkeypatch, tmp_path):
    """``MASUKA_GGUF_FILE`` names a file of a fake Hub whose transfer waits until the first event is set; the second
    is set once a download of it waits."""
    monkeypatch.setenv("MASUKA_GGUF_FILE", f"https://huggingface.co/acme/flux-gguf/blob/main/{FILE}")
    with hub_online(monkeypatch, {"acme/flux-gguf": FakeRepo({FILE: WEIGHTS})}, tmp_path / "hf-cache") as hub:
        released, serving = held(monkeypatch, hub, FILE)
        monkeypatch.setattr(manage, "PROGRESS_EVERY_S", 0.2)  # the waits poll at a calm pace
        yield released, serving
        released.set()


def wait_for(check) -> None:
    deadline = time.monotonic() + 20
    while not check():
        assert time.monotonic() < deadline, "the job did not get there"
        time.sleep(0.05)


def download_row(studio: Studio) -> dict:
    [row] = studio.store.find("jobs", "kind = 'download'")
    return row


def test_closing_the_app_ends_a_queued_job_s_wait_for_a_download_which_goes_on(studio, tiny_model, held_gguf):
    released, serving = held_gguf
    (job_id,) = queue_images(studio, request(tiny_model("flux"), memory_plan="gguf_offload"), "a fox")
    worker = QueueWorker(studio).start()
    assert serving.wait(30)
    worker.stop()  # returns while the download still waits for the Hub
    assert download_row(studio)["status"] == "running"
    assert studio.store.get("queue", job_id)["status"] == "interrupted"
    released.set()
    assert studio.runner().wait(download_row(studio)["id"], timeout=60).status == "completed"


def test_a_user_s_cancel_ends_a_queued_job_s_wait_for_a_download(studio, tiny_model, held_gguf):
    released, serving = held_gguf
    (job_id,) = queue_images(studio, request(tiny_model("flux"), memory_plan="gguf_offload"), "a fox")
    worker = QueueWorker(studio).start()
    try:
        assert serving.wait(30)
        control_job(studio, "local", "cancel", job_id)
        wait_for(lambda: studio.store.get("queue", job_id)["status"] == "cancelled")
        assert download_row(studio)["status"] == "running"  # for whoever else waits for it
        assert studio.store.get("queue", job_id)["error"] == ("Stopped by the user while it waited for a model "
                                                              "download; the download goes on in the Models tab.")
    finally:
        released.set()
        worker.stop()
    assert studio.runner().wait(download_row(studio)["id"], timeout=60).status == "completed"


def test_a_job_that_fails_as_the_app_closes_is_failed_not_interrupted(studio, tiny_model, monkeypatch):
    (job_id,) = queue_images(studio, request(tiny_model("flux")), "a fox")
    job = claim(studio)
    ctx = QueueContext(studio, job_id)

    def broken_as_the_app_closes(*args, **kwargs):
        ctx.close()
        raise ModelUnavailable("the model's files are damaged")

    monkeypatch.setattr(tasks, "generate_images", broken_as_the_app_closes)
    assert run_job(studio, job, ctx) == "failed"
    row = studio.store.get("queue", job_id)
    assert (row["status"], row["error"]) == ("failed", "the model's files are damaged")


def test_closing_waits_a_bounded_time_and_leaves_a_job_still_running_alone(studio, tiny_model, monkeypatch, caplog):
    """A job that does not stop (a step or a model load that cannot be cut short) is logged, not marked
    interrupted while its thread still runs it."""
    (job_id,) = queue_images(studio, request(tiny_model("flux")), "a fox")
    started, released = threading.Event(), threading.Event()

    def deaf_to_stops(*args, **kwargs):
        started.set()
        released.wait(30)
        raise Cancelled()

    monkeypatch.setattr(tasks, "generate_images", deaf_to_stops)
    worker = QueueWorker(studio).start()
    try:
        assert started.wait(30)
        with caplog.at_level(logging.WARNING, logger="masuka.queue.worker"):
            worker.stop(wait_s=0.2)
        assert studio.store.get("queue", job_id)["status"] == "running"
        assert f"queue job(s) [{job_id}] did not stop" in caplog.text
    finally:
        released.set()


def test_two_studios_in_one_process_leave_each_other_s_running_jobs_alone(config, tiny_model):
    first, second = Studio.open(config), Studio.open(config)
    try:
        try:
            (job_id,) = queue_images(first, request(tiny_model("flux")), "a fox")
            assert claim(first)["id"] == job_id
            assert claim(second) is None and recover(second) == []
            assert second.store.get("queue", job_id)["status"] == "running"
        finally:
            first.close()  # its worker is gone: the other studio takes the job up
        assert recover(second) == [job_id]
        assert second.store.get("queue", job_id)["status"] == "interrupted"
        assert claim(second)["id"] == job_id
        assert second.store.get("queue", job_id)["worker"] == second.runner().token
    finally:
        second.close()


def test_a_studio_s_holder_token_lives_from_its_opening_to_its_close(config):
    from masuka.store import holder_alive

    studio = Studio.open(config)
    token = studio.runner().token
    assert holder_alive(os.getpid(), token)
    studio.close()
    assert not holder_alive(os.getpid(), token)
