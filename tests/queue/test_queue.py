"""The generation queue on a tiny pipeline: jobs survive SIGKILL, pause holds, users take turns, batches expand."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter

import pytest
from PIL import Image

from masuka.cli import main
from masuka.config import Config
from masuka.errors import InvalidInput, NotFound
from masuka.image.generate import ImageRequest, generate_images
from masuka.image.grid import parse_axis
from masuka.image.metadata import parse_parameters, read_parameters
from masuka.image.tasks import InitImage
from masuka.queue import tasks
from masuka.queue.jobs import control_job, list_jobs, queue_grid, queue_images
from masuka.queue.worker import QueueWorker, work_until_empty
from masuka.store import Store
from masuka.studio import Studio

FORM = ["--steps", "2", "--width", "64", "--height", "64", "--seed", "7", "--batch", "2"]


def cli(data, *argv) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "MASUKA_DEVICE": "cpu"}
    return subprocess.run([sys.executable, "-m", "masuka", *argv, "--data-dir", str(data)], capture_output=True,
                          text=True, env=env, timeout=600)


def request(model, prompt="a red fox", owner="local", **kw) -> ImageRequest:
    values = dict(prompt=prompt, model=str(model), steps=1, width=64, height=64, seed=3, owner=owner)
    return ImageRequest(**{**values, **kw})


def completed_rows(store: Store) -> list[dict]:
    return store.find("generations", "status = 'completed'", order_by="id")


@pytest.mark.slow
def test_sigkilled_worker_resumes_and_every_image_is_made_once(tmp_path, tiny_model):
    data, prompts = tmp_path / "data", tmp_path / "prompts.txt"
    prompts.write_text("a red fox\na {green|blue} bird\n# not a prompt\n\na snowy hill\n", encoding="utf-8")
    added = cli(data, "queue", "add", "--model", str(tiny_model("flux")), "--prompts-file", str(prompts), *FORM,
                "--json")
    assert added.returncode == 0, added.stderr
    ids = json.loads(added.stdout)["jobs"]
    assert len(ids) == 3

    env = {**os.environ, "HF_HUB_OFFLINE": "1", "MASUKA_DEVICE": "cpu"}
    worker = subprocess.Popen([sys.executable, "-m", "masuka", "queue", "run", "--data-dir", str(data)], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    store = Store(Config.from_env(data_dir=data).db_path)
    try:
        # an image made and a job running: the kill lands mid-job (waiting for an image alone, the worker once
        # finished the job and was between jobs by the time of the kill)
        while not (completed_rows(store) and store.count("queue", "status = 'running'")):
            assert worker.poll() is None, "the worker ended before making an image"
            time.sleep(0.05)
        os.kill(worker.pid, signal.SIGKILL)
        worker.wait()
        before = {row["id"]: row["output_path"] for row in completed_rows(store)}
        assert store.count("queue", "status = 'running'") == 1  # killed mid-job: the row still says running
        assert len(before) < 8

        assert main(["queue", "run", "--json", "--data-dir", str(data)]) == 0  # a new worker takes the job up
        jobs = {job["id"]: job for job in json.loads(cli(data, "queue", "list", "--json").stdout)["jobs"]}
        rows = store.find("generations", order_by="id")
    finally:
        store.close()
    assert [jobs[i]["status"] for i in ids] == ["completed"] * 3
    assert [jobs[i]["done"] for i in ids] == [2, 4, 2]  # the bird line expands to two prompts, two images each
    assert len(rows) == 8 and all(row["status"] == "completed" for row in rows)  # one history row per image
    assert Counter((row["queue_id"], row["params"]["queue_item"]) for row in rows).most_common(1)[0][1] == 1
    assert {row["id"]: row["output_path"] for row in rows if row["id"] in before} == before  # nothing remade
    assert all((data / row["output_path"]).is_file() for row in rows)
    bird = [row for row in rows if row["queue_id"] == ids[1]]
    assert [row["prompt"] for row in bird] == ["a green bird"] * 2 + ["a blue bird"] * 2
    assert [row["seed"] for row in bird] == [7, 8, 9, 10]
    assert {row["params"]["template"] for row in bird} == {"a {green|blue} bird"}
    written = parse_parameters(read_parameters(data / bird[2]["output_path"]))
    assert (written.prompt, written.extra["Template"], written.seed) == ("a blue bird", "a {green|blue} bird", 9)


def test_pause_holds_a_job_until_resumed(studio, tiny_model):
    first, second = queue_images(studio, request(tiny_model("flux")), "a red fox\na blue bird")
    assert control_job(studio, "local", "pause", first) == "1 job paused."
    assert work_until_empty(studio) == 1
    jobs = {job["id"]: job for job in list_jobs(studio, "local")}
    assert (jobs[first]["status"], jobs[first]["images"]) == ("paused", [])
    assert jobs[second]["status"] == "completed" and len(jobs[second]["images"]) == 1

    control_job(studio, "local", "resume", first)
    assert work_until_empty(studio) == 1
    job = next(job for job in list_jobs(studio, "local") if job["id"] == first)
    assert job["status"] == "completed" and len(job["images"]) == 1


def test_pausing_a_running_job_stops_between_images_and_resume_finishes_it(studio, tiny_model, monkeypatch):
    (job_id,) = queue_images(studio, request(tiny_model("flux"), batch=3))
    real = tasks.generate_images

    def pause_after_the_first_image(*args, **kwargs):
        made = real(*args, **kwargs)
        control_job(studio, "local", "pause", job_id)  # what the Pause button does while the job runs
        return made

    monkeypatch.setattr(tasks, "generate_images", pause_after_the_first_image)
    work_until_empty(studio)
    job = list_jobs(studio, "local")[0]
    assert (job["status"], job["done"], len(job["images"])) == ("paused", 1, 1)

    monkeypatch.setattr(tasks, "generate_images", real)
    control_job(studio, "local", "resume")
    work_until_empty(studio)
    job = list_jobs(studio, "local")[0]
    assert (job["status"], job["done"], len(job["images"])) == ("completed", 3, 3)
    seeds = [row["seed"] for row in studio.store.find("generations", "queue_id = ?", [job_id], order_by="id")]
    assert seeds == [3, 4, 5]


def test_a_job_s_seeds_must_end_within_the_largest_seed(studio, tiny_model):
    """Seeds run on from the seed across the job: a seed whose run would pass the largest one is refused, saying
    the largest that fits, and nothing is queued."""
    from dataclasses import replace

    from masuka.image.generate import MAX_SEED

    fox = request(tiny_model("flux"), prompt="a {red|blue} fox", batch=2)  # four images
    with pytest.raises(InvalidInput, match=f"Seed must be between 0 and {MAX_SEED - 3} \\(got {MAX_SEED - 2}\\)"):
        queue_images(studio, replace(fox, seed=MAX_SEED - 2))
    assert studio.store.count("queue") == 0
    (job,) = queue_images(studio, replace(fox, seed=MAX_SEED - 3))
    assert [item["seed"] for item in studio.store.get("queue", job)["params"]["items"]] == \
        list(range(MAX_SEED - 3, MAX_SEED + 1))


def test_two_users_take_turns(studio, tiny_model):
    model = tiny_model("flux")
    queue_images(studio, request(model, owner="ann"), "one\ntwo\nthree")
    queue_images(studio, request(model, owner="bob"), "four\nfive")
    order = []
    work_until_empty(studio, lambda job, status: order.append((job["owner"], job["title"], status)))
    assert order == [("ann", "one", "completed"), ("bob", "four", "completed"), ("ann", "two", "completed"),
                     ("bob", "five", "completed"), ("ann", "three", "completed")]
    assert {job["owner"] for job in list_jobs(studio, "bob")} == {"bob"}
    with pytest.raises(NotFound, match="no queued job"):
        control_job(studio, "bob", "retry", list_jobs(studio, "ann")[0]["id"])


def test_per_user_limit_cancel_and_retry(tmp_path, tiny_model):
    studio = Studio.open(Config.from_env(data_dir=tmp_path / "data", queued_jobs_per_user=2))
    try:
        model = tiny_model("flux")
        first, _second = queue_images(studio, request(model), "a\nb")
        with pytest.raises(InvalidInput, match="limit is 2 per user"):
            queue_images(studio, request(model), "c")
        assert queue_images(studio, request(model, owner="bob"), "d")  # another user is not held back
        control_job(studio, "local", "cancel", first)
        assert next(j for j in list_jobs(studio, "local") if j["id"] == first)["status"] == "cancelled"
        with pytest.raises(InvalidInput, match="cannot be paused"):
            control_job(studio, "local", "pause", first)
        third = queue_images(studio, request(model), "c")[0]  # the cancelled job made room
        with pytest.raises(InvalidInput, match="limit is 2 per user"):  # retrying it may not go past the limit
            control_job(studio, "local", "retry", first)
        control_job(studio, "local", "cancel", third)
        control_job(studio, "local", "retry", first)
        assert work_until_empty(studio) == 3
        assert {job["id"]: job["status"] for job in list_jobs(studio, "local")} == {
            first: "completed", _second: "completed", third: "cancelled"}
    finally:
        studio.close()


def test_a_batch_over_the_limit_on_its_own_says_so(tmp_path, tiny_model):
    """A batch larger than the per-user limit is refused as such (no wait or cancel would make room for it); one
    that fits the limit but not the room left says how many are waiting; nothing is queued either way."""
    studio = Studio.open(Config.from_env(data_dir=tmp_path / "data", queued_jobs_per_user=2))
    try:
        model = tiny_model("flux")
        with pytest.raises(InvalidInput) as alone:
            queue_images(studio, request(model), "a\nb\nc")
        assert str(alone.value) == "A batch of 3 jobs is over the limit of 2 per user: queue at most 2 at a time."
        queue_images(studio, request(model), "a")
        with pytest.raises(InvalidInput) as more:
            queue_images(studio, request(model), "b\nc")
        assert str(more.value) == ("You already have 1 unfinished job in the queue, and these 2 would exceed the "
                                   "limit of 2 per user: wait for some to finish or cancel some.")
        assert studio.store.count("queue") == 1
    finally:
        studio.close()


def test_reorder_changes_what_runs_next(studio, tiny_model):
    a, b, c = queue_images(studio, request(tiny_model("flux")), "a\nb\nc")
    control_job(studio, "local", "top", c)
    control_job(studio, "local", "down", a)
    assert [job["id"] for job in list_jobs(studio, "local")] == [c, b, a]
    control_job(studio, "local", "pause", c)
    for action, job, end in (("up", c, "first"), ("top", c, "first"), ("down", a, "last")):
        with pytest.raises(InvalidInput, match=f"Job {job} is already {end} of your unfinished jobs"):
            control_job(studio, "local", action, job)  # not "is paused: it cannot be moved"


def test_the_app_worker_runs_jobs_in_the_background(studio, tiny_model):
    (job_id,) = queue_images(studio, request(tiny_model("flux")))
    worker = QueueWorker(studio, poll_s=0.05).start()
    try:
        while list_jobs(studio, "local")[0]["status"] != "completed":
            time.sleep(0.05)
    finally:
        worker.stop()
    assert len(list_jobs(studio, "local")[0]["images"]) == 1


def test_bad_batches_are_refused_before_queueing(studio, tiny_model):
    model = tiny_model("flux")
    with pytest.raises(InvalidInput, match="__colour__ has no values"):
        queue_images(studio, request(model, prompt="a __colour__ car"))
    with pytest.raises(InvalidInput, match="unbalanced"):
        queue_images(studio, request(model, prompt="a {red|blue car"))
    with pytest.raises(InvalidInput, match="No prompts"):
        queue_images(studio, request(model), "# only a comment\n")
    for empty in ("", " ", "{|}"):
        with pytest.raises(InvalidInput, match="The prompt is empty"):
            queue_images(studio, request(model, prompt=empty))
    assert list_jobs(studio, "local") == []


@pytest.mark.slow
def test_a_queued_grid_survives_a_killed_worker_with_one_row_per_cell(tmp_path, tiny_model):
    data = tmp_path / "data"
    studio = Studio.open(Config.from_env(data_dir=data))
    try:
        base = request(tiny_model("flux"), seed=5)
        job_id = queue_grid(studio, base, [parse_axis("steps=1,2,3"), parse_axis("guidance=1,4")])
    finally:
        studio.close()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "MASUKA_DEVICE": "cpu"}
    worker = subprocess.Popen([sys.executable, "-m", "masuka", "queue", "run", "--data-dir", str(data)], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    studio = Studio.open(Config.from_env(data_dir=data))  # the app started again
    try:
        while not completed_rows(studio.store):
            assert worker.poll() is None, "the worker ended before making a cell"
            time.sleep(0.05)
        os.kill(worker.pid, signal.SIGKILL)
        worker.wait()
        before = {row["id"]: row["output_path"] for row in completed_rows(studio.store)}
        assert 0 < len(before) < 6

        assert work_until_empty(studio) == 1
        (job,) = list_jobs(studio, "local")
        rows = studio.store.find("generations", order_by="id")
    finally:
        studio.close()
    assert job["id"] == job_id and job["status"] == "completed" and (job["done"], job["total"]) == (6, 6)
    assert len(rows) == 6 and all(row["status"] == "completed" for row in rows)  # one history row per cell
    assert {row["id"]: row["output_path"] for row in rows if row["id"] in before} == before  # nothing remade
    cells = sorted((row["params"]["grid_cell"], row["steps"], row["guidance"], row["seed"]) for row in rows)
    assert cells == sorted(([x, y, 0], steps, guidance, 5) for y, guidance in enumerate((1.0, 4.0))
                           for x, steps in enumerate((1, 2, 3)))
    grid = Image.open(job["grid"])
    assert grid.width > 3 * 64 and grid.height > 2 * 64


def test_queued_inpainting_keeps_its_own_pictures(studio, tiny_model, tmp_path):
    picture, mask = tmp_path / "photo.png", tmp_path / "mask.png"
    Image.new("RGB", (64, 64), (200, 40, 30)).save(picture)
    white = Image.new("L", (64, 64), 0)
    white.paste(255, (16, 16, 48, 48))
    white.save(mask)
    init = InitImage(str(picture), strength=0.8, mask=str(mask), mask_blur=0)
    (job_id,) = queue_images(studio, request(tiny_model("flux"), init=init), allow_any_path=True)
    direct = generate_images(studio, request(tiny_model("flux"), init=init), allow_any_path=True)[0]
    picture.unlink()
    mask.unlink()  # the job made its own copies when it was queued
    job = studio.store.get("queue", job_id)  # queued by an older MASUKA, whose init image had a field since removed
    params = job["params"]
    studio.store.update("queue", job_id, params={**params, "request": {
        **params["request"], "init": {**params["request"]["init"], "invert_mask": False}}})

    assert work_until_empty(studio) == 1
    (job,) = [j for j in list_jobs(studio, "local") if j["id"] == job_id]
    assert job["status"] == "completed", job["error"]
    row = studio.store.find("generations", "queue_id = ?", [job_id])[0]
    assert row["params"]["task"] == "inpaint" and row["params"]["strength"] == 0.8
    assert Image.open(job["images"][0]).tobytes() == Image.open(direct.path).tobytes()  # the same inpainting


def test_a_queued_edit_keeps_its_images_and_makes_what_edit_makes(studio, tiny_model, tmp_path):
    red, blue = tmp_path / "red.png", tmp_path / "blue.png"
    Image.new("RGB", (64, 64), (200, 40, 30)).save(red)
    Image.new("RGB", (64, 64), (30, 40, 200)).save(blue)
    edit = request(tiny_model("flux2"), "make it green", references=[str(red), str(blue)])
    (job_id,) = queue_images(studio, edit, allow_any_path=True)
    direct = generate_images(studio, edit, allow_any_path=True)[0]
    red.unlink()
    blue.unlink()  # the job keeps its own copies

    assert work_until_empty(studio) == 1
    (job,) = [j for j in list_jobs(studio, "local") if j["id"] == job_id]
    assert job["status"] == "completed", job["error"]
    row = studio.store.find("generations", "queue_id = ?", [job_id])[0]
    assert row["params"]["task"] == "edit" and len(row["params"]["references"]) == 2
    assert Image.open(job["images"][0]).tobytes() == Image.open(direct.path).tobytes()


def test_queue_upscale_from_the_command_line_runs_once_and_is_in_history(tmp_path):
    data, picture = tmp_path / "data", tmp_path / "small.png"
    Image.new("RGB", (40, 30), (10, 120, 200)).save(picture)
    added = cli(data, "queue", "upscale", "--image", str(picture), "--scale", "2", "--json")
    assert added.returncode == 0, added.stderr
    (job_id,) = json.loads(added.stdout)["jobs"]
    picture.unlink()  # kept when queued
    assert cli(data, "queue", "upscale", "--image", str(picture)).returncode == 2, "a missing picture is refused"

    worked = cli(data, "queue", "run", "--json")
    assert worked.returncode == 0, worked.stderr
    assert json.loads(worked.stdout)["jobs"] == [{"id": job_id, "status": "completed"}]
    store = Store(Config.from_env(data_dir=data).db_path)
    (row,) = store.find("generations", "queue_id = ?", [job_id])
    assert row["kind"] == "upscale" and row["status"] == "completed" and (row["width"], row["height"]) == (80, 60)


def test_a_finished_queued_upscale_is_not_made_again(studio, tmp_path):
    from masuka.image.upscale.request import UpscaleRequest
    from masuka.queue.jobs import queue_upscale

    picture = tmp_path / "small.png"
    Image.new("RGB", (40, 30), (10, 120, 200)).save(picture)
    job_id = queue_upscale(studio, UpscaleRequest(picture, scale=4))
    assert work_until_empty(studio) == 1
    context = _Context()
    tasks.run_upscale(studio, studio.store.get("queue", job_id), context)  # as a restart after the picture would
    assert studio.store.count("generations", "queue_id = ?", [job_id]) == 1 and context.done == (1, 1)
    inputs = list((studio.config.outputs_dir / "local" / "inputs").glob("upscale-source-*.png"))
    assert len(inputs) == 1, "the copy kept when queued is the one the upscale records, not copied again"


class _Context:
    """What a task needs of the worker's context when it has nothing to do."""

    def progress(self, done: int, total: int) -> None:
        self.done = (done, total)


