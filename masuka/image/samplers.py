"""Samplers by their AUTOMATIC1111 names, each a diffusers scheduler built from the model's own scheduler config.

A model's own scheduler says which samplers fit it: flow-matching models (FLUX, SD3, Qwen-Image, Z-Image) take only
the flow-matching Euler scheduler and its sigma schedules; an EDM model (Playground v2.5, an SDXL fine-tune) only
the EDM samplers; any other SDXL the classic samplers. Before a model loads, its scheduler is read from its folder
(or its catalog entry's checkpoint); else its profile's ``scheduler_family`` says. An empty sampler keeps the
model's own scheduler. A name the model cannot use is refused saying which names it can.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from masuka.errors import InvalidInput
from masuka.models import architectures

if TYPE_CHECKING:
    from masuka.models.catalog import ModelSpec

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
EDM_SAMPLERS: dict[str, tuple[str, dict[str, Any]]] = {
    "DPM++ 2M EDM": ("EDMDPMSolverMultistepScheduler", {}),
    "Euler EDM": ("EDMEulerScheduler", {}),
}
#: sampler family -> (its samplers, what a model of that family is called in a refusal)
FAMILIES: dict[str, tuple[dict[str, tuple[str, dict[str, Any]]], str]] = {
    "flow": (FLOW_SAMPLERS, "a flow-matching model"),
    "edm": (EDM_SAMPLERS, "an EDM model (its scheduler is EDM's, as Playground v2.5's)"),
    "diffusion": (DIFFUSION_SAMPLERS, "a classic diffusion model"),
}

SAMPLER_NAMES = tuple(dict.fromkeys([*FLOW_SAMPLERS, *DIFFUSION_SAMPLERS, *EDM_SAMPLERS]))


def scheduler_family(scheduler: str) -> str:
    """The sampler family of a diffusers scheduler class: ``flow``, ``edm`` or ``diffusion``."""
    if scheduler.startswith("FlowMatch"):
        return "flow"
    return "edm" if scheduler.startswith("EDM") else "diffusion"


def model_scheduler(spec: ModelSpec) -> str | None:
    """The scheduler class a model comes with, when it is known before loading: from a local folder's
    ``scheduler/scheduler_config.json``, or the published checkpoint of a catalog entry."""
    if spec.is_local:
        try:
            config = json.loads((Path(spec.source) / "scheduler" / "scheduler_config.json").read_text("utf-8"))
        except (OSError, ValueError):
            return None
        name = config.get("_class_name") if isinstance(config, dict) else None
        return name if isinstance(name, str) else None
    published = spec.profile.real_models.get(spec.id, {}) if spec.profile else {}
    return published["scheduler"][0] if "scheduler" in published else None


def samplers_for(architecture: str | None, scheduler: str | None = None) -> dict[str, tuple[str, dict[str, Any]]]:
    """The samplers a model with ``scheduler`` (or else of ``architecture``) can use; every name while both are
    unknown."""
    family = _family(architecture, scheduler)
    if family is None:
        return {**DIFFUSION_SAMPLERS, **EDM_SAMPLERS, **FLOW_SAMPLERS}
    return FAMILIES[family][0]


def _family(architecture: str | None, scheduler: str | None) -> str | None:
    if scheduler:
        return scheduler_family(scheduler)
    profile = architectures.get(architecture) if architecture else None
    return profile.scheduler_family if profile else None


def check_sampler(name: str | None, architecture: str | None, model: str, scheduler: str | None = None) -> str:
    """The sampler's proper name ("" keeps the model's own), or :class:`InvalidInput` naming the usable ones: the
    model's family's when it is known (an unknown name too), else every name."""
    name = (name or "").strip()
    if not name or name.lower() in ("automatic", "default"):
        return ""
    found = next((known for known in SAMPLER_NAMES if known.lower() == name.lower()), None)
    family = _family(architecture, scheduler)
    if family is None:
        if found is None:
            raise InvalidInput(f"Unknown sampler {name!r}: use one of {', '.join(SAMPLER_NAMES)}.")
        return found
    usable, kind = FAMILIES[family]
    if found is None:  # only the names this model can use: another family's would be refused in turn
        raise InvalidInput(f"Unknown sampler {name!r}: {model!r} is {kind}; use {', '.join(usable)}, or the model's "
                           "own.")
    if found not in usable:
        raise InvalidInput(f"{model!r} is {kind}: the sampler {found!r} does not fit it; use {', '.join(usable)}, "
                           "or the model's own.")
    return found


def fitting_sampler(name: str | None, model: str) -> str:
    """``name`` when ``model`` can use it, else "" (its own scheduler): for clients that send a sampler always."""
    from masuka.models.catalog import resolve_image_model

    try:
        spec = resolve_image_model(model)
        return check_sampler(name, spec.architecture, model, model_scheduler(spec))
    except InvalidInput:
        return ""


def apply_sampler(pipe: Any, runner: Any, name: str, model: str) -> None:
    """Give ``runner`` (``pipe`` or a task pipeline made from it) the scheduler of sampler ``name``, built from
    ``pipe``'s own scheduler config, or that own scheduler back for ""; a sampler that does not fit the scheduler
    the model loaded with (a repo id's, unknown until then) is refused."""
    import diffusers

    own = pipe.__dict__.setdefault("masuka_scheduler", pipe.scheduler)
    if not name:
        runner.scheduler = own
        return
    check_sampler(name, None, model, type(own).__name__)
    class_name, overrides = FAMILIES[scheduler_family(type(own).__name__)][0][name]
    runner.scheduler = getattr(diffusers, class_name).from_config(own.config, **overrides)
