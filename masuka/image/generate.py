"""Image generation, from text or from an init image and mask (:mod:`masuka.image.tasks`): validate a request,
run the pipeline step by step, save and record each image.

Each image of a batch is its own pipeline call with its own seed (``seed``, ``seed + 1``, …), so any image
can be remade alone. Rows are written as each image starts and finishes: a crash in the middle of a batch
keeps the images already made and records the failure.
"""

from __future__ import annotations

import dataclasses
import inspect
import os
import random
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from PIL import Image

from masuka.access import may_read, usable_model
from masuka.errors import Cancelled, InvalidInput, MasukaError, as_disk_full, interrupted_with
from masuka.gpu import check_stop, zerogpu
from masuka.image.adapters import apply_loras
from masuka.image.aid_settings import AidSettings, load_aid_settings
from masuka.image.control import (
    Control,
    ControlInput,
    check_controls,
    control_infotext,
    control_kwargs,
    control_pipeline,
    keep_controls,
)
from masuka.image.copies import keep_inputs
from masuka.image.defaults import load_defaults
from masuka.image.edit import check_references, edit_kwargs, edit_record, plan_references
from masuka.image.face_detail import check_strength, detail_faces, face_infotext, face_record
from masuka.image.face_restore import face_restorer
from masuka.image.fast import compile_once
from masuka.image.limits import MAX_SEED, MAX_SIDE, MAX_STEPS, MIN_SIDE
from masuka.image.memory import prepare_decode
from masuka.image.metadata import Parameters, format_parameters, parse_parameters, save_image
from masuka.image.pipelines import get_pipeline, pipeline_architecture, pipeline_plan
from masuka.image.quantized import check_quantized_plan, fetch_gguf, gguf_repo, replaced_components
from masuka.image.reference import (
    ReferenceInput,
    StyleReference,
    check_style_references,
    keep_references,
    reference_infotext,
    reference_kwargs,
    share_image_encoder,
)
from masuka.image.samplers import apply_sampler, check_sampler, model_scheduler
from masuka.image.tasks import (
    InitImage,
    TaskInput,
    check_task,
    finish,
    infotext_fields,
    init_size,
    picture_size,
    prepare,
    task_kwargs,
    task_pipeline,
    task_record,
    task_steps,
)
from masuka.jobs import Watch
from masuka.loras.files import LoraInfo, check_fits, inspect_lora
from masuka.loras.library import find_new_loras
from masuka.loras.tags import split_lora_tags
from masuka.loras.usage import lora_files_in_use, lora_ref_file
from masuka.memory_plans import plan_named
from masuka.models.catalog import ModelSpec, ask_hub, resolve_image_model
from masuka.models.manage import holding_repos, stoppable, using_models
from masuka.services import HUGGINGFACE
from masuka.store import LOCAL_USER, now
from masuka.studio import Studio
from masuka.users import output_dir
from masuka.validation import composed, flag, plain_text, weighted, whole_number
from masuka.zerogpu import check_space_request, image_seconds

MAX_BATCH = 4
MAX_PROMPT_CHARS = 4000
MAX_LORA_CHARS = 1024
MAX_STEP_CACHE = 0.5
#: the highest guidance a request takes (FLUX.1 Fill's default is 30)
MAX_GUIDANCE = 30
#: the guidance argument diffusers uses only with a negative prompt (Qwen-Image's real classifier-free guidance)
TRUE_CFG = "true_cfg_scale"
SAMPLERS = {"FlowMatchEulerDiscreteScheduler": "Euler", "EulerDiscreteScheduler": "Euler",
            "EulerAncestralDiscreteScheduler": "Euler a", "DPMSolverMultistepScheduler": "DPM++ 2M",
            "EDMDPMSolverMultistepScheduler": "DPM++ 2M EDM", "EDMEulerScheduler": "Euler EDM",
            "DDIMScheduler": "DDIM"}

StepCallback = Callable[[int, int, int], None]  # (image index, step, total steps)


