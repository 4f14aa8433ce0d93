"""Users take turns image by image: a long job of one user gives way, between two images, to another user's waiting
job and resumes later from its finished images; a random seed repeats a job's random picks."""

from __future__ import annotations

from collections import Counter
from dataclasses import replace

import pytest

from masuka.image.generate import ImageRequest
from masuka.image.grid import parse_axis
from masuka.queue import jobs as queue_jobs
from masuka.queue import tasks
from masuka.queue.jobs import control_job, list_jobs, queue_grid, queue_images
from masuka.queue.worker import work_until_empty


def turns_of(studio, monkeypatch, seconds: float) -> None:
    """Turns of ``seconds`` in ``studio`` (``MASUKA_QUEUE_TURN_S``)."""
    monkeypatch.setattr(studio, "config", replace(studio.config, queue_turn_s=seconds))


@pytest.fixture(autouse=True)
def _turns_of_one_image(monkeypatch):
    """A turn ends after any image here (a real one lasts a minute by default: tiny images take milliseconds), in
    every studio opened here: the fixtures', a command's, another worker's."""
    monkeypatch.setenv("MASUKA_QUEUE_TURN_S", "0")


def request(model, prompt: str, owner: str, **kw) -> ImageRequest:
    values = dict(prompt=prompt, model=str(model), steps=1, width=64, height=64, seed=3, owner=owner)
    return ImageRequest(**{**values, **kw})


def made(studio) -> list[dict]:
    """Every finished image, in the order it was made."""
    return studio.store.find("generations", "status = 'completed'", order_by="id")


def test_a_long_job_gives_way_to_another_user_between_images_and_every_image_is_made_once(studio, tiny_model):
    model = tiny_model("flux")
    (ann,) = queue_images(studio, request(model, "a {red|green|blue} fox", "ann", batch=2))  # six images
    (bob,) = queue_images(studio, request(model, "a {grey|white} owl", "bob"))  # two images
    position = studio.store.get("queue", ann)["position"]
    turns: list[tuple[int, str]] = []
    work_until_empty(studio, lambda job, status: turns.append((job["id"], status)))

    rows = made(studio)
    assert [row["owner"] for row in rows] == ["ann", "bob", "ann", "bob", "ann", "ann", "ann", "ann"]
    assert turns == [(ann, "queued"), (bob, "queued"), (ann, "queued"), (bob, "completed"), (ann, "completed")]
    for job_id in (ann, bob):  # each item made once, with the job's planned prompt and seed
        items = studio.store.get("queue", job_id)["params"]["items"]
        mine = [row for row in rows if row["queue_id"] == job_id]
        assert Counter(row["params"]["queue_item"] for row in mine) == Counter(range(len(items)))
        assert sorted((row["params"]["queue_item"], row["prompt"], row["seed"]) for row in mine) == \
            [(index, item["prompt"], item["seed"]) for index, item in enumerate(items)]
    assert studio.store.count("generations") == 8  # no attempt left behind by a turn's end
    jobs = {job["id"]: job for job in list_jobs(studio, "ann", admin=True)}
    assert (jobs[ann]["status"], jobs[ann]["done"], jobs[ann]["error"]) == ("completed", 6, None)
    assert (jobs[bob]["status"], jobs[bob]["done"]) == ("completed", 2)
    assert studio.store.get("queue", ann)["position"] == position  # its place in the queue was kept


def test_a_turn_lasts_its_minute_before_it_gives_way(studio, tiny_model, monkeypatch):
    """Two users with different models would reload them between every image: a turn lasts its time first."""
    turns_of(studio, monkeypatch, 3600.0)
    model = tiny_model("flux")
    (ann,) = queue_images(studio, request(model, "a {red|green|blue} fox", "ann", batch=2))
    (bob,) = queue_images(studio, request(model, "a {grey|white} owl", "bob"))
    turns: list[tuple[int, str]] = []
    work_until_empty(studio, lambda job, status: turns.append((job["id"], status)))
    assert turns == [(ann, "completed"), (bob, "completed")]
    assert [row["owner"] for row in made(studio)] == ["ann"] * 6 + ["bob"] * 2


