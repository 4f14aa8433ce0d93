"""Memory plans applied to a loaded pipeline: where its weights live and in what precision.

Each plan is a row of :data:`masuka.memory_plans.PLANS`: its placement (everything on the device, model offload,
or leaf layers streamed to the GPU one at a time, with CUDA streams so transfer overlaps compute, the small VAE
staying on the device), fp8 storage of the denoisers (upcast layer by layer to the compute dtype) and an 8-bit big
text encoder. Plans that offload also tile and slice the VAE decode. The plan is chosen in
:func:`masuka.gpu.device_plan`; this module only carries it out, with diffusers' own hooks.
"""

from __future__ import annotations

import importlib.util
import inspect
import logging
from typing import Any

from masuka.gpu import DevicePlan
from masuka.memory_plans import plan_named
from masuka.models import architectures

log = logging.getLogger(__name__)

#: Pixels above which the VAE decodes in tiles whatever the plan (about 1.5 megapixels).
TILED_DECODE_PIXELS = 1536 * 1024


def denoiser_of(pipe: Any) -> Any:
    """The denoiser its profile names (a transformer, or SDXL's UNet); for unknown pipelines, whichever it has."""
    profile = architectures.for_pipeline(type(pipe).__name__)
    if profile:
        return getattr(pipe, profile.denoiser)
    return getattr(pipe, "transformer", None) or pipe.unet


def denoisers_of(pipe: Any) -> list[Any]:
    """The denoiser and, for two-expert models (Wan 2.2 A14B), the second one (``transformer_2``)."""
    return [d for d in (denoiser_of(pipe), getattr(pipe, "transformer_2", None)) if d is not None]


def apply_memory_plan(pipe: Any, plan: DevicePlan) -> None:
    """Place ``pipe`` as ``plan.memory``'s row says; fp8 storage is skipped where the device has no fp8 (MPS)."""
    import torch

    row = plan_named(plan.memory)
    if row.fp8_storage:
        if plan.device == "mps":
            log.info("fp8 weight storage is not available on Apple MPS: keeping %s weights", plan.dtype_name)
        else:
            for denoiser in denoisers_of(pipe):
                denoiser.enable_layerwise_casting(storage_dtype=torch.float8_e4m3fn, compute_dtype=plan.dtype)
    if row.placement == "device" or (plan.device == "cpu" and row.placement != "group_offload"):
        pipe.to(plan.device)  # a CPU has nowhere to offload to (and diffusers' LoRA loading re-offloads to a GPU)
    elif row.placement == "model_offload":
        pipe.enable_model_cpu_offload(device=plan.device)
    else:
        # low_cpu_mem_usage: streams pin each layer as it moves instead of keeping a pinned copy of every weight
        # (which doubles host memory, rounded up per tensor: Qwen-Image would need about 143 GiB)
        pipe.enable_group_offload(onload_device=torch.device(plan.device), offload_device=torch.device("cpu"),
                                  offload_type="leaf_level", use_stream=plan.device == "cuda", low_cpu_mem_usage=True,
                                  exclude_modules=["vae"])  # small, and tiled decodes do not mix with streams
    if plan.vae_tiling:
        set_vae_tiling(pipe, True)


def sharing_weights(pipe: Any, class_name: str, **components: Any) -> Any:
    """Pipeline ``class_name`` (a task, ControlNet or image-to-video pipeline) around ``pipe``'s own modules,
    placed, offloaded, fp8 or quantized as they are, with its settings and plan; ``components`` adds or replaces
    some (a ControlNet).

    Not ``from_pipe``: that casts every shared module to one dtype (float32 unless told), which would undo fp8
    storage and bf16 weights, and fails on a quantized (GGUF, NF4) transformer.
    """
    import diffusers

    cls = getattr(diffusers, class_name)
    accepted = inspect.signature(cls.__init__).parameters
    values = {**{k: v for k, v in pipe.config.items() if not k.startswith("_")}, **pipe.components, **components}
    kwargs = {k: v for k, v in values.items() if k in accepted}
    kwargs.update({k: None for k in getattr(cls, "_optional_components", []) if k in accepted and k not in kwargs})
    shared = cls(**kwargs)
    shared.set_progress_bar_config(disable=True)
    shared.masuka_plan = pipe.masuka_plan
    return shared


def set_vae_tiling(pipe: Any, on: bool) -> None:
    """Decode in tiles and one image at a time (large or batched decodes), or in one piece."""
    vae = getattr(pipe, "vae", None)
    if vae is None:
        return
    if on:
        vae.enable_tiling()
        vae.enable_slicing()
    else:
        vae.disable_tiling()
        vae.disable_slicing()


def prepare_decode(pipe: Any, plan: DevicePlan, width: int, height: int) -> None:
    """Tile this request's decode when the plan says so or the image is large."""
    set_vae_tiling(pipe, plan.vae_tiling or width * height > TILED_DECODE_PIXELS)


def text_encoder_quantization(architecture: str | None, plan: DevicePlan) -> Any:
    """For plans with ``encoder_8bit``, on CUDA: load the profile's big text encoder (T5-XXL, Qwen, Mistral) in
    8-bit through bitsandbytes, if installed.

    Returns a diffusers ``PipelineQuantizationConfig`` for ``from_pretrained``, or ``None`` (the encoder then
    stays in the compute dtype and is offloaded with the rest).
    """
    profile = architectures.get(architecture)
    component = profile.big_text_encoder if profile else None
    if (profile is None or component is None or plan.device != "cuda"
            or not plan_named(plan.memory).encoder_8bit):
        return None
    if importlib.util.find_spec("bitsandbytes") is None:
        log.info("bitsandbytes is not installed: the %s text encoder stays in %s (offloaded)", profile.label,
                 plan.dtype_name)
        return None
    from diffusers import PipelineQuantizationConfig

    return PipelineQuantizationConfig(quant_backend="bitsandbytes_8bit", quant_kwargs={"load_in_8bit": True},
                                      components_to_quantize=[component])
