"""The fast path: compiled repeated blocks, fused QKV, channels-last VAE, fp8 and an optional step cache.

At load (:func:`prepare_fast`) the VAE goes channels-last and the first-block cache is switched on when asked
for (its threshold is the quality knob: higher skips more steps' blocks, faster and rougher). Before the first
image (:func:`compile_once`) the QKV projections are fused (when no LoRA is loaded, since LoRAs target the
separate projections, and under plans without per-layer hooks), the repeated blocks are compiled
(``compile_repeated_blocks``) and, since they are compiled, fp8 weights and activations come from torchao on
GPUs that have fp8 (uncompiled, torchao's fp8 is slower than bf16). Compiling is paid once per pipeline and
size: on an H200 the first FLUX.1-dev image took minutes. The compiled graphs are reused for every later
request of the same size.

LoRAs on the fast path use one adapter slot that is hot-swapped (``enable_lora_hotswap`` before the first
load, ``load_lora_weights(..., hotswap=True)`` later), and weights change the slot's scaling tensors in
place, so switching LoRAs or weights never recompiles. A request without LoRA sets the slot's weight to 0.
The first LoRA on an already compiled pipeline recompiles once.
"""

from __future__ import annotations

import importlib.util
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from masuka.config import compile_backend, on_zerogpu
from masuka.errors import InvalidInput
from masuka.gpu import DevicePlan
from masuka.image.lora_weights import load_lora, refuse_wider
from masuka.image.memory import denoiser_of
from masuka.memory_plans import plan_named
from masuka.model_cache import building

if TYPE_CHECKING:
    from masuka.loras.files import LoraInfo

log = logging.getLogger(__name__)

SLOT = "masuka_slot"
#: LoRAs up to this rank hot-swap into the slot (a first LoRA of higher rank raises the ceiling to its own).
MIN_HOTSWAP_RANK = 64


@dataclass
class FastState:
    """What the fast path has done to one pipeline."""

    compiled: bool = False
    fused: bool = False
    fp8: bool = False
    lora: str | None = None  # adapter id of the file in the slot; "" after a failed swap
    scalings: list[tuple[Any, float]] = field(default_factory=list)  # (LoRA layer, scaling at weight 1)


def fast_state(pipe: Any) -> FastState | None:
    return getattr(pipe, "masuka_fast", None)


def prepare_fast(pipe: Any, plan: DevicePlan) -> None:
    """Load-time part of the fast path (before the memory plan places the weights)."""
    import torch

    if getattr(pipe, "vae", None) is not None:
        pipe.vae.to(memory_format=torch.channels_last)
    if plan.step_cache > 0:
        denoiser = denoiser_of(pipe)
        if hasattr(denoiser, "enable_cache"):
            from diffusers import FirstBlockCacheConfig

            denoiser.enable_cache(FirstBlockCacheConfig(threshold=plan.step_cache))
        else:
            log.info("the step cache is not available for %s: running every block", type(denoiser).__name__)
    pipe.masuka_fast = FastState()


def compile_once(pipe: Any) -> None:
    """Before the first image of a fast pipeline: fuse QKV, fp8, compile. Later calls do nothing."""
    state = fast_state(pipe)
    if state is None or state.compiled:
        return
    state.compiled = True  # a compile that fails is not retried on every request
    plan: DevicePlan = pipe.masuka_plan
    denoiser = denoiser_of(pipe)
    if state.lora is None and plan_named(plan.memory).fusable and hasattr(denoiser, "fuse_qkv_projections"):
        denoiser.fuse_qkv_projections()
        state.fused = True
    why_not = _why_not_compile(plan)
    if why_not:
        log.info("not compiling (and no fp8, which is slower than bf16 uncompiled): %s", why_not)
        return
    if state.lora is None:
        state.fp8 = _fp8(denoiser, plan)
    backend = compile_backend()
    if getattr(denoiser, "_repeated_blocks", None):
        denoiser.compile_repeated_blocks(fullgraph=True, backend=backend)
    else:
        denoiser.compile(backend=backend)


