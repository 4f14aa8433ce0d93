"""Reading a LoRA file into a pipeline as a named adapter, with a file made for another size of the model refused
in words (diffusers' own error lists every mismatched tensor)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from masuka.errors import InvalidInput
from masuka.model_cache import building
from masuka.models import architectures

if TYPE_CHECKING:
    from masuka.loras.files import LoraInfo

#: the logger diffusers repeats a failed load's whole error to (every mismatched tensor, one line each)
_LOAD_LOGGER = "diffusers.loaders.peft"
#: how torch (the denoiser) and transformers (a text encoder) say a tensor has another shape than the model's
_MISMATCH = ("size mismatch", "ignore_mismatched_sizes")


def load_lora(pipe: Any, info: LoraInfo, adapter: str | None = None, **options: Any) -> None:
    """Load ``info`` as the adapter ``adapter`` (its own name by default; ``options`` go to
    ``load_lora_weights``). A file made for another size of the same architecture (SD3.5 Large on
    Medium, FLUX.2 [klein] 4B on 9B: the names fit, the widths do not) is refused, and the parts of it already
    attached (the denoiser's, when a text encoder's do not fit) are removed, so the pipeline is as it was."""
    try:
        with building(), _errors_unlogged():
            pipe.load_lora_weights(str(info.path), adapter_name=adapter or info.adapter, **options)
    except RuntimeError as error:
        if not any(words in str(error) for words in _MISMATCH):
            raise
        pipe.delete_adapters(adapter or info.adapter)
        profile = architectures.get(info.architecture)
        label = profile.label if profile else info.architecture
        raise InvalidInput(f"LoRA {info.name!r} was made for another size of {label} than this model (its layers "
                           "have other widths): choose a LoRA made for this model.") from None
    _in_compute_dtype(pipe, adapter or info.adapter)


def _in_compute_dtype(pipe: Any, adapter: str) -> None:
    """Move ``adapter``'s layers out of fp8 into the plan's compute dtype: peft gives a new adapter its layer's
    dtype, which ``fp8_offload`` stores in fp8 and upcasts only for the layer's own forward."""
    import torch

    from masuka.image.memory import denoisers_of

    for denoiser in denoisers_of(pipe):
        for module in denoiser.modules():
            for name in getattr(module, "adapter_layer_names", ()):
                layers = getattr(module, name)
                if isinstance(layers, torch.nn.ModuleDict) and adapter in layers and \
                        any(param.dtype.itemsize == 1 for param in layers[adapter].parameters()):
                    layers[adapter].to(pipe.masuka_plan.dtype)


@contextmanager
def _errors_unlogged() -> Iterator[None]:
    """Drop diffusers' error log of a failed load while it runs: the exception carries the same words."""
    logger = logging.getLogger(_LOAD_LOGGER)
    logger.addFilter(_below_errors)
    try:
        yield
    finally:
        logger.removeFilter(_below_errors)


def _below_errors(record: logging.LogRecord) -> bool:
    return record.levelno < logging.ERROR