def test_a_cancel_or_pause_told_to_a_job_whose_worker_died_holds(studio, tiny_model):
    """A running job told to cancel or pause is cancelled or paused when its worker turns out to be gone (the
    owner was told so), never picked up and run to the end."""
    from masuka.image.control import Control

    cancelled, paused, cut = queue_images(studio, request(tiny_model("flux")), "a fox\na cat\nan owl")
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    for job_id, control in ((cancelled, "cancel"), (paused, "pause"), (cut, None)):
        studio.store.update("queue", job_id, status="running", worker="gone-1", pid=int(gone.stdout), control=control)
    statuses = {job["id"]: job["status"] for job in list_jobs(studio, "local")}
    assert (statuses[cancelled], statuses[paused], statuses[cut]) == ("cancelled", "paused", "interrupted")
    studio.store.update("queue", cut, status="running", worker="gone-2", pid=int(gone.stdout), control=None)
    assert control_job(studio, "local", "cancel", cut) == "1 job cancelled."  # at once, not left as a flag
    assert studio.store.get("queue", cut)["status"] == "cancelled"
    with pytest.raises(NotFound, match="no queued job"):
        control_job(studio, "local", "cancel", 99999999999999999999)
    with pytest.raises(InvalidInput, match="not pictures"):
        queue_grid(studio, request(tiny_model("flux"), controls=[Control("canny", "edge.png")]),
                   [parse_axis("steps=1,2")])


