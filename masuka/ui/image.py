"""Image tab: prompt in, images out, with every parameter, LoRAs, an optional starting image and mask, a control
and a reference image, progress, Stop and "read parameters"."""

from __future__ import annotations

import queue
import time
from collections.abc import Callable
from dataclasses import dataclass

import gradio as gr
from gradio.components import Component

from masuka import memory_plans
from masuka.access import usable_model
from masuka.characters.use import picker_value
from masuka.errors import Cancelled, InvalidInput, MasukaError
from masuka.image.control import Control, read_controls
from masuka.image.face_detail import read_face_detail
from masuka.image.generate import (
    MAX_BATCH,
    MAX_GUIDANCE,
    MAX_PROMPT_CHARS,
    MAX_SEED,
    MAX_STEP_CACHE,
    MAX_STEPS,
    ImageRequest,
    generate_images,
    image_spec,
    parse_loras,
    plan_request,
)
from masuka.image.guides import MAX_WEIGHT
from masuka.image.limits import MAX_SIDE, MIN_SIDE
from masuka.image.metadata import Parameters, parse_parameters, read_metadata, to_number
from masuka.image.preprocess import KINDS
from masuka.image.reference import StyleReference, read_references
from masuka.image.samplers import model_scheduler, samplers_for
from masuka.image.tasks import (
    INPAINT_AREAS,
    MASK_MODES,
    MASKED_CONTENTS,
    MIN_STRENGTH,
    ONLY_MASKED_PADDING,
    InitImage,
)
from masuka.loras.library import list_loras, match_loras
from masuka.models.catalog import ModelSpec, image_models, resolve_image_model
from masuka.studio import Studio
from masuka.ui.aids import AidsForm, aid_caption, aid_summary
from masuka.ui.common import (
    IMAGE_TAB,
    UIContext,
    bind,
    failure,
    fenced,
    friendly,
    last_output,
    stop_key,
    stoppable,
    user_of,
    verbatim,
    wire_stop,
)
from masuka.ui.image_modes import (
    INPAINT,
    INPAINT_FIELDS,
    MODE_BLANKS,
    MODES,
    UPSCALE,
    ModeWidgets,
    carry_picture,
    edit_request,
    guide_fields,
    hires_fix,
    inpaint_from_parameters,
    inpaint_options,
    mode_request_inputs,
    reuse_fields,
    send_to_other_tabs,
    send_to_upscale,
    starting_size,
    task_from_parameters,
    wire_picture_size,
    wire_send_to,
)
from masuka.ui.upscale import build as upscale_panel
from masuka.ui.workers import Workers
from masuka.zerogpu import space_spec

ASPECTS = {"1:1": (1024, 1024), "4:3": (1152, 896), "3:4": (896, 1152), "3:2": (1216, 832), "2:3": (832, 1216),
           "16:9": (1344, 768), "9:16": (768, 1344), "21:9": (1536, 640)}
#: the Aspect shown for a width and height no preset has; choosing it leaves them as they are
CUSTOM_ASPECT = "custom"
#: how far (relative) a size's ratio may be from a preset's (its label's or its size's) and still be that preset
ASPECT_TOLERANCE = 0.015
GPU_WAIT_S = 5.0
#: the Guidance slider's range: what a request takes, so every model's default fits
GUIDANCE_RANGE = (0, MAX_GUIDANCE)
#: the "Parameters read" summary shows at most this much of the image's text
SUMMARY_CHARS = 5000
#: what the form reads in each field an image's parameters may give unreadable (``Steps: 1e3``)
UNREAD_FORMS = {"Steps": "a whole number", "CFG scale": "a number", "Seed": "a whole number",
                "Size": "a size in whole pixels, as 832x1216"}
#: the threads image generations run on while their handler streams the results
GENERATIONS = Workers("image-generation")
#: Per-step progress goes to the browser at most this often: each update is a message through the queue.
PROGRESS_EVERY_S = 0.1


