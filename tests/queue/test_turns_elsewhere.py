"""A job whose turn ended in one worker may be taken up by another (a ``queue run`` beside the app): the command
reports it as continued by another worker, not as failed, and the app's worker, whose sign-in list may no longer
name its owner, leaves it to the live worker that had it in hand."""

from __future__ import annotations

import json

import pytest

from masuka.cli import main
from masuka.config import Config
from masuka.off_list import cancel_off_list_jobs
from masuka.queue import tasks
from masuka.queue.jobs import claim, control_job, queue_images
from masuka.queue.worker import run_job, work_until_empty
from masuka.studio import Studio
from masuka.users import OFF_LIST

from .test_turns import _turns_of_one_image, request  # noqa: F401 (the fixture: a turn ends after any image)


@pytest.mark.parametrize(("there", "status", "code"), [("completes", "completed", 0), ("holds", "running", 0),
                                                       ("cancels", "cancelled", 2)])
def test_queue_run_reports_a_job_another_worker_took_up_by_its_status_there(tmp_path, tiny_model, monkeypatch,
                                                                           capsys, there, status, code):
    """The command runs ann's first image; bob queues, so ann's turn ends and the command runs bob's job, while the
    app's worker takes ann's up and completes it (or is still running it, or ann cancels it): the command's exit
    code says whether it completed, not that it was queued when the command last had it."""
    monkeypatch.delenv("MASUKA_AUTH", raising=False)
    data = tmp_path / "data"
    app = Studio.open(Config.from_env(data_dir=data, auth=""))
    model = tiny_model("flux")
    (ann,) = queue_images(app, request(model, "a fox", "ann", batch=2))
    real = tasks.generate_images

    def the_app_beside(*args, **kwargs):
        result = real(*args, **kwargs)
        owner = args[1].owner
        if owner == "ann" and app.store.get("queue", ann)["done"] == 0:  # the command's first image of ann's
            queue_images(app, request(model, "an owl", "bob"))
        elif owner == "bob":  # the command runs bob's job; the app's worker polls meanwhile
            if there == "cancels":
                control_job(app, "ann", "cancel", ann)
            else:
                taken = claim(app)
                assert taken is not None and taken["id"] == ann
                if there == "completes":
                    assert run_job(app, taken) == "completed"
        return result

    monkeypatch.setattr(tasks, "generate_images", the_app_beside)
    try:
        assert main(["queue", "run", "--json", "--data-dir", str(data)]) == code
        out = capsys.readouterr()
        worked = {job["id"]: job for job in json.loads(out.out)["jobs"]}
        assert worked[ann] == {"id": ann, "status": status, "continued_by_another_worker": True}
        assert f"job {ann} continued by another worker: {status} there" in out.err
        assert [job["status"] for job_id, job in worked.items() if job_id != ann] == ["completed"]
        assert app.store.get("queue", ann)["status"] == status
    finally:
        app.close()


@pytest.mark.parametrize("app_side", ["worker", "start"])
def test_the_app_leaves_an_off_list_job_to_the_live_command_that_had_it_in_hand(tmp_path, tiny_model, monkeypatch,
                                                                                app_side):
    """A ``queue run`` whose (older) sign-in list names carl runs carl's job; the app's list no longer does. When
    carl's turn ends, the app's worker (or the app's start) does not cancel that job, which the command takes up
    again and completes; carl's job that no worker ever took is cancelled as before."""
    data = tmp_path / "data"
    command = Studio.open(Config.from_env(data_dir=data, auth="ann:pw1,bob:pw2,carl:pw3"))
    app = Studio.open(Config.from_env(data_dir=data, auth="ann:pw1,bob:pw2"))
    model = tiny_model("flux")
    try:
        (in_hand,) = queue_images(command, request(model, "a fox", "carl", batch=2))
        (never_taken,) = queue_images(command, request(model, "a cat", "carl"))
        real = tasks.generate_images
        seen: dict[str, object] = {}

        def the_app_beside(*args, **kwargs):
            result = real(*args, **kwargs)
            job_id = args[1].queue_id
            if job_id == in_hand and "bob" not in seen:  # bob queues in the app as carl's first image is made
                seen["bob"] = queue_images(app, request(model, "an owl", "bob"))[0]
            elif job_id == seen.get("bob"):  # carl's job waits for its turn; the app's worker polls (or it starts)
                seen["in hand"] = app.store.get("queue", in_hand)["status"]
                seen["cancelled"] = (cancel_off_list_jobs(app)["queue"] if app_side == "start" else
                                     [claim(app, cancel_off_list=True)])
            return result

        monkeypatch.setattr(tasks, "generate_images", the_app_beside)
        turns: list[tuple[int, str]] = []
        work_until_empty(command, lambda job, status: turns.append((job["id"], status)))
        assert seen["in hand"] == "queued"
        assert seen["cancelled"] == ([never_taken] if app_side == "start" else [None])
        assert turns == [(in_hand, "queued"), (seen["bob"], "completed"), (in_hand, "completed")]
        rows = {job_id: command.store.get("queue", job_id) for job_id in (in_hand, never_taken)}
        assert (rows[in_hand]["status"], rows[in_hand]["done"], rows[in_hand]["error"]) == ("completed", 2, None)
        assert (rows[never_taken]["status"], rows[never_taken]["error"]) == ("cancelled", OFF_LIST)
    finally:
        app.close()
        command.close()