@dataclass
class ImageRequest:
    """Everything a generation needs; ``None`` fields take the model's defaults."""

    prompt: str
    model: str
    negative_prompt: str = ""
    steps: int | None = None
    guidance: float | None = None
    width: int | None = None
    height: int | None = None
    seed: int | None = None
    batch: int = 1
    loras: list[tuple[str, float]] = field(default_factory=list)
    owner: str = LOCAL_USER
    memory_plan: str = "auto"  # "auto" or a plan of masuka.memory_plans.PLANS
    fast: bool = False  # the compiled fast path (masuka.image.fast)
    step_cache: float = 0.0  # first-block cache threshold on the fast path; 0 = off, higher = faster, rougher
    init: InitImage | None = None  # start from this image (img2img), or repaint its mask (inpaint)
    template: str = ""  # the prompt before batch expansion ({a|b}, __wildcard__), written as "Template:"
    queue_id: int | None = None  # the queued job this image belongs to (masuka.queue)
    notes: dict[str, Any] = field(default_factory=dict)  # extra facts kept in the row's params (queue item, cell)
    optimize_prompt: bool = False  # rewrite the prompt first (masuka.image.prompt_optimizer)
    safety_check: bool = False  # score each result, blur or withhold flagged ones (masuka.image.safety)
    face_detail: bool = False  # repaint each face found in the result (masuka.image.face_detail)
    face_strength: float = 0.4  # the face detail's denoising strength
    sampler: str = ""  # an A1111 sampler name (masuka.image.samplers); "" keeps the model's own scheduler
    controls: list[Control] = field(default_factory=list)  # ControlNet images (masuka.image.control)
    style_references: list[StyleReference] = field(default_factory=list)  # "like this" (masuka.image.reference)
    references: list[str] = field(default_factory=list)  # images an edit model changes as the prompt says


@dataclass
class ImageResult:
    id: int
    path: Path
    seed: int
    parameters: str


@dataclass
class Plan:
    """A validated request with every default filled in."""

    request: ImageRequest
    spec: ModelSpec
    steps: int
    guidance: float
    width: int
    height: int
    seeds: list[int]
    loras: list[tuple[LoraInfo, float]]
    task: TaskInput | None = None
    safety: AidSettings | None = None  # set when the safety check runs (asked for, or made mandatory)
    controls: list[ControlInput] = field(default_factory=list)
    style_references: list[ReferenceInput] = field(default_factory=list)
    kept: dict[str, Any] = field(default_factory=dict)  # copies of the input pictures, for the history rows
    references: list[Any] = field(default_factory=list)  # the reference pictures of an edit, read
    output_format: str = "PNG"  # the file format of the saved images (Settings' default, read once per plan)

    def saved_size(self) -> tuple[int, int]:
        """The size of the images saved, which their rows and parameters record: the picture's own where an
        inpainted result is pasted back onto it (the run size is derived from the picture again), else the run's."""
        original = self.task.original if self.task is not None else None
        return original.size if original is not None else (self.width, self.height)


def parse_loras(values: Any) -> list[tuple[str, float]]:
    """A list of LoRA fields (see :func:`parse_lora`); anything but a list of text is refused."""
    if values is None:
        return []
    if not isinstance(values, (list, tuple)):
        raise InvalidInput(f"LoRAs must be a list of names (got {type(values).__name__}).")
    return [parse_lora(value) for value in values]


def parse_lora(text: str) -> tuple[str, float]:
    """``name``, ``name:0.8`` or ``path/to/file.safetensors:0.8`` → (reference, weight). After a file's name only
    a weight may follow the colon: ``style.safetensors:abc`` is refused for its weight."""
    text = plain_text("a LoRA name", text, MAX_LORA_CHARS)
    ref, weight = weighted(text.strip(), "LoRA", lambda name: name.endswith(".safetensors"))
    return ref, 1.0 if weight is None else weight