@dataclass
class ImageTab:
    """The Image tab's widgets, as :func:`_layout` places them; the events take them in the groups below."""

    mode: gr.Radio
    chosen_mode: gr.State  # "" until a mode is chosen (and for API callers): the fields given decide
    prompt: gr.Textbox
    negative: gr.Textbox
    model: gr.Dropdown
    loras: gr.Dropdown
    refresh: gr.Button
    steps: gr.Slider
    guidance: gr.Slider
    aspect: gr.Dropdown
    width: gr.Number
    height: gr.Number
    seed: gr.Number
    batch: gr.Slider
    sampler: gr.Dropdown
    memory_plan: gr.Dropdown
    fast: gr.Checkbox
    step_cache: gr.Slider
    start_group: gr.Group
    init_image: gr.Image
    mask: gr.Image
    strength: gr.Slider
    modes: ModeWidgets
    aids: AidsForm
    guides: list[Component]  # in the order of GUIDE_FIELDS
    run: gr.Button
    edit_run: gr.Button
    queue_add: gr.Button
    stop: gr.Button
    dropped: gr.Image
    read_info: gr.Markdown
    gallery: gr.Gallery
    send: dict[str, gr.Button]
    seeds_used: gr.Textbox
    status: gr.Markdown

    def form(self) -> list[Component]:
        """What ``generate_image`` (and its check) takes, in order (:data:`GENERATE_FIELDS`), with the mode chosen
        where the fields have the mode shown."""
        fields = {**self.fields(), "mode": self.chosen_mode}
        return [fields[name] for name in GENERATE_FIELDS]

    def edit_form(self) -> list[Component]:
        """What ``edit_image`` (and its check) takes, in order (:data:`EDIT_FIELDS`)."""
        fields = {**self.fields(), "images": self.modes.references}
        return [fields[name] for name in EDIT_FIELDS]

    def fields(self) -> dict[str, Component]:
        """The form by the names History's Reuse fills (``reuse_parameters``) and other tabs read."""
        return {"prompt": self.prompt, "negative": self.negative, "model": self.model, "steps": self.steps,
                "guidance": self.guidance, "width": self.width, "height": self.height, "seed": self.seed,
                "batch": self.batch, "loras": self.loras, "memory_plan": self.memory_plan, "fast": self.fast,
                "step_cache": self.step_cache, "mode": self.mode, "init_image": self.init_image,
                "strength": self.strength, "mask": self.mask, "mask_blur": self.modes.mask_blur,
                "outpaint": self.modes.outpaint, "canvas": self.modes.canvas, "references": self.modes.references,
                "optimize_prompt": self.aids.optimize_prompt, "safety_check": self.aids.safety_check,
                "face_detail": self.aids.face_detail, "face_strength": self.aids.face_strength,
                **dict(zip(GUIDE_FIELDS, self.guides)), "sampler": self.sampler,
                **dict(zip(INPAINT_FIELDS, self.modes.inpaint))}


def build(ctx: UIContext) -> None:
    tab = _layout(image_models())
    selected = _wire(ctx, tab)
    ctx.register_form("image", tab.fields(), buttons={"queue": tab.queue_add},  # "Add to queue": the Queue tab's
                      adapt=reuse_fields)
    ctx.picker(bind(lora_choices, ctx.studio), tab.loras, tab.refresh)
    send_to_upscale(tab.send[UPSCALE], tab.gallery, selected, upscale_panel(ctx, tab.stop))


def _layout(models: dict[str, dict]) -> ImageTab:
    """The form on the left (mode, prompt, settings, starting image, aids, guides, buttons), results on the right."""
    with gr.Row():
        with gr.Column(scale=2):
            mode = gr.Radio(MODES, value=MODES[0], label="Mode", info="Start from text, vary an image, repaint or "
                            "extend part of one, or edit images with words (an edit model)")
            parts = _prompt_and_settings(models)
            parts.update(_starting_image())
            aids, guides = AidsForm(), _control_and_reference()
            with gr.Row():
                run = gr.Button("Generate", variant="primary")
                edit_run = gr.Button("Edit", variant="primary", visible=False)
                queue_add = gr.Button("Add to queue")  # wired by the Queue tab (masuka/ui/queue.py)
                stop = gr.Button("Stop", variant="stop")
            with gr.Accordion("Read parameters from an image", open=False):
                dropped = gr.Image(type="filepath", image_mode=None, label="PNG made here or by another tool",
                                   height=200)
                read_info = gr.Markdown(label="Parameters read")
        with gr.Column(scale=3):
            gallery = gr.Gallery(label="Images", columns=2, height=560, format="png", interactive=False)
            send = parts["modes"].build_send_to()
            seeds_used = gr.Textbox(label="Seeds used", interactive=False)
            status = gr.Markdown(label="Status")
    return ImageTab(mode=mode, chosen_mode=gr.State(""), **parts, aids=aids, guides=guides, run=run,
                    edit_run=edit_run, queue_add=queue_add, stop=stop, dropped=dropped, read_info=read_info,
                    gallery=gallery, send=send, seeds_used=seeds_used, status=status)


def _opening_model(models: dict[str, dict]) -> ModelSpec:
    """The model the form starts on: on a ZeroGPU Space the model it loaded at start-up (any other loads inside
    each GPU call), else the first catalog model."""
    return space_spec() or resolve_image_model(next(iter(models)))


