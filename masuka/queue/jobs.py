"""Queue rows: add jobs, list them, pause/resume/cancel/retry/reorder them, and claim the next one.

A job is a row of the ``queue`` table owned by a user, with its task (``text``: text-to-image, image-to-image,
inpainting or an edit; ``grid``: an X/Y/Z grid whose items are its cells; ``upscale``: one picture), its full
parameters and the list of images it makes (``items``: prompt, seed and
any per-image overrides). Every finished image is a ``generations`` row with the job's ``queue_id`` and its item
index, so a job resumed after a restart or a crash makes only the images it has not finished.

Claiming follows InvokeAI's session queue: inside one ``BEGIN IMMEDIATE`` transaction (so two workers, in
threads or processes, never take the same row), rows left ``running`` by a dead worker become
``interrupted``, then the next waiting job is taken, round-robin between users (the user served longest ago
goes first), in queue order within a user. Turns are taken image by image: between two images a running job
whose owner was served more recently than another waiting user goes back to ``queued`` (:func:`end_turn`),
keeping its place and its finished images. With sign-in, a waiting job whose owner is not on the sign-in list
(queued by a command that read an older list) is never taken: the app's worker cancels it, as the app's start
cancels those it finds (:mod:`masuka.off_list`), unless the live worker that last ran it (a command's ``queue run``
whose turn ended) will take it again (:func:`in_hand`); a command's ``queue run``, whose list may name fewer users,
leaves it.
"""

from __future__ import annotations

import os
import time
from collections.abc import Collection
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from masuka.config import on_zerogpu
from masuka.errors import InvalidInput, NotFound, bounded
from masuka.image.copies import keep_input
from masuka.image.generate import (
    MAX_BATCH,
    ImageRequest,
    Plan,
    checked_prompt,
    gpu_seconds,
    plan_loras,
    plan_request,
    seed_run,
)
from masuka.image.grid import Axis, Cell, plan_grid
from masuka.image.prompts import MAX_PROMPTS, Prompt, expand_prompts, prompt_lines
from masuka.image.upscale.detail import detail_prompt, detail_seconds, plan_detail
from masuka.image.upscale.job import model_upscale_seconds
from masuka.image.upscale.request import UpscaleRequest, check_request
from masuka.store import QUEUE_UNFINISHED as UNFINISHED
from masuka.store import holder_alive, now, owner_clause, row_id
from masuka.studio import Studio
from masuka.users import OFF_LIST, on_sign_in_list

STATUSES = ("queued", "running", "paused", "completed", "failed", "cancelled", "interrupted")
WAITING = ("queued", "interrupted")  # what a worker may claim (an interrupted job resumes)
IDLE = ("queued", "paused", "interrupted")  # no worker has it in hand: a cancel ends it at once
ACTIONS = ("pause", "resume", "cancel", "retry", "up", "down", "top")
#: the request fields a job stores; owner, queue id, template and notes are set per image
REQUEST_FIELDS = ("model", "negative_prompt", "steps", "guidance", "width", "height", "loras", "memory_plan", "fast",
                  "step_cache", "optimize_prompt", "safety_check", "face_detail", "face_strength", "sampler")
#: the columns a listing shows of a job (with its grid image and finished images)
LISTED = ("id", "owner", "task", "status", "title", "model", "done", "total", "error", "control", "created_at",
          "started_at", "finished_at")


