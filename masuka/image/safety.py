"""Safety check: a transformers image classifier scores each result; a flagged image is blurred or withheld
(a grey placeholder is saved instead) before it is written, and its score is kept in history.

The classifier (``Falconsai/nsfw_image_detection`` unless Settings name another) is downloaded on first use and
must have an unsafe label (``nsfw``, ``porn``, ``hentai``, ``sexy``, ``explicit`` or ``unsafe``); the score is
the summed probability of its unsafe labels.
"""

from __future__ import annotations

from dataclasses import dataclass

from PIL import Image, ImageFilter

from masuka.image.aid_settings import AidSettings
from masuka.image.safety_labels import unsafe_labels
from masuka.studio import Studio

PLACEHOLDER = (128, 128, 128)


@dataclass
class Verdict:
    score: float
    flagged: bool
    action: str | None  # what was done to the image: "blur", "withhold" or None
    model: str

    def record(self) -> dict:
        """What the history row keeps."""
        return {"safety": {"score": round(self.score, 4), "flagged": self.flagged, "action": self.action,
                           "model": self.model}}


def flag_note(safety: dict | None) -> str:
    """What the safety check did to an image, from its row's ``safety`` record ("" when it was not flagged):
    ``flagged (blurred, score 0.93)``."""
    if not safety or not safety.get("flagged"):
        return ""
    return f"flagged ({'blurred' if safety['action'] == 'blur' else 'withheld'}, score {safety['score']:.2f})"


def nsfw_score(studio: Studio, image: Image.Image, model: str) -> float:
    """The classifier's unsafe probability for ``image``, 0-1."""
    import torch

    processor, classifier, unsafe, device = _classifier(studio, model)
    inputs = processor(images=image.convert("RGB"), return_tensors="pt").to(device)
    with torch.inference_mode():
        probabilities = classifier(**inputs).logits.float().softmax(-1)[0]
    return float(probabilities[unsafe].sum())


def check_image(studio: Studio, image: Image.Image, settings: AidSettings) -> tuple[Image.Image, Verdict]:
    """``image`` as it may be saved (blurred or replaced when flagged) and the verdict."""
    score = nsfw_score(studio, image, settings.safety_model)
    if score < settings.safety_threshold:
        return image, Verdict(score, False, None, settings.safety_model)
    if settings.safety_action == "withhold":
        safe = Image.new("RGB", image.size, PLACEHOLDER)
    else:
        safe = image.convert("RGB").filter(ImageFilter.GaussianBlur(max(image.size) / 16))
    return safe, Verdict(score, True, settings.safety_action, settings.safety_model)




def _classifier(studio: Studio, source: str):
    """(processor, model, unsafe label indices, device), loaded once into the aids' model cache."""
    from masuka.gpu import device_plan
    from masuka.models.catalog import ModelSpec, explain_load_error
    from masuka.models.hub import cache_only

    plan = device_plan(1.0)

    def load():
        from transformers import AutoImageProcessor, AutoModelForImageClassification

        try:
            local = cache_only(source)
            processor = AutoImageProcessor.from_pretrained(source, local_files_only=local)
            model = AutoModelForImageClassification.from_pretrained(source, use_safetensors=True,
                                                                    local_files_only=local)
        except Exception as error:
            raise explain_load_error(ModelSpec("safety", source, None, name=source), error) from error
        unsafe = unsafe_labels(source, model.config.id2label)
        return processor, model.to(plan.device).eval(), unsafe, plan.device

    return studio.aids.get(("safety", source, plan.device), load)