def resolve_lora_path(studio: Studio, ref: str, owner: str, allow_any_path: bool) -> Path:
    """A LoRA reference is a name in the LoRA library, a file in the data dir, or (CLI only) any absolute path (the
    CLI makes a path relative to its directory absolute as it reads it: :func:`masuka.commands.generate.cli_lora`).

    A library name is compared in composed form (:func:`composed`), a file path as given. A file in the data dir
    must be one ``owner`` :func:`may_read`; another user's file gets the same answer as a missing one.
    """
    ref = ref.strip()
    if not ref:
        raise InvalidInput("Empty LoRA name.")
    named = _library_file(studio, ref, owner)
    if named is None:  # a file dropped into the library folder since anyone looked at the library
        find_new_loras(studio, owner)
        named = _library_file(studio, ref, owner)
    if named is not None:
        return named
    candidate = lora_ref_file(studio.config, ref)
    allowed = allow_any_path or (candidate.resolve().is_relative_to(studio.config.data_dir)
                                 and may_read(studio, owner, candidate))
    if allowed and candidate.exists():
        return candidate
    raise InvalidInput(f"LoRA {ref!r} was not found (neither in your LoRA library nor as a file of yours).")


def _library_file(studio: Studio, name: str, owner: str) -> Path | None:
    """The file of the library LoRA ``name`` that ``owner`` calls by it (their own first, else a shared one)."""
    row = studio.store.find("loras", "name = ? and owner in (?, ?)", [composed(name), owner, LOCAL_USER],
                            order_by=f"owner = '{LOCAL_USER}', id desc", limit=1)
    return studio.config.absolute(row[0]["path"]) if row else None


def prompt_loras(text: str, strict: bool = False) -> tuple[str, list[tuple[str, float]]]:
    """The prompt without its ``<lora:name:weight>`` tags (as typed when it has none), and the tags' LoRAs; when
    ``strict``, a tag whose weight is not a number is refused (a template's ``{1|3}`` weight is not one yet)."""
    prompt, tagged = split_lora_tags(text, strict)
    return (prompt if tagged else text.strip()), tagged


def checked_prompt(text: str) -> tuple[str, list[tuple[str, float]]]:
    """:func:`prompt_loras` of a prompt checked (plain text, not too long, not empty once its tags leave it)."""
    prompt, tagged = prompt_loras(plain_text("the prompt", text, MAX_PROMPT_CHARS), strict=True)
    if not prompt:
        raise InvalidInput("The prompt is empty: describe the image you want.")
    return prompt, tagged


def uses_negative(spec: ModelSpec, guidance: float) -> bool:
    """Whether a negative prompt has an effect on ``spec`` at ``guidance`` (a model of unknown architecture: as
    it says, since its threshold is not known before it loads)."""
    return spec.negative_prompt and (spec.profile is None or guidance > spec.profile.cfg_above)


def image_spec(studio: Studio, owner: str, model: str) -> ModelSpec:
    """The spec of an image model ``owner`` may use (another user's model folder is refused as a missing one); a
    repo id not downloaded yet is recognised from its ``model_index.json`` on the Hub (:func:`ask_hub`), so its
    first request gets its architecture's defaults and checks too."""
    spec = resolve_image_model(usable_model(studio, owner, model))
    return spec if spec.architecture else ask_hub(spec, studio.keys.optional(HUGGINGFACE))


def seed_run(seed: Any, count: int) -> int:
    """The first of ``count`` seeds in a row: ``seed`` checked so the run ends within :data:`MAX_SEED`, or (None
    or -1) a random one leaving room for the run."""
    if seed is None or seed == -1:
        return random.randint(0, MAX_SEED - count + 1)
    return whole_number("seed", seed, 0, MAX_SEED - count + 1)


def _default_size(spec: ModelSpec, request: ImageRequest, references: list[Image.Image]) -> tuple[int, int]:
    """The output size when the caller gives none: the init image's, else the first image to edit's (brought down
    to about the model's own pixels when larger), else the model's; :class:`InvalidInput` for a picture whose
    shape no size within the limits has."""
    if request.init is not None:
        return init_size(request.init, spec.size_multiple, MIN_SIDE, MAX_SIDE, spec.pixels)
    if references:
        return picture_size(references[0].size, spec.size_multiple, MIN_SIDE, MAX_SIDE, "first image to edit",
                            spec.pixels)
    return spec.width, spec.height


