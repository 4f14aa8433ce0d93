"""Hugging Face ZeroGPU Spaces: the GPU time each request asks for, and what a Space's model can do.

On ZeroGPU a function decorated with ``spaces.GPU`` runs in a worker process forked from the app (kept for the
next call while idle) that gets a GPU slice for the duration it asks for; the visitor's quota is checked
against that duration before it starts. So each request asks for what it needs (:func:`request_seconds`:
steps, size, images, task), and a request that needs more than one call may take (``MASUKA_ZEROGPU_MAX_S``) is
refused before it runs, with the reason. Local training and local video, minutes or hours on one GPU, are
refused there pointing at the remote services. The Space's model is placed at start-up by
:mod:`masuka.image.space_model`.
How a call crosses into that worker is :mod:`masuka.gpu_worker`'s.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from masuka.config import on_zerogpu, space_model, zerogpu_aoti, zerogpu_max_seconds
from masuka.errors import InvalidInput
from masuka.models import architectures

if TYPE_CHECKING:
    from masuka.models.catalog import ModelSpec

#: The longest GPU call MASUKA asks for by default (ZeroGPU's default is 60 s; visitors' daily quotas are minutes).
DEFAULT_MAX_SECONDS = 120
#: Seconds per denoising step per megapixel on ZeroGPU's H200 slice for a model of no known architecture; a
#: profile's are its ``step_seconds``.
UNKNOWN_STEP_SECONDS = 0.25
#: Fixed seconds of a task: moving the weights in, text encoding, VAE decode and saving.
FIXED_SECONDS = 10
#: A caption pass: loading the captioner inside the GPU task, then seconds per image.
CAPTION_LOAD_SECONDS, CAPTION_SECONDS = 30, 2
#: A model other than the Space's loads inside the GPU task: seconds per GB of its weights (none known: 20 GB).
LOAD_SECONDS_PER_GB, UNKNOWN_MODEL_GB = 1.0, 20.0
#: Face detail repaints each face's crop at the image's size and the face strength: the faces budgeted per image.
FACE_DETAIL_FACES = 2
#: The safety check: loading its classifier inside the task, then seconds per image.
SAFETY_LOAD_SECONDS, SAFETY_SECONDS = 5, 1
#: A ControlNet: loading its weights inside the task, and the share of each step its pass adds.
CONTROL_LOAD_SECONDS, CONTROL_STEP_SHARE = 5, 0.5
#: A model upscale: loading the upscaler, seconds per megapixel of the result, seconds per tile.
UPSCALE_LOAD_SECONDS, UPSCALE_SECONDS_PER_MP, UPSCALE_TILE_SECONDS = 5, 1.0, 0.1
#: Where local work that does not fit ZeroGPU's calls can be done instead.
ELSEWHERE = "on a GPU Space, Colab or your own GPU"


def max_seconds() -> int:
    return zerogpu_max_seconds(DEFAULT_MAX_SECONDS)


def refuse_local_training(instead: str = "") -> None:
    """:class:`InvalidInput` on ZeroGPU, where a local training run (minutes to hours on one GPU) cannot fit the
    GPU calls a request may make; remote trainers run on their service's GPUs. ``instead``: what to do instead
    (by default: the remote backends)."""
    if on_zerogpu():
        raise InvalidInput("Training cannot run on this ZeroGPU Space: a run takes minutes to hours, one ZeroGPU call "
                           f"at most {max_seconds()} s. " + (instead or "Train remotely instead: pick the fal or "
                           "Replicate backend (`--backend` in the CLI; it needs that service's API key), or train "
                           f"{ELSEWHERE}."))


def request_seconds(task: str, *, steps: int = 0, width: int = 0, height: int = 0, images: int = 1,
                    architecture: str | None = None, load_gb: float = 0.0, face_strength: float = 0.0,
                    safety: bool = False, controls: int = 0, tiles: int = 1, upscaling: float = 0.0) -> int:
    """The GPU seconds a request asks ZeroGPU for; raises :class:`InvalidInput` when one call may not take that
    long, so the request is refused before any GPU time is spent (or quota checked).

    ``image``: ``images`` of ``steps`` at ``width`` x ``height``; ``load_gb`` of weights loaded inside the task
    (a model that is not the Space's), the face detail's repaints at ``face_strength`` (0: off), the ``safety``
    check, ``controls`` ControlNets and ``upscaling``: seconds of a model upscaler's passes first
    (:func:`upscale_pass_seconds`: a detail upscale's enlargement). ``upscale``: a model upscale to ``width`` x
    ``height`` in ``tiles``. ``caption``: ``images`` captioned."""
    megapixels = width * height / 2**20
    if task == "image":
        step = steps * max(megapixels, 0.25) * step_seconds(architecture)
        per_image = step * (1 + CONTROL_STEP_SHARE * controls + FACE_DETAIL_FACES * face_strength)
        seconds = (FIXED_SECONDS + load_gb * LOAD_SECONDS_PER_GB + controls * CONTROL_LOAD_SECONDS
                   + (SAFETY_LOAD_SECONDS + images * SAFETY_SECONDS if safety else 0) + images * per_image + upscaling)
        remedy = ("use fewer steps, a smaller size or fewer images" + (", or the Space's own model" if load_gb else "")
                  + (", or enlarge with a built-in resampler (Lanczos)" if upscaling else ""))
    elif task == "upscale":
        seconds = UPSCALE_LOAD_SECONDS + upscale_pass_seconds(width, height, tiles)
        remedy = "upscale a smaller picture or by 2x, or use a built-in resampler (Lanczos), which needs no GPU"
    elif task == "caption":
        seconds = CAPTION_LOAD_SECONDS + images * CAPTION_SECONDS
        least = CAPTION_LOAD_SECONDS + CAPTION_SECONDS  # one image: fewer cannot help
        remedy = ("caption fewer images at a time" if least <= max_seconds() else
                  f"the Space's owner must raise MASUKA_ZEROGPU_MAX_S to at least {least} to caption at all")
    else:
        raise ValueError(f"unknown ZeroGPU task {task!r}")
    seconds, limit = int(seconds + 0.999), max_seconds()
    if seconds > limit:
        raise InvalidInput(f"This request needs about {seconds} s of GPU time, more than the {limit} s one ZeroGPU "
                           f"call may take on this Space: {remedy}.")
    return seconds


def upscale_pass_seconds(width: int, height: int, tiles: int) -> float:
    """Seconds of a model upscaler's passes to a ``width`` x ``height`` result in ``tiles``, its loading aside."""
    return width * height / 2**20 * UPSCALE_SECONDS_PER_MP + tiles * UPSCALE_TILE_SECONDS


def image_seconds(spec: ModelSpec, *, steps: int, width: int, height: int, images: int = 1,
                  face_strength: float = 0.0, safety: bool = False, controls: int = 0, upscaling: float = 0.0) -> int:
    """:func:`request_seconds` of an image request with model ``spec`` (its architecture, and its loading when
    it is not the Space's model)."""
    return request_seconds("image", steps=steps, width=width, height=height, images=images,
                           architecture=spec.architecture, load_gb=image_load_gb(spec.id, spec.vram_gb),
                           face_strength=face_strength, safety=safety, controls=controls, upscaling=upscaling)


def step_seconds(architecture: str | None) -> float:
    """Seconds per denoising step per megapixel of ``architecture`` on ZeroGPU (its profile's)."""
    profile = architectures.get(architecture)
    return profile.step_seconds if profile else UNKNOWN_STEP_SECONDS


def space_spec() -> ModelSpec | None:
    """On ZeroGPU, the model the Space loads at start-up (``MASUKA_SPACE_MODEL``), resolved; None elsewhere or
    when unset. A value that names no model is refused naming the variable."""
    from masuka.models.catalog import resolve_image_model

    named = space_model()
    if not on_zerogpu() or not named:
        return None
    try:
        return resolve_image_model(named)
    except InvalidInput as error:
        raise InvalidInput(f"MASUKA_SPACE_MODEL={named!r}: {error}") from None


def is_space_model(model_id: str) -> bool:
    """Whether ``model_id`` is the model the Space loaded at start-up (``MASUKA_SPACE_MODEL``)."""
    spec = space_spec()
    return spec is not None and spec.id == model_id


def image_load_gb(model_id: str, vram_gb: float | None) -> float:
    """GB of weights an image request loads inside its GPU task on ZeroGPU: none for the Space's model."""
    return 0.0 if is_space_model(model_id) else vram_gb or UNKNOWN_MODEL_GB


def check_space_request(model_id: str, fast: bool, memory_plan: str, loras: bool) -> None:
    """On ZeroGPU, refuse what the Space cannot do: the Fast path and memory plans (a ZeroGPU slice runs the
    model as placed at start-up, uncompiled by ``torch.compile``), and LoRAs on a transformer compiled ahead of
    time (its compiled program does not run the LoRA layers)."""
    if not on_zerogpu():
        return
    if fast or memory_plan not in ("auto", "full"):
        raise InvalidInput("On this ZeroGPU Space the model runs as ZeroGPU places it: turn Fast off and leave the "
                           "memory plan on auto.")
    if loras and zerogpu_aoti() and is_space_model(model_id):
        raise InvalidInput("LoRAs do not apply to this Space's model: its transformer is compiled ahead of time "
                           "(MASUKA_ZEROGPU_AOTI=1). Use a Space without it for LoRAs.")


def caption_chunks(todo: list) -> list[list]:
    """A caption pass's images in the groups one GPU call each captions: all at once off ZeroGPU; on ZeroGPU as
    many as one call may caption (a dataset of any size is captioned in several calls)."""
    size = max(1, (max_seconds() - CAPTION_LOAD_SECONDS) // CAPTION_SECONDS) if on_zerogpu() else len(todo) or 1
    return [todo[start:start + size] for start in range(0, len(todo), size)]
