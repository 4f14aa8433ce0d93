"""The Space's image model on ZeroGPU: placed at start-up, its transformer compiled ahead of time.

ZeroGPU emulates CUDA outside GPU functions and hands the weights placed on ``cuda`` in the main process to each
short-lived fork, so the Space's model (``MASUKA_SPACE_MODEL``) is loaded at start-up and requests load nothing
(a model loaded inside a fork would be lost when the fork ends). ``torch.compile`` does not survive the forks,
so with ``MASUKA_ZEROGPU_AOTI=1`` the Flux transformer is compiled ahead of time instead: one call captured with
``spaces.aoti_capture``, exported with ``torch.export`` (image sequence length dynamic, so every size works),
compiled by ``spaces.aoti_compile`` inside a GPU task and patched in with ``spaces.aoti_apply``.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from masuka.config import zerogpu_aoti
from masuka.gpu import zerogpu
from masuka.gpu_worker import shared
from masuka.image.pipelines import get_pipeline, pipeline_architecture
from masuka.services import HUGGINGFACE
from masuka.zerogpu import space_spec

if TYPE_CHECKING:
    from masuka.studio import Studio

log = logging.getLogger(__name__)

#: What ZeroGPU allows a GPU function called during start-up (the AoT compile).
STARTUP_SECONDS = 1500


def prepare_space(studio: Studio) -> Any | None:
    """On ZeroGPU, load ``MASUKA_SPACE_MODEL`` now (placed on ``cuda``, cached under the key requests use, and
    pinned there) and compile its transformer ahead of time when ``MASUKA_ZEROGPU_AOTI=1``. Returns the
    pipeline, or None."""
    spec = space_spec()
    if spec is None:
        return None
    log.info("ZeroGPU: loading %s at start-up", spec.id)
    pipe = shared(get_pipeline(studio.models, spec, studio.keys.optional(HUGGINGFACE)))  # crosses by reference
    if studio.models.key is not None:
        studio.models.pin(studio.models.key)  # requests for other models, and caption passes, never free it
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