def plan_request(studio: Studio, request: ImageRequest, allow_any_path: bool = False) -> Plan:
    """Check every parameter and fill in defaults; raises :class:`InvalidInput` naming the problem.

    ``<lora:name:weight>`` tags in the prompt leave it and join the LoRAs; the negative prompt is kept only where
    it has an effect (a model that takes one, at a guidance that turns classifier-free guidance on)."""
    prompt, tagged = checked_prompt(request.prompt)
    plain_text("the negative prompt", request.negative_prompt, MAX_PROMPT_CHARS)
    fast = flag("fast", request.fast)
    spec = image_spec(studio, request.owner, request.model)
    steps = whole_number("steps", spec.steps if request.steps is None else request.steps, 1, MAX_STEPS)
    guidance = spec.guidance if request.guidance is None else float(request.guidance)
    if not 0 <= guidance <= MAX_GUIDANCE:
        raise InvalidInput(f"Guidance must be between 0 and {MAX_GUIDANCE} (got {guidance:g}).")
    negative = request.negative_prompt if uses_negative(spec, guidance) else ""
    references = plan_references(spec, request.references, request.init is not None, fast)
    try:
        default_size = _default_size(spec, request, references)
    except InvalidInput:  # a picture no size fits: refused only where the size comes from it
        if request.width is None or request.height is None:
            raise
        default_size = None  # the size the caller gave is used (the picture is read again at that size)
    fallback = default_size or (spec.width, spec.height)  # only a size not given is taken from it
    width = whole_number("width", fallback[0] if request.width is None else request.width, MIN_SIDE, MAX_SIDE)
    height = whole_number("height", fallback[1] if request.height is None else request.height, MIN_SIDE,
                          MAX_SIDE)
    for name, value in (("width", width), ("height", height)):
        if value % spec.size_multiple:
            raise InvalidInput(f"The {name} must be a multiple of {spec.size_multiple} for {spec.id} "
                               f"(got {value}; try {round(value / spec.size_multiple) * spec.size_multiple}).")
    batch = whole_number("batch", request.batch, 1, MAX_BATCH)
    if request.memory_plan != "auto":
        plan_named(request.memory_plan)  # an unknown name is refused, listing the plans
    check_quantized_plan(request.memory_plan, spec.architecture)
    if not 0 <= request.step_cache <= MAX_STEP_CACHE:
        raise InvalidInput(f"The step cache must be between 0 (off) and {MAX_STEP_CACHE} "
                           f"(got {request.step_cache:g}).")
    if request.step_cache and not fast:
        raise InvalidInput("The step cache is part of the fast setting: turn Fast on to use it.")
    check_space_request(spec.id, fast, request.memory_plan, bool(request.loras or tagged))
    seed = seed_run(request.seed, batch)
    wanted = [*request.loras, *tagged]
    loras = plan_loras(studio, spec, wanted, request.owner, allow_any_path)
    sampler = check_sampler(request.sampler, spec.architecture, spec.id, model_scheduler(spec))
    task = None if request.init is None else prepare(request.init, width, height, request.fast,
                                                      spec.size_multiple, (width, height) == default_size)
    if task is not None:
        steps = task_steps(steps, task.strength)  # the row and the parameters keep the steps run with
    face_detail = flag("face detail", request.face_detail)
    if spec.pipeline != "DiffusionPipeline":  # a bare repo id is checked once loaded
        check_task(spec.pipeline, spec.name or spec.id, task, face_detail)
    aids = load_aid_settings(studio.config)
    safety = aids if flag("safety check", request.safety_check) or aids.safety_mandatory else None
    flag("optimize prompt", request.optimize_prompt)
    if face_detail:
        check_strength(request.face_strength)
        if fast:
            raise InvalidInput("Face detail repaints faces with the inpaint pipeline: turn Fast off to use it.")
    controls = check_controls(request.controls, spec.architecture, spec.id, task is not None, fast)
    style_references = check_style_references(request.style_references, spec.architecture, spec.id,
                                              task is not None, fast)
    template = prompt_loras(request.template)[0] if request.template else ""
    planned = replace(request, prompt=prompt, negative_prompt=negative, loras=wanted, template=template,
                      sampler=sampler)
    return Plan(planned, spec, steps, guidance, width, height,
                [seed + i for i in range(batch)], loras, task, safety, controls, style_references,
                references=references, output_format=load_defaults(studio.config).output_format)


