"""Video tab: prompt, optional first frame, provider and model (only valid choices), price before Generate,
a jobs table that follows the store, finished videos, cancel.

The app's job runner adopts the video jobs a previous run (or a killed CLI) left unfinished, at start-up and
now and then (:func:`masuka.video.jobs.resume_video_jobs`): only the long-lived app process resumes them, so a
short CLI command never starts polling that it would abandon on exit (``python -m masuka jobs resume`` is the
headless way).
"""

from __future__ import annotations

from dataclasses import dataclass

import gradio as gr
from gradio.components import Component

from masuka import jobs
from masuka.errors import InvalidInput, MasukaError
from masuka.image.tasks import upright_size
from masuka.remote.health import HealthTracker
from masuka.remote.timing import RemoteSettings
from masuka.studio import Studio
from masuka.ui.common import MAX_ID, UIContext, bind, friendly, is_admin, usable_file, user_of, whole_number_box
from masuka.validation import whole_number
from masuka.video.availability import offered_providers
from masuka.video.catalog import (
    LOCAL,
    durations_for,
    lifecycle,
    listed_models,
    model_entry,
    size_for_shape,
    video_catalog,
)
from masuka.video.jobs import cancel_video, estimate, job_route, quote, start_video, video_jobs
from masuka.video.request import (
    MAX_TOTAL_SECONDS,
    SOUND,
    VideoPlan,
    VideoRequest,
    clip_segments,
    lifecycle_warnings,
    made_as,
    negative_prompt_use,
    source_seconds,
)

COLUMNS = ["job", "created", "status", "phase", "progress", "provider", "model", "est. $", "prompt", "error"]
#: the column an admin's table adds when it lists every user's jobs
OWNER_COLUMN = "owner"
CHAIN_LENGTHS = (15, 20, 30, 45, MAX_TOTAL_SECONDS)
REFRESH_S = 2.0


@dataclass
class VideoForm:
    """The Video tab's form: what a job is made from, its price and provider health, Generate."""

    prompt: gr.Textbox
    negative: gr.Textbox
    image: gr.Image
    last_frame: gr.Image
    source_video: gr.Video
    references: gr.File
    sound: gr.Radio
    provider: gr.Dropdown
    model: gr.Dropdown
    show_retired: gr.Checkbox
    seconds: gr.Dropdown
    size: gr.Dropdown
    fallback: gr.Dropdown
    cost: gr.Markdown
    health: gr.Markdown
    run: gr.Button
    message: gr.Markdown
    latest_job: gr.Markdown

    def pick(self, names: tuple[str, ...]) -> list[Component]:
        return [getattr(self, name) for name in names]


@dataclass
class JobsPanel:
    """The latest video, finished ones, the jobs table and Cancel."""

    player: gr.Video
    gallery: gr.Gallery
    table: gr.Dataframe
    job: gr.Textbox
    cancel: gr.Button
    refresh: gr.Button


#: the form fields History's Reuse fills (the names ``reuse_parameters`` gives)
REUSE_FIELDS = ("prompt", "negative", "provider", "model", "seconds", "size", "image", "last_frame", "source_video",
                "references", "sound", "fallback")
#: the fields ``generate_video`` takes, in order
GENERATE_FIELDS = ("prompt", "provider", "model", "seconds", "size", "image", "negative", "fallback", "last_frame",
                   "source_video", "references", "sound")
#: the fields ``price`` takes, in order; each but the prompt (on blur) prices the form again when it changes
PRICE_FIELDS = ("provider", "model", "seconds", "size", "image", "fallback", "prompt", "last_frame", "source_video",
                "references", "sound", "negative")
#: the fields ``models_for`` and ``limits_for`` read besides the provider (and model)
LIMIT_INPUTS = ("size", "source_video", "seconds")