def _why_not_compile(plan: DevicePlan) -> str | None:
    if on_zerogpu():
        return "ZeroGPU Spaces do not support torch.compile"
    if plan.device == "mps":
        return "torch.compile is not reliable on Apple MPS"
    if plan.step_cache > 0:
        return "the step cache decides per step which blocks run, which a compiled graph cannot follow"
    if not plan_named(plan.memory).fusable:
        return f"the {plan.memory} plan moves or casts each layer's weights in hooks that break compiled graphs"
    return None


def _fp8(denoiser: Any, plan: DevicePlan) -> bool:
    """fp8 weights and activations (torchao) where the GPU has fp8 (compute capability 8.9+) and weights stay."""
    if plan.device != "cuda" or plan.memory != "full":
        return False
    import torch

    if torch.cuda.get_device_capability() < (8, 9):
        log.info("this GPU has no fp8 (compute capability below 8.9): fp8 skipped")
        return False
    if importlib.util.find_spec("torchao") is None:
        log.info("torchao is not installed: fp8 weights and activations skipped")
        return False
    from torchao.quantization import Float8DynamicActivationFloat8WeightConfig, quantize_

    quantize_(denoiser, Float8DynamicActivationFloat8WeightConfig())
    return True


def hotswap_loras(pipe: Any, chosen: list[tuple[LoraInfo, float]]) -> None:
    """Make ``chosen`` (at most one LoRA) active in the pipeline's single hot-swapped slot."""
    state = fast_state(pipe)
    if state is None:
        raise ValueError("hotswap_loras needs a pipeline prepared by prepare_fast")
    if len(chosen) > 1:
        raise InvalidInput("The fast setting swaps one LoRA at a time: choose one, or turn Fast off to combine "
                           "LoRAs.")
    if not chosen:
        _set_weight(state, 0.0)
        return
    info, weight = chosen[0]
    if state.fp8 and state.lora is None:
        raise InvalidInput("This fast pipeline runs fp8 weights, which LoRAs cannot attach to. Turn Fast off "
                           "and on again with the LoRA chosen, so the model reloads ready for it.")
    if state.lora != info.adapter:
        _load_into_slot(pipe, state, info)
    _set_weight(state, weight)


def _load_into_slot(pipe: Any, state: FastState, info: LoraInfo) -> None:
    from peft.tuners.lora import LoraLayer

    if state.lora is None:
        if state.fused:
            denoiser_of(pipe).unfuse_qkv_projections()
            state.fused = False
        if state.compiled:
            log.info("first LoRA on a compiled pipeline: recompiling once; later LoRAs swap in place")
        pipe.enable_lora_hotswap(target_rank=max(MIN_HOTSWAP_RANK, info.rank or 0), check_compiled="ignore")
        load_lora(pipe, info, SLOT)
    else:
        state.lora = ""  # until the swap is complete, the slot holds an unknown mix
        try:
            refuse_wider(pipe, info)  # before the swap: diffusers' FLUX.1 loader would widen the model's layers
            with building():
                pipe.load_lora_weights(str(info.path), adapter_name=SLOT, hotswap=True)
        except (ValueError, RuntimeError, KeyError, NotImplementedError) as error:
            raise InvalidInput(f"LoRA {info.name!r} cannot be swapped in on the fast path ({error}). Turn Fast "
                               "off to use it.") from error
    state.scalings = [(module, float(module.scaling[SLOT])) for component in pipe.components.values()
                      if hasattr(component, "modules")
                      for module in component.modules() if isinstance(module, LoraLayer) and SLOT in module.scaling]
    if not state.scalings:
        raise InvalidInput(f"LoRA {info.name!r} does not fit this model: none of its layers matched.")
    state.lora = info.adapter


def _set_weight(state: FastState, weight: float) -> None:
    """Scale the slot in place: scalings are tensors after hotswap preparation, so no guard changes."""
    for module, scaling in state.scalings:
        current = module.scaling[SLOT]
        if hasattr(current, "fill_"):
            current.fill_(scaling * weight)
        else:
            module.scaling[SLOT] = scaling * weight
