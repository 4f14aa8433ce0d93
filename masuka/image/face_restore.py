"""Optional face restoration after face detail: a GFPGAN-class model file (named in Settings) run through spandrel
on each repainted face crop before it is blended back.

spandrel is not a requirement: when it cannot be imported (not installed, or its torchvision does not import),
or the file is gone, faces are repainted without restoration and the history row says why.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from PIL import Image

from masuka.errors import InvalidInput
from masuka.studio import Studio

SIDE = 512  # GFPGAN-class models restore 512x512 faces

Restorer = Callable[[Image.Image], Image.Image]


def check_restore_model(path: str) -> str:
    """The restoration model's path as saved in Settings ("" = none), or :class:`InvalidInput`."""
    path = path.strip()
    if path and not Path(path).expanduser().is_file():
        raise InvalidInput(f"The face restoration model {path!r} is not a file: give the path of a GFPGAN-class "
                           ".pth or .safetensors file, or leave it empty.")
    return path


def face_restorer(studio: Studio, path: str) -> tuple[Restorer | None, str]:
    """The function restoring one face crop (None when restoration is skipped) and what history keeps about it."""
    file = Path(path).expanduser()
    if not file.is_file():
        return None, f"skipped: the model file {file.name} is gone"
    try:
        import spandrel
    except Exception as error:  # ImportError, or torchvision failing to import inside spandrel
        return None, (f"skipped: spandrel cannot be imported ({type(error).__name__}: {error}); install spandrel "
                      "with a working torchvision to restore faces")
    import torch

    from masuka.gpu import device_plan

    device = device_plan(1.0).device

    def load():
        try:
            model = spandrel.ModelLoader().load_from_file(str(file))
        except Exception as error:  # spandrel raises several kinds for a file it cannot read
            raise InvalidInput(f"spandrel could not read the face restoration model {file.name} "
                               f"({type(error).__name__}: {error}): fix it in Settings.") from None
        if not isinstance(model, spandrel.ImageModelDescriptor) or model.purpose != "FaceSR":
            raise InvalidInput(f"{file.name} is not a face restoration model (spandrel reads it as a "
                               f"{getattr(model, 'purpose', 'non-image')} model): fix it in Settings.")
        return model.to(device).eval()

    model = studio.aids.get(("face-restore", str(file), device), load)

    def restore(crop: Image.Image) -> Image.Image:
        import numpy as np

        pixels = np.asarray(crop.convert("RGB").resize((SIDE, SIDE), Image.Resampling.LANCZOS), dtype=np.float32) / 255
        tensor = torch.from_numpy(pixels).permute(2, 0, 1)[None].to(device)
        with torch.inference_mode():
            out = model(tensor).clamp(0, 1)[0].permute(1, 2, 0).float().cpu().numpy()
        return Image.fromarray((out * 255).round().astype(np.uint8)).resize(crop.size, Image.Resampling.LANCZOS)

    return restore, f"restored with {file.name}"
