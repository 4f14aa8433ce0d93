"""Hugging Face ZeroGPU Spaces: GPU time asked per request, the Space's model placed at start-up, AoT compile.

On ZeroGPU a function decorated with ``spaces.GPU`` runs in a short-lived fork that gets a GPU slice for the
duration it asks for; the visitor's quota is checked against that duration before it starts. So:

- each request asks for what it needs (:func:`request_seconds`: steps, size, images, task), and a request that
  needs more than one call may take (``MASUKA_ZEROGPU_MAX_S``) is refused before it runs, with the reason;
- the Space's model (``MASUKA_SPACE_MODEL``) is loaded at start-up in the main process and placed on ``cuda``
  there (ZeroGPU emulates CUDA outside GPU functions and hands the weights to each fork), so requests load
  nothing: a model loaded inside a fork would be lost when the fork ends;
- with ``MASUKA_ZEROGPU_AOTI=1`` the Flux transformer is compiled ahead of time at start-up (``torch.compile``
  does not survive ZeroGPU's forks): one call captured with ``spaces.aoti_capture``, exported with
  ``torch.export`` (image sequence length dynamic, so every size works), compiled by ``spaces.aoti_compile``
  inside a GPU task and patched in with ``spaces.aoti_apply``.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from masuka.config import on_zerogpu, space_model, zerogpu_aoti, zerogpu_max_seconds
from masuka.errors import InvalidInput
from masuka.gpu import zerogpu

if TYPE_CHECKING:
    from masuka.studio import Studio

log = logging.getLogger(__name__)

#: The longest GPU call MASUKA asks for by default (ZeroGPU's default is 60 s; visitors' daily quotas are minutes).
DEFAULT_MAX_SECONDS = 120
#: What ZeroGPU allows a GPU function called during start-up (the AoT compile).
STARTUP_SECONDS = 1500
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


def prepare_space(studio: Studio) -> Any | None:
    """On ZeroGPU, load ``MASUKA_SPACE_MODEL`` now (placed on ``cuda``, cached under the key requests use) and
    compile its transformer ahead of time when ``MASUKA_ZEROGPU_AOTI=1``. Returns the pipeline, or None."""
    from masuka.image.pipelines import get_pipeline, pipeline_architecture
    from masuka.models.catalog import resolve_image_model

    model = space_model()
    if not on_zerogpu() or not model:
        return None
    spec = resolve_image_model(model)
    log.info("ZeroGPU: loading %s at start-up", spec.id)
    pipe = get_pipeline(studio.models, spec, studio.config.keys.get("huggingface"))
    if zerogpu_aoti():
        if pipeline_architecture(pipe) == "flux":
            compile_ahead(pipe, spec.max_sequence_length)
        else:
            log.info("ZeroGPU: ahead-of-time compilation is set up for Flux models only; %s runs uncompiled", spec.id)
    return pipe


def compile_ahead(pipe: Any, max_sequence_length: int | None = None) -> None:
    """Compile ``pipe.transformer`` ahead of time in a GPU task and patch it into the pipeline."""
    import spaces

    compiled = _compile_transformer(pipe, max_sequence_length)
    spaces.aoti_apply(compiled, pipe.transformer)


@zerogpu(duration=STARTUP_SECONDS)
def _compile_transformer(pipe: Any, max_sequence_length: int | None) -> Any:
    """Capture the transformer's inputs from one call, export it with a dynamic image sequence length, compile."""
    import spaces
    import torch
    from torch.utils._pytree import tree_map

    example = {"max_sequence_length": max_sequence_length} if max_sequence_length else {}
    with spaces.aoti_capture(pipe.transformer) as call:
        pipe("an example prompt", num_inference_steps=1, **example)
    sequence = torch.export.Dim("image_seq_length")
    dynamic = tree_map(lambda _value: None, call.kwargs)
    dynamic.update(hidden_states={1: sequence}, img_ids={0: sequence})
    exported = torch.export.export(pipe.transformer, args=call.args, kwargs=call.kwargs, dynamic_shapes=dynamic)
    return spaces.aoti_compile(exported)