def test_a_running_job_is_told_dead_by_its_holder_not_its_pid_alone(config, tiny_model):
    """A row running under this pid but another token (a process before a restart that reused the pid, or a studio
    closed in this process) is interrupted; one this studio holds, or another live process, keeps running."""
    closed = Studio.open(config)
    closed_token = closed.runner().token
    closed.close()
    studio = Studio.open(config)  # an app launched again in the same process (a notebook re-running its cell)
    try:
        reused, gone, mine, other = queue_images(studio, request(tiny_model("flux")), "a fox\na cat\nan owl\na bee")
        for job_id, worker, pid in ((reused, "before-restart", os.getpid()), (gone, closed_token, os.getpid()),
                                    (mine, studio.runner().token, os.getpid()), (other, "parent", os.getppid())):
            studio.store.update("queue", job_id, status="running", worker=worker, pid=pid)
        statuses = {job["id"]: job["status"] for job in list_jobs(studio, "local")}
    finally:
        studio.close()
    assert [statuses[job] for job in (reused, gone, mine, other)] == ["interrupted", "interrupted", "running",
                                                                      "running"]


def test_a_job_running_when_the_app_closes_resumes_when_it_is_launched_again_in_this_process(tmp_path, tiny_model):
    """``Running.close()`` stops the queue worker: its job is left ``interrupted`` (as a restart finds it), and an
    app launched again in the same process resumes it from its finished images, each image made once."""
    from masuka.server import launch
    from tests.conftest import free_port

    config = Config.from_env(data_dir=tmp_path / "data", auth="")
    first = launch(config, port=free_port(), block=False)
    try:
        (job_id,) = queue_images(first.studio, request(tiny_model("flux"), steps=8, batch=4),
                                 "a {red|green|blue} fox")  # 12 images
        deadline = time.monotonic() + 300
        while list_jobs(first.studio, "local")[0]["done"] < 1 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        first.close()
    store = Store(config.db_path)
    try:
        left = store.existing("queue", job_id)
        kept = {row["id"] for row in completed_rows(store)}
    finally:
        store.close()
    assert left["status"] == "interrupted" and 1 <= left["done"] < left["total"] == 12, left
    second = launch(config, port=free_port(), block=False)
    try:
        deadline = time.monotonic() + 600
        while (job := list_jobs(second.studio, "local")[0])["status"] != "completed" and time.monotonic() < deadline:
            time.sleep(0.1)
        rows = completed_rows(second.studio.store)
    finally:
        second.close()
    assert job["status"] == "completed", job
    assert sorted(row["params"]["queue_item"] for row in rows) == list(range(12)), "each image made once"
    assert kept <= {row["id"] for row in rows}, "the images made before the close are kept"