def test_the_owner_s_own_jobs_do_not_end_its_turn(studio, tiny_model):
    model = tiny_model("flux")
    first, second = queue_images(studio, request(model, "", "ann", batch=3), "a red fox\na blue bird")
    turns: list[tuple[int, str]] = []
    work_until_empty(studio, lambda job, status: turns.append((job["id"], status)))
    assert turns == [(first, "completed"), (second, "completed")]
    assert [row["queue_id"] for row in made(studio)] == [first] * 3 + [second] * 3


def test_a_pause_told_as_a_turn_ends_is_kept(studio, tiny_model, monkeypatch):
    """A pause told to the job just as it went back to the queue holds: the job is paused, not run again."""
    model = tiny_model("flux")
    (ann,) = queue_images(studio, request(model, "a fox", "ann", batch=3))
    (bob,) = queue_images(studio, request(model, "an owl", "bob"))
    real = tasks.end_turn

    def pause_as_the_turn_ends(studio_, job_id, turn_began):
        ended = real(studio_, job_id, turn_began)
        if ended and job_id == ann:
            control_job(studio, "ann", "pause", ann)  # what the Pause button does meanwhile
        return ended

    monkeypatch.setattr(tasks, "end_turn", pause_as_the_turn_ends)
    work_until_empty(studio)
    jobs = {job["id"]: job for job in list_jobs(studio, "ann", admin=True)}
    assert (jobs[ann]["status"], len(jobs[ann]["images"])) == ("paused", 1)
    assert (jobs[bob]["status"], len(jobs[bob]["images"])) == ("completed", 1)

    control_job(studio, "ann", "resume", ann)
    work_until_empty(studio)
    job = next(job for job in list_jobs(studio, "ann") if job["id"] == ann)
    assert (job["status"], len(job["images"])) == ("completed", 3)
    assert sorted(row["seed"] for row in made(studio) if row["queue_id"] == ann) == [3, 4, 5]


def test_a_pause_or_cancel_told_before_the_turn_ends_wins_over_it(studio, tiny_model, monkeypatch):
    model = tiny_model("flux")
    (paused,) = queue_images(studio, request(model, "a fox", "ann", batch=2))
    (cancelled,) = queue_images(studio, request(model, "a cat", "cid", batch=2))
    (bob,) = queue_images(studio, request(model, "an owl", "bob"))
    real = tasks.generate_images

    def control_after_the_first_image(*args, **kwargs):
        result = real(*args, **kwargs)
        job_id = args[1].queue_id
        if job_id in (paused, cancelled):
            control_job(studio, "", "pause" if job_id == paused else "cancel", job_id, admin=True)
        return result

    monkeypatch.setattr(tasks, "generate_images", control_after_the_first_image)
    work_until_empty(studio)
    status = {job["id"]: (job["status"], len(job["images"])) for job in list_jobs(studio, "x", admin=True)}
    assert status == {paused: ("paused", 1), cancelled: ("cancelled", 1), bob: ("completed", 1)}


def test_a_queued_grid_gives_way_between_cells_and_still_draws_its_grid(studio, tiny_model):
    model = tiny_model("flux")
    grid = queue_grid(studio, request(model, "a red fox", "ann"), [parse_axis("seed=1,2"), parse_axis("steps=1,2")])
    (bob,) = queue_images(studio, request(model, "an owl", "bob"))
    turns: list[tuple[int, str]] = []
    work_until_empty(studio, lambda job, status: turns.append((job["id"], status)))
    assert turns == [(grid, "queued"), (bob, "completed"), (grid, "completed")]
    rows = made(studio)
    assert [row["queue_id"] for row in rows] == [grid, bob, grid, grid, grid]
    assert sorted(row["params"]["queue_item"] for row in rows if row["queue_id"] == grid) == [0, 1, 2, 3]
    job = next(job for job in list_jobs(studio, "ann") if job["id"] == grid)
    assert job["status"] == "completed" and job["grid"] and len(job["images"]) == 4


def test_random_picks_with_a_random_seed_repeat_from_the_first_image_s_seed(studio, tiny_model):
    """The README's promise: queuing again with the seed a job's first image records repeats its prompts."""
    from dataclasses import replace

    choices = "|".join(f"colour{number}" for number in range(40))
    fox = request(tiny_model("flux"), f"a {{{choices}}} fox {{{choices}}}", "ann", seed=-1)
    (first,) = queue_images(studio, fox, random_picks=3)
    work_until_empty(studio)
    rows = [row for row in made(studio) if row["queue_id"] == first]
    assert len(rows) == 3
    (again,) = queue_images(studio, replace(fox, seed=rows[0]["seed"]), random_picks=3)
    picked = [(item["prompt"], item["seed"]) for item in studio.store.get("queue", first)["params"]["items"]]
    repeated = [(item["prompt"], item["seed"]) for item in studio.store.get("queue", again)["params"]["items"]]
    assert repeated == picked
    assert [(row["prompt"], row["seed"]) for row in rows] == picked