def plan_loras(studio: Studio, spec: ModelSpec, wanted: list[tuple[str, float]], owner: str,
               allow_any_path: bool = False) -> list[tuple[LoraInfo, float]]:
    """The LoRAs ``wanted`` ((reference, weight): the LoRA list, then the prompt's tags) checked for ``spec``
    without loading anything: each found (:func:`resolve_lora_path`), inspected and for ``spec``'s architecture.
    A file given more than once (list entry, tag, path) is one LoRA at the sum of its weights, where it came
    first, as Forge stacks it: what is applied is what the row and the PNG record."""
    merged: dict[Path, tuple[LoraInfo, float]] = {}
    for ref, weight in wanted:
        if not -4 <= weight <= 4:
            raise InvalidInput(f"LoRA weight {weight:g} is out of range (-4 to 4).")
        info = inspect_lora(resolve_lora_path(studio, ref, owner, allow_any_path))
        check_fits(info, spec.architecture, spec.id)
        key = info.path.resolve()
        info, before = merged.get(key, (info, 0.0))
        merged[key] = (info, round(before + float(weight), 6))  # 0.1 + 0.2 recorded as 0.3
    for info, weight in merged.values():
        if not -4 <= weight <= 4:
            raise InvalidInput(f"LoRA {info.name!r} is given more than once and its weights add up to {weight:g}, "
                               "out of range (-4 to 4).")
    return list(merged.values())


def generate_images(studio: Studio, request: ImageRequest, *, on_step: StepCallback | None = None,
                    on_image: Callable[[ImageResult], None] | None = None, stop: threading.Event | None = None,
                    gpu_timeout: float | None = None, allow_any_path: bool = False,
                    on_download: Watch | None = None, background: bool = False,
                    cancelled: Callable[[], bool] | None = None,
                    on_wait: Callable[[str], None] | None = None) -> list[ImageResult]:
    """Validate, download the model if needed (outside the GPU slot, progress to ``on_download``), then make
    ``request.batch`` images; returns them in order. Raises on the first failure.

    ``background`` work (the queue) lets interactive requests take the GPU first. While it waits for the GPU,
    ``on_wait`` is told for whom; ``cancelled`` (by default: ``stop`` is set) ends that wait, and one for a model
    download (which goes on) and the prompt optimizer's (its LLM's answer, a retry's pause). The request's LoRA
    files and models (with the repo of a ``gguf_offload`` file) are held from its checks to its end: they cannot be
    deleted while it waits for the GPU or runs."""
    plan = plan_request(studio, request, allow_any_path)
    cancelled = cancelled or (stop.is_set if stop else None)
    watch = stoppable(on_download, cancelled)  # a stop ends the wait for a download too
    with lora_files_in_use(studio, (info.path for info, _weight in plan.loras)):
        keep_inputs(studio, plan)
        with using_models(studio, request.owner, plan.spec.source, watch=watch,
                          without=replaced_components(request.memory_plan)), \
                using_models(studio, request.owner, plan.safety.safety_model if plan.safety else None, watch=watch), \
                holding_repos(studio, gguf_repo(request.memory_plan)):
            fetch_gguf(studio, request.owner, request.memory_plan, watch)  # not inside the GPU slot
            if plan.safety:  # a classifier without an unsafe label is refused before any image is made
                from masuka.image.safety_labels import check_safety_model

                check_safety_model(plan.safety.safety_model)
            if request.optimize_prompt:
                plan = _optimized(studio, plan, watch, gpu_timeout, background, cancelled)
            with studio.hold_gpu(f"image generation for {request.owner}", request.owner, timeout=gpu_timeout,
                                 background=background, on_wait=on_wait, cancelled=cancelled):
                return _run(studio, plan, on_step, on_image, stop)


def _optimized(studio: Studio, plan: Plan, on_download: Watch | None, gpu_timeout: float | None, background: bool,
               cancelled: Callable[[], bool] | None) -> Plan:
    """The plan with the optimized prompt (``cancelled`` ends its waits); the original is kept in the row's
    params."""
    from masuka.image.prompt_optimizer import optimize_prompt

    request = plan.request
    style = plan.spec.profile.prompt_style if plan.spec.profile else "natural"
    optimized = optimize_prompt(studio, request.prompt, style, request.owner, on_download,
                                gpu=lambda: studio.hold_gpu(f"prompt optimizer for {request.owner}", request.owner,
                                                            timeout=gpu_timeout, background=background,
                                                            cancelled=cancelled),
                                triggers=[info.trigger for info, _weight in plan.loras if info.trigger],
                                cancelled=cancelled)
    notes = {**request.notes, "original_prompt": optimized.original, "prompt_optimizer": optimized.source}
    return dataclasses.replace(plan, request=dataclasses.replace(request, prompt=optimized.prompt, notes=notes))


