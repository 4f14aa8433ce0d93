"""Dataset statistics and the warnings worth acting on before training."""

from __future__ import annotations

import statistics

from masuka.datasets.caption_template import has_trigger
from masuka.datasets.library import dataset_images
from masuka.datasets.preprocess import PrepOptions
from masuka.studio import Studio

FEW_IMAGES = 10


def _spread(values: list[int]) -> dict[str, float]:
    if not values:
        return {"min": 0, "median": 0, "max": 0}
    return {"min": min(values), "median": statistics.median(values), "max": max(values)}


def dataset_statistics(studio: Studio, dataset: dict) -> dict:
    """Counts, sizes, caption lengths (words), trigger-word coverage and warnings."""
    rows = dataset_images(studio, dataset["id"])
    flipped = studio.store.count("dataset_images", "dataset_id = ? and augment_of is not null", [dataset["id"]])
    trigger = dataset["trigger"] or ""
    captions = [r["caption"] or "" for r in rows]
    captioned = [c for c in captions if c.strip()]
    with_trigger = sum(has_trigger(c, trigger) for c in captioned)
    target = PrepOptions.from_dict(dataset["options"]).size
    small = sum(max(r["width"], r["height"]) < target for r in rows)
    warnings = []
    if len(rows) < FEW_IMAGES:
        warnings.append(f"fewer than {FEW_IMAGES} images ({len(rows)}): 15-50 varied photos train a better LoRA")
    if len(captioned) < len(rows):
        warnings.append(f"captions missing on {len(rows) - len(captioned)} image(s): run a caption pass or "
                        "write them")
    if not trigger:
        warnings.append("no trigger word: set one so prompts can call the concept")
    elif with_trigger < len(captioned):
        warnings.append(f"the trigger word {trigger!r} is missing from {len(captioned) - with_trigger} caption(s): "
                        "training and export put it in front of them; write it where it reads better")
    if small:
        warnings.append(f"{small} image(s) smaller than the {target} px target (kept at their own size)")
    return {
        "images": len(rows), "flipped_copies": flipped, "captioned": len(captioned),
        "trigger_coverage": round(with_trigger / len(captioned), 3) if captioned else 0.0,
        "width": _spread([r["width"] for r in rows]), "height": _spread([r["height"] for r in rows]),
        "original_megapixels": _spread([round(r["original_width"] * r["original_height"] / 1e6, 1) for r in rows]),
        "caption_words": _spread([len(c.split()) for c in captioned]), "warnings": warnings,
    }
