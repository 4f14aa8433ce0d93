"""A1111 extensions' ``alwayson_scripts`` arguments, translated into :class:`~masuka.image.generate.ImageRequest`
fields: sd-webui-controlnet's units (``{"controlnet": {"args": [unit, ...]}}``) and ADetailer's
(``{"ADetailer": {"args": [ad_enable, skip_img2img, unit, ...]}}``).

Script names are matched without regard to case, as A1111 does. A ControlNet unit's ``module`` picks the kind of
control: ``canny``, any ``depth_*`` preprocessor, or ``none`` (the picture as it is); a module starting with
``ip-adapter`` makes the unit a style reference. Its ``model`` names a ControlNet only when it is a Hugging Face
repo id or a folder; A1111's own file names (``control_v11p_sd15_canny [d14c016b]``) and ``None`` leave the choice
to the architecture's profile. An ADetailer unit with a face model (``face_yolov8n.pt``, ``mediapipe_face_full``…)
turns on face detail at its ``ad_denoising_strength``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from masuka.errors import InvalidInput
from masuka.image.control import Control
from masuka.image.face_detail import ADETAILER_STRENGTH, FACE_MODELS
from masuka.image.guides import MAX_GUIDES
from masuka.image.reference import StyleReference

#: sd-webui-controlnet modules MASUKA runs, by kind; ``depth`` takes every ``depth_*`` preprocessor too
MODULE_KINDS = {"canny": "canny", "depth": "depth", "none": "image"}
#: what ``/controlnet/module_list`` offers: the extension's names of the modules above, and IP-Adapter's
MODULE_LIST = ("none", "canny", "depth_midas", "depth_anything", "depth_anything_v2", "depth_zoe", "depth_leres",
               "ip-adapter_clip_sdxl", "ip-adapter_clip_h", "ip-adapter-auto")
IP_ADAPTER = "ip-adapter"
NO_MODEL = ("", "none")


def script_args(scripts: dict[str, Any] | None, name: str) -> list[Any]:
    """The ``args`` of the always-on script ``name`` (any case), [] when it is not there."""
    for key, value in (scripts or {}).items():
        if key.lower() == name.lower():
            args = value.get("args") if isinstance(value, dict) else None
            if args is None:
                return []
            if not isinstance(args, list):
                raise InvalidInput(f"alwayson_scripts.{key}.args must be a list.")
            return args
    return []


def controlnet_models() -> list[str]:
    """The ControlNets the architecture profiles use (each a repo id a unit may name as its ``model``)."""
    from masuka.models.architectures import PROFILES

    return list(dict.fromkeys(repo for profile in PROFILES.values() if profile.controlnets
                              for repo in profile.controlnets.repos.values()))


def module_kind(module: str) -> str | None:
    """The control kind of an sd-webui-controlnet ``module``; None for one MASUKA has no preprocessor for."""
    name = (module or "none").strip().lower()
    if name in MODULE_KINDS:
        return MODULE_KINDS[name]
    if name.startswith("depth_"):
        return "depth"
    return None


def controlnet_units(scripts: dict[str, Any] | None, decode: Callable[[str, str], Path],
                     check_model: Callable[[str], str]) -> tuple[list[Control], list[StyleReference]]:
    """The enabled ControlNet units of a weight other than 0 as controls and (``ip-adapter*`` modules) style
    references.

    Every unit is checked before any picture is kept: ``decode(base64, label)`` then keeps one and returns its
    path; ``check_model(model)`` returns a ControlNet model the caller may use (or raises)."""
    units = []  # (kind or None for a reference, unit, picture, named model)
    for number, unit in enumerate(script_args(scripts, "controlnet"), 1):
        if not isinstance(unit, dict):
            raise InvalidInput(f"ControlNet unit {number} must be an object with image, module, model, weight….")
        if unit.get("enabled", True) is False or unit.get("weight") == 0:  # a parked unit, control or reference
            continue
        module = str(unit.get("module") or "none")
        image = _unit_image(unit)
        if not image:
            raise InvalidInput(f"ControlNet unit {number} has no image: send it as base64 in 'image'.")
        kind = None if module.strip().lower().startswith(IP_ADAPTER) else module_kind(module)
        if kind is None and not module.strip().lower().startswith(IP_ADAPTER):
            raise InvalidInput(f"ControlNet unit {number}: the module {module!r} is not available here; use canny, "
                               "depth (depth_midas, depth_anything…), none (the picture as it is) or an "
                               "ip-adapter module.")
        model = str(unit.get("model") or "").strip()
        named = model if model.lower() not in NO_MODEL and ("/" in model or model.startswith((".", "~"))) else ""
        units.append((kind, unit, image, named))
    for what, count in (("control", sum(k is not None for k, *_ in units)),
                        ("reference", sum(k is None for k, *_ in units))):
        if count > MAX_GUIDES:
            raise InvalidInput(f"At most {MAX_GUIDES} {what} images at a time (got {count} ControlNet units).")
    controls: list[Control] = []
    references: list[StyleReference] = []
    for kind, unit, image, named in units:
        if kind is None:
            references.append(StyleReference(decode(image, "reference image"), _number(unit, "weight", 1.0)))
        else:
            controls.append(Control(kind, decode(image, "control image"), _number(unit, "weight", 1.0),
                                    _number(unit, "guidance_start", 0.0), _number(unit, "guidance_end", 1.0),
                                    check_model(named) if named else ""))
    return controls, references


def _unit_image(unit: dict[str, Any]) -> str:
    """The unit's picture: ``image`` (a base64 string, or ``{"image": base64, "mask": ...}``) or the older
    ``input_image``."""
    image = unit.get("image") or unit.get("input_image")
    if isinstance(image, dict):
        image = image.get("image")
    return image if isinstance(image, str) else ""


def _number(unit: dict[str, Any], name: str, default: float) -> Any:
    value = unit.get(name)
    return default if value is None else value  # checked with the request (masuka.image.guides)



def adetailer_faces(scripts: dict[str, Any] | None) -> float | None:
    """The face detail strength an ADetailer request asks for; None when it asks for none.

    Its ``args`` start with the ``ad_enable`` flag (false: off) and optionally ``skip_img2img``, then one object
    per unit; the first unit with a face model counts. A unit with another detection model is refused, naming it.
    """
    args = script_args(scripts, "adetailer")
    flags = [arg for arg in args if isinstance(arg, bool)]
    if flags and not flags[0]:
        return None
    strength = None
    for number, unit in enumerate((arg for arg in args if not isinstance(arg, bool)), 1):
        if not isinstance(unit, dict):
            raise InvalidInput(f"ADetailer unit {number} must be an object with ad_model, ad_denoising_strength….")
        model = str(unit.get("ad_model") or "None").strip()
        if model.lower() in NO_MODEL or unit.get("ad_tab_enable", True) is False:
            continue
        if not model.lower().startswith(FACE_MODELS):
            raise InvalidInput(f"ADetailer unit {number}: the model {model!r} is not available here; MASUKA details "
                               "faces only (face_yolov8n.pt, mediapipe_face_full…).")
        if strength is None:
            value = _number(unit, "ad_denoising_strength", ADETAILER_STRENGTH)
            try:
                strength = float(value)
            except (TypeError, ValueError):
                raise InvalidInput(f"ADetailer unit {number}: ad_denoising_strength must be a number "
                                   f"(got {str(value)[:40]!r}).") from None
    return strength