def queue_images(studio: Studio, request: ImageRequest, prompts: str | None = None, random_picks: int = 0,
                 allow_any_path: bool = False, literal: bool = False) -> list[int]:
    """Queue text-to-image work: one job per prompt line (``prompts``, else ``request.prompt``).

    Each line expands (``{a|b}``, ``__wildcard__``) into every combination, or ``random_picks`` random picks;
    ``literal``: the prompt runs as it is, as Generate runs it (the Image tab's Add to queue). Every prompt makes
    ``request.batch`` images. Seeds run on from ``request.seed`` across the job, so a resumed job remakes nothing
    and a repeated job repeats its images; an unset seed is drawn for each line (each job its own, so repeated
    lines or overlapping expansions make different images), for its picks and its images alike, so queuing a line
    again with its job's first image's seed repeats the job, its random picks included.
    """
    _no_pictures(request)
    templates = prompt_lines(prompts) if prompts is not None else [request.prompt]
    if not templates:
        raise InvalidInput("No prompts: write one prompt a line.")
    random_seed = request.seed is None or request.seed == -1
    planned = []  # every line is checked before any is queued: a bad line queues none
    for number, template in enumerate(templates, 1):
        # each line's own random seed, with room for the largest run a line may make, for its picks and its images
        seed = seed_run(None, _largest_run(random_picks, literal)) if random_seed else request.seed
        try:
            # random picks follow the seed too, so a job repeated with its seed repeats its prompts
            expanded = [Prompt(template, request.template)] if literal else expand_prompts(
                studio.config.wildcards_dir, [template], random_picks, seed_run(seed, 1))
            first = expanded[0].text if expanded else ""  # nothing to expand: refused as an empty prompt
            try:
                plan = plan_request(studio, replace(request, prompt=first), allow_any_path)
            except InvalidInput as error:
                raise _in_expansion(Prompt(first, template), error) from None
            _check_expansions(studio, request, plan, expanded[1:], allow_any_path)
        except InvalidInput as error:
            if prompts is None:  # one prompt, not a batch of lines
                raise
            raise InvalidInput(bounded(f"Prompt line {number} ({template!r}): {error}")) from None
        if on_zerogpu():  # each item is one GPU call of one image (masuka.queue.tasks.make_items)
            _fits_gpu_call(plan_request(studio, replace(request, prompt=first, batch=1), allow_any_path))
        items: list[dict[str, Any]] = [{"prompt": p.text, "template": p.template} for p in expanded
                                       for _ in plan.seeds]
        base = seed_run(seed, len(items))
        for index, item in enumerate(items):
            item["seed"] = base + index
        planned.append((template, plan.spec.id, items))
    with studio.store.transaction():  # the room for all and every job, in one step: all are queued or none
        _check_room(studio, request.owner, len(planned))
        return [add_job(studio, request.owner, "text", template, model,
                        {"request": _stored(studio, request), "items": items, "allow_any_path": allow_any_path})
                for template, model, items in planned]


def _largest_run(random_picks: int, literal: bool) -> int:
    """How many images one prompt line may make at most (every expansion times the batch): the room a random seed
    leaves, so the seeds of any line run on within :data:`~masuka.image.generate.MAX_SEED`."""
    prompts = 1 if literal else min(int(random_picks), MAX_PROMPTS) if random_picks > 0 else MAX_PROMPTS
    return prompts * MAX_BATCH


def _check_expansions(studio: Studio, request: ImageRequest, plan: Plan, prompts: list[Prompt],
                      allow_any_path: bool) -> None:
    """A line's other expansions checked as the first: each distinct prompt as :func:`plan_request` checks one
    (:func:`checked_prompt`: one that is only a ``<lora:…>`` tag is empty), each distinct set of its tags' LoRAs
    once (:func:`plan_loras`: found, for the model, weights in range; no model loaded)."""
    tag_sets: dict[tuple, Prompt] = {}  # each distinct set of LoRA tags, and the first expansion with it
    for prompt in {prompt.text: prompt for prompt in reversed(prompts)}.values():  # each text's first expansion
        try:
            tag_sets.setdefault(tuple(checked_prompt(prompt.text)[1]), prompt)
        except InvalidInput as error:
            raise _in_expansion(prompt, error) from None
    for tagged, prompt in tag_sets.items():
        try:
            plan_loras(studio, plan.spec, [*request.loras, *tagged], request.owner, allow_any_path)
        except InvalidInput as error:
            raise _in_expansion(prompt, error) from None


def _in_expansion(prompt: Prompt, error: InvalidInput) -> InvalidInput:
    """``error``, met in an expansion of a prompt line, naming it (a line that expands to itself is the prompt)."""
    if prompt.text == " ".join(prompt.template.split()):
        return error
    return InvalidInput(bounded(f"The expansion {prompt.text!r} is refused: {error}"))


def _no_pictures(request: ImageRequest) -> None:
    """The queue stores settings, not pictures: refuse a request with control or reference images."""
    if request.controls or request.style_references:
        raise InvalidInput("The queue keeps prompts and settings, not pictures: generate with control or reference "
                           "images directly.")


def queue_grid(studio: Studio, base: ImageRequest, axes: list[Axis], allow_any_path: bool = False,
               confirm_large: bool = False) -> int:
    """Queue an X/Y/Z grid as one job: every cell is checked now and is one item (its request and its place in
    the grid); the worker makes the cells not made yet, then draws the grid image."""
    _no_pictures(base)
    return queue_cells(studio, base, axes, plan_grid(studio, base, axes, allow_any_path, confirm_large),
                       allow_any_path)