def test_a_prompt_batch_with_a_bad_line_queues_nothing(studio, tiny_model):
    with pytest.raises(InvalidInput, match="__nosuch__"):
        queue_images(studio, request(tiny_model("flux")), "a red fox\na {blue|green} bird\n__nosuch__ cat")
    assert list_jobs(studio, "local") == []


def test_a_cell_deleted_while_its_grid_runs_is_made_again_in_its_own_place(studio, tiny_model, monkeypatch):
    """A grid cell deleted from History while the queued grid is made is made again before the grid is drawn,
    and every tile of the grid is its own cell's image (not the next cell's, moved up a place)."""
    import numpy as np

    from masuka.history.actions import delete_entries

    job_id = queue_grid(studio, request(tiny_model("flux"), steps=2), [parse_axis("seed=1,2,3")])
    real, made = tasks.generate_images, []

    def delete_the_first_cell_after_the_second(*args, **kwargs):
        made.append(real(*args, **kwargs)[0])
        if len(made) == 2:  # the user deletes the first cell from History while the grid is still being made
            delete_entries(studio, "local", False, [f"g{made[0].id}"])
        return [made[-1]]

    monkeypatch.setattr(tasks, "generate_images", delete_the_first_cell_after_the_second)
    assert work_until_empty(studio) == 1
    (job,) = list_jobs(studio, "local")
    assert (job["status"], job["done"], len(job["images"])) == ("completed", 3, 3), job["error"]
    rows = studio.store.find("generations", "queue_id = ?", [job_id], order_by="id")
    assert sorted(row["params"]["queue_item"] for row in rows) == [0, 1, 2] and len(made) == 4
    grid = np.asarray(Image.open(job["grid"]).convert("RGB"))
    for row in rows:
        x = row["params"]["grid_cell"][0]
        tile = np.asarray(Image.open(studio.config.absolute(row["output_path"])).convert("RGB"))
        assert np.array_equal(grid[-64:, 64 * x:64 * x + 64], tile), f"cell seed={row['seed']} is not in its place"


