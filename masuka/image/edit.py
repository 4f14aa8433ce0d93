"""Instruction editing: one or more reference images and a prompt that says what to change.

An edit model is its own checkpoint whose pipeline takes the references as ``image=``: FLUX.1 Kontext
(``FluxKontextPipeline``, one image), Qwen-Image-Edit-Plus (``QwenImageEditPlusPipeline``, up to three) and
FLUX.2 (``Flux2KleinPipeline`` / ``Flux2Pipeline``, whose text-to-image pipelines take several). Each profile
declares these classes (:attr:`~masuka.models.architectures.base.Profile.edit_pipelines`); a model is known as
an edit model from its pipeline class (catalog entry or ``model_index.json``), or once loaded for a bare repo id.
Call it as any generation: ``generate_images(studio, ImageRequest(model=..., prompt=..., references=[...]))``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from PIL import Image

from masuka.errors import InvalidInput
from masuka.models import architectures
from masuka.models.catalog import ModelSpec
from masuka.studio import Studio

EDIT_MODELS_HINT = "use an edit model such as flux-kontext-dev, qwen-image-edit-2509 or a FLUX.2 model"
#: references are brought down to about a megapixel, the size the edit models are trained at
MAX_REFERENCE_AREA = 1024 * 1024
#: FLUX.2's image processor refuses a reference with a side under 64 pixels; every edit model is given at least that
MIN_REFERENCE_SIDE = 64


def takes_references(pipeline_class: str) -> bool:
    """Whether ``pipeline_class`` edits from reference images (its profile declares it an edit pipeline)."""
    profile = architectures.for_pipeline(pipeline_class)
    return bool(profile and profile.edit_pipelines.get(pipeline_class))


def reference_limit(pipeline_class: str, model: str) -> int:
    """How many reference images ``pipeline_class`` takes; :class:`InvalidInput` when it does not edit."""
    profile = architectures.for_pipeline(pipeline_class)
    limit = profile.edit_pipelines.get(pipeline_class) if profile else None
    if not limit:
        raise InvalidInput(f"{model} has no edit pipeline in MASUKA: {EDIT_MODELS_HINT}.")
    return limit


def check_references(pipeline_class: str, model: str, references: Sequence[Any]) -> None:
    """Refuse references a model cannot take, and an edit-only model without any."""
    profile = architectures.for_pipeline(pipeline_class)
    if not references:
        if profile is not None and profile.edit_only(pipeline_class):
            raise InvalidInput(f"{model} is an edit model: give it one or more images to edit (--image).")
        return
    limit = reference_limit(pipeline_class, model)
    if len(references) > limit:
        raise InvalidInput(f"{model} takes at most {limit} reference image{'s' * (limit > 1)} "
                           f"(got {len(references)}).")


def plan_references(spec: ModelSpec, references: Sequence[str | Path], has_init: bool, fast: bool) -> list[Image.Image]:
    """The reference images read and checked against what the model (when known before loading) takes."""
    from masuka.image.tasks import open_picture

    if not isinstance(references, (list, tuple)):
        raise InvalidInput(f"References must be a list of image files (got {type(references).__name__}).")
    if references and has_init:
        raise InvalidInput("Editing starts from reference images, not from a starting image: give one or the other.")
    if references and fast:
        raise InvalidInput("Fast is for text-to-image only: turn it off to edit.")
    if spec.pipeline != "DiffusionPipeline":  # a bare repo id is checked once loaded
        check_references(spec.pipeline, spec.name or spec.id, references)
    pictures = [open_picture(path, "reference image").convert("RGB") for path in references]
    for path, picture in zip(references, pictures):
        if min(picture.size) < MIN_REFERENCE_SIDE:
            raise InvalidInput(f"The reference image {Path(path).name!r} is {picture.width}x{picture.height}: each "
                               f"side must be at least {MIN_REFERENCE_SIDE} pixels.")
    return pictures


def edit_kwargs(pipe: Any, pictures: list[Image.Image], width: int, height: int) -> dict:
    """The pipeline call's ``image`` argument (one picture, or a list where the pipeline takes several), each
    picture above :data:`MAX_REFERENCE_AREA` scaled down to it (same aspect ratio), and the arguments its profile
    gives to keep the planned size (:attr:`~masuka.models.architectures.base.Profile.edit_size_arguments`)."""
    if not pictures:
        return {}
    name = type(pipe).__name__
    pictures = [_within_area(picture, MAX_REFERENCE_AREA) for picture in pictures]
    profile = architectures.for_pipeline(name)
    sizing = profile.edit_size_arguments.get(name) if profile else None
    return {"image": pictures if reference_limit(name, name) > 1 else pictures[0],
            **(sizing(width, height) if sizing else {})}


def _within_area(picture: Image.Image, area: int) -> Image.Image:
    if picture.width * picture.height <= area:
        return picture
    scale = (area / (picture.width * picture.height)) ** 0.5
    return picture.resize((max(1, round(picture.width * scale)), max(1, round(picture.height * scale))),
                          Image.Resampling.LANCZOS)


def edit_record(studio: Studio, references: Sequence[str | Path]) -> dict:
    """What a history row keeps about an edit: the task and the reference files (relative to the data dir)."""
    if not references:
        return {}
    return {"task": "edit", "references": [studio.config.relative(Path(path).resolve()) for path in references]}