def _prompt_and_settings(models: dict[str, dict]) -> dict[str, Component]:
    """Prompt, model, LoRAs and the numbers of a generation, with the opening model's defaults."""
    spec = _opening_model(models)
    choices = [(m["name"], key) for key, m in models.items()]
    if spec.id not in models:
        choices.append((spec.name or spec.id, spec.id))
    prompt = gr.Textbox("", label="Prompt", lines=3, placeholder="a photo of a red fox in the snow")
    negative = gr.Textbox("", label="Negative prompt", lines=1, placeholder="(for models that use one)",
                          interactive=spec.negative_prompt)
    with gr.Row():
        model = gr.Dropdown(choices, value=spec.id, label="Model",
                            allow_custom_value=True, scale=3,
                            info="A catalog model, any diffusers repo id (owner/name) or a local folder")
        loras = gr.Dropdown([], value=[], multiselect=True, allow_custom_value=True, label="LoRAs", scale=3,
                            info="Pick from the library; type name:0.7 for another weight")
        refresh = gr.Button("↻", scale=0, min_width=40)
    with gr.Row():
        steps = gr.Slider(1, MAX_STEPS, value=spec.steps, step=1, label="Steps")
        guidance = gr.Slider(*GUIDANCE_RANGE, value=spec.guidance, step=0.1, label="Guidance (CFG)")
    with gr.Row():
        aspect = gr.Dropdown([*ASPECTS, CUSTOM_ASPECT], value=aspect_of(spec.width, spec.height), label="Aspect",
                             scale=1)
        # whole numbers without precision: Gradio would round a fraction, which the handlers refuse instead
        width = gr.Number(value=spec.width, label="Width", scale=1)
        height = gr.Number(value=spec.height, label="Height", scale=1)
    with gr.Row():
        seed = gr.Number(value=-1, label="Seed (-1 = random)")
        batch = gr.Slider(1, MAX_BATCH, value=1, step=1, label="Images")
        sampler = gr.Dropdown(sampler_choices(spec.architecture), value="", label="Sampler",
                              allow_custom_value=True, info="AUTOMATIC1111's names; the model's own by default")
    with gr.Accordion("Speed and memory", open=False):
        with gr.Row():
            memory_plan = gr.Dropdown(
                [("auto (from free GPU memory)", "auto")] + [(f"{plan.name}: {plan.help}", plan.name)
                                                              for plan in memory_plans.PLANS],
                value="auto", label="Memory plan", scale=2)
            fast = gr.Checkbox(False, label="Fast (compiled, one hot-swapped LoRA)", scale=1,
                               info="The first image compiles; later ones of the same size are faster")
        step_cache = gr.Slider(0, MAX_STEP_CACHE, value=0, step=0.01, label="Step cache (with Fast)",
                               info="0 = off; higher skips more work per step: faster, less faithful")
    return dict(prompt=prompt, negative=negative, model=model, loras=loras, refresh=refresh, steps=steps,
                guidance=guidance, aspect=aspect, width=width, height=height, seed=seed, batch=batch, sampler=sampler,
                memory_plan=memory_plan, fast=fast, step_cache=step_cache)


def _starting_image() -> dict[str, Component]:
    """The starting image, mask and strength (hidden in Text mode), with the widgets of the other modes."""
    with gr.Group(visible=False) as start_group:
        with gr.Row():
            # image_mode None: the files as given, read as the CLI reads them (open_picture: a 16-bit PNG, picture
            # or mask, keeps its tones, which Gradio's own conversion to RGB or L would clip to white)
            init_image = gr.Image(type="filepath", image_mode=None, label="Starting image", height=200)
            mask = gr.Image(type="filepath", image_mode=None,
                            label="Mask file (white = repaint), or paint on the canvas", height=200, visible=False)
        modes = ModeWidgets.build()
        strength = gr.Slider(MIN_STRENGTH, 1, value=MODE_BLANKS["strength"], step=MIN_STRENGTH, label="Strength",
                             info="How far the result may move from the starting image")
    return dict(start_group=start_group, init_image=init_image, mask=mask, modes=modes, strength=strength)


