"""Style references: "make it like this image", each picture with a weight.

The architecture profile says how (:class:`~masuka.models.architectures.base.StyleReferences`): SDXL loads an
IP-Adapter into its UNet (``load_ip_adapter``, one adapter per reference so each keeps its weight through
``set_ip_adapter_scale``) and passes the pictures as ``ip_adapter_image``; FLUX.1 runs the Redux prior pipeline
(``FluxPriorReduxPipeline``, sharing the loaded text encoders), whose ``prompt_embeds`` and
``pooled_prompt_embeds`` (the prompt's and the pictures', summed by weight) replace the prompt. The adapter and
the prior stay loaded with the pipeline; any use of it without references (a generation, a detail upscale)
unloads the IP-Adapter again, and face detail repaints with the same references.

The parameters text names them ``Reference N: "Weight: 0.6"``; history rows keep a copy of each picture.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from masuka.image.copies import save_input
from masuka.image.guides import check_guides, guide_picture, guide_support, guide_weight, unavailable
from masuka.model_cache import building
from masuka.models.architectures.base import StyleReferences
from masuka.models.hub import cache_only
from masuka.studio import Studio
from masuka.validation import has_suffix, weighted

INFOTEXT_KEY = re.compile(r"Reference (\d+)$")
#: row params holding a kept picture the Image form shows again on Reuse
FORM_PICTURES = ("reference_image",)


@dataclass
class StyleReference:
    """A picture the result should look like, and how much (0-2; IP-Adapter scale or Redux embedding scale)."""

    image: str | Path
    weight: float = 1.0


@dataclass
class ReferenceInput:
    """A checked :class:`StyleReference` with its picture read."""

    reference: StyleReference
    picture: Image.Image


def parse_reference(text: str) -> StyleReference:
    """``PATH`` or ``PATH:WEIGHT`` (the CLI's ``--reference``) -> :class:`StyleReference`."""
    path, weight = weighted(str(text), "reference image", has_suffix)
    return StyleReference(path) if weight is None else StyleReference(path, weight)


def check_style_references(references: list[StyleReference], architecture: str | None, model: str,
                     has_task: bool, fast: bool = False) -> list[ReferenceInput]:
    """Check every reference and read its picture; :class:`InvalidInput` names what is wrong."""
    if not references:
        return []
    check_guides(references, "reference", has_task, fast)
    if architecture:
        reference_support(architecture, model)
    return [ReferenceInput(StyleReference(reference.image, guide_weight(f"Reference {index}", reference.weight)),
                           guide_picture(reference.image, f"Reference image {index}"))
            for index, reference in enumerate(references, 1)]


def reference_support(architecture: str | None, model: str) -> StyleReferences:
    return guide_support(architecture, model, "style_references", "takes no reference images in MASUKA: "
                         "references work with SDXL (IP-Adapter) and FLUX.1 (Redux) models.")


def use_ip_adapter(pipe: Any, runner: Any, inputs: list[ReferenceInput], support: StyleReferences | None) -> None:
    """Load one IP-Adapter per reference into ``pipe``'s UNet (shared by ``runner``), set their weights; with no
    reference, unload any adapter a previous request left."""
    loaded = pipe.__dict__.get("masuka_ip_adapters", 0)
    wanted = len(inputs) if support is not None and support.kind == "ip-adapter" else 0
    if loaded and loaded != wanted:
        unload_ip_adapter(pipe)
        loaded = 0
    if wanted and not loaded and support is not None:
        try:
            with building():
                pipe.load_ip_adapter([support.repo] * wanted, subfolder=support.subfolder,
                                     weight_name=[support.weight_name] * wanted,
                                     image_encoder_folder=support.image_encoder,
                                     local_files_only=cache_only(support.repo))
        except Exception as error:  # missing repo, no network, files of another layout
            raise unavailable("IP-Adapter", support.repo, error) from error
        pipe.image_encoder.to(pipe.masuka_plan.device)  # loaded where the pipeline's first module is: maybe offloaded
        pipe.masuka_ip_adapters = wanted
    if wanted:
        pipe.set_ip_adapter_scale([item.reference.weight for item in inputs])
        share_image_encoder(pipe, runner)


def unload_ip_adapter(pipe: Any) -> None:
    """Unload the IP-Adapters a request with references left in ``pipe``'s UNet. Every use of the pipeline that
    gives no reference picture (a detail upscale, a request without references) must: the UNet would ask for the
    pictures' embeddings."""
    if pipe.__dict__.get("masuka_ip_adapters"):
        pipe.unload_ip_adapter()
        pipe.masuka_ip_adapters = 0


def share_image_encoder(pipe: Any, runner: Any) -> None:
    """Give ``runner``, a from_pipe pipeline of ``pipe`` that may have been made before the IP-Adapter's image
    encoder was loaded, that encoder, so it takes the reference pictures too."""
    if runner is not pipe and pipe.__dict__.get("masuka_ip_adapters"):
        runner.register_modules(image_encoder=pipe.image_encoder, feature_extractor=pipe.feature_extractor)


def redux_prior(pipe: Any, support: StyleReferences) -> Any:
    """The Redux prior pipeline for ``pipe`` (its own image encoder, ``pipe``'s text encoders), made once."""
    if "masuka_redux" not in pipe.__dict__:
        from diffusers import FluxPriorReduxPipeline

        try:
            with building():
                prior = FluxPriorReduxPipeline.from_pretrained(
                    support.repo, dtype=pipe.dtype, use_safetensors=True, local_files_only=cache_only(support.repo),
                    text_encoder=pipe.text_encoder, tokenizer=pipe.tokenizer, text_encoder_2=pipe.text_encoder_2,
                    tokenizer_2=pipe.tokenizer_2)
        except Exception as error:
            raise unavailable("Redux model", support.repo, error) from error
        prior.image_encoder.to(pipe.masuka_plan.device)
        prior.image_embedder.to(pipe.masuka_plan.device)
        prior.set_progress_bar_config(disable=True)
        pipe.masuka_redux = prior
    return pipe.masuka_redux


def reference_kwargs(pipe: Any, runner: Any, inputs: list[ReferenceInput], architecture: str | None, model: str,
                     prompt: str) -> dict:
    """Prepare the pipeline for the references and return the call's arguments for them (Redux: the prompt's
    embeddings, which replace ``prompt``)."""
    support = reference_support(architecture, model) if inputs else None
    if pipe.__dict__.get("masuka_ip_adapters") or (support and support.kind == "ip-adapter"):
        use_ip_adapter(pipe, runner, inputs, support)
    if support is None:
        return {}
    if support.kind == "ip-adapter":
        return {"ip_adapter_image": [item.picture for item in inputs]}
    import torch

    with torch.inference_mode():
        out = redux_prior(pipe, support)([item.picture for item in inputs], prompt=[prompt] * len(inputs),
                                          prompt_embeds_scale=[item.reference.weight for item in inputs],
                                          pooled_prompt_embeds_scale=[item.reference.weight for item in inputs])
    return {"prompt": None, "prompt_embeds": out.prompt_embeds, "pooled_prompt_embeds": out.pooled_prompt_embeds}


def keep_references(studio: Studio, owner: str, inputs: list[ReferenceInput]) -> dict:
    """What a history row keeps: each reference with a copy of its picture, and the first one's fields under the
    Image form's names (``reference_image``, ``reference_weight``) for Reuse."""
    if not inputs:
        return {}
    kept = [{"image": studio.config.relative(save_input(studio, owner, item.picture, "reference")),
             "weight": item.reference.weight} for item in inputs]
    return {"style_references": kept, "reference_image": kept[0]["image"], "reference_weight": kept[0]["weight"]}


def reference_infotext(inputs: list[ReferenceInput]) -> dict[str, str]:
    return {f"Reference {index}": f"Weight: {item.reference.weight:g}" for index, item in enumerate(inputs)}


def read_references(extra: dict[str, str]) -> list[float]:
    """The weights of the ``Reference N`` fields of parsed parameters, in order."""
    found = []
    for key, value in extra.items():
        if (match := INFOTEXT_KEY.match(key)) and (weight := re.search(r"Weight: ([-+]?[\d.]+)", value)):
            found.append((int(match.group(1)), float(weight.group(1))))
    return [weight for _index, weight in sorted(found)]