def queue_cells(studio: Studio, base: ImageRequest, axes: list[Axis], cells: list[Cell],
                allow_any_path: bool = False) -> int:
    """Queue the planned cells of a grid (:func:`~masuka.image.grid.plan_grid`) as one ``grid`` job."""
    for request in (base, *(cell.request for cell in cells)):
        _no_pictures(request)
    items = [{**_fields(cell.request), "prompt": cell.request.prompt, "seed": cell.request.seed,
              "notes": {"grid": cell.labels, "grid_cell": list(cell.position)}} for cell in cells]
    model = plan_request(studio, cells[0].request, allow_any_path).spec.id
    if on_zerogpu():  # each cell is one GPU call
        for cell in cells:
            _fits_gpu_call(plan_request(studio, cell.request, allow_any_path))
    title = f"grid {' x '.join(axis.name for axis in axes)} ({len(cells)} cells): {base.prompt}"
    with studio.store.transaction():  # room first: a refused job leaves no copy of its pictures behind
        _check_room(studio, base.owner)
        return add_job(studio, base.owner, "grid", title, model, {
            "request": _stored(studio, base), "items": items,
            "axes": [[axis.name, list(axis.values)] for axis in axes], "allow_any_path": allow_any_path})


def queue_upscale(studio: Studio, request: UpscaleRequest, allow_any_path: bool = False) -> int:
    """Queue one upscale (checked now; the source picture kept in the owner's inputs folder) as an ``upscale`` job."""
    source, upscaler = check_request(studio, request)
    if request.detail:  # the prompt and generation's checks, as the upscale will make them
        plan, overlap = plan_detail(studio, request, source, detail_prompt(request), allow_any_path)
        if on_zerogpu():  # the tiles' GPU call: as long as it will ask for
            detail_seconds(request, plan, source, overlap)
    elif upscaler is not None and on_zerogpu():
        model_upscale_seconds(request, source)
    title = f"upscale {request.scale}x{' with detail' if request.detail else ''}: {Path(request.image).name}"
    with studio.store.transaction():  # room first: a refused job leaves no copy of its picture behind
        _check_room(studio, request.owner)
        kept = keep_input(studio, request.owner, request.image, "upscale-source")
        fields = {**asdict(request), "image": studio.config.relative(kept)}
        del fields["owner"], fields["queue_id"]
        return add_job(studio, request.owner, "upscale", title, request.model or request.upscaler,
                       {"request": fields, "items": [{}], "allow_any_path": allow_any_path})


def _fits_gpu_call(plan: Plan) -> None:
    """Refuse now work its ZeroGPU call would refuse when the job runs (too long for one call); on ZeroGPU only."""
    gpu_seconds(plan)


def _fields(request: ImageRequest) -> dict[str, Any]:
    return {name: value for name, value in asdict(request).items() if name in REQUEST_FIELDS}


def _stored(studio: Studio, request: ImageRequest) -> dict[str, Any]:
    """The request as a job keeps it; image-to-image, inpainting and edits keep their own copy of the pictures."""
    fields, init, config = _fields(request), request.init, studio.config
    if request.references:
        fields["references"] = [config.relative(keep_input(studio, request.owner, path, "reference"))
                                for path in request.references]
    if init is not None:  # copies in the owner's inputs folder, whatever becomes of the files given
        fields["init"] = {**asdict(init), "path": config.relative(keep_input(studio, request.owner, init.path,
                                                                               "init-image")),
                          "mask": init.mask and config.relative(keep_input(studio, request.owner, init.mask, "mask"))}
    return fields


def add_job(studio: Studio, owner: str, task: str, title: str, model: str, params: dict[str, Any]) -> int:
    """Insert one job at the end of the queue. Call it inside the caller's transaction, after
    :func:`_check_room` made room for it (and for any other job that transaction adds)."""
    return studio.store.insert("queue", {"owner": owner, "task": task, "status": "queued", "title": title[:200],
                                         "model": model, "params": {"task": task, **params}, "position": _end(studio),
                                         "done": 0, "total": len(params["items"]), "updated_at": now()})


