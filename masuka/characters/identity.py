"""The identity filter: how much a view looks like the character's photos, as the cosine similarity of embeddings.

The embedding model is a face-embedding model in transformers format when the user names one (downloaded on
first use, like any model), else CLIP's image embedding (``openai/clip-vit-base-patch32``): a coarser likeness,
but one every install can fetch. A model that cannot be loaded falls back to CLIP, and the report says so.
Faces are compared with faces: the view's biggest face when one is found, else the whole view.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from PIL import Image

from masuka.access import usable_model
from masuka.datasets.preprocess import find_face
from masuka.errors import InvalidInput, ModelUnavailable
from masuka.gpu import device_plan
from masuka.jobs import Watch
from masuka.models.catalog import ModelSpec, explain_load_error
from masuka.models.hub import cache_only
from masuka.models.manage import fetch_for_use
from masuka.studio import Studio

log = logging.getLogger(__name__)
CLIP_MODEL = "openai/clip-vit-base-patch32"
DEFAULT_THRESHOLD = 0.7


@dataclass
class Embedder:
    """An image-embedding model and its processor; ``source`` names what was loaded."""

    source: str
    model: Any
    processor: Any
    clip: bool

    def embed(self, images: list[Image.Image]) -> Any:
        """One unit-length embedding per image (a ``len(images) x D`` tensor)."""
        import torch

        inputs = self.processor(images=[image.convert("RGB") for image in images], return_tensors="pt")
        pixels = inputs["pixel_values"].to(self.model.device, self.model.dtype)
        with torch.inference_mode():
            if self.clip:
                vectors = self.model.get_image_features(pixel_values=pixels).pooler_output
            else:  # the mean of the last features: tokens (B, T, D) or a feature map (B, C, H, W)
                hidden = self.model(pixel_values=pixels).last_hidden_state
                vectors = hidden.mean(dim=(2, 3)) if hidden.ndim == 4 else hidden.mean(dim=1)
        return torch.nn.functional.normalize(vectors.float().flatten(1), dim=-1)


def check_threshold(threshold: float) -> float:
    value = float(threshold)
    if not -1 <= value <= 1:
        raise InvalidInput(f"The identity threshold is a similarity from -1 to 1 (got {value:g}); 0.7 is typical.")
    return value


def load_embedder(studio: Studio, owner: str, model: str | None = None,
                  on_download: Watch | None = None) -> tuple[Embedder, str | None]:
    """The embedding model ``model`` (default CLIP) and a note when it fell back to CLIP."""
    wanted = (model or "").strip() or CLIP_MODEL
    try:
        return _load(studio, owner, wanted, on_download), None
    except ModelUnavailable as error:
        if wanted == CLIP_MODEL:
            raise
        log.warning("identity model %s unavailable, using CLIP: %s", wanted, error)
        note = f"the identity model {wanted} could not be loaded ({error}); scored with CLIP instead"
        return _load(studio, owner, CLIP_MODEL, on_download), note


def _load(studio: Studio, owner: str, source: str, on_download: Watch | None) -> Embedder:
    source = usable_model(studio, owner, source, marker="config.json")
    fetch_for_use(studio, owner, source, on_download)
    plan = device_plan(1)

    def load() -> Embedder:
        import transformers

        local = cache_only(source)
        try:
            config = transformers.AutoConfig.from_pretrained(source, local_files_only=local)
            clip = config.model_type == "clip"
            # Any: the two classes' from_pretrained are typed unlike each other (and wrongly for a union)
            model_class: Any = transformers.CLIPModel if clip else transformers.AutoModel
            model = model_class.from_pretrained(source, dtype=plan.dtype, use_safetensors=True, local_files_only=local)
            processor = transformers.AutoImageProcessor.from_pretrained(source, local_files_only=local)
        except Exception as error:
            raise explain_load_error(ModelSpec(source, source, None, name=source), error) from error
        return Embedder(source, model.to(plan.device).eval(), processor, clip)

    return studio.models.get(("identity", source, plan.device, plan.dtype_name), load)


def likeness_crop(image: Image.Image, faces: bool) -> Image.Image:
    """What is compared: the biggest face (with a margin) when ``faces`` and one is found, else the picture."""
    from masuka.characters.faces import crop_box

    box = find_face(image) if faces else None
    return image.crop(crop_box(image.size, box)) if box else image


def scores(embedder: Embedder, references: list[Image.Image], views: list[Image.Image]) -> list[float]:
    """Each view's best cosine similarity to any reference."""
    if not views:
        return []
    similarity = embedder.embed(views) @ embedder.embed(references).T
    return [round(float(value), 4) for value in similarity.max(dim=1).values]
