"""One synthetic view of a character: an edit model given the photo as a reference, or image-to-image from it.

Edit models (FLUX.1 Kontext, Qwen-Image-Edit-Plus, FLUX.2 multi-reference) take the photo as a reference and the
view prompt as an instruction (the request's ``references`` field). Any other model starts from the photo with
image-to-image at the form's strength. An outfit reference goes to edit models that take several images as the second
reference, with the instruction to dress the character in it. Either way the
view is an ordinary generation: saved, recorded in History, remade from its seed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from masuka.errors import InvalidInput
from masuka.image.edit import reference_limit, takes_references
from masuka.image.generate import ImageRequest, ImageResult, generate_images
from masuka.image.limits import MAX_SIDE, MIN_SIDE
from masuka.image.tasks import InitImage, open_picture
from masuka.models.catalog import image_models, resolve_image_model
from masuka.studio import Studio

DEFAULT_STRENGTH = 0.6


@dataclass
class ViewRequest:
    """How views are made: the model, its settings, and (img2img) how far a view may move from the photo."""

    model: str
    strength: float = DEFAULT_STRENGTH
    steps: int | None = None
    size: int | None = None  # the views' longer side (their shape is the photo's); None: the model's default size
    outfit: Path | None = None  # a picture of the clothes every view wears (edit models with several references)


def is_edit_model(model: str) -> bool:
    """Whether ``model`` edits from references (its pipeline class is an edit pipeline of its profile)."""
    return takes_references(resolve_image_model(model).pipeline)


def edit_models() -> list[dict]:
    """Catalog models that make views from references, with the GPU memory each needs (for the form)."""
    return [{"id": key, "name": entry.get("name", key), "vram_gb": resolve_image_model(key).vram_gb}
            for key, entry in image_models().items() if takes_references(entry.get("pipeline", ""))]


def check_outfit(model: str) -> None:
    """Refuse an outfit reference for a model that cannot take it beside the photo, saying which can."""
    spec = resolve_image_model(model)
    if not is_edit_model(model) or reference_limit(spec.pipeline, model) < 2:
        able = [m["id"] for m in edit_models()
                if reference_limit(resolve_image_model(m["id"]).pipeline, m["id"]) >= 2]
        raise InvalidInput(f"An outfit reference needs an edit model that takes several images ({', '.join(able)}); "
                           f"{model} does not.")


def view_prompt(description: str, edit: bool, outfit: bool = False) -> str:
    """The generation prompt of one view: an instruction for edit models (the person from the first image, dressed
    as in the second when there is an outfit reference), a description for image-to-image."""
    if edit and outfit:
        return ("Make a new photo of the person from the first image, keeping their face and identity, wearing the "
                f"outfit from the second image: {description}")
    if edit:
        return f"Make a new photo of the same person, keeping their face and identity: {description}"
    return f"photo of the same person, {description}"


def view_size(photo: Path, model: str, views: ViewRequest) -> tuple[int, int]:
    """The photo's shape, never stretched (image-to-image starts from the photo), with its longer side at the size
    asked for, else at the model's default size; scaled up where its shorter side would fall below
    :data:`~masuka.image.limits.MIN_SIDE` (a photo too long and thin for any size is refused) and rounded down to
    the model's multiple."""
    spec = resolve_image_model(model)
    multiple = spec.size_multiple
    low = -(-MIN_SIDE // multiple) * multiple
    with open_picture(photo, "photo") as picture:
        width, height = picture.size
    scale = max((views.size or max(spec.width, spec.height)) / max(width, height), low / min(width, height))
    if max(width, height) * scale > MAX_SIDE:
        raise InvalidInput(f"The photo is {width}x{height}: a view of its shape cannot have both sides within "
                           f"{MIN_SIDE}-{MAX_SIDE} pixels; crop it closer to square first.")
    return (max(low, int(width * scale) // multiple * multiple), max(low, int(height * scale) // multiple * multiple))


def make_view(studio: Studio, owner: str, photo: Path, description: str, seed: int, views: ViewRequest,
              allow_any_path: bool = False) -> ImageResult:
    """Generate one view of the character in ``photo`` (a file in the data dir) from its view description with
    ``views.model``, which the caller has checked ``owner`` may use (:func:`~masuka.access.usable_model`)."""
    model = views.model
    edit = is_edit_model(model)
    width, height = view_size(photo, model, views)
    values: dict[str, Any] = dict(prompt=view_prompt(description, edit, views.outfit is not None), model=model,
                                  seed=seed, steps=views.steps, width=width, height=height, owner=owner,
                                  notes={"character_view": description})
    if edit:
        values["references"] = [str(photo)] + ([str(views.outfit)] if views.outfit else [])
    else:
        values["init"] = InitImage(photo, strength=views.strength)
    return generate_images(studio, ImageRequest(**values), allow_any_path=allow_any_path)[0]
