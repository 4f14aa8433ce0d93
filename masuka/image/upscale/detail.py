"""The detail upscale (A1111's "SD upscale"): enlarge the picture, then repaint it tile by tile with img2img at a
low strength, so a diffusion model adds the detail a plain enlargement cannot.

The enlargement is a resampler or a model upscaler (:func:`masuka.image.upscale.request.enlarge`). Tiles are the
model's native size (or ``tile``), each repainted with its own seed (``seed + tile index``, so a result can be made
again exactly) and blended into its neighbours over ``overlap`` pixels (:mod:`masuka.image.upscale.tiles`).
The pipeline is the one generation uses (:func:`masuka.image.tasks.task_pipeline`), so its weights are shared.
The result goes through the safety check as a generation does when Settings make it mandatory (blurred or
withheld when flagged, the verdict kept in the row).
"""

from __future__ import annotations

import inspect
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PIL import Image

from masuka.config import on_zerogpu
from masuka.errors import InvalidInput
from masuka.gpu import check_stop, zerogpu
from masuka.image.adapters import apply_loras
from masuka.image.copies import keep_input
from masuka.image.generate import MAX_PROMPT_CHARS, ImageRequest, Plan, _call_kwargs, plan_request
from masuka.image.memory import prepare_decode
from masuka.image.metadata import Parameters, format_parameters, parse_parameters, read_parameters
from masuka.image.pipelines import get_pipeline, pipeline_plan
from masuka.image.reference import unload_ip_adapter
from masuka.image.tasks import InitImage, TaskInput, infotext_fields, task_kwargs, task_pipeline
from masuka.image.upscale.models import BUILT_IN
from masuka.image.upscale.request import (
    DEFAULT_OVERLAP,
    DEFAULT_TILE,
    TileCallback,
    Upscaled,
    UpscaleRequest,
    enlarge,
    finish_row,
    pass_tiles,
    record,
)
from masuka.image.upscale.tiles import Blender, tile_boxes, to_array
from masuka.models.manage import using_models
from masuka.services import HUGGINGFACE
from masuka.studio import Studio

DETAIL_OVERLAP = 64  # A1111's default SD upscale overlap


def detail_upscale(studio: Studio, request: UpscaleRequest, source: Image.Image, upscaler: Path | None, *,
                   stop: threading.Event | None = None, on_tile: TileCallback | None = None,
                   gpu_timeout: float | None = None, allow_any_path: bool = False,
                   cancelled: Callable[[], bool] | None = None) -> Upscaled:
    """Plan with generation's own checks (model, steps, guidance, strength, seed), then repaint tile by tile
    (``cancelled``: as :func:`~masuka.image.upscale.job.upscale_image` takes it)."""
    prompt = detail_prompt(request)
    plan, overlap = plan_detail(studio, request, source, prompt, allow_any_path)
    if on_zerogpu():
        detail_seconds(request, plan, source, overlap)  # too long for one GPU call: refused before anything is kept
    width, height = source.width * request.scale, source.height * request.scale
    seed = plan.seeds[0]
    parameters = format_parameters(Parameters(
        prompt=prompt, negative_prompt=plan.request.negative_prompt,  # kept by the plan only where it has effect
        steps=plan.steps, guidance=plan.guidance, seed=seed, width=width, height=height, model=plan.spec.id,
        extra={**infotext_fields(plan.task), "SD upscale overlap": str(overlap),
               "SD upscale upscaler": request.upscaler}))
    with using_models(studio, request.owner, plan.spec.source, plan.safety.safety_model if plan.safety else None), \
            studio.hold_gpu(f"detail upscale for {request.owner}", request.owner, timeout=gpu_timeout,
                            background=request.queue_id is not None, cancelled=cancelled):
        kept = keep_input(studio, request.owner, request.image, "upscale-source")  # kept once nothing can refuse
        return _run(studio, request, plan, source, upscaler, kept, overlap, parameters, stop, on_tile)


def detail_prompt(request: UpscaleRequest) -> str:
    """The prompt the tiles are repainted with: the request's, else the picture's own; refused when neither."""
    prompt = request.prompt.strip() or _source_prompt(request.image)
    if not prompt:
        raise InvalidInput("A detail upscale needs a prompt that describes the picture (it carries none itself).")
    return prompt


