"""Optional face restoration after face detail: a GFPGAN-class model file (named in Settings) run through spandrel
on each repainted face crop before it is blended back.

spandrel is not a requirement: when it is not installed, or the file is gone, faces are repainted without
restoration and the history row says why. It is imported as the upscalers import it (:func:`import_spandrel`), so
the ``--no-deps`` install without torchvision restores faces too.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from PIL import Image

from masuka.errors import InvalidInput, ModelUnavailable
from masuka.image.upscale.spandrel_import import import_spandrel
from masuka.studio import Studio

SIDE = 512  # GFPGAN-class models restore 512x512 faces

Restorer = Callable[[Image.Image], Image.Image]


def check_restore_model(path: str) -> str:
    """The restoration model's path as saved in Settings ("" = none), or :class:`InvalidInput`: not a file, or
    (where spandrel imports) a file spandrel does not read as a face restoration model."""
    path = path.strip()
    if path and not Path(path).expanduser().is_file():
        raise InvalidInput(f"The face restoration model {path!r} is not a file: give the path of a GFPGAN-class "
                           ".pth or .safetensors file, or leave it empty.")
    if path:
        try:
            spandrel = import_spandrel()
        except (ModelUnavailable, ImportError):
            return path  # it cannot be read here, nor used: face detail says so on each row
        _read_model(spandrel, Path(path).expanduser())
    return path


def _read_model(spandrel: Any, file: Path) -> Any:
    """The face restoration model in ``file``, loaded on the CPU; :class:`InvalidInput` when spandrel cannot read it
    or reads another kind of model."""
    try:
        model = spandrel.ModelLoader().load_from_file(str(file))
    except Exception as error:  # spandrel raises several kinds for a file it cannot read
        raise InvalidInput(f"spandrel could not read the face restoration model {file.name} "
                           f"({type(error).__name__}: {error}): fix it in Settings.") from None
    if not isinstance(model, spandrel.ImageModelDescriptor) or model.purpose != "FaceSR":
        raise InvalidInput(f"{file.name} is not a face restoration model (spandrel reads it as a "
                           f"{getattr(model, 'purpose', 'non-image')} model): fix it in Settings.")
    return model


def face_restorer(studio: Studio, path: str) -> tuple[Restorer | None, str]:
    """The function restoring one face crop (None when restoration is skipped) and what history keeps about it."""
    file = Path(path).expanduser()
    if not file.is_file():
        return None, f"skipped: the model file {file.name} is gone"
    try:
        spandrel = import_spandrel()  # without torchvision too: GFPGAN-class architectures do not need it
    except (ModelUnavailable, ImportError) as error:
        return None, f"skipped: spandrel cannot be imported ({error})"
    import torch

    from masuka.gpu import device_plan

    device = device_plan(1.0).device
    model = studio.aids.get(("face-restore", str(file), device), lambda: _read_model(spandrel, file).to(device).eval())

    def restore(crop: Image.Image) -> Image.Image:
        import numpy as np

        pixels = np.asarray(crop.convert("RGB").resize((SIDE, SIDE), Image.Resampling.LANCZOS), dtype=np.float32) / 255
        tensor = torch.from_numpy(pixels).permute(2, 0, 1)[None].to(device)
        with torch.inference_mode():
            out = model(tensor).clamp(0, 1)[0].permute(1, 2, 0).float().cpu().numpy()
        return Image.fromarray((out * 255).round().astype(np.uint8)).resize(crop.size, Image.Resampling.LANCZOS)

    return restore, f"restored with {file.name}"