def build(ctx: UIContext) -> None:
    studio = ctx.studio
    with gr.Row():
        with gr.Column(scale=2):
            form = _form(studio)
        with gr.Column(scale=3):
            panel = _jobs_panel()
    limits, read = [form.seconds, form.size, form.negative], form.pick(LIMIT_INPUTS)
    framed = [form.provider, form.model, form.image, *read]  # a first frame put in: the size of its shape
    ctx.register_form("video", dict(zip(REUSE_FIELDS, form.pick(REUSE_FIELDS))), adapt=reuse_fields,
                      sent=(size_of_frame, framed, limits))
    private, listed = {"api_visibility": "private"}, bind(video_status, studio)
    status_outputs = [panel.table, panel.gallery, panel.player, form.health, form.latest_job]
    panel.refresh.click(listed, None, status_outputs, api_name="video_status")  # first: it owns the name
    for source in (form.provider, form.show_retired):  # .input: Reuse sets provider, model and their limits
        source.input(models_for, [form.provider, form.show_retired, *read], [form.model, *limits], **private)
    for source in (form.model, form.size):
        source.input(limits_for, [form.provider, form.model, *read], limits, **private)
    form.image.upload(size_of_frame, framed, limits, **private)
    form.source_video.change(seconds_of_source, [form.provider, form.model, form.source_video], form.seconds,
                             **private)
    # One estimate at a time, in the order asked: a change that sets another field (a model's sizes) must not
    # be overtaken by the estimate made from the field's old value.
    priced = dict(api_visibility="private", concurrency_limit=1, concurrency_id="video_price")
    price_form = form.pick(PRICE_FIELDS)
    priced_by = bind(price, studio)
    for component in form.pick(tuple(name for name in PRICE_FIELDS if name != "prompt")):
        component.change(priced_by, price_form, form.cost, **priced)
    form.prompt.blur(priced_by, price_form, form.cost, **priced)
    form.run.click(bind(generate_video, studio), form.pick(GENERATE_FIELDS), [panel.job, form.message],
                   api_name="generate_video").then(listed, None, status_outputs, **private)
    ctx.poll(REFRESH_S, listed, None, status_outputs)
    panel.cancel.click(bind(cancel_video_job, studio), panel.job, form.message, api_name="cancel_video")


def _form(studio: Studio) -> VideoForm:
    """Prompt, frames, provider and model with their limits, fallbacks, the price and Generate."""
    providers = offered_providers()
    first = next(key for key in providers if listed_models(key))
    first_model = _model_choices(first)[0][1]
    prompt = gr.Textbox("", label="Prompt", lines=3, placeholder="a paper boat drifting down a rainy street")
    takes_negative, hint = _negative_hint(first, model_entry(first, first_model))
    negative = gr.Textbox("", label="Negative prompt", lines=1, placeholder=hint, interactive=takes_negative)
    with gr.Row():
        # image_mode None: the file as given, as the CLI sends it (Gradio's RGB conversion clips a 16-bit PNG)
        image = gr.Image(type="filepath", image_mode=None, label="First frame (optional: image-to-video)",
                         height=180)
        last_frame = gr.Image(type="filepath", image_mode=None, label="Last frame (optional: Veo 3.1)", height=180)
    source_video = gr.Video(label="Source video (video-to-video: Runway Aleph 2)", height=180)
    with gr.Row():
        references = gr.File(file_count="multiple", file_types=["image"], type="filepath", height=120,
                             label="Reference images (up to 3, instead of a first frame: Veo 3.1)")
        sound = gr.Radio([("Model's default", "default"), ("On", "on"), ("Off", "off")], value="default",
                         label="Sound", info="Where the model offers the choice (fal Veo, local LTX-2)")
    with gr.Row():
        provider = gr.Dropdown(_provider_choices(), value=first, label="Provider")
        model = gr.Dropdown(_model_choices(first), value=first_model, label="Model", allow_custom_value=True,
                            info="Local also takes a diffusers repo id or folder")
    show_retired = gr.Checkbox(False, label="Show retired models", info="Retired models were shut down by "
                               "their provider (the catalog names the source and date); a job for one is "
                               "expected to be refused.")
    sizes = model_entry(first, first_model)["sizes"]
    lengths = _seconds_choices(first, first_model, sizes[0])
    with gr.Row():
        seconds = gr.Dropdown(lengths, value=lengths[0], label="Seconds", allow_custom_value=True,
                              info="Longer than one clip: clips are chained")
        size = gr.Dropdown(sizes, value=sizes[0], label="Size", allow_custom_value=True)
    fallback = gr.Dropdown(_fallback_choices(), value=[], multiselect=True, allow_custom_value=True,
                           label="Fallback providers, in order",
                           info="Used when the provider is unhealthy, unreachable or refuses the model. A provider "
                                "alone gets its first active model that makes this video; or pick (or type) "
                                "provider:model")
    cost = gr.Markdown(price(studio, first, first_model, None, None, None, [], ""), elem_id="video-cost")
    health = gr.Markdown(label="Provider health", elem_id="video-health")
    run = gr.Button("Generate", variant="primary")
    message = gr.Markdown(label="Message")
    latest_job = gr.Markdown(label="Newest job", elem_id="video-latest-job")
    return VideoForm(prompt, negative, image, last_frame, source_video, references, sound, provider, model,
                     show_retired, seconds, size, fallback, cost, health, run, message, latest_job)