def plan_detail(studio: Studio, request: UpscaleRequest, source: Image.Image, prompt: str,
                allow_any_path: bool = False) -> tuple[Plan, int]:
    """The plan of one tile (generation's own checks: model, steps, guidance, strength, seed) and the tiles'
    overlap."""
    width, height = source.width * request.scale, source.height * request.scale
    probe = plan_request(studio, ImageRequest(prompt=prompt, model=str(request.model), width=64, height=64,
                                              owner=request.owner), allow_any_path)  # the model's tile size
    multiple = probe.spec.size_multiple
    tile = probe.spec.width if not request.tile else request.tile
    tile_width, tile_height = (max(multiple, min(tile, side) // multiple * multiple) for side in (width, height))
    plan = plan_request(studio, ImageRequest(
        prompt=prompt, model=str(request.model), negative_prompt=request.negative_prompt, steps=request.steps,
        guidance=request.guidance, width=tile_width, height=tile_height, seed=request.seed, owner=request.owner,
        init=InitImage(request.image, request.strength)), allow_any_path)
    return plan, min(DETAIL_OVERLAP if request.overlap is None else request.overlap, min(tile_width, tile_height) // 4)


def _source_prompt(path: str | Path) -> str:
    """The picture's own prompt ("" when it carries none, or its metadata is too large to read); one longer than
    a prompt may be is refused, saying so, rather than borrowed."""
    try:
        text = read_parameters(path)
    except (OSError, ValueError, InvalidInput):
        return ""
    prompt = parse_parameters(text).prompt if text else ""
    if len(prompt) > MAX_PROMPT_CHARS:
        raise InvalidInput(f"The picture's own prompt is {len(prompt):,} characters long, over the "
                           f"{MAX_PROMPT_CHARS:,} a prompt may have: type a prompt for the detail upscale.")
    return prompt


def _estimate_seconds(studio: Studio, request: UpscaleRequest, plan: Plan, source: Image.Image,
                      upscaler: Path | None, kept: Path, overlap: int, *args: Any) -> int:
    return detail_seconds(request, plan, source, overlap)


def detail_seconds(request: UpscaleRequest, plan: Plan, source: Image.Image, overlap: int) -> int:
    """ZeroGPU duration: the model upscaler's passes when the enlargement is a model's (loaded by the request's
    check), one image generation per tile, the safety check, and the model's loading when it is not the Space's."""
    from masuka.zerogpu import image_seconds, upscale_pass_seconds

    width, height = source.width * request.scale, source.height * request.scale
    upscaling = 0.0 if request.upscaler in BUILT_IN else upscale_pass_seconds(
        width, height, pass_tiles(request, source, DEFAULT_TILE, DEFAULT_OVERLAP))  # as enlarge runs it here
    return image_seconds(plan.spec, steps=plan.steps, width=plan.width, height=plan.height,
                         images=len(_boxes(request, plan, source, overlap)), safety=plan.safety is not None,
                         upscaling=upscaling)


def _boxes(request: UpscaleRequest, plan: Plan, source: Image.Image, overlap: int) -> list:
    """The tiles of the enlarged picture, each the plan's size."""
    return tile_boxes(source.width * request.scale, source.height * request.scale, plan.width, overlap, plan.height)


@zerogpu(duration=_estimate_seconds)
def _run(studio: Studio, request: UpscaleRequest, plan: Plan, source: Image.Image, upscaler: Path | None,
         kept: Path, overlap: int, parameters: str, stop: threading.Event | None,
         on_tile: TileCallback | None) -> Upscaled:
    import torch

    pipe = get_pipeline(studio.models, plan.spec, studio.keys.optional(HUGGINGFACE))
    apply_loras(pipe, plan.loras)
    prepare_decode(pipe, pipeline_plan(pipe), plan.width, plan.height)
    task = plan.task
    if task is None:
        raise ValueError("a detailed upscale is planned as an img2img task")
    unload_ip_adapter(pipe)  # a reference's adapter, left by an earlier generation: the tiles take no reference
    runner = task_pipeline(pipe, task)
    accepted = set(inspect.signature(runner.__call__).parameters)
    width, height = source.width * request.scale, source.height * request.scale
    boxes = _boxes(request, plan, source, overlap)
    seed = plan.seeds[0]
    row = record(studio, request, kept, source, model=plan.spec.id, seed=seed, prompt=plan.request.prompt,
                 negative_prompt=plan.request.negative_prompt, steps=plan.steps, guidance=plan.guidance,
                 params={"strength": task.strength, "tile": [plan.width, plan.height], "overlap": overlap,
                         "tiles": len(boxes), "architecture": plan.spec.architecture})
    row_id = studio.store.insert("generations", row)

    def step_end(_pipe: Any, _step: int, _t: Any, kwargs: dict) -> dict:
        check_stop(stop)
        return kwargs

    def make() -> Image.Image:
        enlarged = enlarge(studio, source, request.scale, request.upscaler, upscaler, DEFAULT_TILE, DEFAULT_OVERLAP,
                           stop)
        blender = Blender(width, height, overlap)
        for index, box in enumerate(boxes):
            check_stop(stop)
            piece = TaskInput("img2img", enlarged.crop(box), None, task.strength, task.source)
            kwargs = _call_kwargs(plan, accepted, torch.Generator("cpu").manual_seed(seed + index), step_end)
            with torch.inference_mode():
                repainted = runner(**kwargs, **task_kwargs(piece)).images[0]
            blender.add(box, to_array(repainted))
            if on_tile:
                on_tile(index + 1, len(boxes))
        return _checked(studio, blender.image(), plan, row_id, row["params"])

    return finish_row(studio, row_id, request.owner, seed, parameters, make)


def _checked(studio: Studio, image: Image.Image, plan: Plan, row_id: int, params: dict) -> Image.Image:
    """``image`` as it may be saved: through the safety check when the plan has one (blurred or withheld when
    flagged), its verdict written to the row as generation writes it."""
    if plan.safety is None:
        return image
    from masuka.image.safety import check_image

    image, verdict = check_image(studio, image, plan.safety)
    studio.store.update("generations", row_id, params={**params, **verdict.record()})
    return image
