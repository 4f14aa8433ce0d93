"""Image captioners: Florence-2 (transformers' native class, no remote code) and BLIP-2.

A captioner field holds a catalog id (``florence2-base``), a family (``florence2`` / ``blip2`` for its default
model), a Hugging Face repo id or a local folder saved with ``save_pretrained``. Captioners load through
the studio's :class:`~masuka.model_cache.ModelCache`, so loading one frees the image pipeline.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from masuka.errors import InvalidInput
from masuka.gpu import device_plan
from masuka.model_cache import ModelCache
from masuka.models.catalog import REPO_ID, ModelSpec, catalog, explain_load_error, refuse_missing_folder
from masuka.models.hub import cache_only

MODEL_CLASSES = {"florence2": "Florence2ForConditionalGeneration", "blip2": "Blip2ForConditionalGeneration"}
CONFIG_TYPES = {"florence2": "florence2", "blip-2": "blip2"}
#: caption mode -> (Florence-2 task prompt, new tokens at most)
MODES = {"short": ("<CAPTION>", 40), "detailed": ("<DETAILED_CAPTION>", 128),
         "more_detailed": ("<MORE_DETAILED_CAPTION>", 256)}


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
    choice = (choice or "florence2").strip()
    entries = captioner_models()
    if choice in MODEL_CLASSES:
        choice = next(key for key, entry in entries.items() if entry["family"] == choice)
    entry = entries.get(choice)
    if entry is not None:
        return CaptionerSpec(choice, entry["family"], entry["repo"], entry.get("name", choice), entry.get("vram_gb"))
    path = Path(choice).expanduser()
    if path.is_dir():
        config = path / "config.json"
        model_type = json.loads(config.read_text(encoding="utf-8")).get("model_type") if config.is_file() else None
        if model_type not in CONFIG_TYPES:
            raise InvalidInput(f"{path} is not a Florence-2 or BLIP-2 model folder (model type {model_type!r}).")
        source = str(path.resolve())
        return CaptionerSpec(source, CONFIG_TYPES[model_type], source, path.name)
    refuse_missing_folder(choice)
    if REPO_ID.match(choice):
        family = "blip2" if "blip" in choice.lower() else "florence2" if "florence" in choice.lower() else None
        if family:
            return CaptionerSpec(choice, family, choice, choice)
    raise InvalidInput(f"Unknown captioner {choice!r}: use florence2, blip2, a catalog id ({', '.join(entries)}), "
                       "a Florence-2 or BLIP-2 repo id, or a local model folder.")


class Captioner:
    """A loaded captioner: ``caption(images, mode)`` captions a batch at once."""

    def __init__(self, spec: CaptionerSpec, model: Any, processor: Any):
        self.spec = spec
        self.model = model
        self.processor = processor

    def caption(self, images: list[Any], mode: str = "detailed") -> list[str]:
        import torch

        task, max_new_tokens = MODES[mode]
        prompts = [task] * len(images) if self.spec.family == "florence2" else [""] * len(images)
        inputs = self.processor(images=images, text=prompts, return_tensors="pt")
        inputs = {k: v.to(self.model.device, self.model.dtype) if k == "pixel_values" else v.to(self.model.device)
                  for k, v in inputs.items()}
        with torch.inference_mode():
            generated = self.model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False,
                                            num_beams=3 if self.spec.family == "florence2" else 1)
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
            model = getattr(transformers, MODEL_CLASSES[spec.family]).from_pretrained(
                spec.source, token=token, dtype=plan.dtype, use_safetensors=True, local_files_only=local)
        except Exception as error:
            raise explain_load_error(ModelSpec(spec.id, spec.source, None, name=spec.name), error) from error
        return Captioner(spec, model.to(plan.device).eval(), processor)

    return models.get(("captioner", spec.source, plan.device, plan.dtype_name), load)
