"""Samplers by their AUTOMATIC1111 names, each a diffusers scheduler built from the model's own scheduler config.

Flow-matching models (FLUX, SD3, Qwen-Image, Z-Image: a transformer denoiser) take only the flow-matching Euler
scheduler and its sigma schedules; SDXL (a UNet) takes the classic samplers. An empty sampler keeps the model's
own scheduler. A name the model cannot use is refused saying which names it can.
"""

from __future__ import annotations

from typing import Any

from masuka.errors import InvalidInput
from masuka.models import architectures

#: sampler name -> (diffusers scheduler class, config overrides)
FLOW_SAMPLERS: dict[str, tuple[str, dict[str, Any]]] = {
    "Euler": ("FlowMatchEulerDiscreteScheduler", {}),
    "Euler Karras": ("FlowMatchEulerDiscreteScheduler", {"use_karras_sigmas": True}),
    "Euler Exponential": ("FlowMatchEulerDiscreteScheduler", {"use_exponential_sigmas": True}),
    "Euler Beta": ("FlowMatchEulerDiscreteScheduler", {"use_beta_sigmas": True}),
}
DIFFUSION_SAMPLERS: dict[str, tuple[str, dict[str, Any]]] = {
    "Euler": ("EulerDiscreteScheduler", {}),
    "Euler a": ("EulerAncestralDiscreteScheduler", {}),
    "Heun": ("HeunDiscreteScheduler", {}),
    "LMS": ("LMSDiscreteScheduler", {}),
    "DDIM": ("DDIMScheduler", {}),
    "UniPC": ("UniPCMultistepScheduler", {}),
    "DPM++ 2M": ("DPMSolverMultistepScheduler", {}),
    "DPM++ 2M Karras": ("DPMSolverMultistepScheduler", {"use_karras_sigmas": True}),
    "DPM++ 2M SDE": ("DPMSolverMultistepScheduler", {"algorithm_type": "sde-dpmsolver++"}),
    "DPM++ 2M SDE Karras": ("DPMSolverMultistepScheduler", {"algorithm_type": "sde-dpmsolver++",
                                                            "use_karras_sigmas": True}),
}
SAMPLER_NAMES = tuple(dict.fromkeys([*FLOW_SAMPLERS, *DIFFUSION_SAMPLERS]))


def samplers_for(architecture: str | None) -> dict[str, tuple[str, dict[str, Any]]]:
    """The samplers a model of ``architecture`` can use (every name while the architecture is unknown)."""
    profile = architectures.get(architecture) if architecture else None
    if profile is None:
        return {**DIFFUSION_SAMPLERS, **FLOW_SAMPLERS}
    return DIFFUSION_SAMPLERS if profile.denoiser == "unet" else FLOW_SAMPLERS


def check_sampler(name: str | None, architecture: str | None, model: str) -> str:
    """The sampler's proper name ("" keeps the model's own), or :class:`InvalidInput` naming the usable ones."""
    name = (name or "").strip()
    if not name or name.lower() in ("automatic", "default"):
        return ""
    usable = samplers_for(architecture)
    found = next((known for known in SAMPLER_NAMES if known.lower() == name.lower()), None)
    if found is None:
        raise InvalidInput(f"Unknown sampler {name!r}: use one of {', '.join(SAMPLER_NAMES)}.")
    if found not in usable:
        raise InvalidInput(f"{model!r} is a flow-matching model: the sampler {found!r} does not fit it; use "
                           f"{', '.join(usable)}.")
    return found


def fitting_sampler(name: str | None, model: str) -> str:
    """``name`` when ``model`` can use it, else "" (its own scheduler): for clients that send a sampler always."""
    from masuka.models.catalog import resolve_image_model

    try:
        return check_sampler(name, resolve_image_model(model).architecture, model)
    except InvalidInput:
        return ""


def apply_sampler(pipe: Any, runner: Any, name: str, model: str) -> None:
    """Give ``runner`` (``pipe`` or a task pipeline made from it) the scheduler of sampler ``name``, built from
    ``pipe``'s own scheduler config, or that own scheduler back for ""."""
    import diffusers

    own = pipe.__dict__.setdefault("masuka_scheduler", pipe.scheduler)
    if not name:
        runner.scheduler = own
        return
    flow = type(own).__name__.startswith("FlowMatch")
    table = FLOW_SAMPLERS if flow else DIFFUSION_SAMPLERS
    if name not in table:  # a repo id whose architecture was unknown until it loaded
        check_sampler(name, "flux" if flow else "sdxl", model)
    class_name, overrides = table[name]
    runner.scheduler = getattr(diffusers, class_name).from_config(own.config, **overrides)
