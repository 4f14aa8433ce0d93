"""Queue tab: the persistent generation queue (pause, resume, cancel, retry, reorder, results) and prompt batches.

"Add to queue" on the Image tab queues what its Generate (Edit, in Edit mode) would run; the batch box here queues
many prompts with the Image tab's other settings. The app's background worker runs the jobs; this view polls the store.
"""

from __future__ import annotations

import gradio as gr

from masuka.errors import InvalidInput
from masuka.image.generate import ImageRequest, parse_lora
from masuka.image.prompts import MAX_PROMPTS
from masuka.image.tasks import INPAINT_AREAS, MASK_MODES, MASKED_CONTENTS, ONLY_MASKED_PADDING, InitImage
from masuka.queue.jobs import control_job, list_jobs, queue_images
from masuka.studio import Studio
from masuka.ui.api_names import name_outputs
from masuka.ui.common import UIContext, bind, friendly, is_admin, not_uploaded, user_of
from masuka.ui.image import GENERATE_FIELDS, image_request
from masuka.ui.image_modes import EDIT, INPAINT_FIELDS, edit_request
from masuka.validation import whole_number

COLUMNS = ["id", "owner", "status", "done", "model", "prompt", "error"]
POLL_S = 2.0
#: the Image tab's form fields, in the order queue_add takes them
FORM = ["prompt", "model", "negative", "steps", "guidance", "width", "height", "seed", "batch", "loras",
        "memory_plan", "fast", "step_cache"]
#: the Image tab's generation aids, which queue_add takes after the prompt batch (masuka.ui.aids)
AID_FORM = ["optimize_prompt", "safety_check", "face_detail", "face_strength"]
#: what the Image tab's "Add to queue" sends: the images an edit takes, then Generate's form
IMAGE_TAB_FORM = ["references", *GENERATE_FIELDS]
#: the Image tab's field that every API taking its form takes last, after its own
SAMPLER_FORM = ["sampler"]


def form_request(owner: str, prompt: str, model: str, negative_prompt: str = "", steps: int | None = None,
                 guidance: float | None = None, width: int | None = None, height: int | None = None,
                 seed: int | None = -1, batch: int = 1, loras: list[str] | None = None, memory_plan: str = "auto",
                 fast: bool = False, step_cache: float = 0.0, optimize_prompt: bool = False, safety_check: bool = False,
                 face_detail: bool = False, face_strength: float = 0.4, sampler: str = "") -> ImageRequest:
    """The request the Image tab's form (:data:`FORM`, :data:`AID_FORM`, then :data:`SAMPLER_FORM`) describes;
    ``sampler`` "" keeps the model's own scheduler."""
    return ImageRequest(prompt=prompt or "", model=model, negative_prompt=negative_prompt or "", steps=steps,
                        guidance=guidance, width=width, height=height, seed=seed, batch=batch or 1,
                        loras=[parse_lora(x) for x in loras or []], owner=owner, memory_plan=memory_plan or "auto",
                        fast=bool(fast), step_cache=float(step_cache or 0), optimize_prompt=optimize_prompt,
                        safety_check=safety_check, face_detail=face_detail,
                        face_strength=float(0.4 if face_strength is None else face_strength),
                        sampler=sampler or "")


def uploaded(name: str, value: dict | None) -> str | None:
    """The server path of the file an API caller uploaded as ``name`` (Gradio has checked it lies in its upload
    folder)."""
    if value in (None, ""):
        return None
    if isinstance(value, dict) and (value.get("meta") or {}).get("_type") == "gradio.FileData" and value.get("path"):
        return value["path"]
    raise InvalidInput(not_uploaded(name))


