"""LoRAs made active on a pipeline: diffusers' named adapters, or the fast path's one hot-swapped slot.

The files themselves are checked in :mod:`masuka.loras.files` before they get here.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from masuka.errors import InvalidInput
from masuka.image.fast import fast_state, hotswap_loras
from masuka.loras.files import LoraInfo
from masuka.models import architectures

#: the logger diffusers repeats a failed load's whole error to (every mismatched tensor, one line each)
_LOAD_LOGGER = "diffusers.loaders.peft"
#: how torch (the denoiser) and transformers (a text encoder) say a tensor has another shape than the model's
_MISMATCH = ("size mismatch", "ignore_mismatched_sizes")


def apply_loras(pipe: Any, chosen: list[tuple[LoraInfo, float]]) -> None:
    """Make exactly ``chosen`` active on ``pipe`` with their weights; files already loaded are not re-read.

    A pipeline on the fast path has one hot-swapped slot instead (see :mod:`masuka.image.fast`).
    """
    if fast_state(pipe) is not None:
        hotswap_loras(pipe, chosen)
        return
    wanted = {info.adapter: (info, weight) for info, weight in chosen}
    loaded = {name for names in pipe.get_list_adapters().values() for name in names}
    stale = sorted(loaded - set(wanted))
    if stale:
        pipe.delete_adapters(stale)
    for adapter, (info, _weight) in wanted.items():
        if adapter in loaded:
            continue
        load_lora(pipe, info)
        if not any(adapter in names for names in pipe.get_list_adapters().values()):
            raise InvalidInput(f"LoRA {info.name!r} does not fit this model: none of its layers matched.")
    if wanted:
        pipe.set_adapters(list(wanted), [weight for _info, weight in wanted.values()])


def load_lora(pipe: Any, info: LoraInfo) -> None:
    """Load ``info`` as its named adapter. A file made for another size of the same architecture (SD3.5 Large on
    Medium, FLUX.2 [klein] 4B on 9B: the names fit, the widths do not) is refused, and the parts of it already
    attached (the denoiser's, when a text encoder's do not fit) are removed, so the pipeline is as it was."""
    try:
        with _errors_unlogged():
            pipe.load_lora_weights(str(info.path), adapter_name=info.adapter)
    except RuntimeError as error:
        if not any(words in str(error) for words in _MISMATCH):
            raise
        pipe.delete_adapters(info.adapter)
        profile = architectures.get(info.architecture)
        label = profile.label if profile else info.architecture
        raise InvalidInput(f"LoRA {info.name!r} was made for another size of {label} than this model (its layers "
                           "have other widths): choose a LoRA made for this model.") from None


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
