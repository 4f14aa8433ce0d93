"""One upscale job: validate the request, hold the GPU, make the picture, save it with its parameters and record it.

Both ways record a history row of kind ``upscale`` whose params link the source picture (copied into the owner's
``inputs`` folder) and say how it was made; the picture carries A1111's fields (``Postprocess upscaler``,
``Postprocess upscale by`` for a model upscale, ``SD upscale overlap``/``SD upscale upscaler`` for a detail one).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from masuka.defaults import load_defaults
from masuka.errors import InvalidInput
from masuka.gpu import device_plan, zerogpu
from masuka.image.generate import _save, close_row
from masuka.image.metadata import Parameters, format_parameters, parse_parameters, read_parameters
from masuka.image.tasks import RESAMPLERS, keep_input, open_picture
from masuka.image.upscale.models import check_upscaler, load_upscaler, run_model
from masuka.store import LOCAL_USER, now
from masuka.studio import Studio
from masuka.validation import flag, whole_number

SCALES = (2, 4)
MAX_RESULT_SIDE = 8192
DEFAULT_TILE, DEFAULT_OVERLAP = 512, 32  # model upscale: input pixels
MIN_TILE, MAX_TILE = 32, 4096

TileCallback = Callable[[int, int], None]  # (tiles done, tiles in all)


@dataclass
class UpscaleRequest:
    """An upscale: by a model upscaler (or Lanczos), or with ``detail`` by img2img tile by tile with ``model``."""

    image: str | Path
    scale: int = 2
    upscaler: str = "Lanczos"  # a built-in resampler or a file name in <data dir>/upscalers
    detail: bool = False
    model: str | None = None  # detail: the diffusion model that repaints the tiles
    strength: float = 0.3  # detail: how much each tile may change
    prompt: str = ""  # detail: what the picture shows (default: the source's own prompt, when it carries one)
    negative_prompt: str = ""
    steps: int | None = None
    guidance: float | None = None
    seed: int | None = None
    tile: int | None = None  # pixels a side; 0 = the whole picture at once (model upscale); None = the default
    overlap: int | None = None
    owner: str = LOCAL_USER
    queue_id: int | None = None  # the queued job this upscale is (masuka.queue); queued work lets interactive go first


@dataclass
class Upscaled:
    id: int
    path: Path
    seed: int | None
    parameters: str


def check_request(studio: Studio, request: UpscaleRequest) -> tuple[Image.Image, Path | None]:
    """The source picture and the upscaler file (None for a resampler); :class:`InvalidInput` for bad input."""
    flag("detail", request.detail)
    if request.scale not in SCALES:
        raise InvalidInput(f"The upscale factor must be 2 or 4 (got {request.scale}).")
    upscaler = check_upscaler(studio.config, request.upscaler)
    source = open_picture(request.image, "image")
    width, height = source.width * request.scale, source.height * request.scale
    if max(width, height) > MAX_RESULT_SIDE:
        raise InvalidInput(f"The image is too large to upscale {request.scale}x: the result would be {width}x{height}, "
                           f"at most {MAX_RESULT_SIDE} pixels a side.")
    if request.tile and whole_number("tile size", request.tile, 0, MAX_TILE) < MIN_TILE:
        raise InvalidInput(f"The tile size must be 0 (the whole picture) or {MIN_TILE}-{MAX_TILE} pixels "
                           f"(got {request.tile}).")
    if request.overlap is not None:
        whole_number("overlap", request.overlap, 0, max(0, (request.tile or MAX_TILE) // 2 - 1))
    if request.detail and not request.model:
        raise InvalidInput("A detail upscale needs the diffusion model that repaints the tiles (--model).")
    if request.model and not request.detail:
        raise InvalidInput("A model repaints tiles only in a detail upscale: turn detail on (--detail), or leave the "
                           "model out.")
    return source.convert("RGB"), upscaler


def upscale_image(studio: Studio, request: UpscaleRequest, *, stop: threading.Event | None = None,
                  on_tile: TileCallback | None = None, gpu_timeout: float | None = None,
                  allow_any_path: bool = False) -> list[Upscaled]:
    """Validate, then upscale in the GPU slot; returns the one result (a list, like generation)."""
    source, upscaler = check_request(studio, request)
    if request.detail:
        from masuka.image.upscale.detail import detail_upscale

        return [detail_upscale(studio, request, source, upscaler, stop=stop, on_tile=on_tile,
                               gpu_timeout=gpu_timeout, allow_any_path=allow_any_path)]
    kept = keep_input(studio, request.owner, request.image, "upscale-source")
    with studio.hold_gpu(f"upscale for {request.owner}", request.owner, timeout=gpu_timeout,
                         background=request.queue_id is not None):
        return [_model_upscale(studio, request, source, upscaler, kept, stop, on_tile)]


def enlarge(source: Image.Image, scale: int, upscaler: str, path: Path | None, tile: int, overlap: int,
            stop: threading.Event | None = None, on_tile: TileCallback | None = None) -> Image.Image:
    """``source`` made ``scale`` times larger: the model as many times as needed to reach the factor, then
    Lanczos to the exact size (a 4x model for 2x, a 2x model twice for 4x); a resampler directly."""
    size = (source.width * scale, source.height * scale)
    if path is None:
        return source.resize(size, RESAMPLERS[upscaler])
    model = load_upscaler(path, device_plan(memory="full").device)
    picture, reached = source, 1
    while reached < scale:
        picture = run_model(model, picture, tile, overlap, stop, on_tile)
        reached *= model.scale
    return picture if picture.size == size else picture.resize(size, Image.Resampling.LANCZOS)


@zerogpu(duration=60)
def _model_upscale(studio: Studio, request: UpscaleRequest, source: Image.Image, upscaler: Path | None,
                   kept: Path, stop: threading.Event | None, on_tile: TileCallback | None) -> Upscaled:
    tile = DEFAULT_TILE if request.tile is None else request.tile
    overlap = min(DEFAULT_OVERLAP, tile // 4) if request.overlap is None else request.overlap
    parameters = _postprocess_parameters(request, source.width * request.scale, source.height * request.scale)
    row_id = studio.store.insert("generations", record(studio, request, kept, source, model=request.upscaler,
                                                       params={"tile": tile, "overlap": overlap}))
    return finish_row(studio, row_id, request.owner, None, parameters, lambda: enlarge(
        source, request.scale, request.upscaler, upscaler, tile, overlap, stop, on_tile))


def _postprocess_parameters(request: UpscaleRequest, width: int, height: int) -> str:
    """The source's own parameters (as A1111 keeps them) with the upscale's fields added."""
    try:
        text = read_parameters(request.image)
    except (OSError, ValueError):
        text = None
    parameters = parse_parameters(text) if text else Parameters(width=width, height=height)
    parameters.extra.update({"Postprocess upscale by": str(request.scale), "Postprocess upscaler": request.upscaler})
    return format_parameters(parameters)


def record(studio: Studio, request: UpscaleRequest, kept: Path, source: Image.Image, *, model: str,
           seed: int | None = None, prompt: str = "", params: dict | None = None, **columns: Any) -> dict:
    """The history row of an upscale, as it starts."""
    return {"owner": request.owner, "kind": "upscale", "status": "running", "prompt": prompt, "model": model,
            "seed": seed, "width": source.width * request.scale, "height": source.height * request.scale,
            "pid": os.getpid(), "started_at": now(), "queue_id": request.queue_id, **columns,
            "params": {"task": "upscale", "scale": request.scale, "upscaler": request.upscaler,
                       "detail": request.detail, "init_image": studio.config.relative(kept.resolve()),
                       **(params or {})}}


def finish_row(studio: Studio, row_id: int, owner: str, seed: int | None, parameters: str,
               make: Callable[[], Image.Image]) -> Upscaled:
    """Make the picture, save it and complete the row; a failure or a Stop is recorded on the row and raised."""
    started = time.perf_counter()
    try:
        image_format = load_defaults(studio.config).output_format
        path = _save(studio, make(), parameters, row_id, 0 if seed is None else seed, owner, image_format)
    except BaseException as error:
        close_row(studio, row_id, started, error=error)
        raise
    close_row(studio, row_id, started, path=path)
    return Upscaled(row_id, path, seed, parameters)