def _estimate_seconds(studio: Studio, plan: Plan, *args: Any) -> int:
    return gpu_seconds(plan)


def gpu_seconds(plan: Plan) -> int:
    """ZeroGPU duration of this request (refused there when one GPU call may not take that long): its images,
    with the face detail, the safety check and the ControlNets it runs."""
    request = plan.request
    return image_seconds(plan.spec, steps=plan.steps, width=plan.width, height=plan.height, images=len(plan.seeds),
                         face_strength=request.face_strength if request.face_detail else 0.0,
                         safety=plan.safety is not None, controls=len(plan.controls))


@zerogpu(duration=_estimate_seconds)
def _run(studio: Studio, plan: Plan, on_step: StepCallback | None, on_image: Callable | None,
         stop: threading.Event | None) -> list[ImageResult]:
    import torch

    check_stop(stop)  # a Stop while the work waited for the GPU: no model loaded for nothing
    request = plan.request
    pipe = get_pipeline(studio.models, plan.spec, studio.keys.optional(HUGGINGFACE),
                        memory=request.memory_plan, fast=request.fast, step_cache=request.step_cache)
    check_fits_loaded(plan, pipe)
    check_references(type(pipe).__name__, plan.spec.name or plan.spec.id, plan.references)
    check_task(type(pipe).__name__, plan.spec.name or plan.spec.id, plan.task, request.face_detail)
    apply_loras(pipe, plan.loras)
    compile_once(pipe)
    prepare_decode(pipe, pipeline_plan(pipe), plan.width, plan.height)
    runner = control_pipeline(task_pipeline(pipe, plan.task), plan.controls, pipeline_architecture(pipe),
                              plan.spec.id)
    apply_sampler(pipe, runner, request.sampler, plan.spec.id)
    accepted = set(inspect.signature(runner.__call__).parameters)
    _check_guidance(plan, runner, accepted)
    controls = control_kwargs(plan.controls, pipe, plan.width, plan.height, accepted)
    references = reference_kwargs(pipe, runner, plan.style_references, pipeline_architecture(pipe), plan.spec.id,
                                  request.prompt.strip())
    plan.kept = keep_controls(studio, request.owner, plan.controls) | keep_references(studio, request.owner,
                                                                                      plan.style_references)
    batch_id = uuid.uuid4().hex[:12]
    results = []
    for index, seed in enumerate(plan.seeds):
        check_stop(stop)
        row = _row(studio, plan, seed, batch_id, index, pipe)
        row_id = studio.store.insert("generations", row)
        started = time.perf_counter()

        def step_end(called: Any, step: int, _t: Any, kwargs: dict, index: int = index) -> dict:
            if on_step:  # of the timesteps the pipeline runs: a second-order sampler's, a repaint's fewer
                on_step(index, step + 1, getattr(called, "num_timesteps", None) or plan.steps)
            check_stop(stop)
            return kwargs

        try:
            kwargs = _call_kwargs(plan, accepted, torch.Generator("cpu").manual_seed(seed), step_end) | references
            with torch.inference_mode():
                extra = {name: value for name, value in task_kwargs(plan.task).items() if name in accepted}
                extra |= edit_kwargs(runner, plan.references, plan.width, plan.height)
                image = finish(runner(**kwargs, **extra, **controls).images[0], plan.task)
            image, aided = _aids(studio, plan, pipe, image, seed, step_end, references)
            parameters = format_parameters(_parameters(plan, seed, pipe))
            path = _save(studio, image, parameters, row_id, seed, plan.request.owner, plan.output_format)
        except BaseException as error:
            close_row(studio, row_id, started, error=error)
            raise
        complete_row(studio, row_id, started, path, params={**row["params"], **aided} if aided else None)
        result = ImageResult(row_id, path, seed, parameters)
        results.append(result)
        if on_image:
            on_image(result)
    return results