def _jobs_panel() -> JobsPanel:
    """The latest video, finished ones, the jobs table and Cancel."""
    player = gr.Video(label="Latest video", interactive=False, height=360)
    gallery = gr.Gallery(label="Finished videos", columns=4, height=240, interactive=False)
    table = gr.Dataframe(headers=COLUMNS, interactive=False, wrap=True, label="Video jobs", show_label=False)
    with gr.Row():
        job = whole_number_box(gr.Textbox(label="Job", placeholder="job number, from the table", scale=1))
        cancel = gr.Button("Cancel job", variant="stop", scale=0)
        refresh = gr.Button("Refresh", scale=0)
    return JobsPanel(player, gallery, table, job, cancel, refresh)


def models_for(provider_id: str, retired: bool, size_now: str | None, source: str | None = None,
               seconds_now: int | str | None = None):
    """The model picker for a provider (its retired models too when asked, or when it has nothing else) and
    the first model's seconds, sizes and negative prompt box: setting Model from here fires no input event of its
    own."""
    choices = _model_choices(provider_id, retired) or _model_choices(provider_id, True)
    model_id = choices[0][1]
    return gr.Dropdown(choices=choices, value=model_id), *limits_for(provider_id, model_id, size_now, source,
                                                                     seconds_now)


def limits_for(provider_id: str, model_id: str, size_now: str | None, source: str | None = None,
               seconds_now: int | str | None = None):
    """The seconds a model takes (the length of the ``source`` clip a video-to-video model follows, else the
    seconds chosen or typed while the model still makes them at the size, else its first) and its sizes (the size kept
    when it still fits), and the negative prompt box: free where the model takes one, else emptied and greyed
    out."""
    try:
        entry = model_entry(provider_id, model_id)
    except MasukaError:
        return gr.skip(), gr.skip(), gr.skip()
    sizes = _sizes(entry, size_now)
    chosen = size_now if size_now in sizes else sizes[0]
    choices = _seconds_choices(provider_id, model_id, chosen)
    typed = str(seconds_now).strip()
    kept = int(typed) if typed.isdigit() and _makes(entry, chosen, int(typed)) else choices[0]
    choices = _keeping(choices, kept)
    length = _source_length(provider_id, entry, source) or kept
    return (gr.Dropdown(choices=choices, value=length), gr.Dropdown(choices=sizes, value=chosen),
            _negative_box(provider_id, entry))


def size_of_frame(provider_id: str, model_id: str, image: str | None, size_now: str | None,
                  source: str | None = None, seconds_now: int | str | None = None):
    """When a first frame is put in: the model's size of the shape closest to it (a portrait photo makes a portrait
    video; a square one keeps the size chosen), with the seconds and negative prompt box that go with it
    (:func:`limits_for`)."""
    try:
        sizes = model_entry(provider_id, model_id)["sizes"]
    except MasukaError:
        return gr.skip(), gr.skip(), gr.skip()
    shape = upright_size(image) if image and sizes else None
    return limits_for(provider_id, model_id, size_for_shape(sizes, *shape, size_now) if shape else size_now, source,
                      seconds_now)


def reuse_fields(fields: dict) -> dict:
    """A reused video entry's fields as the form takes them: Reuse sets Provider and Model from code, which fires
    no input event, so this gives the Model list of that provider, the Seconds and Size that model offers (the
    entry's own values kept) and the negative prompt box free or greyed out as the model takes one."""
    provider_id, model_id = fields.get("provider"), fields.get("model")
    try:
        entry = model_entry(provider_id, model_id)
    except MasukaError:  # a model the catalog no longer has: Generate says so
        return fields
    models = _model_choices(provider_id)
    if model_id not in (key for _name, key in models):  # a retired model, a local repo id or folder
        models += [choice for choice in _model_choices(provider_id, True) if choice[1] == model_id] or [
            (model_id, model_id)]
    size = fields.get("size") or _sizes(entry, None)[0]
    lengths = _seconds_choices(provider_id, model_id, size)
    seconds = fields.get("seconds") or lengths[0]
    return {**fields, "model": gr.Dropdown(choices=models, value=model_id),
            "seconds": gr.Dropdown(choices=_keeping(lengths, seconds), value=seconds),
            "size": gr.Dropdown(choices=_keeping(_sizes(entry, size), size), value=size),
            "negative": _negative_box(provider_id, entry, fields.get("negative", ""))}


def seconds_of_source(provider_id: str, model_id: str, source: str | None):
    """Seconds set to the length of the source clip chosen for a video-to-video model: its output is that long."""
    try:
        length = _source_length(provider_id, model_entry(provider_id, model_id), source)
    except MasukaError:  # the cost line says what is wrong with the choice
        return gr.skip()
    return gr.skip() if length is None else length


