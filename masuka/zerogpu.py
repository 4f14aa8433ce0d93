"""Hugging Face ZeroGPU Spaces: the GPU time each request asks for.

On ZeroGPU a function decorated with ``spaces.GPU`` runs in a short-lived fork that gets a GPU slice for the
duration it asks for; the visitor's quota is checked against that duration before it starts. So each request
asks for what it needs (:func:`request_seconds`: steps, size, images, task), and a request that needs more than
one call may take (``MASUKA_ZEROGPU_MAX_S``) is refused before it runs, with the reason. The Space's model is
placed at start-up by :mod:`masuka.image.space_model`.
"""

from __future__ import annotations

from masuka.config import zerogpu_max_seconds
from masuka.errors import InvalidInput

#: The longest GPU call MASUKA asks for by default (ZeroGPU's default is 60 s; visitors' daily quotas are minutes).
DEFAULT_MAX_SECONDS = 120
#: Seconds per denoising step per megapixel on ZeroGPU's H200 slice, with a margin over published figures
#: (FLUX.1-dev 1024² 28 steps in about 5 s on an H200; SDXL 30 steps in about 2 s).
STEP_SECONDS = {"flux": 0.25, "sd3": 0.25, "sdxl": 0.08}
#: Fixed seconds of a task: moving the weights in, text encoding, VAE decode and saving.
FIXED_SECONDS = 10
#: A caption pass: loading the captioner inside the GPU task, then seconds per image.
CAPTION_LOAD_SECONDS, CAPTION_SECONDS = 30, 2


def max_seconds() -> int:
    return zerogpu_max_seconds(DEFAULT_MAX_SECONDS)


def request_seconds(task: str, *, steps: int = 0, width: int = 0, height: int = 0, images: int = 1,
                    architecture: str | None = None) -> int:
    """The GPU seconds a request asks ZeroGPU for; raises :class:`InvalidInput` when one call may not take that
    long, so the request is refused before any GPU time is spent (or quota checked)."""
    if task == "image":
        megapixels = width * height / 2**20
        seconds = FIXED_SECONDS + images * steps * max(megapixels, 0.25) * STEP_SECONDS.get(architecture or "", 0.25)
        remedy = "use fewer steps, a smaller size or fewer images"
    elif task == "caption":
        seconds = CAPTION_LOAD_SECONDS + images * CAPTION_SECONDS
        remedy = "caption fewer images at a time"
    else:
        raise ValueError(f"unknown ZeroGPU task {task!r}")
    seconds, limit = int(seconds + 0.999), max_seconds()
    if seconds > limit:
        raise InvalidInput(f"This request needs about {seconds} s of GPU time, more than the {limit} s one ZeroGPU "
                           f"call may take on this Space: {remedy}.")
    return seconds