def test_a_turn_s_minute_counts_from_its_first_image_not_its_model_load(studio, tiny_model, monkeypatch):
    """A model load (or a wait for the GPU) before a turn's first image does not count in the turn: with a load
    longer than the minute, each turn still makes a minute of images, not one image between two reloads. Time is
    a fake clock: a load costs 1000 s, an image 25 s; a turn lasts 60 s from its first finished image."""
    turns_of(studio, monkeypatch, 60.0)
    clock = [0.0]
    monkeypatch.setattr(queue_jobs, "turn_clock", lambda: clock[0])
    real = tasks.generate_images
    loaded: list[int] = []  # the job whose model is loaded (the other user's job: another model, reloaded)

    def timed(*args, **kwargs):
        job_id = args[1].queue_id
        if loaded != [job_id]:
            loaded[:] = [job_id]
            clock[0] += 1000.0  # the model load, or a wait for the GPU
        result = real(*args, **kwargs)
        clock[0] += 25.0  # the image
        return result

    monkeypatch.setattr(tasks, "generate_images", timed)
    model = tiny_model("flux")
    (ann,) = queue_images(studio, request(model, "a {red|green|blue} fox", "ann", batch=2))  # six images
    (bob,) = queue_images(studio, request(model, "a {grey|white} owl", "bob", batch=2))  # four images
    turns: list[tuple[int, str]] = []
    work_until_empty(studio, lambda job, status: turns.append((job["id"], status)))
    # each turn: its first image, then images until 60 s have passed since it (25, 50, 75 s): four images
    assert [row["owner"] for row in made(studio)] == ["ann"] * 4 + ["bob"] * 4 + ["ann"] * 2
    assert turns == [(ann, "queued"), (bob, "completed"), (ann, "completed")]


def test_identical_lines_with_a_random_seed_get_seeds_of_their_own_and_a_job_repeats_from_its_first(studio,
                                                                                                     tiny_model):
    """Seed -1 is drawn for each line: two identical lines (or a wildcard line queued twice with one random pick)
    make different images, and a line queued again with its job's first image's seed repeats that job, its random
    picks included."""
    from dataclasses import replace

    from PIL import Image

    model = tiny_model("flux")
    fox = request(model, "", "ann", seed=-1, batch=2)
    first, second = queue_images(studio, fox, "a red fox\na red fox")
    (studio.config.wildcards_dir).mkdir(parents=True, exist_ok=True)
    (studio.config.wildcards_dir / "animal.txt").write_text("\n".join(f"animal{number}" for number in range(60)))
    picks = queue_images(studio, replace(fox, batch=1), "a __animal__ in the snow\n" * 3, random_picks=1)

    def items(job_id: int) -> list[tuple[str, int]]:
        return [(item["prompt"], item["seed"]) for item in studio.store.get("queue", job_id)["params"]["items"]]

    assert len({seed for job in (first, second) for _prompt, seed in items(job)}) == 4, "every image its own seed"
    assert len({items(job)[0] for job in picks}) == 3, "each copy of the line its own seed (and pick)"
    work_until_empty(studio)

    def pixels(job_id: int) -> list[bytes]:
        rows = [row for row in made(studio) if row["queue_id"] == job_id]
        return [Image.open(studio.config.absolute(row["output_path"])).convert("RGB").tobytes() for row in rows]

    assert len(set(pixels(first) + pixels(second))) == 4, "no two images of the identical lines are the same"
    (again,) = queue_images(studio, replace(fox, seed=items(second)[0][1]), "a red fox")
    (picked_again,) = queue_images(studio, replace(fox, batch=1, seed=items(picks[1])[0][1]),
                                   "a __animal__ in the snow", random_picks=1)
    assert items(again) == items(second) and items(picked_again) == items(picks[1])
    work_until_empty(studio)
    assert pixels(again) == pixels(second), "the job repeats from its first image's seed"