def test_a_cell_deleted_again_fails_the_grid_naming_it(studio, tiny_model, monkeypatch):
    queue_grid(studio, request(tiny_model("flux")), [parse_axis("seed=1,2")])
    real = tasks.generate_images

    def delete_every_first_cell(*args, **kwargs):
        made = real(*args, **kwargs)
        if made[0].id and args[1].notes["queue_item"] == 0:
            studio.store.delete("generations", made[0].id)
        return made

    monkeypatch.setattr(tasks, "generate_images", delete_every_first_cell)
    work_until_empty(studio)
    (job,) = list_jobs(studio, "local")
    assert job["status"] == "failed" and job["error"].startswith("Grid cell 1 was deleted from History")
    assert "grid" not in job


def test_an_admin_s_pause_all_mine_pauses_only_their_own_jobs(studio, tiny_model):
    model = tiny_model("flux")
    (bob,) = queue_images(studio, request(model, owner="bob"))
    (admin,) = queue_images(studio, request(model, owner="admin"))
    assert control_job(studio, "admin", "pause", admin=True) == "1 job paused."
    statuses = {job["id"]: job["status"] for job in list_jobs(studio, "admin", admin=True)}
    assert statuses == {bob: "queued", admin: "paused"}
    assert control_job(studio, "admin", "pause", bob, admin=True) == "1 job paused."  # named: anyone's
    assert control_job(studio, "admin", "resume", admin=True) == "1 job resumed."
    assert {job["id"]: job["status"] for job in list_jobs(studio, "admin", admin=True)} == {
        bob: "paused", admin: "queued"}


