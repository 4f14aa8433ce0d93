"""One synthetic view of a character: an edit model given the photo as a reference, or image-to-image from it.

Edit models (FLUX.1 Kontext, Qwen-Image-Edit-Plus, FLUX.2 multi-reference) take the photo as a reference and the
view prompt as an instruction (the request's ``references`` field). Any other model starts from the photo with
image-to-image at the form's strength. Either way the
view is an ordinary generation: saved, recorded in History, remade from its seed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from masuka.image.edit import takes_references
from masuka.image.generate import ImageRequest, ImageResult, generate_images
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
    width: int | None = None
    height: int | None = None


def is_edit_model(model: str) -> bool:
    """Whether ``model`` edits from references (its pipeline class is an edit pipeline of its profile)."""
    return takes_references(resolve_image_model(model).pipeline)


def edit_models() -> list[dict]:
    """Catalog models that make views from references, with the GPU memory each needs (for the form)."""
    return [{"id": key, "name": entry.get("name", key), "vram_gb": resolve_image_model(key).vram_gb}
            for key, entry in image_models().items() if takes_references(entry.get("pipeline", ""))]


def view_prompt(description: str, edit: bool) -> str:
    """The generation prompt of one view: an instruction for edit models, a description for image-to-image."""
    if edit:
        return f"Make a new photo of the same person, keeping their face and identity: {description}"
    return f"photo of the same person, {description}"


def view_size(photo: Path, model: str, views: ViewRequest) -> tuple[int, int]:
    """The size asked for, else the photo's shape with its longer side at the model's default size."""
    if views.width and views.height:
        return views.width, views.height
    spec = resolve_image_model(model)
    with open_picture(photo, "photo") as picture:
        width, height = picture.size
    scale = max(spec.width, spec.height) / max(width, height)
    multiple = spec.size_multiple
    fitted = [max(multiple, round(side * scale / multiple) * multiple) for side in (width, height)]
    return fitted[0], fitted[1]


def make_view(studio: Studio, owner: str, photo: Path, description: str, seed: int, views: ViewRequest,
              allow_any_path: bool = False) -> ImageResult:
    """Generate one view of the character in ``photo`` (a file in the data dir) from its view description."""
    edit = is_edit_model(views.model)
    width, height = view_size(photo, views.model, views)
    values: dict[str, Any] = dict(prompt=view_prompt(description, edit), model=views.model, seed=seed,
                                  steps=views.steps, width=width, height=height, owner=owner,
                                  notes={"character_view": description})
    if edit:
        values["references"] = [str(photo)]
    else:
        values["init"] = InitImage(photo, strength=views.strength)
    return generate_images(studio, ImageRequest(**values), allow_any_path=allow_any_path)[0]