def close_row(studio: Studio, row_id: int, started: float, *, path: Path | None = None,
              error: BaseException | None = None, params: dict | None = None) -> None:
    """Finish a generations row: completed with its file (and ``params`` replacing the row's, when given), or
    cancelled (a Stop, or Ctrl-C or a signal in the CLI) or failed with the reason."""
    duration = round(time.perf_counter() - started, 4)
    if error is None:
        if path is None:
            raise ValueError("a completed generation needs its file's path")
        studio.store.update("generations", row_id, status="completed", output_path=studio.config.relative(path),
                            finished_at=now(), duration_s=duration, **({"params": params} if params else {}))
        return
    if isinstance(error, KeyboardInterrupt):
        error = Cancelled(at=f"with {interrupted_with(error)}")
    message = str(error) if isinstance(error, MasukaError) else f"{type(error).__name__}: {error}"
    studio.store.update("generations", row_id, status="cancelled" if isinstance(error, Cancelled) else "failed",
                        error=message, finished_at=now(), duration_s=duration)


def complete_row(studio: Studio, row_id: int, started: float, path: Path, params: dict | None = None) -> None:
    """Complete a generations row with its just-saved file; when the row cannot be written (a busy database, say)
    the file is removed, so no image is left without its History entry, and the error raised."""
    try:
        close_row(studio, row_id, started, path=path, params=params)
    except BaseException:
        path.unlink(missing_ok=True)
        raise


def _aids(studio: Studio, plan: Plan, pipe: Any, image: Any, seed: int, step_end: Callable,
          references: dict) -> tuple[Any, dict]:
    """The face detail (with the call's ``references`` arguments, as the image was made) and the safety check on
    one result: the image to save and what the row keeps of them."""
    import torch

    request = plan.request
    record: dict[str, Any] = {}
    if request.face_detail:
        task_plan = dataclasses.replace(plan, steps=task_steps(plan.steps, request.face_strength))

        def render(crop: Any, mask: Any) -> Any:
            task = TaskInput("inpaint", crop, mask, request.face_strength, InitImage("", request.face_strength))
            runner = task_pipeline(pipe, task)
            share_image_encoder(pipe, runner)
            sized = dataclasses.replace(task_plan, width=crop.width, height=crop.height)
            kwargs = _call_kwargs(sized, set(inspect.signature(runner.__call__).parameters),
                                  torch.Generator("cpu").manual_seed(seed), step_end) | references
            with torch.inference_mode():
                return runner(**kwargs, **task_kwargs(task)).images[0]

        model = load_aid_settings(studio.config).face_restore_model
        restore, restoration = face_restorer(studio, model) if model else (None, "")
        image, faces = detail_faces(image, render, min(plan.width, plan.height), plan.spec.size_multiple, restore)
        record.update(face_record(request.face_strength, faces, restoration))
    if plan.safety:
        from masuka.image.safety import check_image

        image, verdict = check_image(studio, image, plan.safety)
        record.update(verdict.record())
    return image, record


def used_prompt(result: ImageResult) -> str:
    """The prompt an image was made from (the optimized one when the prompt optimizer ran)."""
    return parse_parameters(result.parameters).prompt


def check_fits_loaded(plan: Plan, pipe: Any) -> None:
    """For repo ids and folders the architecture is known only once loaded: check the LoRAs then."""
    architecture = pipeline_architecture(pipe)
    for info, _weight in plan.loras:
        check_fits(info, architecture, plan.spec.id)


def _check_guidance(plan: Plan, runner: Any, accepted: set[str]) -> None:
    """A profile's ``guidance_argument`` the pipeline does not take would leave Guidance unused while the PNG
    records it (:func:`_call_kwargs` passes only the arguments a pipeline takes): refused before any image."""
    profile = plan.spec.profile
    if profile and profile.guidance_argument and profile.guidance_argument not in accepted:
        raise ValueError(f"The {profile.label} profile gives Guidance as {profile.guidance_argument!r}, which "
                         f"{type(runner).__name__} does not take: its guidance_argument is wrong.")


