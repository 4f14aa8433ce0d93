"""LoRAs made active on a pipeline: diffusers' named adapters, or the fast path's one hot-swapped slot.

The files themselves are checked in :mod:`masuka.loras.files` before they get here.
"""

from __future__ import annotations

from typing import Any

from masuka.errors import InvalidInput
from masuka.image.fast import fast_state, hotswap_loras
from masuka.image.lora_weights import load_lora
from masuka.loras.files import LoraInfo


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
