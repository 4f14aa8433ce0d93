"""One upscale job: validate the request, hold the GPU, make the picture, save it with its parameters and record it.

Both ways record a history row of kind ``upscale`` whose params link the source picture (copied into the owner's
``inputs`` folder) and say how it was made; the picture carries A1111's fields (``Postprocess upscaler``,
``Postprocess upscale by`` for a model upscale, ``SD upscale overlap``/``SD upscale upscaler`` for a detail one).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PIL import Image

from masuka.config import on_zerogpu
from masuka.errors import InvalidInput
from masuka.gpu import zerogpu
from masuka.image.copies import keep_input
from masuka.image.metadata import Parameters, format_parameters, parse_parameters, read_parameters
from masuka.image.upscale.detail import detail_upscale
from masuka.image.upscale.request import (
    DEFAULT_OVERLAP,
    DEFAULT_TILE,
    TileCallback,
    Upscaled,
    UpscaleRequest,
    check_request,
    enlarge,
    finish_row,
    pass_tiles,
    record,
)
from masuka.studio import Studio
from masuka.zerogpu import request_seconds


def upscale_image(studio: Studio, request: UpscaleRequest, *, stop: threading.Event | None = None,
                  on_tile: TileCallback | None = None, gpu_timeout: float | None = None,
                  allow_any_path: bool = False, cancelled: Callable[[], bool] | None = None) -> list[Upscaled]:
    """Validate, then upscale in the GPU slot; returns the one result (a list, like generation). While it waits
    for the GPU, ``cancelled()`` is asked a few times a second: yes raises :class:`~masuka.errors.Cancelled`."""
    source, upscaler = check_request(studio, request)
    if request.detail:
        return [detail_upscale(studio, request, source, upscaler, stop=stop, on_tile=on_tile,
                               gpu_timeout=gpu_timeout, allow_any_path=allow_any_path, cancelled=cancelled)]
    if upscaler is not None and on_zerogpu():
        model_upscale_seconds(request, source)  # too long for one GPU call: refused before anything is kept
    run = _upscale if upscaler is None else _model_upscale  # a built-in resampler needs no GPU call
    with studio.hold_gpu(f"upscale for {request.owner}", request.owner, timeout=gpu_timeout,
                         background=request.queue_id is not None, cancelled=cancelled):
        kept = keep_input(studio, request.owner, request.image, "upscale-source")  # kept once nothing can refuse
        return [run(studio, request, source, upscaler, kept, stop, on_tile)]


def model_upscale_seconds(request: UpscaleRequest, source: Image.Image, *args: Any) -> int:
    """ZeroGPU duration of a model upscale of ``source``: the result's pixels and the tiles of the model's passes
    (:func:`pass_tiles`); refused when one GPU call may not take that long."""
    return request_seconds("upscale", width=source.width * request.scale, height=source.height * request.scale,
                           tiles=pass_tiles(request, source, *_tiling(request)))


def _upscale_seconds(studio: Studio, request: UpscaleRequest, source: Image.Image, *args: Any) -> int:
    return model_upscale_seconds(request, source)


@zerogpu(duration=_upscale_seconds)
def _model_upscale(studio: Studio, request: UpscaleRequest, source: Image.Image, upscaler: Path | None,
                   kept: Path, stop: threading.Event | None, on_tile: TileCallback | None) -> Upscaled:
    """:func:`_upscale` with a model upscaler, in a GPU call on ZeroGPU."""
    return _upscale(studio, request, source, upscaler, kept, stop, on_tile)


def _upscale(studio: Studio, request: UpscaleRequest, source: Image.Image, upscaler: Path | None,
             kept: Path, stop: threading.Event | None, on_tile: TileCallback | None) -> Upscaled:
    """Record, enlarge (with the upscaler file, or the built-in resampler when it is None) and save."""
    tile, overlap = _tiling(request)
    parameters = _postprocess_parameters(request, source.width * request.scale, source.height * request.scale)
    row_id = studio.store.insert("generations", record(studio, request, kept, source, model=request.upscaler,
                                                       params={"tile": tile, "overlap": overlap}))
    return finish_row(studio, row_id, request.owner, None, parameters, lambda: enlarge(
        studio, source, request.scale, request.upscaler, upscaler, tile, overlap, stop, on_tile))


def _tiling(request: UpscaleRequest) -> tuple[int, int]:
    """A model upscale's tile size and overlap (input pixels): the request's, or the defaults."""
    tile = DEFAULT_TILE if request.tile is None else request.tile
    return tile, min(DEFAULT_OVERLAP, tile // 4) if request.overlap is None else request.overlap


def _postprocess_parameters(request: UpscaleRequest, width: int, height: int) -> str:
    """The source's own parameters (as A1111 keeps them) with the upscale's fields added."""
    try:
        text = read_parameters(request.image)
    except (OSError, ValueError, InvalidInput):  # metadata too large or unreadable: the picture has no parameters
        text = None
    parameters = parse_parameters(text) if text else Parameters(width=width, height=height)
    parameters.extra.update({"Postprocess upscale by": str(request.scale), "Postprocess upscaler": request.upscaler})
    return format_parameters(parameters)