def list_jobs(studio: Studio, user: str, admin: bool = False, finished: int = 20) -> list[dict]:
    """The user's unfinished jobs in queue order, then the ``finished`` most recent others; with image paths.

    A listing reads only what it shows (it runs at every poll of the Queue tab): never a job's stored
    parameters, which run to megabytes for a large grid."""
    recover(studio)
    mine, args = owner_clause(user, admin)
    store, config = studio.store, studio.config
    listed = f"select {', '.join(LISTED)}, json_extract(params, '$.grid') as grid from queue where {mine} and"
    unfinished = f"status in ({_marks(UNFINISHED)})"
    rows = store.query(f"{listed} {unfinished} order by position, id", [*args, *UNFINISHED])
    rows += store.query(f"{listed} not {unfinished} order by coalesce(finished_at, updated_at) desc, id desc limit ?",
                        [*args, *UNFINISHED, finished])
    images: dict[int, list[str]] = {row["id"]: [] for row in rows}
    for image in job_images(studio, list(images)):
        images[image["queue_id"]].append(str(config.absolute(image["output_path"])))
    return [{key: row[key] for key in LISTED} | {"images": images[row["id"]]}
            | ({"grid": str(config.absolute(row["grid"]))} if row["grid"] else {}) for row in rows]


def job_images(studio: Studio, job_ids: list[int]) -> list[dict]:
    """The finished images of the jobs (one ``generations`` row each), by job, then in item order."""
    return studio.store.find("generations", f"queue_id in ({_marks(tuple(job_ids))}) and status = 'completed'",
                             job_ids, order_by="queue_id, json_extract(params, '$.queue_item'), id")


def control_job(studio: Studio, user: str, action: str, job_id: int | None = None, admin: bool = False) -> str:
    """Pause, resume, cancel, retry or move (up, down, top) one job; pause and resume without an id: all of the
    user's own (an admin's too: only theirs). A job moves among its owner's jobs, since users take turns.

    A running job pauses after its current image and cancels at its next step, or at once while it waits for the
    GPU. Returns what was done.
    """
    if action not in ACTIONS:
        raise InvalidInput(f"Unknown queue action {action!r}: use {', '.join(ACTIONS)}.")
    store = studio.store
    with store.transaction():
        recover(studio)  # a job whose worker died is not running: it is cancelled or paused at once
        if job_id is None:
            if action not in ("pause", "resume"):
                raise InvalidInput(f"Name the job to {action}.")
            rows = store.find("queue", f"owner = ? and status in ({_marks(UNFINISHED)})", [user, *UNFINISHED])
        else:
            number = row_id(job_id)
            row = store.get("queue", number) if number else None
            if row is None or not (admin or row["owner"] == user):
                raise NotFound(f"There is no queued job {job_id} of yours.")
            rows = [row]
        changed = sum(_apply(studio, row, action, user) for row in rows)
    if job_id is not None and not changed:
        raise InvalidInput(f"Job {job_id} is {rows[0]['status']}: it cannot be {_past(action)} now.")
    return f"{changed} job{'s' * (changed != 1)} {_past(action)}."


def claim(studio: Studio, cancel_off_list: bool = False) -> dict | None:
    """Take the next waiting job for this studio's worker, or None when nothing waits. With sign-in, the waiting
    jobs of owners not on the sign-in list are never taken; the app's worker (``cancel_off_list``: its list is the
    studio's) cancels them, while a command (``queue run``, whose ``MASUKA_AUTH`` may name fewer users) leaves them."""
    store = studio.store
    with store.transaction():
        recover(studio)
        waiting = store.query(f"select id, owner, status, worker, pid from queue where status in ({_marks(WAITING)}) "
                              "order by position, id", WAITING)  # not every job's params: only the one taken's
        for row in waiting:  # queued since the app started (a command with an older sign-in list)
            if cancel_off_list and not on_sign_in_list(studio.config, row["owner"]) and not in_hand(row):
                finish(studio, row["id"], "cancelled", OFF_LIST)
        waiting = [row for row in waiting if on_sign_in_list(studio.config, row["owner"])]
        if not waiting:
            return None
        served = _served(studio)
        taken = min(waiting, key=lambda row: served.get(row["owner"], ""))  # min keeps queue order on ties
        job = store.existing("queue", taken["id"])
        fields = {"status": "running", "worker": studio.runner().token, "pid": os.getpid(), "started_at": now(),
                  "updated_at": now(), "control": None, "error": None, "finished_at": None}
        store.update("queue", job["id"], **fields)
        # attempts a dead worker left unfinished made no image: the job remakes them
        store.delete_where("generations", "queue_id = ? and status != 'completed'", [job["id"]])
    return {**job, **fields}