def _wire(ctx: UIContext, tab: ImageTab) -> gr.State:
    """The tab's events; Generate and Edit are generations History follows. Returns the picked result's index."""
    studio, private = ctx.studio, {"api_visibility": "private"}
    form, edit_form, outputs = tab.form(), tab.edit_form(), [tab.gallery, tab.seeds_used, tab.status]
    checked = {"api_visibility": "private", "show_progress": "hidden"}
    edit_event = stoppable(IMAGE_TAB, tab.edit_run.click(bind(check_edit, studio), edit_form, None, **checked).success(
        bind(edit_image, studio), edit_form, outputs, api_name="edit_image_streamed", **private,
        **ctx.gpu_event()))
    stoppable(IMAGE_TAB, gr.Button(visible=False).click(bind(edit_image, studio), api_form(EDIT_FIELDS, edit_form),
                                                        outputs, api_name="edit_image", **ctx.gpu_event()))
    modes = tab.modes
    tab.mode.change(modes.show, tab.mode, [tab.start_group, tab.init_image, tab.mask, tab.strength, tab.run,
                                           tab.edit_run, tab.aspect, tab.width, tab.height, *modes.shown()],
                    **private).then(
        bind(carry_picture, studio), [tab.mode, tab.chosen_mode, tab.init_image, modes.references, tab.model],
        [tab.init_image, modes.references, tab.width, tab.height], **private).then(
        lambda chosen: chosen, tab.mode, tab.chosen_mode, **private)
    selected = wire_send_to(studio, tab.send, tab.gallery, tab.mode, tab.init_image, modes, tab.model,
                            [tab.width, tab.height])
    ctx.once_built(lambda: send_to_other_tabs(ctx, tab.send, tab.gallery, selected))
    wire_picture_size(studio, modes, tab.init_image, tab.model, tab.width, tab.height)
    # the page streams each image as it finishes; the API's event returns once (see last_output)
    streamed = {"api_name": "generate_image_streamed", **private, **ctx.gpu_event()}
    gen_event = stoppable(IMAGE_TAB, tab.run.click(bind(check_form, studio), form, None, **checked).success(
        bind(generate_image, studio), form, outputs, **streamed))
    stoppable(IMAGE_TAB, tab.prompt.submit(bind(check_form, studio), form, None, **checked).success(
        bind(generate_image, studio), form, outputs, **streamed))
    stoppable(IMAGE_TAB, gr.Button(visible=False).click(bind(last_output(generate_image), studio),
                                                        api_form(GENERATE_FIELDS, form), outputs,
                                                        api_name="generate_image", **ctx.gpu_event()))
    wire_stop(studio, IMAGE_TAB, tab.stop, tab.status, api_name="stop_image")
    tab.model.input(bind(model_defaults, studio), [tab.model, tab.mode, tab.init_image],
                    [tab.steps, tab.guidance, tab.width, tab.height, tab.negative, tab.sampler], **private)
    tab.model.change(bind(model_fit, studio), tab.model, [tab.negative, tab.sampler], **private)
    tab.aspect.input(bind(aspect_size, studio), [tab.aspect, tab.model], [tab.width, tab.height], **private)
    for side in (tab.width, tab.height):  # however the size is set: typed, a starting picture, a model, Reuse
        side.change(aspect_of, [tab.width, tab.height], tab.aspect, queue=False, show_progress="hidden", **private)
    read = [tab.prompt, tab.negative, tab.model, tab.steps, tab.guidance, tab.width, tab.height, tab.seed, tab.loras,
            tab.read_info, tab.strength, modes.mask_blur, modes.outpaint, tab.mode, tab.sampler,
            *tab.guides, tab.aids.face_detail, tab.aids.face_strength, *modes.inpaint]
    tab.dropped.upload(bind(read_image_parameters, studio), tab.dropped, read, api_name="read_parameters",
                       show_progress_on=tab.read_info)  # a refusal marks the summary, not the whole form
    ctx.generated(gen_event)
    ctx.generated(edit_event)
    return selected


def api_form(names: tuple[str, ...], form: list[Component]) -> list[Component]:
    """The inputs of an API event over ``form`` (whose fields are ``names``), with empty hidden boxes for the numbers
    the model (and a starting picture) decide: steps, guidance, width, height. ``gradio_client`` fills a parameter a
    caller leaves out with its component's value: the form's would give the opening model's steps, guidance and
    size to any model, and stretch a starting picture to that size; left empty, they are the model's own and the
    picture's, as the CLI and ``/queue_add`` take them."""
    boxes = {"steps": gr.Number(None, label="Steps", minimum=1, maximum=MAX_STEPS, visible=False),
             "guidance": gr.Number(None, label="Guidance (CFG)", minimum=GUIDANCE_RANGE[0],
                                   maximum=GUIDANCE_RANGE[1], visible=False),
             "width": gr.Number(None, label="Width", visible=False),
             "height": gr.Number(None, label="Height", visible=False)}
    return [boxes[name] if name in boxes else component for name, component in zip(names, form, strict=True)]


def lora_choices(studio: Studio, request: gr.Request):
    """The LoRA picker's choices: the user's library."""
    rows = list_loras(studio, user_of(request))
    return gr.Dropdown(choices=[(f"{r['name']} ({r['architecture']})", picker_value(r)) for r in rows])


def model_defaults(studio: Studio, model_id: str, mode: str = "", init_image: str | None = None,
                   request: gr.Request = None):
    """Steps, guidance, size (in Image mode the starting image's, rounded to the model's multiple; left as it is
    in Inpaint/Outpaint, which keeps its picture's size), whether a negative prompt applies (emptied where it does
    not: a greyed-out box can't be cleared) and the samplers that fit, for a model just picked (nothing for a model
    the user may not use)."""
    try:
        spec = image_spec(studio, user_of(request), model_id)
    except MasukaError:
        return gr.skip(), gr.skip(), gr.skip(), gr.skip(), gr.skip(), gr.skip()
    negative = gr.Textbox(interactive=True) if spec.negative_prompt else gr.Textbox("", interactive=False)
    if mode == INPAINT:
        width, height = gr.skip(), gr.skip()
    else:
        width, height = starting_size(mode, init_image, spec) or (spec.width, spec.height)
    return (spec.steps, spec.guidance, width, height, negative,
            gr.Dropdown(choices=sampler_choices(spec.architecture, model_scheduler(spec)), value=""))


def model_fit(studio: Studio, model_id: str, request: gr.Request = None):
    """The negative prompt box editable only where the model takes one, and the Sampler's choices for it, however
    the model was set (picked, saved defaults, Reuse, read from an image); the values are kept (nothing changes
    for a model the user may not use)."""
    try:
        spec = image_spec(studio, user_of(request), model_id)
    except MasukaError:
        return gr.skip(), gr.skip()
    return (gr.Textbox(interactive=spec.negative_prompt),
            gr.Dropdown(choices=sampler_choices(spec.architecture, model_scheduler(spec))))