@friendly
def generate_video(studio: Studio, prompt: str, provider: str, model: str, seconds: int | str | None = None,
                   size: str | None = None, image: str | None = None, negative_prompt: str = "",
                   fallback: list[str] | None = None, last_frame: str | None = None,
                   source_video: str | None = None, references: list[str] | None = None,
                   sound: str = "default", request: gr.Request = None):
    """Start a video job; returns its id and a line saying what it costs. The job runs in the background."""
    image, last_frame, source_video = (str(usable_file(studio, request, path)) if path else None
                                       for path in (image, last_frame, source_video))
    references = [str(usable_file(studio, request, path)) for path in references or []]
    job_id = start_video(studio, _request(provider, model, prompt, seconds, size, image, negative_prompt,
                                          fallback, owner=user_of(request), last_frame=last_frame,
                                          source_video=source_video, references=references, sound=sound))
    row = jobs.get(studio.store, job_id)
    warnings = lifecycle_warnings(VideoPlan.from_params(row.params))
    return job_id, (f"Job {job_id} started with {row.provider} {job_route(row)} (estimated "
                    f"${row.cost_usd or 0:.2f}). It keeps running if you close this tab."
                    + "".join(f"\n\n⚠️ {warning}" for warning in warnings))


def video_status(studio: Studio, request: gr.Request = None):
    """Video jobs of the user (newest first; an admin of a shared app sees everyone's, with their owners),
    finished videos, the user's own latest video, provider health and a line on the user's own newest job (with
    the reason when it failed)."""
    user, admin = user_of(request), is_admin(studio, request)
    everyone = admin and studio.config.multi_user  # an admin of a shared app: other users' jobs are listed
    rows = video_jobs(studio, user, admin)
    own = video_jobs(studio, user) if everyone else rows
    data = [[r["id"], (r["created_at"] or "")[:19].replace("T", " "), r["status"], r["phase"],
             f"{100 * (r['progress'] or 0):.0f}%", r["provider"], r["route"], r["cost_usd"],
             (r["title"] or "")[:60], r["error"] or "", *([r["owner"]] if everyone else [])] for r in rows]
    table = {"headers": [*COLUMNS, *([OWNER_COLUMN] if everyone else [])], "data": data}
    videos = [(str(r["video"]), f"#{r['id']} {r['model']}") for r in rows if r["video"]]
    latest = next((str(r["video"]) for r in own if r["video"]), None)
    unhealthy = HealthTracker(studio.store, RemoteSettings.from_env()).report()
    notes = "\n\n".join(f"⚠️ {text}" for text in unhealthy.values())
    return table, videos, latest, notes, _job_line(own[0]) if own else ""


@friendly
def cancel_video_job(studio: Studio, job: int | str | None, request: gr.Request = None):
    """Cancel a video job (at the provider too, where its API allows)."""
    if job in (None, ""):
        raise InvalidInput("Enter the number of the job to cancel.")
    row = cancel_video(studio, whole_number("job", job, 1, MAX_ID), user_of(request), is_admin(studio, request))
    return f"Job {row['id']}: cancel requested ({row['status']})."


def price(studio: Studio, provider_id, model_id, seconds, size, image, fallback, prompt, last_frame=None,
          source_video=None, references=None, sound="default", negative_prompt="",
          request: gr.Request = None) -> str:
    """The cost line under the form: the whole chain's price with its warnings (:func:`quote`, as
    ``video --estimate`` gives them, for the caller: an admin is told to save a missing key, others to ask an
    admin), or what is wrong with the choice."""
    try:
        plan = estimate(_request(provider_id, model_id, prompt or "-", seconds, size, image, negative_prompt, fallback,
                                 owner=user_of(request), last_frame=last_frame, source_video=source_video,
                                 references=references, sound=sound))
    except MasukaError as error:
        return f"⚠️ {error}"
    priced = quote(studio, plan)
    lines = [f"**Estimated cost: ${plan.primary.cost_usd:.2f}** {made_as(plan.primary, f' at {plan.size}')}"]
    lines += [f"⚠️ {warning}" for warning in priced.warnings]
    return "\n\n".join(lines + priced.fallbacks)


def _job_line(row: dict) -> str:
    """The newest job in one line, where the user looks after pressing Generate."""
    where = f"{row['provider']} {row['route']}"
    if row["status"] in ("failed", "interrupted"):
        return f"⚠️ **Job {row['id']} ({where}) {row['status']}:** {row['error'] or 'no reason was given'}"
    if row["status"] == "completed":
        return f"Job {row['id']} ({where}) is done."
    return f"Job {row['id']} ({where}): {row['phase']}, {100 * (row['progress'] or 0):.0f}%."