def turn_clock() -> float:
    """The clock a turn is timed by (monotonic seconds)."""
    return time.monotonic()


def end_turn(studio: Studio, job_id: int, turn_began: float) -> bool:
    """Between two images of a running job: when its turn has lasted the studio's ``queue_turn_s`` since
    ``turn_began`` (the :func:`turn_clock` when the turn's first image was finished, so a turn always makes one
    image after loading its model and then that long of images) and a job of another user who was served longer
    ago waits, put this one back to ``queued`` and return True (its worker then claims the next job, the other
    user's). The job keeps its position and resumes from its finished images when its owner's turn comes again,
    so users take turns within long jobs, not only between jobs. The owner's own other jobs never end its turn,
    and a job told to pause or cancel (or no longer this worker's) is left running, for its worker to do that."""
    store = studio.store
    if turn_clock() - turn_began < studio.config.queue_turn_s:
        return False  # the common case: nothing read
    row = store.query("select owner from queue where id = ?", [job_id])
    if not row or not _others_waiting(studio, row[0]["owner"]):
        return False  # no write lock taken
    with store.transaction():
        job = store.get("queue", job_id)
        if (job is None or job["status"] != "running" or job["control"] is not None
                or job["worker"] != studio.runner().token):
            return False
        served = _served(studio)
        mine = served.get(job["owner"], "")
        if not any(served.get(owner, "") < mine for owner in _others_waiting(studio, job["owner"])):
            return False
        store.update("queue", job_id, status="queued", error=None, updated_at=now())
    return True


def _others_waiting(studio: Studio, owner: str) -> list[str]:
    """The users other than ``owner`` with a job a worker may claim (on the sign-in list)."""
    rows = studio.store.query(f"select distinct owner from queue where status in ({_marks(WAITING)}) and owner != ?",
                              [*WAITING, owner])
    return [row["owner"] for row in rows if on_sign_in_list(studio.config, row["owner"])]


def _served(studio: Studio) -> dict[str, str]:
    """When each user's last turn began (their jobs' latest ``started_at``): the user served longest ago goes next."""
    return {row["owner"]: row["last"] or "" for row in studio.store.query(
        "select owner, max(started_at) as last from queue group by owner")}


def recover(studio: Studio, stopped: Collection[int] = ()) -> list[int]:
    """Rows ``running`` under a worker that is gone (another process, or a studio closed in this one), and this
    studio's jobs ``stopped`` (those its worker ended as the app closes), become ``interrupted`` (and are claimed
    again); one that was told to cancel or pause meanwhile is cancelled or paused, as its owner was told it would
    be."""
    token = studio.runner().token
    stale = [row for row in studio.store.find("queue", "status = 'running'")
             if (row["id"] in stopped and row["worker"] == token) or not holder_alive(row["pid"], row["worker"])]
    for row in stale:
        if row["control"] == "cancel":
            finish(studio, row["id"], "cancelled")
        elif row["control"] == "pause":
            studio.store.update("queue", row["id"], status="paused", control=None, updated_at=now())
        else:
            studio.store.update("queue", row["id"], status="interrupted", updated_at=now(),
                                error="the worker stopped before this finished; it resumes from its finished images")
    return [row["id"] for row in stale]


def idle_jobs(studio: Studio) -> list[dict]:
    """The id, owner, status and last worker of every job no worker is running (:data:`IDLE`: queued, paused or
    interrupted); :func:`in_hand` tells those a live worker will take again."""
    return studio.store.query(f"select id, owner, status, worker, pid from queue where status in ({_marks(IDLE)}) "
                              "order by id", IDLE)


def in_hand(row: dict) -> bool:
    """Whether a waiting job (``status``, ``worker``, ``pid`` of its row) is still in the hands of the live worker
    that last ran it: one whose turn ended (:func:`end_turn`) or that a busy database interrupted, which that worker
    (a ``queue run`` whose sign-in list still names its owner) claims again. The app's worker leaves it to it."""
    return row["status"] in WAITING and bool(row["worker"]) and holder_alive(row["pid"], row["worker"])