def test_cancel_and_pause_reach_a_job_waiting_for_the_gpu(studio, tiny_model, monkeypatch):
    """While training (any other holder) keeps the GPU, a queued job waiting for it is cancelled or paused at once,
    not left "running (cancel asked)" until the GPU frees."""
    import threading

    cancelled, paused = queue_images(studio, request(tiny_model("flux")), "a fox\na cat")
    real_hold, waits = studio.gpu.hold, []

    def hold(*args, **kwargs):
        waits.append(args[0])  # the queued job starts waiting for the GPU
        return real_hold(*args, **kwargs)

    def wait_for(check) -> None:
        deadline = time.monotonic() + 20
        while not check():
            assert time.monotonic() < deadline, "the queued job did not get there"
            time.sleep(0.05)

    with studio.gpu.hold("training run 1"):
        monkeypatch.setattr(studio.gpu, "hold", hold)
        worker = threading.Thread(target=work_until_empty, args=(studio,))
        worker.start()
        for turn, (job_id, action, status) in enumerate(((cancelled, "cancel", "cancelled"),
                                                         (paused, "pause", "paused")), 1):
            wait_for(lambda turn=turn: len(waits) == turn)
            control_job(studio, "local", action, job_id)
            wait_for(lambda job_id=job_id, status=status: studio.store.get("queue", job_id)["status"] == status)
        worker.join(timeout=20)
        assert not worker.is_alive()
    jobs = {job["id"]: job for job in list_jobs(studio, "local")}
    assert jobs[cancelled]["error"] == "Stopped by the user while it waited for the GPU."
    assert (jobs[paused]["control"], studio.store.count("generations")) == (None, 0)
    control_job(studio, "local", "resume", paused)
    assert work_until_empty(studio) == 1 and studio.store.get("queue", paused)["status"] == "completed"