def build(ctx: UIContext) -> None:
    studio = ctx.studio
    prompts, picks, add_batch = _prompt_batch()
    with gr.Row():
        # whole numbers without precision: Gradio would round a fraction, which the handlers refuse instead
        job = gr.Number(value=None, label="Job (click a row; 0 = all of yours)", scale=1,
                        min_width=120)
        buttons = {action: gr.Button(label, scale=0, min_width=90, variant=variant) for action, label, variant in (
            ("pause", "Pause", "secondary"), ("resume", "Resume", "secondary"), ("cancel", "Cancel", "stop"),
            ("retry", "Retry", "secondary"), ("up", "Up", "secondary"), ("down", "Down", "secondary"),
            ("top", "Top", "secondary"))}
        pause_all = gr.Button("Pause all mine", scale=0, min_width=120)
        resume_all = gr.Button("Resume all mine", scale=0, min_width=120)
    gr.Markdown("Users take turns: the next job is the first waiting one of the user served longest ago. Up, Down "
                "and Top move a job among its owner's jobs.")
    message = gr.Markdown(label="Message")
    table = gr.Dataframe(headers=COLUMNS, interactive=False, wrap=True, max_height=420)
    results = gr.Gallery(label="Results of the chosen job", columns=6, height=260, interactive=False)
    name_outputs(gr.api(bind(queue_add, studio), api_name="queue_add"), "Jobs added")
    name_outputs(gr.api(bind(queue_status, studio), api_name="queue_status"), "Jobs")
    name_outputs(gr.api(bind(queue_control, studio), api_name="queue_control"), "Message")
    hidden = gr.JSON(visible=False)
    image = ctx.form("image")
    form, aid_form, sampler = image.pick(FORM), image.pick(AID_FORM), image.pick(SAMPLER_FORM)
    private = {"api_visibility": "private"}
    listed = bind(rows, studio)
    add_batch.click(bind(queue_form, studio), form + [prompts, picks] + aid_form + sampler, hidden,
                    **private).success(added, hidden, message, **private).then(listed, None, table, **private)
    if "queue" in image.buttons:
        image.buttons["queue"].click(bind(queue_image_form, studio), image.pick(IMAGE_TAB_FORM), hidden,
                                     **private).success(announced, hidden, message, **private).then(
            listed, None, table, **private)
    for action, button in buttons.items():
        button.click(bind(control, studio, action), job, message, **private).then(listed, None, table, **private)
    for action, button in (("pause", pause_all), ("resume", resume_all)):
        button.click(bind(control_all, studio, action), None, message, **private).then(
            listed, None, table, **private)
    table.select(bind(pick, studio), None, [job, results], api_visibility="private")
    ctx.poll(POLL_S, bind(poll, studio), job, [table, results])


def _prompt_batch() -> tuple[gr.Textbox, gr.Number, gr.Button]:
    """The prompt batch box: prompts, random picks and its button."""
    with gr.Accordion("Prompt batch (uses the Image tab's model and settings)", open=False):
        prompts = gr.Textbox("", label="Prompts, one a line", lines=5,
                             placeholder="a {red|green|blue} car at night\na __animal__ in the snow")
        with gr.Row():
            picks = gr.Number(value=0, minimum=0, label="Random picks per line (0 = every combination)")
            add_batch = gr.Button("Queue these prompts", variant="primary")
        gr.Markdown("`{a|b|c}` makes one prompt per choice; `__name__` takes each line of "
                    "`wildcards/name.txt` in the data folder.")
    return prompts, picks, add_batch


def rows(studio: Studio, request: gr.Request):
    """The jobs table: the user's jobs, a control asked for shown with the status."""
    return _rows(list_jobs(studio, user_of(request), is_admin(studio, request)))


def _rows(jobs: list[dict]) -> list[list]:
    return [[j["id"], j["owner"], j["status"] + (f" ({j['control']} asked)" if j["control"] else ""),
             f"{j['done']}/{j['total']}", j["model"], j["title"], j["error"] or ""] for j in jobs]


def queue_status(studio: Studio, request: gr.Request = None) -> list[dict]:
    """Your jobs: unfinished ones in queue order, then recent finished ones, with their image paths."""
    return list_jobs(studio, user_of(request), is_admin(studio, request))


@friendly
def queue_add(studio: Studio, prompt: str, model: str, negative_prompt: str = "", steps: int | None = None,
              guidance: float | None = None, width: int | None = None, height: int | None = None,
              seed: int | None = -1, batch: int = 1, loras: list[str] | None = None, memory_plan: str = "auto",
              fast: bool = False, step_cache: float = 0.0, prompts: str = "", random_picks: int = 0,
              optimize_prompt: bool = False, safety_check: bool = False, face_detail: bool = False,
              face_strength: float = 0.4, init_image: dict | None = None, strength: float = 0.75,
              mask: dict | None = None, sampler: str = "", mask_blur: int = InitImage.mask_blur,
              mask_mode: str = MASK_MODES[0], masked_content: str = MASKED_CONTENTS[0],
              inpaint_area: str = INPAINT_AREAS[0], only_masked_padding: int = ONLY_MASKED_PADDING,
              request: gr.Request = None) -> dict:
    """Queue image jobs: the prompt (or ``prompts``, one job a line) with {a|b} and __wildcard__ expansion,
    with the generation aids asked for; from ``init_image`` (an uploaded file, repainting the white of the
    ``mask`` file, with its blur and A1111's inpaint options) when given; with an A1111 ``sampler`` ("" = the
    model's own scheduler)."""
    return queue_form(studio, prompt, model, negative_prompt, steps, guidance, width, height, seed, batch, loras,
                      memory_plan, fast, step_cache, prompts, random_picks, optimize_prompt, safety_check,
                      face_detail, face_strength, sampler, uploaded("init_image", init_image), strength,
                      uploaded("mask", mask), mask_blur, (mask_mode, masked_content, inpaint_area, only_masked_padding),
                      request)