def finish(studio: Studio, job_id: int, status: str, error: str | None = None) -> None:
    """Record how a worker left a job."""
    studio.store.update("queue", job_id, status=status, error=error, control=None, updated_at=now(),
                        finished_at=now() if status in ("completed", "failed", "cancelled") else None)


def _apply(studio: Studio, row: dict, action: str, user: str) -> bool:
    store, status, job_id = studio.store, row["status"], row["id"]
    if action == "pause" and status in WAITING:
        store.update("queue", job_id, status="paused", updated_at=now())
    elif action in ("pause", "cancel") and status == "running":
        store.update("queue", job_id, control=action, updated_at=now())
    elif action == "resume" and status == "paused":
        store.update("queue", job_id, status="queued", updated_at=now())
    elif action == "resume" and status == "running" and row["control"] == "pause":
        store.update("queue", job_id, control=None, updated_at=now())
    elif action == "cancel" and status in IDLE:
        finish(studio, job_id, "cancelled")
    elif action == "retry" and status in ("failed", "cancelled", "interrupted"):
        if status not in UNFINISHED:  # a finished job comes back: it counts against its owner's limit again
            _check_room(studio, row["owner"])
        store.update("queue", job_id, status="queued", error=None, control=None, finished_at=None, updated_at=now(),
                     position=_end(studio))  # at the end, as a job added now
    elif action in ("up", "down", "top") and status in UNFINISHED:
        return _move(studio, row, action, user)
    else:
        return False
    return True


def _check_room(studio: Studio, owner: str, more: int = 1) -> None:
    """Refuse ``more`` unfinished jobs for ``owner`` beyond their limit (call inside a transaction)."""
    limit = studio.config.queued_jobs_per_user
    if more > limit:  # no wait or cancel makes room for it: say so, not how many are waiting
        raise InvalidInput(f"A batch of {more} jobs is over the limit of {limit} per user: queue at most {limit} at "
                           "a time.")
    waiting = studio.store.count("queue", f"owner = ? and status in ({_marks(UNFINISHED)})", [owner, *UNFINISHED])
    if waiting + more > limit:
        over = (f", and these {more} would exceed the limit of {limit} per user" if more > 1 else
                f" (the limit is {limit} per user)")
        raise InvalidInput(f"You already have {waiting} unfinished job{'s' * (waiting != 1)} in the queue{over}: wait "
                           "for some to finish or cancel some.")


def _move(studio: Studio, row: dict, action: str, user: str) -> bool:
    """Swap with the owner's neighbouring unfinished job, or go before every job; a job already at that end is
    refused in words. Users take turns whatever the positions, so a job moves among its owner's jobs only.

    Queue order is (position, id): the unfinished jobs are numbered afresh in that order, so jobs that share a
    position (left by an older version) move as they are shown."""
    store = studio.store
    queue = store.query(f"select id, owner, position from queue where status in ({_marks(UNFINISHED)}) "
                        "order by position, id", UNFINISHED)
    order = [r["id"] for r in queue]
    theirs = [r["id"] for r in queue if r["owner"] == row["owner"]]
    at = theirs.index(row["id"])
    if at == (len(theirs) - 1 if action == "down" else 0):
        whose = ("your", "") if row["owner"] == user else (
            f"{row['owner']}'s", " (users take turns: a job moves among its owner's jobs only)")
        raise InvalidInput(f"Job {row['id']} is already {'last' if action == 'down' else 'first'} of {whose[0]} "
                           f"unfinished jobs{whose[1]}.")
    here = order.index(row["id"])
    if action == "top":
        order.insert(0, order.pop(here))
    else:
        there = order.index(theirs[at + (1 if action == "down" else -1)])
        order[here], order[there] = order[there], order[here]
    was = {r["id"]: r["position"] for r in queue}
    for position, job_id in enumerate(order, 1):
        if was[job_id] != position:
            store.update("queue", job_id, position=position)
    return True


def _end(studio: Studio) -> float:
    """The position after every job's: where a new or retried job goes."""
    return (studio.store.query("select max(position) as p from queue")[0]["p"] or 0) + 1


def _past(action: str) -> str:
    return {"pause": "paused", "resume": "resumed", "cancel": "cancelled", "retry": "queued again", "up": "moved up",
            "down": "moved down", "top": "moved to the top"}[action]


def _marks(values: tuple) -> str:
    return ",".join("?" * len(values))