def aspect_of(width: float | None, height: float | None) -> str:
    """The Aspect preset whose ratio (its label's or its size's) ``width`` × ``height`` has, else "custom"."""
    try:
        ratio = float(width) / float(height)  # type: ignore[arg-type]
    except (TypeError, ValueError, ZeroDivisionError):
        return CUSTOM_ASPECT
    for name, (preset_width, preset_height) in ASPECTS.items():
        across, down = (int(side) for side in name.split(":"))
        if any(abs(ratio / wanted - 1) <= ASPECT_TOLERANCE for wanted in (across / down, preset_width / preset_height)):
            return name
    return CUSTOM_ASPECT


def sampler_choices(architecture: str | None, scheduler: str | None = None) -> list[tuple[str, str]]:
    """The Sampler picker's choices: the model's own scheduler, then the A1111 samplers that fit the model."""
    return [("the model's own", ""), *((name, name) for name in samplers_for(architecture, scheduler))]


def aspect_size(studio: Studio, choice: str, model_id: str, request: gr.Request = None):
    """Width and height of an aspect (halved for a model made for 512 px); left as they are for "custom"."""
    if choice not in ASPECTS:
        return gr.skip(), gr.skip()
    width, height = ASPECTS[choice]
    try:
        if image_spec(studio, user_of(request), model_id).width <= 512:
            width, height = width // 2, height // 2
    except MasukaError:
        pass
    return width, height


@friendly
def generate_image(studio: Studio, prompt: str, model: str, negative_prompt: str = "", steps: int | None = None,
                   guidance: float | None = None, width: int | None = None, height: int | None = None,
                   seed: int | None = -1, batch: int = 1, loras: list[str] | None = None,
                   memory_plan: str = "auto", fast: bool = False, step_cache: float = 0.0,
                   init_image: str | None = None, strength: float = 0.75, mask: str | None = None,
                   mask_blur: int = 4, outpaint: str = "", mode: str = "", canvas: dict | None = None,
                   optimize_prompt: bool = False, safety_check: bool = False, face_detail: bool = False,
                   face_strength: float = 0.4,
                   control_kind: str = "canny", control_image: str | None = None, control_weight: float = 1.0,
                   control_start: float = 0.0, control_end: float = 1.0, reference_image: str | None = None,
                   reference_weight: float = 1.0, sampler: str = "", mask_mode: str = MASK_MODES[0],
                   masked_content: str = MASKED_CONTENTS[0], inpaint_area: str = INPAINT_AREAS[0],
                   only_masked_padding: int = ONLY_MASKED_PADDING, request: gr.Request = None,
                   progress=gr.Progress()):
    """Generate images (from ``init_image`` when given, repainting the white of ``mask``, growing the canvas by
    ``outpaint`` "left,right,top,bottom" pixels; with the generation aids asked for; following
    ``control_image`` through a ControlNet of ``control_kind``; like ``reference_image``; with an A1111 ``sampler``,
    "" for the model's own; with A1111's inpaint options for the mask); yields the gallery as each image
    finishes."""
    yield from _stream(studio, lambda: image_request(
        user_of(request), prompt, model, negative_prompt, steps, guidance, width, height, seed, batch, loras,
        memory_plan, fast, step_cache, init_image, strength, mask, mask_blur, outpaint, mode, canvas, optimize_prompt,
        safety_check, face_detail, face_strength, control_kind, control_image, control_weight, control_start,
        control_end, reference_image, reference_weight, sampler, mask_mode, masked_content, inpaint_area,
        only_masked_padding), request, progress)


@friendly
def edit_image(studio: Studio, prompt: str, model: str, images: list[str] | None = None, negative_prompt: str = "",
               steps: int | None = None, guidance: float | None = None, seed: int | None = -1, batch: int = 1,
               loras: list[str] | None = None, request: gr.Request = None, progress=gr.Progress()):
    """Edit ``images`` as the prompt says with an edit model (FLUX.1 Kontext, Qwen-Image-Edit, FLUX.2); yields
    the gallery as each image finishes. The result has the first image's size (rounded to the model)."""
    yield from _stream(studio, lambda: edit_request(prompt, model, images, negative_prompt, steps, guidance, seed,
                                                    batch, loras, user_of(request)), request, progress)


@friendly
def check_edit(studio: Studio, request: gr.Request, *values) -> None:
    """Refuse a bad edit (the values ``edit_image`` takes) before the event that owns the gallery runs
    (:func:`check_form`). The request comes before the values: Gradio gives it only to a parameter it can pass by
    position."""
    plan_request(studio, edit_request(*values, user_of(request)))


