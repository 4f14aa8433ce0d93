"""An upscale request and what both kinds of upscale share: its checks, the enlargement (a model upscaler or a
resampler) and the history row it makes.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from masuka.errors import InvalidInput
from masuka.gpu import device_plan
from masuka.image.defaults import load_defaults
from masuka.image.generate import _save, close_row, complete_row
from masuka.image.tasks import RESAMPLERS, open_picture
from masuka.image.upscale.models import check_upscaler, on_device, run_model, upscaler_model
from masuka.image.upscale.tiles import tile_boxes
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


def check_choices(request: UpscaleRequest) -> None:
    """The checks that need neither a studio nor the picture (the CLI runs them before it opens one): the factor,
    detail and model together, the tile size and overlap; :class:`InvalidInput` for bad input."""
    flag("detail", request.detail)
    if request.scale not in SCALES:
        raise InvalidInput(f"The upscale factor must be 2 or 4 (got {request.scale}).")
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


def check_request(studio: Studio, request: UpscaleRequest) -> tuple[Image.Image, Path | None]:
    """The source picture and the upscaler file (None for a resampler); :class:`InvalidInput` for bad input, an
    upscaler file that is not an upscaler's weights included (its model is loaded now, for the job to use)."""
    check_choices(request)
    upscaler = check_upscaler(studio.config, request.upscaler)
    source = open_picture(request.image, "image")
    width, height = source.width * request.scale, source.height * request.scale
    if max(width, height) > MAX_RESULT_SIDE:
        raise InvalidInput(f"The image is too large to upscale {request.scale}x: the result would be {width}x{height}, "
                           f"at most {MAX_RESULT_SIDE} pixels a side.")
    if upscaler is not None:
        upscaler_model(studio, upscaler)
    return upscale_source(source, colours_only=request.detail), upscaler  # a detail upscale repaints colours only


def upscale_source(picture: Image.Image, colours_only: bool = False) -> Image.Image:
    """``picture`` as an upscale takes it: RGBA where it has transparency (an alpha band, a palette's or a colour
    key's) unless ``colours_only``, else RGB (a palette would resize by Nearest whatever was asked)."""
    return picture.convert("RGBA" if picture.has_transparency_data and not colours_only else "RGB")


def enlarge(studio: Studio, source: Image.Image, scale: int, upscaler: str, path: Path | None, tile: int,
            overlap: int, stop: threading.Event | None = None, on_tile: TileCallback | None = None) -> Image.Image:
    """``source`` made ``scale`` times larger: the model as many times as needed to reach the factor, then
    Lanczos to the exact size (a 4x model for 2x, a 2x model twice for 4x); a resampler directly."""
    size = (source.width * scale, source.height * scale)
    if path is None:
        return source.resize(size, RESAMPLERS[upscaler])
    model = on_device(upscaler_model(studio, path), device_plan(memory="full").device)
    picture, reached = source.convert("RGB"), 1
    while reached < scale:
        picture = run_model(model, picture, tile, overlap, stop, on_tile)
        reached *= model.scale
    picture = picture if picture.size == size else picture.resize(size, Image.Resampling.LANCZOS)
    if "A" in source.getbands():  # the model sees colours only: transparency follows by Lanczos
        picture.putalpha(source.getchannel("A").resize(size, Image.Resampling.LANCZOS))
    return picture


def pass_tiles(request: UpscaleRequest, source: Image.Image, tile: int, overlap: int) -> int:
    """The tiles of a model upscaler's passes over ``source`` (for its ZeroGPU duration): a 4x upscale may take
    two passes of a 2x model, the second on a picture twice as large."""
    passes = (1, 2) if request.scale == 4 else (1,)
    return sum(len(tile_boxes(source.width * size, source.height * size, tile, overlap)) for size in passes)


def record(studio: Studio, request: UpscaleRequest, kept: Path, source: Image.Image, *, model: str,
           seed: int | None = None, prompt: str = "", params: dict | None = None, **columns: Any) -> dict:
    """The history row of an upscale, as it starts."""
    return {"owner": request.owner, "kind": "upscale", "status": "running", "prompt": prompt, "model": model,
            "seed": seed, "width": source.width * request.scale, "height": source.height * request.scale,
            **studio.runner().holding(), "started_at": now(), "queue_id": request.queue_id, **columns,
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
    complete_row(studio, row_id, started, path)
    return Upscaled(row_id, path, seed, parameters)
