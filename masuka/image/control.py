"""ControlNet: images that steer a text-to-image generation (its edges, its depth, or the picture itself).

Each :class:`Control` names a kind (:data:`~masuka.image.preprocess.KINDS`), a picture, a weight
(``controlnet_conditioning_scale``) and the part of the steps it acts on (``control_guidance_start/end``). The
architecture profile says which diffusers pipeline and ControlNet class it uses and which ControlNet serves each
kind (:class:`~masuka.models.architectures.base.ControlNets`); the ControlNet pipeline is built around the loaded
pipeline's modules (:func:`~masuka.image.memory.sharing_weights`), so the base weights are shared, and the
ControlNets stay loaded with it. Several controls run together (one ControlNet per control, a union model told
each control's kind by its mode).

The parameters text names each control as A1111's ControlNet extension does
(``ControlNet 0: "Module: canny, Model: ..., Weight: 1, Guidance Start: 0, Guidance End: 1"``) and is read back
by :func:`read_controls`; history rows keep a copy of each control picture.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from masuka.errors import InvalidInput
from masuka.image.copies import save_input
from masuka.image.guides import (
    check_guides,
    guide_number,
    guide_picture,
    guide_support,
    guide_weight,
    unavailable,
)
from masuka.image.memory import sharing_weights
from masuka.image.preprocess import KINDS, depth_estimator, depth_model_id, preprocess
from masuka.model_cache import building
from masuka.models.architectures.base import ControlNets
from masuka.models.hub import cache_only
from masuka.studio import Studio
from masuka.validation import has_suffix, is_number, weighted

#: kind -> A1111's name of its preprocessor ("Module"); the picture as it is is A1111's "none"
MODULES = {"canny": "canny", "depth": "depth", "image": "none"}
INFOTEXT_KEY = re.compile(r"ControlNet (\d+)$")
#: row params holding a kept picture the Image form shows again on Reuse
FORM_PICTURES = ("control_image",)


@dataclass
class Control:
    """One control image and how strongly, and over which steps, it steers the generation."""

    kind: str  # canny, depth or image (as it is)
    image: str | Path
    weight: float = 1.0
    start: float = 0.0  # fraction of the steps where it starts acting
    end: float = 1.0  # ... and stops
    model: str = ""  # a ControlNet repo id or folder; empty: the architecture's own for the kind


@dataclass
class ControlInput:
    """A checked :class:`Control` with its picture read and the ControlNet that serves it."""

    control: Control
    picture: Image.Image
    repo: str  # set by :func:`control_pipeline` when the control names none
    mode: int | None = None  # the control mode of a union ControlNet, set by :func:`control_pipeline`


def parse_control(text: str, model: str = "") -> Control:
    """``KIND:PATH`` or ``KIND:PATH:WEIGHT`` (the CLI's ``--control``) -> :class:`Control` served by ``model``
    (empty: the architecture's ControlNet for the kind)."""
    kind, _, rest = str(text).partition(":")
    if kind.strip() not in KINDS or not rest:
        raise InvalidInput(f"--control takes KIND:PATH[:WEIGHT] with KIND one of {', '.join(KINDS)} (got {text!r}).")
    path, weight = weighted(rest, "control image", has_suffix)
    return Control(kind.strip(), path, 1.0 if weight is None else weight, model=model)


def check_controls(controls: list[Control], architecture: str | None, model: str,
                   has_task: bool, fast: bool = False) -> list[ControlInput]:
    """Check every control and read its picture; :class:`InvalidInput` names what is wrong.

    ``architecture`` ``None`` (a repo id not yet loaded) is checked again once loaded (:func:`control_pipeline`).
    """
    if not controls:
        return []
    check_guides(controls, "control", has_task, fast)
    if architecture:
        _support(architecture, model)
    checked = []
    for index, control in enumerate(controls, 1):
        if control.kind not in KINDS:
            raise InvalidInput(f"Control {index}: unknown kind {control.kind!r}; use {', '.join(KINDS)}.")
        weight = guide_weight(f"Control {index}", control.weight)
        start, end = (guide_number(f"Control {index}: the {name}", value)
                      for name, value in (("start", control.start), ("end", control.end)))
        if not 0 <= start < end <= 1:
            raise InvalidInput(f"Control {index}: start and end must satisfy 0 <= start < end <= 1 "
                               f"(got {start:g} and {end:g}).")
        picture = guide_picture(control.image, f"Control image {index}")
        checked.append(ControlInput(Control(control.kind, control.image, weight, start, end, control.model),
                                    picture, control.model))
    return checked


def _support(architecture: str | None, model: str) -> ControlNets:
    return guide_support(architecture, model, "controlnets", "has no ControlNet pipeline in MASUKA: control images "
                         "work with SDXL and FLUX.1 models.")


def control_pipeline(pipe: Any, inputs: list[ControlInput], architecture: str | None, model: str) -> Any:
    """The ControlNet pipeline sharing ``pipe``'s weights with one ControlNet per acting control (``pipe`` itself
    when none acts); ControlNets and pipelines are kept on ``pipe`` for the next request."""
    if not inputs:
        return pipe
    support = _support(architecture, model)
    for item in inputs:
        item.repo = item.repo or support.repos[item.control.kind]
        item.mode = support.modes.get(item.control.kind)
    inputs = acting(inputs)
    if not inputs:
        return pipe
    nets = pipe.__dict__.setdefault("masuka_controlnets", {})
    for repo in dict.fromkeys(item.repo for item in inputs):
        if repo not in nets:
            nets[repo] = _load_controlnet(support, repo, pipe)
    pipeline = _union_pipeline(support, inputs, nets) or support.pipeline
    made = pipe.__dict__.setdefault("masuka_control_pipelines", {})
    key = (pipeline, *(item.repo for item in inputs))
    if key not in made:
        made[key] = sharing_weights(pipe, pipeline, controlnet=[nets[r] for r in key[1:]])
    return made[key]


def _union_pipeline(support: ControlNets, inputs: list[ControlInput], nets: dict[str, Any]) -> str | None:
    """The union pipeline when the controls name union models (their modes set on ``inputs``); None otherwise."""
    union = {type(nets[item.repo]).__name__ == support.union_model for item in inputs}
    if union == {False} or not support.union_model:
        return None
    if len(union) > 1:
        raise InvalidInput("Union and single-kind ControlNets cannot run together: name one kind of ControlNet.")
    for item in inputs:
        if item.control.kind not in support.union_modes:
            raise InvalidInput(f"The union ControlNet {item.repo} has no mode for {item.control.kind!r}: use "
                               f"{', '.join(support.union_modes)}.")
        item.mode = support.union_modes[item.control.kind]
    return support.union_pipeline


def _load_controlnet(support: ControlNets, repo: str, pipe: Any) -> Any:
    """The ControlNet in ``repo``: the profile's union class when its config names it, else its ControlNet class."""
    import diffusers

    cls = getattr(diffusers, support.model)
    try:
        config = cls.load_config(repo, local_files_only=cache_only(repo))
        if support.union_model and config.get("_class_name") == support.union_model:
            cls = getattr(diffusers, support.union_model)
        with building():
            net = cls.from_pretrained(repo, dtype=pipe.dtype, use_safetensors=True, local_files_only=cache_only(repo))
    except Exception as error:  # a missing repo, no network, a file that is not a ControlNet
        raise unavailable("ControlNet", repo, error) from error
    return net.to(pipe.masuka_plan.device)


def acting(inputs: list[ControlInput]) -> list[ControlInput]:
    """The controls that act: weight 0 leaves a control out, as if it were not there (A1111 users park a unit so;
    a FLUX ControlNet would otherwise still draw noise for it and change the image)."""
    return [item for item in inputs if item.control.weight > 0]


def control_maps(inputs: list[ControlInput], pipe: Any, width: int, height: int) -> list[Image.Image]:
    """Each control's preprocessed map at the output size (the depth model is loaded once, kept on ``pipe``)."""
    estimator = None
    if any(item.control.kind == "depth" for item in inputs):
        model_id = depth_model_id()
        cached = pipe.__dict__.setdefault("masuka_depth", {})
        if model_id not in cached:
            try:
                cached[model_id] = depth_estimator(model_id, pipe.masuka_plan.device)
            except Exception as error:
                raise unavailable("depth model", model_id, error) from error
        estimator = cached[model_id]
    return [preprocess(item.control.kind, item.picture, estimator).resize((width, height), Image.Resampling.LANCZOS)
            for item in inputs]


def control_kwargs(inputs: list[ControlInput], pipe: Any, width: int, height: int, accepted: set[str]) -> dict:
    """The ControlNet pipeline's call arguments for the acting controls (``control_image`` for FLUX, ``image``
    for SDXL), their maps made at the output size."""
    inputs = acting(inputs)
    if not inputs:
        return {}
    maps = control_maps(inputs, pipe, width, height)
    kwargs: dict[str, Any] = {
        "control_image" if "control_image" in accepted else "image": maps,
        "controlnet_conditioning_scale": [item.control.weight for item in inputs],
        "control_guidance_start": [item.control.start for item in inputs],
        "control_guidance_end": [item.control.end for item in inputs]}
    if "control_mode" in accepted:
        kwargs["control_mode"] = [item.mode for item in inputs]
    return kwargs


def keep_controls(studio: Studio, owner: str, inputs: list[ControlInput]) -> dict:
    """What a history row keeps: each control with a copy of its picture in the owner's inputs folder, and the
    first one's fields under the Image form's names (``control_kind``, ``control_image``, ...) for Reuse."""
    if not inputs:
        return {}
    kept = [{"kind": item.control.kind, "weight": item.control.weight, "start": item.control.start,
             "end": item.control.end, "model": item.repo,
             "image": studio.config.relative(save_input(studio, owner, item.picture, "control"))} for item in inputs]
    first = kept[0]
    return {"controls": kept, **{f"control_{name}": first[name] for name in ("kind", "image", "weight", "start",
                                                                               "end")}}


def control_infotext(inputs: list[ControlInput]) -> dict[str, str]:
    """A1111's ``ControlNet N`` fields."""
    return {f"ControlNet {index}": f"Module: {MODULES[item.control.kind]}, Model: {item.repo}, "
            f"Weight: {item.control.weight:g}, Guidance Start: {item.control.start:g}, "
            f"Guidance End: {item.control.end:g}" for index, item in enumerate(inputs)}


def read_controls(extra: dict[str, str]) -> list[dict[str, Any]]:
    """The ``ControlNet N`` fields of parsed parameters (ours or A1111's) as ``{kind, model, weight, start, end}``,
    in order; a module MASUKA has no preprocessor for reads as ``image`` (the picture used as it is)."""
    found = []
    for key, value in extra.items():
        match = INFOTEXT_KEY.match(key)
        if not match:
            continue
        fields = dict(part.split(":", 1) for part in value.split(", ") if ":" in part)
        fields = {name.strip(): text.strip() for name, text in fields.items()}
        module = fields.get("Module", "none")
        kind = next((k for k, name in MODULES.items() if module == name or module.startswith(f"{name}_")), "image")
        found.append((int(match.group(1)), {"kind": kind, "model": fields.get("Model", ""),
                                            "weight": _float(fields.get("Weight"), 1.0),
                                            "start": _float(fields.get("Guidance Start"), 0.0),
                                            "end": _float(fields.get("Guidance End"), 1.0)}))
    return [fields for _index, fields in sorted(found, key=lambda pair: pair[0])]


def _float(text: str | None, default: float) -> float:
    return float(text) if text is not None and is_number(text) else default