def test_the_queue_listing_decodes_no_job_s_parameters(studio, monkeypatch):
    """The Queue tab lists jobs every 2 s: a large grid's stored parameters (megabytes) are never read for it."""
    import masuka.store
    from masuka.queue.jobs import add_job

    items = [{"prompt": "a castle " * 400, "seed": seed} for seed in range(1024)]
    job_id = add_job(studio, "local", "grid", "a large grid", "m", {"request": {}, "items": items, "axes": []})
    studio.store.update("queue", job_id, params={**studio.store.get("queue", job_id)["params"], "grid": "g.png"})
    real, decoded = masuka.store.json.loads, []
    monkeypatch.setattr(masuka.store.json, "loads", lambda text, **kw: decoded.append(len(text)) or real(text, **kw))
    (job,) = list_jobs(studio, "local")
    assert (job["id"], job["total"], job["grid"]) == (job_id, 1024, str(studio.config.absolute("g.png")))
    assert max(decoded, default=0) < 10_000


def test_reorder_after_top_and_retry_and_with_tied_positions(studio, tiny_model):
    """Top goes before every job, Retry to the end, and moves follow the order shown, also where positions tie."""
    a, b, c = queue_images(studio, request(tiny_model("flux")), "a\nb\nc")

    def order() -> list[int]:
        return [job["id"] for job in list_jobs(studio, "local") if job["status"] == "queued"]

    control_job(studio, "local", "cancel", a)
    control_job(studio, "local", "top", c)
    control_job(studio, "local", "retry", a)
    assert order() == [c, b, a]
    control_job(studio, "local", "up", a)
    assert order() == [c, a, b]
    control_job(studio, "local", "down", c)
    assert order() == [a, c, b]

    for job_id in (a, b, c):  # positions an older version left tied: the order shown is by id
        studio.store.update("queue", job_id, position=5)
    assert order() == [a, b, c]
    control_job(studio, "local", "up", c)
    assert order() == [a, c, b]
    control_job(studio, "local", "down", a)
    assert order() == [c, a, b]


