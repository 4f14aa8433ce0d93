"""Loading text-to-image pipelines: lazily, through ``from_pretrained``, cached between requests."""

from __future__ import annotations

import logging
from typing import Any

from masuka.gpu import DevicePlan, device_plan
from masuka.models.cache import ModelCache
from masuka.models.catalog import ModelSpec, architecture_of, explain_load_error

log = logging.getLogger(__name__)


def load_pipeline(spec: ModelSpec, plan: DevicePlan, token: str | None = None) -> Any:
    """``DiffusionPipeline.from_pretrained`` on the spec's repo or folder, placed as the plan says."""
    from diffusers import DiffusionPipeline

    log.info("loading %s from %s on %s/%s", spec.id, spec.source, plan.device, plan.dtype_name)
    try:
        pipe = DiffusionPipeline.from_pretrained(spec.source, dtype=plan.dtype, use_safetensors=True,
                                                 token=token)
    except Exception as error:  # every loading failure becomes a message naming the repo and the reason
        raise explain_load_error(spec, error) from error
    if plan.offload and plan.device == "cuda":
        pipe.enable_model_cpu_offload()
    else:
        pipe.to(plan.device)
    if plan.vae_tiling and hasattr(pipe, "vae"):
        pipe.vae.enable_tiling()
        pipe.vae.enable_slicing()
    pipe.set_progress_bar_config(disable=True)
    return pipe


def get_pipeline(cache: ModelCache, spec: ModelSpec, token: str | None = None) -> Any:
    """The cached pipeline for ``spec``, loading it (and freeing any other model) on first use."""
    plan = device_plan(spec.vram_gb)
    return cache.get(("image", spec.source, plan), lambda: load_pipeline(spec, plan, token))


def pipeline_architecture(pipe: Any) -> str | None:
    return architecture_of(type(pipe).__name__)