def _stream(studio: Studio, build: Callable[[], ImageRequest], request: gr.Request | None, progress: gr.Progress):
    """Run the request ``build`` makes on a worker thread; yield (gallery, seeds, status) as images finish. The
    Stop flag the queue armed (:func:`~masuka.ui.common.stoppable`) is taken first, so a Stop pressed while the
    work waited ends it before anything runs and a refused request leaves no arm behind."""
    events: queue.Queue = queue.Queue()
    key = stop_key(IMAGE_TAB, request)
    stop_flag = studio.stops.start(key)  # before the work is handed over, so a Stop at once finds it
    if stop_flag.is_set():
        studio.stops.disarm(key, stop_flag)
        yield [], "", "Stopped: 0 image(s) kept."
        return
    try:
        request_ = build()
    except BaseException:  # refused: the work that would disarm it never starts
        studio.stops.disarm(key, stop_flag)
        raise

    def work() -> None:
        try:
            generate_images(studio, request_, stop=stop_flag, gpu_timeout=GPU_WAIT_S,
                            on_wait=lambda message: events.put(("download", message, 0.0)),
                            on_download=lambda p: events.put(("download", p.message, p.fraction or 0.0)),
                            on_step=lambda i, s, n: events.put(("step", i, s, n)),
                            on_image=lambda r: events.put(("image", r)))
        except BaseException as error:  # handed to the event loop below, which decides how to show it
            outcome: tuple = ("error", error)
        else:
            outcome = ("done",)
        studio.stops.disarm(key, stop_flag)  # before the outcome shows: a Stop after it has nothing to stop
        events.put(outcome)

    GENERATIONS.submit(work)
    images: list[tuple[str, str]] = []
    seeds: list[str] = []
    made: list = []
    progress(0, desc="Loading the model…")
    shown = 0.0
    while True:
        event = events.get()
        if event[0] == "download":
            progress(event[2], desc=event[1])
        elif event[0] == "step":
            _, index, step, total = event
            if time.monotonic() - shown < PROGRESS_EVERY_S:
                continue
            shown = time.monotonic()
            done = index * total + step
            progress((done, request_.batch * total), desc=f"Image {index + 1}/{request_.batch}: "
                     f"step {step}/{total}", unit="steps")
        elif event[0] == "image":
            result = event[1]
            made.append(result)
            images.append((str(result.path), f"seed {result.seed}{aid_caption(studio, result)}"))
            seeds.append(str(result.seed))
            if len(images) < request_.batch:  # the last image goes out once, with the final message
                yield images, ", ".join(seeds), f"{len(images)} of {request_.batch} done"
        elif event[0] == "error":
            error = event[1]
            if isinstance(error, Cancelled):
                yield images, ", ".join(seeds), f"Stopped: {len(images)} image(s) kept."
                return
            raise failure("Generation", error, "Images already made are kept in History.") from error
        else:
            yield images, ", ".join(seeds), f"Done: {len(images)} image(s), saved and recorded in History." \
                + aid_summary(studio, made)
            return


@friendly
def check_form(studio: Studio, request: gr.Request, *values) -> None:
    """Refuse bad input (the values ``generate_image`` takes) before the event that owns the gallery runs, so a
    refusal leaves it as it was (the request first, as in :func:`check_edit`)."""
    plan_request(studio, image_request(user_of(request), *values))


@friendly
def read_image_parameters(studio: Studio, path: str | None, request: gr.Request = None):
    """Fill the form from an image's A1111-style parameters (NovelAI's, Fooocus's and SwarmUI's converted), LoRAs
    found in the library included, the model where it is usable here, the sampler (with its schedule type) where
    that model can use it, Face detail where its ADetailer fields name a face model, A1111's inpaint options (last);
    a value outside the form's range is left as it was. The summary says what was not taken."""
    if not path:
        return gr.skip()  # one skip leaves every output as it is
    text = read_metadata(path).required()
    p = parse_parameters(text)
    for what, value in (("prompt", p.prompt), ("negative prompt", p.negative_prompt)):
        if len(value) > MAX_PROMPT_CHARS:
            raise InvalidInput(f"The image's {what} is {len(value):,} characters long, over the "
                               f"{MAX_PROMPT_CHARS:,} a prompt may have: its parameters were not read.")
    user = user_of(request)
    spec = _read_model(studio, user, p.model)
    notes: list[str] = []
    if p.model and spec is None:
        model_hash = p.extra.get("Model hash")
        hashed = f" (hash {verbatim(model_hash)})" if model_hash else ""
        notes.append(f"**Model {verbatim(repr(p.model))}{hashed} is not available here:** the Model field is left "
                     "as it was.")
    notes += [f"**{name} {verbatim(_clipped(raw))} left as it was:** not {UNREAD_FORMS[name]}."
              for name, raw in p.unread.items()]
    guidance = _read_guidance(p, spec, notes)
    steps, guidance, seed = (_in_range(name, value, low, high, notes) for name, value, low, high in (
        ("Steps", p.steps, 1, MAX_STEPS), ("CFG scale", guidance, *GUIDANCE_RANGE),
        ("Seed", p.seed, -1, MAX_SEED)))  # -1: random, as the form takes it
    width, height = p.width, p.height
    if width and height and not (MIN_SIDE <= width <= MAX_SIDE and MIN_SIDE <= height <= MAX_SIDE):
        notes.append(f"**Size {width}x{height} left as it was:** each side must be {MIN_SIDE} to {MAX_SIDE}.")
        width = height = None
    found, missing = match_loras(studio, user, p.loras, p.extra.get("Lora hashes", ""))
    if missing:
        notes.append(f"**Not in your LoRA library:** {verbatim(', '.join(missing))} (import them in Models to use "
                     "them).")
    sampler = _read_sampler(spec, p, notes) if p.sampler else None
    if hires_fix(p.extra):
        notes.append("**Hires fix is not reproduced:** the form makes the first pass (Upscale can enlarge it).")
    face = read_face_detail(p.extra)
    if face is None and "ADetailer model" in p.extra:
        notes.append(f"**ADetailer model {verbatim(repr(p.extra['ADetailer model']))} is not reproduced:** Face "
                     "detail repaints faces only.")
    shown = text if len(text) <= SUMMARY_CHARS else f"{text[:SUMMARY_CHARS]}\n… ({len(text):,} characters in all)"
    summary = "\n\n".join([fenced(shown), *notes])
    update = lambda value: gr.skip() if value is None else value  # noqa: E731
    return (p.prompt, p.negative_prompt, update(p.model if spec else None), update(steps), update(guidance),
            update(width), update(height), update(seed), [f"{name}:{weight:g}" for name, weight in found], summary,
            *task_from_parameters(p.extra), update(sampler), *_read_guides(p.extra),
            *([True, face] if face is not None else [gr.skip()] * 2), *inpaint_from_parameters(p.extra))


