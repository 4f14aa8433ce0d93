"""What each kind of queued job does, by task name. A task makes the job's items, skipping finished ones."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import fields, replace

from masuka.errors import NotFound
from masuka.image.generate import ImageRequest, ImageResult, generate_images
from masuka.image.grid import Axis, Cell, save_grid
from masuka.image.tasks import InitImage
from masuka.image.upscale.job import upscale_image
from masuka.image.upscale.request import UpscaleRequest
from masuka.queue import jobs as queue_jobs
from masuka.queue.context import QueueContext, TurnOver
from masuka.queue.jobs import end_turn, job_images
from masuka.studio import Studio

#: what a stored job's init image may hold (one queued by an older MASUKA may hold a field since removed)
INIT_FIELDS = {field.name for field in fields(InitImage)}


def base_request(studio: Studio, job: dict) -> ImageRequest:
    """The job's stored request, owned by its user and tied to the job (with its init image or edit images)."""
    fields = dict(job["params"]["request"])
    fields["references"] = [studio.config.absolute(path) for path in fields.get("references") or []]
    fields["loras"] = [(ref, float(weight)) for ref, weight in fields.get("loras") or []]
    if init := fields.get("init"):
        init = {key: value for key, value in init.items() if key in INIT_FIELDS}  # a field an older MASUKA stored
        fields["init"] = InitImage(**{**init, "path": studio.config.absolute(init["path"]),
                                      "mask": init["mask"] and studio.config.absolute(init["mask"])})
    return ImageRequest(prompt="", owner=job["owner"], queue_id=job["id"], **fields)


def make_items(studio: Studio, job: dict, ctx: QueueContext, base: ImageRequest) -> dict[int, ImageResult | None]:
    """Make every item not finished yet, one image each, in order; each item's fields override ``base``. Between
    two images, once the turn has lasted the studio's ``queue_turn_s`` since its first image was finished
    (``ctx.turn_began``), a job of another user who was served longer ago ends this job's turn (:class:`TurnOver`:
    the job is queued again and resumes from its finished images).

    Returns the images made now by item index (items finished before a restart map to None).
    """
    items = job["params"]["items"]
    made: dict[int, ImageResult | None] = {row["params"]["queue_item"]: None for row in job_images(studio, [job["id"]])}
    ctx.progress(len(made), len(items))
    for index, item in enumerate(items):
        if index in made:
            continue
        ctx.check_stop()
        overrides = {key: value for key, value in item.items() if key != "notes"}
        if "loras" in overrides:
            overrides["loras"] = [(ref, float(weight)) for ref, weight in overrides["loras"]]
        request = replace(base, **overrides, batch=1, notes={**item.get("notes", {}), "queue_item": index})
        with ctx.waiting_for_gpu():
            made[index] = generate_images(studio, request, stop=ctx.stop, on_step=ctx.on_step, background=True,
                                          cancelled=ctx.stop_asked,
                                          allow_any_path=job["params"].get("allow_any_path", False))[0]
        ctx.progress(len(made), len(items))
        if ctx.turn_began is None:  # the turn's clock starts once its first image is made (its model loaded)
            ctx.turn_began = queue_jobs.turn_clock()
        if len(made) < len(items) and end_turn(studio, job["id"], ctx.turn_began):  # another user's turn
            raise TurnOver
    return made


def run_text(studio: Studio, job: dict, ctx: QueueContext) -> None:
    """Text to image: the job's prompts and seeds, one image per item."""
    make_items(studio, job, ctx, base_request(studio, job))


def run_grid_job(studio: Studio, job: dict, ctx: QueueContext) -> None:
    """An X/Y/Z grid: the cells not made yet, then the labelled grid image of all of them (kept in the job). A cell
    deleted from History while the grid is made is made again; deleted again meanwhile, it fails the job."""
    base = base_request(studio, job)
    params = job["params"]
    for _attempt in range(2):
        make_items(studio, job, ctx, base)
        made = {row["params"]["queue_item"]: row for row in job_images(studio, [job["id"]])}
        missing = [index for index in range(len(params["items"])) if index not in made]
        if not missing:
            break
    else:
        raise NotFound(f"Grid cell {missing[0] + 1} was deleted from History while the grid was made: retry the job "
                       "to make it again and draw the grid.")
    axes = [Axis(name, tuple(values)) for name, values in params["axes"]]
    cells = [Cell(tuple(item["notes"]["grid_cell"]), base, item["notes"]["grid"]) for item in params["items"]]
    rows = [made[index] for index in range(len(cells))]  # each cell's own image, by its item
    grid = save_grid(studio, axes, cells, [studio.config.absolute(row["output_path"]) for row in rows], rows[0]["id"])
    studio.store.update("queue", job["id"], params={**params, "grid": studio.config.relative(grid)})
    ctx.log(f"grid image: {grid.name}")


def run_upscale(studio: Studio, job: dict, ctx: QueueContext) -> None:
    """One upscale, unless its picture was finished before a restart."""
    if job_images(studio, [job["id"]]):
        ctx.progress(1, 1)
        return
    fields = job["params"]["request"]
    request = UpscaleRequest(**{**fields, "image": studio.config.absolute(fields["image"])}, owner=job["owner"],
                             queue_id=job["id"])
    with ctx.waiting_for_gpu():
        upscale_image(studio, request, stop=ctx.stop, on_tile=lambda done, total: ctx.on_step(0, done, total),
                      cancelled=ctx.stop_asked, allow_any_path=job["params"].get("allow_any_path", False))
    ctx.progress(1, 1)


TASKS: dict[str, Callable[[Studio, dict, QueueContext], None]] = {"text": run_text, "grid": run_grid_job,
                                                                 "upscale": run_upscale}