def _request(provider: str, model: str, prompt: str, seconds, size, image, negative_prompt: str, fallback,
             owner: str | None = None, last_frame: str | None = None, source_video: str | None = None,
             references: list[str] | None = None, sound: str | None = "default") -> VideoRequest:
    seconds = None if seconds in (None, "") else whole_number("seconds", seconds, 1, MAX_TOTAL_SECONDS)
    if (sound or "default") not in SOUND:
        raise InvalidInput(f"Sound must be one of {', '.join(SOUND)} (got {sound!r}).")
    values = dict(provider=provider, model=model, prompt=prompt, seconds=seconds, size=size or None,
                  image=image or None, negative_prompt=negative_prompt or "", fallback=list(fallback or []),
                  last_frame=last_frame or None, source_video=source_video or None,
                  references=list(references or []), audio=SOUND.get(sound or "default"))
    return VideoRequest(**values, **({"owner": owner} if owner else {}))


def _provider_choices() -> list[tuple[str, str]]:
    """Every provider; one whose models are all retired says so."""
    return [(p["name"] + ("" if listed_models(key) else " (retired models only)"), key)
            for key, p in offered_providers().items()]


def _fallback_choices() -> list[tuple[str, str]]:
    """Each remote provider with an active model (the plan picks its model), then each of its active models as
    ``provider:model``, as ``--fallback`` takes them."""
    choices = []
    for key, provider in video_catalog().items():
        models = _model_choices(key) if key != LOCAL else []
        if models:
            choices += [(provider["name"], key), *((f"{provider['name']}: {name}", f"{key}:{model}")
                                                  for name, model in models)]
    return choices


def _model_choices(provider_id: str, show_retired: bool = False) -> list[tuple[str, str]]:
    choices = []
    for key, entry in listed_models(provider_id, show_retired).items():
        state = lifecycle(entry)
        suffix = f" ({state.state}, ends {state.ends})" if state.state != "active" and state.ends else ""
        choices.append((entry["name"] + suffix, key))
    return choices


def _negative_hint(provider_id: str, entry: dict) -> tuple[bool, str]:
    """Whether the model of catalog ``entry`` takes a negative prompt (its flag), and the box's placeholder saying
    so."""
    use = negative_prompt_use(provider_id, entry)
    if not use:
        return False, f"{entry['name']} takes no negative prompt"
    return True, "what to keep out of the video" + (" (text-to-video only: not with a first frame)"
                                                    if use == "text" else "")


def _seconds_choices(provider_id: str, model_id: str, size: str | None = None) -> list[int]:
    """The model's clip lengths at ``size``, then the longer lengths it can make by chaining or extending clips."""
    entry = model_entry(provider_id, model_id)
    allowed = durations_for(entry, size)
    return allowed + [n for n in CHAIN_LENGTHS if n > max(allowed) and _makes(entry, size, n)]


def _makes(entry: dict, size: str | None, seconds: int) -> bool:
    """Whether the model can make ``seconds`` at ``size`` (in one clip, extended or chained)."""
    try:
        clip_segments(entry, size, seconds)
    except InvalidInput:
        return False
    return True


def _keeping(choices: list, value: object) -> list:
    """``choices`` with ``value`` added at the end when it is not one of them (a value Reuse keeps)."""
    return choices if value in choices else [*choices, value]


def _sizes(entry: dict, size_now: str | None) -> list[str]:
    """The sizes a model offers: its catalog's, else those suggested for a local pipeline, else the one chosen."""
    return entry["sizes"] or entry.get("suggested_sizes") or [size_now or "832x480"]


def _source_length(provider_id: str, entry: dict, source: str | None) -> int | None:
    """The length of ``source`` for a model whose output is as long as its source clip (video-to-video); None for
    another model, without a clip or with one that cannot be read (the cost line says why)."""
    if not (source and entry.get("source_video")):
        return None
    try:
        return source_seconds(provider_id, source)
    except MasukaError:
        return None


def _negative_box(provider_id: str, entry: dict, text: str | None = None) -> gr.Textbox:
    """The negative prompt box for a model: free where it takes one (holding ``text`` when given, else what it
    holds), else emptied and greyed out."""
    takes_negative, hint = _negative_hint(provider_id, entry)
    if not takes_negative:
        return gr.Textbox("", interactive=False, placeholder=hint)
    return gr.Textbox(interactive=True, placeholder=hint) if text is None else gr.Textbox(
        text, interactive=True, placeholder=hint)