def _read_model(studio: Studio, user: str, model: str | None) -> ModelSpec | None:
    """The spec of the image's model, when ``user`` can use it here (found without loading it or asking the
    network, as generation finds it); None when it cannot or the image names none."""
    try:
        return resolve_image_model(usable_model(studio, user, model)) if model else None
    except MasukaError:
        return None


def _read_guidance(p: Parameters, spec: ModelSpec | None, notes: list[str]) -> float | None:
    """The image's guidance: Forge's ``Distilled CFG Scale`` for a model whose guidance is distilled (FLUX.1
    [dev]: no negative prompt, a default guidance above 1; an image whose model is not found here too, since Forge
    writes it only for such models), else its ``CFG scale``."""
    distilled = to_number(p.extra.get("Distilled CFG Scale"), float)
    if distilled is None or (spec is not None and (spec.negative_prompt or spec.guidance <= 1)):
        return p.guidance
    notes.append(f"Guidance {distilled:g} is the image's Distilled CFG Scale (its CFG scale is {p.guidance or 0:g}).")
    return distilled


def _in_range(name: str, value: float | None, low: int, high: int, notes: list[str]) -> float | None:
    """``value`` when the form's field takes it, else None with a note saying why."""
    if value is None or low <= value <= high:
        return value
    notes.append(f"**{name} {_clipped(str(value))} left as it was:** the form takes {low} to {high}.")
    return None


def _clipped(text: str) -> str:
    """A value from an image's parameters as a note shows it: its first 40 characters."""
    return text if len(text) <= 40 else f"{text[:40]}…"


def _read_sampler(spec: ModelSpec | None, p: Parameters, notes: list[str]) -> str | None:
    """The image's sampler as the Sampler field takes it, its ``Schedule type`` joined where the model has both
    (``DPM++ 2M`` + ``Karras``), when the image's model can use it (any known sampler for a model not found here);
    None when it cannot, with a note."""
    usable = {name.lower(): name for name in (samplers_for(spec.architecture, model_scheduler(spec)) if spec
                                              else samplers_for(None))}
    sampler, schedule = (p.sampler or "").strip(), p.extra.get("Schedule type", "").strip()
    if schedule and schedule.lower() != "automatic":
        if f"{sampler} {schedule}".lower() in usable:
            return usable[f"{sampler} {schedule}".lower()]
        notes.append(f"Schedule type {verbatim(repr(schedule))} is not one MASUKA has for {verbatim(repr(sampler))}: "
                     "the sampler's own is used.")
    if sampler.lower() not in usable:
        notes.append(f"**Sampler {verbatim(repr(p.sampler))} left as it was:** {verbatim(p.model or 'the model')} "
                     "cannot use it here (pick one of the Sampler's choices).")
        return None
    return usable[sampler.lower()]