def test_an_admin_s_moves_stay_among_the_job_owner_s_jobs(studio):
    """Users take turns, whatever the positions: an admin's Top on bob's only job is refused in words, since it
    could not run before the job of the user served longest ago."""
    from masuka.queue.jobs import add_job, claim, finish

    def add(owner: str, title: str) -> int:
        return add_job(studio, owner, "text", title, "m", {"request": {}, "items": [{}]})

    for second, owner in enumerate(("alice", "bob")):
        add(owner, f"{owner} 1")
        served = claim(studio)["id"]
        finish(studio, served, "completed")  # alice is served, then bob (a second later: no tie within a millisecond)
        studio.store.update("queue", served, started_at=f"2026-01-01T00:00:0{second}.000+00:00")
    alice, bob, bob_again = add("alice", "alice 2"), add("bob", "bob 2"), add("bob", "bob 3")
    with pytest.raises(InvalidInput, match=f"Job {bob} is already first of bob's unfinished jobs"):
        control_job(studio, "admin", "top", bob, admin=True)
    assert control_job(studio, "admin", "top", bob_again, admin=True) == "1 job moved to the top."
    assert [claim(studio)["id"] for _ in range(3)] == [alice, bob_again, bob]


def test_a_refused_queue_job_keeps_no_copy_of_its_pictures(tmp_path, tiny_model):
    from masuka.image.upscale.request import UpscaleRequest
    from masuka.queue.jobs import queue_upscale

    studio = Studio.open(Config.from_env(data_dir=tmp_path / "data", queued_jobs_per_user=1))
    try:
        picture = tmp_path / "small.png"
        Image.new("RGB", (40, 30), (10, 120, 200)).save(picture)
        queue_upscale(studio, UpscaleRequest(picture, scale=2), allow_any_path=True)
        with pytest.raises(InvalidInput, match="limit is 1 per user"):
            queue_upscale(studio, UpscaleRequest(picture, scale=2), allow_any_path=True)
        init = InitImage(str(picture.with_name("init.png")), strength=0.5)
        Image.new("RGB", (64, 64), (200, 40, 30)).save(init.path)
        with pytest.raises(InvalidInput, match="limit is 1 per user"):
            queue_grid(studio, request(tiny_model("flux"), init=init), [parse_axis("steps=1,2")], allow_any_path=True)
        assert len(list((studio.config.outputs_dir / "local" / "inputs").iterdir())) == 1
    finally:
        studio.close()
