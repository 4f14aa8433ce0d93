"""Loading text-to-image pipelines: lazily, through ``from_pretrained``, placed by a memory plan, cached."""

from __future__ import annotations

import logging
from typing import Any

from masuka.gpu import DevicePlan, device_plan
from masuka.image.fast import prepare_fast
from masuka.image.memory import apply_memory_plan, text_encoder_quantization
from masuka.image.quantized import quantized_components
from masuka.memory_plans import plan_named
from masuka.model_cache import ModelCache
from masuka.models.catalog import ModelSpec, architecture_of, check_requirements, explain_load_error
from masuka.models.hub import cache_only

log = logging.getLogger(__name__)


def load_pipeline(spec: ModelSpec, plan: DevicePlan, token: str | None = None) -> Any:
    """``DiffusionPipeline.from_pretrained`` on the spec's repo or folder, prepared as the plan says."""
    from diffusers import DiffusionPipeline

    check_requirements(spec)
    log.info("loading %s from %s on %s/%s, memory plan %s%s", spec.id, spec.source, plan.device,
             plan.dtype_name, plan.memory, ", fast" if plan.fast else "")
    quantized = {"quantization_config": text_encoder_quantization(spec.architecture, plan)}
    if plan_named(plan.memory).quantized:  # NF4's own configuration covers the text encoder too
        quantized.update(quantized_components(spec.source, plan.memory, plan.dtype, token, spec.architecture))
    try:
        pipe = DiffusionPipeline.from_pretrained(spec.source, dtype=plan.dtype, use_safetensors=True, token=token,
                                                 local_files_only=cache_only(spec.source), **quantized)
    except Exception as error:  # every loading failure becomes a message naming the repo and the reason
        raise explain_load_error(spec, error) from error
    return prepare_pipeline(pipe, plan)


def prepare_pipeline(pipe: Any, plan: DevicePlan) -> Any:
    """Apply the fast path's load-time part and the memory plan to a built pipeline (loaded or synthetic)."""
    if plan.fast:
        prepare_fast(pipe, plan)
    apply_memory_plan(pipe, plan)
    pipe.set_progress_bar_config(disable=True)
    pipe.masuka_plan = plan
    return pipe


def get_pipeline(cache: ModelCache, spec: ModelSpec, token: str | None = None, *, memory: str = "auto",
                 fast: bool = False, step_cache: float = 0.0) -> Any:
    """The cached pipeline for ``spec`` and these settings, loading it (and freeing any other) on first use.

    The key holds the settings as asked (``auto`` included), so another plan, the fast path or another step
    cache reloads, while the free memory an auto plan was chosen from can change without a reload.
    """
    key = ("image", spec.source, memory, fast, step_cache)

    def load() -> Any:
        plan = device_plan(spec.vram_gb, memory=memory, memory_needs_gb=spec.memory_needs_gb, fast=fast,
                           step_cache=step_cache)
        return load_pipeline(spec, plan, token)

    return cache.get(key, load)


def pipeline_plan(pipe: Any) -> DevicePlan:
    """The plan a pipeline was prepared with."""
    return pipe.masuka_plan


def pipeline_architecture(pipe: Any) -> str | None:
    return architecture_of(type(pipe).__name__)