def _call_kwargs(plan: Plan, accepted: set[str], generator: Any, step_end: Callable) -> dict:
    request = plan.request
    kwargs: dict[str, Any] = dict(prompt=request.prompt.strip(), num_inference_steps=plan.steps,
                                  width=plan.width, height=plan.height, generator=generator,
                                  callback_on_step_end=step_end, output_type="pil")
    profile = plan.spec.profile
    argument = profile.guidance_argument if profile else "guidance_scale"
    if argument:
        kwargs[argument] = plan.guidance
    if request.negative_prompt:
        kwargs["negative_prompt"] = request.negative_prompt
    elif profile and argument == TRUE_CFG and plan.guidance > profile.cfg_above:
        kwargs["negative_prompt"] = " "  # as the model cards do: without one, diffusers turns true CFG off
    if plan.spec.max_sequence_length:
        kwargs["max_sequence_length"] = plan.spec.max_sequence_length
    return {k: v for k, v in kwargs.items() if k in accepted}


def _row(studio: Studio, plan: Plan, seed: int, batch_id: str, index: int, pipe: Any) -> dict:
    request = plan.request
    device_plan = pipeline_plan(pipe)
    width, height = plan.saved_size()
    stamp = now()  # created and started together: never started before it was created
    return {
        "owner": request.owner, "kind": "image", "status": "running", "prompt": request.prompt.strip(),
        "negative_prompt": request.negative_prompt, "model": plan.spec.id, "seed": seed, "width": width,
        "height": height, "steps": plan.steps, "guidance": plan.guidance, "batch_id": batch_id,
        "batch_index": index, **studio.runner().holding(), "created_at": stamp, "started_at": stamp,
        "queue_id": request.queue_id,
        "loras": [{"name": info.name, "path": str(info.path), "weight": weight} for info, weight in plan.loras],
        "params": {"architecture": plan.spec.architecture, "source": plan.spec.source, "batch": len(plan.seeds),
                   "memory_plan": device_plan.memory, "fast": device_plan.fast,
                   "step_cache": device_plan.step_cache, **task_record(studio, plan.task), **plan.kept,
                   **edit_record(studio, request.references), **request.notes,
                   **({"template": request.template} if request.template else {}),
                   **({"sampler": request.sampler} if request.sampler else {})},
    }


def _parameters(plan: Plan, seed: int, pipe: Any) -> Parameters:
    request = plan.request
    scheduler = type(getattr(pipe, "masuka_scheduler", None) or getattr(pipe, "scheduler", None)).__name__
    extra = infotext_fields(plan.task) | control_infotext(plan.controls) | reference_infotext(plan.style_references)
    if request.face_detail:
        extra.update(face_infotext(request.face_strength))
    if request.template and request.template != request.prompt.strip():
        extra["Template"] = request.template
    if plan.loras:
        extra["Lora hashes"] = ", ".join(f"{info.name}: {info.short_hash}" for info, _w in plan.loras)
    width, height = plan.saved_size()
    return Parameters(prompt=request.prompt.strip(), negative_prompt=request.negative_prompt, steps=plan.steps,
                      sampler=request.sampler or SAMPLERS.get(scheduler, scheduler),
                      guidance=plan.guidance, seed=seed, width=width, height=height, model=plan.spec.id,
                      loras=[(info.name, weight) for info, weight in plan.loras], extra=extra)


def _save(studio: Studio, image: Any, parameters: str, row_id: int, seed: int, owner: str = LOCAL_USER,
          image_format: str = "PNG") -> Path:
    """Write the image atomically (temporary file, then rename) in the owner's folder, as ``image_format`` (the
    one chosen in Settings, read once per request by the caller): no half-written file is ever recorded."""
    folder = output_dir(studio.config, owner) / "images" / datetime.now(UTC).strftime("%Y-%m-%d")
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{row_id:06d}-{seed}.{image_format.lower().replace('jpeg', 'jpg')}"
    partial = path.with_name(path.name + ".part")
    try:
        save_image(image, partial, parameters, image_format)
        os.replace(partial, path)
    except OSError as error:
        partial.unlink(missing_ok=True)
        raise as_disk_full(error) or MasukaError(f"Could not save the image in {folder}: "
                                                 f"{error.strerror or error}.") from error
    return path