def image_request(owner: str, prompt, model, negative_prompt, steps, guidance, width, height, seed, batch, loras,
                  memory_plan, fast, step_cache, init_image=None, strength=0.75, mask=None, mask_blur=4, outpaint="",
                  mode="", canvas=None, optimize_prompt: bool = False, safety_check: bool = False,
                  face_detail: bool = False, face_strength: float = 0.4, control_kind="canny", control_image=None,
                  control_weight=1.0, control_start=0.0, control_end=1.0, reference_image=None,
                  reference_weight=1.0, sampler="", mask_mode=None, masked_content=None, inpaint_area=None,
                  only_masked_padding=None) -> ImageRequest:
    """The form's values, in the order ``generate_image`` takes them (:data:`GENERATE_FIELDS`), as the domain
    request (the mode says which of the starting image's fields count; the inpaint options apply to a mask; a
    control or reference picture given adds its guide). Generate and "Add to queue" both build theirs here."""
    init_image, mask, padding = mode_request_inputs(mode, init_image, mask, outpaint, canvas)
    if mask and not init_image:
        raise InvalidInput("A mask needs the starting image it belongs to.")
    if padding is not None:
        if not init_image:
            raise InvalidInput("Outpainting needs the picture to extend.")
        width = height = None  # the picture plus the padding
    elif mask:
        width = height = None  # inpainting keeps the picture's size, so the rest comes back as it was
    options = inpaint_options(mask_mode, masked_content, inpaint_area, only_masked_padding)
    init = InitImage(init_image, float(strength), mask, int(4 if mask_blur is None else mask_blur),
                     outpaint=padding, **(options if mask else {})) if init_image else None
    request = ImageRequest(prompt=prompt, model=model, negative_prompt=negative_prompt or "", steps=steps,
                           guidance=guidance, width=width, height=height, seed=seed,
                           batch=1 if batch is None else batch, loras=parse_loras(loras), owner=owner,
                           memory_plan=memory_plan or "auto", fast=fast, step_cache=float(step_cache or 0),
                           init=init, optimize_prompt=optimize_prompt, safety_check=safety_check,
                           face_detail=face_detail, sampler=sampler or "",
                           face_strength=float(face_strength if face_strength is not None else 0.4))
    if control_image:
        request.controls = [Control(control_kind or KINDS[0], control_image, control_weight, control_start,
                                    control_end)]
    if reference_image:
        request.style_references = [StyleReference(reference_image, reference_weight)]
    return request


#: the Control and Reference widgets, in the order the form (and the generate_image API) takes them
GUIDE_FIELDS = ("control_kind", "control_image", "control_weight", "control_start", "control_end",
                "reference_image", "reference_weight")
#: the form by its field names (:meth:`ImageTab.fields`) in the order ``generate_image`` takes it; "mode" is the
#: mode shown, where Generate sends the mode chosen ("" until one is)
#: What ``edit_image`` takes, in order (:meth:`ImageTab.edit_form`).
EDIT_FIELDS = ("prompt", "model", "images", "negative", "steps", "guidance", "seed", "batch", "loras")
GENERATE_FIELDS = ("prompt", "model", "negative", "steps", "guidance", "width", "height", "seed", "batch", "loras",
                   "memory_plan", "fast", "step_cache", "init_image", "strength", "mask", "mask_blur", "outpaint",
                   "mode", "canvas", "optimize_prompt", "safety_check", "face_detail", "face_strength", *GUIDE_FIELDS,
                   "sampler", *INPAINT_FIELDS)


def _control_and_reference() -> list[Component]:
    """The Control accordion (one ControlNet image: kind, weight, start/end) and the Reference accordion (a
    picture to look like, with its weight); SDXL and FLUX.1 models take them."""
    with gr.Accordion("Control (follow edges, depth or a picture)", open=False):
        with gr.Row():
            image = gr.Image(type="filepath", image_mode=None, label="Control image", height=200)
            with gr.Column():
                kind = gr.Dropdown([("Canny edges", "canny"), ("Depth", "depth"), ("Image as is", "image")],
                                   value=KINDS[0], label="Control kind")
                weight = gr.Slider(0, MAX_WEIGHT, value=1.0, step=0.05, label="Control weight")
                with gr.Row():
                    start = gr.Slider(0, 1, value=0.0, step=0.05, label="Control start")
                    end = gr.Slider(0, 1, value=1.0, step=0.05, label="Control end")
    with gr.Accordion("Reference (make it like this picture)", open=False):
        with gr.Row():
            reference = gr.Image(type="filepath", image_mode=None, label="Reference image (IP-Adapter / Redux)",
                                 height=200)
            reference_weight = gr.Slider(0, MAX_WEIGHT, value=1.0, step=0.05, label="Reference weight")
    return [kind, image, weight, start, end, reference, reference_weight]


def _read_guides(extra: dict[str, str]) -> list:
    """The Control and Reference fields (in :data:`GUIDE_FIELDS` order) "Read parameters" fills: an image's first
    ControlNet and Reference (the pictures, which an image does not carry, left as they are), the blanks and no
    picture for a guide the image was made without (:func:`guide_fields`, as Reuse)."""
    controls, references = read_controls(extra), read_references(extra)
    found: dict = {}
    if controls:
        found |= {f"control_{name}": controls[0][name] for name in ("kind", "weight", "start", "end")}
        found["control_image"] = gr.skip()
    if references:
        found |= {"reference_weight": references[0], "reference_image": gr.skip()}
    fields = guide_fields(found)
    return [fields[name] for name in GUIDE_FIELDS]
