"""Image captioners: the families of :data:`FAMILIES` (Florence-2, BLIP-2), run with transformers' own classes.

A captioner field holds a catalog id (``florence2-base``), a family id (``florence2`` / ``blip2`` for its default
model), a Hugging Face repo id or a local folder saved with ``save_pretrained``. Captioners load through
the studio's :class:`~masuka.model_cache.ModelCache`, so loading one frees the image pipeline.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from masuka.errors import InvalidInput
from masuka.gpu import device_plan
from masuka.model_cache import ModelCache
from masuka.models.catalog import REPO_ID, ModelSpec, catalog, explain_load_error, refuse_missing_folder
from masuka.models.hub import cache_only

#: caption mode (its length) -> new tokens at most
MODES = {"short": 40, "detailed": 128, "more_detailed": 256}


@dataclass(frozen=True)
class CaptionerFamily:
    """A family of captioners MASUKA runs: all it takes to add one is a row of :data:`FAMILIES` (and catalog
    entries naming its ``id`` as their ``family``)."""

    id: str  # the captioner field naming the family's first catalog model
    label: str  # how help texts name it
    model_class: str  # its transformers class
    model_type: str  # ``model_type`` in a model folder's config.json
    repo_word: str  # a repo id with this word (any case) is of the family
    prompts: dict[str, str] = field(default_factory=dict)  # caption mode -> task prompt; none: an empty prompt
    num_beams: int = 1


FAMILIES = {family.id: family for family in (
    CaptionerFamily("florence2", "Florence-2", "Florence2ForConditionalGeneration", "florence2", "florence",
                    {"short": "<CAPTION>", "detailed": "<DETAILED_CAPTION>",
                     "more_detailed": "<MORE_DETAILED_CAPTION>"}, num_beams=3),
    CaptionerFamily("blip2", "BLIP-2", "Blip2ForConditionalGeneration", "blip-2", "blip"),
)}
#: the captioner a field left empty gets
DEFAULT_FAMILY = "florence2"


def family_names(length_modes: bool = False) -> str:
    """The families for help texts, ``Florence-2 or BLIP-2``; ``length_modes``: only those whose captions the
    caption mode sets by its prompt (``Florence-2``)."""
    return " or ".join(family.label for family in FAMILIES.values() if family.prompts or not length_modes)


def family_ids() -> str:
    """The family ids a captioner field takes: ``florence2, blip2``."""
    return ", ".join(FAMILIES)


@dataclass(frozen=True)
class CaptionerSpec:
    id: str
    family: str
    source: str
    name: str = ""
    vram_gb: float | None = None


def captioner_models() -> dict[str, dict]:
    return catalog().get("captioners", {})


def resolve_captioner(choice: str | None) -> CaptionerSpec:
    """Turn a captioner field into a :class:`CaptionerSpec` without loading weights."""
    choice = (choice or DEFAULT_FAMILY).strip()
    entries = captioner_models()
    if choice in FAMILIES:
        choice = next((key for key, entry in entries.items() if entry["family"] == choice), choice)
    entry = entries.get(choice)
    if entry is not None:
        return CaptionerSpec(choice, entry["family"], entry["repo"], entry.get("name", choice), entry.get("vram_gb"))
    path = Path(choice).expanduser()
    if path.is_dir():
        config = path / "config.json"
        model_type = json.loads(config.read_text(encoding="utf-8")).get("model_type") if config.is_file() else None
        family = next((f.id for f in FAMILIES.values() if f.model_type == model_type), None)
        if family is None:
            raise InvalidInput(f"{path} is not a {family_names()} model folder (model type {model_type!r}).")
        source = str(path.resolve())
        return CaptionerSpec(source, family, source, path.name)
    refuse_missing_folder(choice)
    if REPO_ID.match(choice):
        family = next((f.id for f in FAMILIES.values() if f.repo_word in choice.lower()), None)
        if family:
            return CaptionerSpec(choice, family, choice, choice)
    raise InvalidInput(f"Unknown captioner {choice!r}: use {family_ids()}, a catalog id ({', '.join(entries)}), "
                       f"a {family_names()} repo id, or a local model folder.")


class Captioner:
    """A loaded captioner: ``caption(images, mode)`` captions a batch at once."""

    def __init__(self, spec: CaptionerSpec, model: Any, processor: Any):
        self.spec = spec
        self.model = model
        self.processor = processor

    def caption(self, images: list[Any], mode: str = "detailed") -> list[str]:
        import torch

        family = FAMILIES[self.spec.family]
        inputs = self.processor(images=images, text=[family.prompts.get(mode, "")] * len(images), return_tensors="pt")
        inputs = {k: v.to(self.model.device, self.model.dtype) if k == "pixel_values" else v.to(self.model.device)
                  for k, v in inputs.items()}
        with torch.inference_mode():
            generated = self.model.generate(**inputs, max_new_tokens=MODES[mode], do_sample=False,
                                            num_beams=family.num_beams)
        return [_clean(text) for text in self.processor.batch_decode(generated, skip_special_tokens=True)]


def _clean(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def load_captioner(models: ModelCache, spec: CaptionerSpec, token: str | None = None) -> Captioner:
    """Load (or reuse) the captioner; the model cache frees whatever was resident before."""
    plan = device_plan(spec.vram_gb)

    def load() -> Captioner:
        import transformers

        try:
            local = cache_only(spec.source)
            processor = transformers.AutoProcessor.from_pretrained(spec.source, token=token, local_files_only=local)
            model = getattr(transformers, FAMILIES[spec.family].model_class).from_pretrained(
                spec.source, token=token, dtype=plan.dtype, use_safetensors=True, local_files_only=local)
        except Exception as error:
            raise explain_load_error(ModelSpec(spec.id, spec.source, None, name=spec.name), error) from error
        return Captioner(spec, model.to(plan.device).eval(), processor)

    return models.get(("captioner", spec.source, plan.device, plan.dtype_name), load)
