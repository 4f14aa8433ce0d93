"""Model upscalers: ESRGAN-family files in ``<data dir>/upscalers/``, loaded through spandrel, run tile by tile.

A file's name without its suffix is the upscaler's name. ``.safetensors`` files are read with safetensors,
``.pth``/``.pt`` with ``torch.load(weights_only=True)``: tensors only, never pickled code. spandrel recognises the
architecture and its settings from the weights (ESRGAN, Real-ESRGAN, Compact, SPAN, SwinIR, HAT, ...). A request's
checks load its model on the CPU (so a file that is not an upscaler's weights is refused before anything is kept)
into the studio's upscaler slot, where its job finds it (:func:`upscaler_model`) and runs a copy on its device.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PIL import Image

from masuka.config import Config
from masuka.errors import InvalidInput, ModelUnavailable
from masuka.gpu import check_stop
from masuka.image.tasks import RESAMPLERS
from masuka.image.upscale.spandrel_import import import_spandrel
from masuka.image.upscale.tiles import Blender, scaled, tile_boxes, to_array
from masuka.studio import Studio

SUFFIXES = (".safetensors", ".pth", ".pt")
BUILT_IN = tuple(RESAMPLERS)  # resampling, no model: Lanczos, Nearest


def upscalers_dir(config: Config) -> Path:
    return config.data_dir / "upscalers"


def list_upscalers(config: Config) -> dict[str, Path]:
    """Upscaler name -> file, for the model files in the upscalers folder, by name."""
    folder = upscalers_dir(config)
    files = sorted(folder.iterdir()) if folder.is_dir() else []
    return {path.stem: path for path in files if path.suffix.lower() in SUFFIXES and path.is_file()}


def upscaler_names(config: Config) -> list[str]:
    """Every upscaler a request may name: the built-in resamplers, then the model files."""
    return [*BUILT_IN, *list_upscalers(config)]


def check_upscaler(config: Config, name: str) -> Path | None:
    """The file of upscaler ``name`` (None for a built-in resampler); :class:`InvalidInput` naming the known ones
    when there is no such upscaler."""
    if name in BUILT_IN:
        return None
    found = list_upscalers(config)
    if name not in found:
        raise InvalidInput(f"Unknown upscaler {name!r}: use one of {', '.join(upscaler_names(config))} (model "
                           f"files go in {upscalers_dir(config)}).")
    return found[name]


def read_weights(path: Path) -> dict[str, Any]:
    """The tensors of an upscaler file, on the CPU."""
    import torch

    safetensors = path.suffix.lower() == ".safetensors"
    try:
        if safetensors:
            from safetensors.torch import load_file

            return load_file(path, device="cpu")
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # a truncated file, code in a pickle, not a weights file at all: torch's own words run to
        # several lines and advise weights_only=False, which would run that code
        raise InvalidInput(f"Upscaler file {path.name} cannot be read as weights: it is not a weights file"
                           f"{'' if safetensors else ' (or it carries code)'}, refused.") from None


def load_upscaler(path: Path, device: str) -> Any:
    """The spandrel model descriptor of an upscaler file, for ``device`` (:func:`on_device`)."""
    spandrel = import_spandrel()
    try:
        model = spandrel.ModelLoader().load_from_state_dict(spandrel.canonicalize_state_dict(read_weights(path)))
    except spandrel.UnsupportedModelError:
        raise InvalidInput(f"{path.name} is not a model architecture spandrel knows.") from None
    except (InvalidInput, ModelUnavailable):  # said in one line already
        raise
    except Exception as error:  # weights that match no architecture's shapes
        raise InvalidInput(f"{path.name} could not be loaded as an upscaler ({type(error).__name__}: "
                           f"{error}).") from None
    if not isinstance(model, spandrel.ImageModelDescriptor) or model.scale < 2:
        raise InvalidInput(f"{path.name} is a {model.architecture.name} model for {model.purpose}, not an upscaler.")
    return on_device(model.eval(), device)


def upscaler_model(studio: Studio, path: Path) -> Any:
    """The model of upscaler file ``path`` (:func:`load_upscaler` on the CPU), kept in the studio's upscaler slot
    (one upscaler, apart from the helper models: a check evicts none of them) until the file changes, so a
    request's check and its job load it once."""
    stat = path.stat()
    return studio.upscalers.get((str(path.resolve()), stat.st_mtime_ns, stat.st_size),
                                lambda: load_upscaler(path, "cpu"))


def on_device(model: Any, device: str) -> Any:
    """``model`` to run on ``device``: itself on the CPU; elsewhere a copy moved there (in half precision on CUDA
    where it supports it), so the model kept on the CPU stays as it is."""
    if device == "cpu":
        return model
    moved = copy.deepcopy(model).to(device)
    return moved.half() if device == "cuda" and moved.supports_half else moved


def run_model(model: Any, image: Image.Image, tile: int, overlap: int, stop: threading.Event | None = None,
              on_tile: Callable[[int, int], None] | None = None) -> Image.Image:
    """``image`` through ``model``, ``tile`` input pixels a side at a time (0 = whole), tiles blended over
    ``overlap`` pixels; the result is ``model.scale`` times larger."""
    import torch

    pixels = torch.from_numpy(to_array(image)).permute(2, 0, 1)[None]
    factor = model.scale
    blender = Blender(image.width * factor, image.height * factor, overlap * factor)
    boxes = tile_boxes(image.width, image.height, tile, overlap)
    for index, (left, top, right, bottom) in enumerate(boxes):
        check_stop(stop)
        piece = pixels[:, :, top:bottom, left:right].to(model.device, model.dtype)
        with torch.inference_mode():
            out = model(piece).float().clamp(0, 1)[0].permute(1, 2, 0).cpu().numpy()
        blender.add(scaled((left, top, right, bottom), factor), out)
        if on_tile:
            on_tile(index + 1, len(boxes))
    return blender.image()
