"""The identity filter: how much a view looks like the character's photos, as the cosine similarity of embeddings.

For a person the default model is SFace (``opencv/face_recognition_sface``, Apache 2.0), a face-recognition model
that OpenCV runs on the CPU (:mod:`masuka.characters.facenet`); it is downloaded on first use, like any model. A
character that is not a person is compared with CLIP's image embedding (``openai/clip-vit-base-patch32``), and
``clip`` picks CLIP for a person too. The user may name another model: an ONNX face-recognition model (a folder holding
one ``.onnx``) or an image model in transformers format. A model that cannot be loaded falls back to
CLIP, and the report says so. Each kind of model has its own "same person" threshold, used when the user sets none.
Faces are compared with faces: the view's biggest face when one is found, else the whole view.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from PIL import Image

from masuka.access import usable_model
from masuka.characters.facenet import FACE_THRESHOLD, FaceNet
from masuka.datasets.preprocess import find_face
from masuka.errors import InvalidInput, ModelUnavailable
from masuka.gpu import device_plan
from masuka.jobs import Watch
from masuka.models.catalog import REPO_ID, ModelSpec, catalog, explain_load_error, refuse_missing_folder
from masuka.models.hub import cache_only, hub_cache_dir
from masuka.models.manage import catalog_files, using_models
from masuka.studio import Studio

log = logging.getLogger(__name__)
#: the catalog entry (section ``faces``) of the default face-recognition model
FACE_MODEL_ID = "sface"
CLIP_MODEL = "openai/clip-vit-base-patch32"
#: the threshold of image models in transformers format (CLIP and others) when the user sets none
IMAGE_THRESHOLD = 0.7
#: the models' own thresholds, in words for the forms and messages
OWN_THRESHOLDS = f"{FACE_THRESHOLD:.2f} for SFace, {IMAGE_THRESHOLD:g} for CLIP"


class Embedder(Protocol):
    """What the filter scores with: ``embed`` gives unit-length embeddings; ``threshold`` is the model's own."""

    source: str
    threshold: float

    def embed(self, images: list[Image.Image]) -> Any: ...


@dataclass
class ImageEmbedder:
    """An image model in transformers format and its processor (CLIP, or any model with a last hidden state)."""

    source: str
    model: Any
    processor: Any
    clip: bool
    threshold: float = IMAGE_THRESHOLD

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


def check_threshold(threshold: float | None) -> float | None:
    """A threshold the user set (a similarity from -1 to 1), or None for the identity model's own."""
    if threshold is None:
        return None
    value = float(threshold)
    if not -1 <= value <= 1:
        raise InvalidInput(f"The identity threshold is a similarity from -1 to 1 (got {value:g}); leave it unset "
                           f"for the identity model's own ({OWN_THRESHOLDS}).")
    return value


def load_embedder(studio: Studio, owner: str, model: str | None = None, on_download: Watch | None = None,
                  faces: bool = True) -> tuple[Embedder, str | None]:
    """The identity model ``model`` (default SFace for faces, CLIP otherwise) and a note when it fell back to
    CLIP."""
    wanted = (model or "").strip()
    if wanted.lower() == "clip" or not (wanted or faces):
        wanted = CLIP_MODEL
    wanted = wanted or face_model()
    try:
        return _load(studio, owner, wanted, on_download), None
    except ModelUnavailable as error:
        if wanted == CLIP_MODEL:
            raise
        log.warning("identity model %s unavailable, using CLIP: %s", wanted, error)
        try:
            clip = _load(studio, owner, CLIP_MODEL, on_download)
        except ModelUnavailable as fallback:
            raise ModelUnavailable(f"The identity model {wanted} could not be loaded ({error}), nor CLIP, which "
                                   f"stands in for it ({fallback}).") from fallback
        return clip, f"the identity model {wanted} could not be loaded ({error}); scored with CLIP instead"


def face_model() -> str:
    """The repo of the default face-recognition model."""
    return catalog()["faces"][FACE_MODEL_ID]["repo"]


def _load(studio: Studio, owner: str, source: str, on_download: Watch | None) -> Embedder:
    source = usable_model(studio, owner, source, marker=("config.json", "*.onnx"))
    if not os.path.isdir(os.path.expanduser(source)):  # a path naming no folder is said so, not as a bad repo id
        refuse_missing_folder(source)
    plan = device_plan(1)

    def load() -> Embedder:
        import transformers

        onnx = onnx_file(source)
        try:
            if onnx:
                return FaceNet.load(source, onnx)
            local = cache_only(source)
            config = transformers.AutoConfig.from_pretrained(source, local_files_only=local)
            clip = config.model_type == "clip"
            # Any: the two classes' from_pretrained are typed unlike each other (and wrongly for a union)
            model_class: Any = transformers.CLIPModel if clip else transformers.AutoModel
            model = model_class.from_pretrained(source, dtype=plan.dtype, use_safetensors=True, local_files_only=local)
            processor = transformers.AutoImageProcessor.from_pretrained(source, local_files_only=local)
        except Exception as error:
            raise explain_load_error(ModelSpec(source, source, None, name=source), error) from error
        return ImageEmbedder(source, model.to(plan.device).eval(), processor, clip)

    # beside the generation aids, not in the pipelines' slot: scoring the views never evicts the view model
    with using_models(studio, owner, source, watch=on_download):
        return studio.aids.get(("identity", source, plan.device, plan.dtype_name), load)


def onnx_file(source: str) -> Path | None:
    """The ONNX model ``source`` names: the ``.onnx`` in a folder that holds no ``config.json``, or the file a
    catalog entry names in its repo once downloaded. None for a transformers model, or a repo not downloaded
    (its loading then says why)."""
    folder = Path(source).expanduser()
    if not folder.is_dir():
        from huggingface_hub import try_to_load_from_cache

        named = catalog_files(source) if REPO_ID.match(source) else []
        cached = try_to_load_from_cache(source, named[0], cache_dir=hub_cache_dir()) if named else None
        return Path(cached) if isinstance(cached, str) and cached.endswith(".onnx") else None
    files = sorted(folder.glob("*.onnx"))
    if (folder / "config.json").is_file() or not files:
        return None
    if len(files) > 1:
        raise InvalidInput(f"{source} holds several ONNX models ({', '.join(p.name for p in files)}): give a "
                           "folder holding only the one to use.")
    return files[0]


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