@friendly
def queue_form(studio: Studio, prompt: str, model: str, negative_prompt: str, steps: int | None,
               guidance: float | None, width: int | None, height: int | None, seed: int | None, batch: int,
               loras: list[str] | None, memory_plan: str, fast: bool, step_cache: float, prompts: str,
               random_picks: int, optimize_prompt: bool, safety_check: bool, face_detail: bool, face_strength: float,
               sampler: str = "", init_image: str | None = None, strength: float = 0.75, mask: str | None = None,
               mask_blur: int = InitImage.mask_blur, inpaint: tuple = (), request: gr.Request = None) -> dict:
    """:func:`queue_add` with the starting image and mask as checked file paths; the prompt batch box sends none.
    The request is built as the Image tab's Generate builds it (:func:`~masuka.ui.image.image_request`)."""
    image = image_request(user_of(request), prompt, model, negative_prompt, steps, guidance, width, height, seed,
                          batch, loras, memory_plan, fast, step_cache, init_image, strength, mask, mask_blur,
                          optimize_prompt=optimize_prompt, safety_check=safety_check, face_detail=face_detail,
                          face_strength=face_strength, sampler=sampler, **dict(zip(INPAINT_FIELDS, inpaint)))
    picks = whole_number("random picks", random_picks or 0, 0, MAX_PROMPTS)
    return {"jobs": queue_images(studio, image, prompts or None, picks)}


@friendly
def queue_image_form(studio: Studio, request: gr.Request, references: list | None, *values) -> dict:
    """The Image tab's "Add to queue" (:data:`IMAGE_TAB_FORM`): the job its Generate would run in the mode shown,
    built by the same code, or in Edit mode the edit of ``references``, its prompt as it is (``{a|b}`` and
    ``__wildcards__`` expand in prompt batches only); the queue refuses control and reference images, which it
    does not keep. The request comes before the values, as in ``check_form``."""
    owner = user_of(request)
    form = dict(zip(GENERATE_FIELDS, values))
    if form["mode"] == EDIT:
        image = edit_request(form["prompt"], form["model"], references, form["negative"], form["steps"],
                             form["guidance"], form["seed"], form["batch"], form["loras"], owner)
    else:
        image = image_request(owner, *values)
    return {"jobs": queue_images(studio, image, literal=True)}


@friendly
def queue_control(studio: Studio, action: str, job_id: int | None = None, request: gr.Request = None) -> str:
    """pause, resume, cancel, retry, up, down or top one job; pause or resume without a job (or job 0): all of
    yours."""
    return control_job(studio, user_of(request), action, None if job_id in (None, "", 0) else job_id,
                       is_admin(studio, request))


def control(studio: Studio, action: str, job_id: float | None = None, request: gr.Request = None) -> str:
    """A job button: ``action`` on the chosen job."""
    return queue_control(studio, action, job_id, request)


def control_all(studio: Studio, action: str, request: gr.Request = None) -> str:
    """"Pause all mine" and "Resume all mine"."""
    return queue_control(studio, action, None, request)


def added(result: dict) -> str:
    return f"Queued job{'s' * (len(result['jobs']) != 1)} {', '.join(map(str, result['jobs']))}."


def announced(result: dict) -> str:
    """:func:`added`, also as a toast: the Image tab's "Add to queue" is pressed where this tab's message is not
    seen (its refusals are toasts too)."""
    said = added(result)
    gr.Info(said)
    return said


def pick(studio: Studio, evt: gr.SelectData, request: gr.Request):
    """A clicked row: its job number, and the job's grid and images."""
    job_id = int(evt.row_value[0])
    return job_id, _results(next((j for j in queue_status(studio, request) if j["id"] == job_id), None))


def poll(studio: Studio, job_id: float | None, request: gr.Request):
    """The timer's refresh: the jobs table, and the chosen job's results (a job no longer listed keeps what it
    showed). The poll sends what changed since the last tick (``ctx.poll``), so the gallery does not flicker."""
    jobs = list_jobs(studio, user_of(request), is_admin(studio, request))
    found = next((j for j in jobs if j["id"] == job_id), None)  # a fraction names no job
    return _rows(jobs), _results(found) if found else gr.skip()


def _results(job: dict | None) -> list[tuple[str, str]]:
    """A job's grid, then its images, as the results gallery shows them (nothing for no job)."""
    if job is None:
        return []
    grid = [(job["grid"], "grid")] if job.get("grid") else []
    return grid + [(path, f"image {i + 1}") for i, path in enumerate(job["images"])]
