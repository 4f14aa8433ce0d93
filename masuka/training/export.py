"""The finished LoRA: a ``.safetensors`` file the matching diffusers pipeline's ``load_lora_weights`` accepts,
with MASUKA's metadata in the header, a model card, a check that re-opens it, and an optional Hub upload.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from masuka.errors import InvalidInput, MasukaError, ProviderError
from masuka.key_store import mask
from masuka.loras.files import LoraInfo, inspect_lora

log = logging.getLogger(__name__)

CARD_TEMPLATE = """---
{{ card_data }}
---

# {{ title }}

A LoRA for **{{ base_model }}** ({{ architecture }}) trained with MASUKA on the dataset "{{ dataset }}"
({{ images }} images, hash `{{ dataset_hash }}`): {{ steps }} steps, rank {{ rank }}, alpha {{ alpha }},
learning rate {{ lr }}, {{ resolution }} px.

{% if trigger %}Trigger word: `{{ trigger }}` — put it in the prompt.{% endif %}

## Use it with diffusers

```python
from diffusers import DiffusionPipeline

pipe = DiffusionPipeline.from_pretrained("{{ base_model }}")
pipe.load_lora_weights("{{ file_name }}")
image = pipe("{{ example_prompt }}").images[0]
```

{% if samples %}## Samples

{% for sample in samples %}![sample]({{ sample }})
{% endfor %}{% endif %}
"""


def write_lora(pipe_class: Any, folder: Path, file_name: str, layers: dict[str, dict[str, Any]],
               configs: dict[str, dict], metadata: dict[str, str]) -> Path:
    """Save through ``pipe_class.save_lora_weights`` (layers keyed by pipeline component), then add ``metadata``."""
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    kwargs = {f"{module}_lora_layers": state for module, state in layers.items()}
    kwargs.update({f"{module}_lora_adapter_metadata": config for module, config in configs.items()})
    folder.mkdir(parents=True, exist_ok=True)
    pipe_class.save_lora_weights(folder, weight_name=file_name, safe_serialization=True, **kwargs)
    path = folder / file_name
    with safe_open(path, framework="pt") as handle:
        header = dict(handle.metadata() or {})
    save_file(load_file(path), path, metadata={**header, **metadata})
    return path


def lora_metadata(plan: Any, step: int) -> dict[str, str]:
    """MASUKA's header entries for a LoRA of training plan ``plan`` (:class:`~masuka.training.loop.TrainPlan`)
    after ``step`` steps."""
    options, data = plan.options, plan.data
    return {"masuka.architecture": plan.architecture, "masuka.base_model": plan.spec.id,
            "masuka.trigger": data.trigger, "masuka.rank": str(options.rank), "masuka.alpha": f"{options.alpha:g}",
            "masuka.steps": str(step), "masuka.dataset_hash": data.hash, "masuka.resolution": str(options.resolution)}


def verify_lora(path: Path, architecture: str) -> LoraInfo:
    """Re-open the written file: it must inspect as a LoRA of ``architecture`` whose every weight is finite."""
    from safetensors.torch import load_file

    info = inspect_lora(path)
    if info.architecture != architecture:
        raise MasukaError(f"The written LoRA reads as {info.architecture}, not {architecture}: not keeping it.")
    tensors = load_file(path)
    if not tensors or not all(bool(t.float().isfinite().all()) for t in tensors.values()):
        raise MasukaError(f"The written LoRA {path.name} holds empty or non-finite weights: not keeping it.")
    return info


def write_model_card(folder: Path, **values: Any) -> Path:
    """``README.md`` for the Hub and people: what it is, what it was trained on, how to use it."""
    from huggingface_hub import ModelCard, ModelCardData

    data = ModelCardData(base_model=values["base_model"], library_name="diffusers", pipeline_tag="text-to-image",
                         tags=["lora", "text-to-image", "diffusers", "masuka", values["architecture"]],
                         instance_prompt=values.get("trigger") or None)
    example = f"{values['trigger']}, a portrait" if values.get("trigger") else "a portrait"
    card = ModelCard.from_template(data, template_str=CARD_TEMPLATE, example_prompt=example, **values)
    path = folder / "README.md"
    card.save(path)
    return path


def push_to_hub(folder: Path, repo_id: str, token: str | None, private: bool = True) -> str:
    """Upload the LoRA folder (file, card, samples) to a Hub model repo, private unless told; returns its URL."""
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError

    if not token:
        raise ProviderError("Pushing to the Hub needs a Hugging Face token with write access (Settings → HF_TOKEN).")
    api = HfApi(token=token)
    try:
        url = api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
        api.upload_folder(folder_path=folder, repo_id=repo_id, repo_type="model",
                          commit_message="LoRA trained with MASUKA")
    except (HfHubHTTPError, OSError) as error:
        raise ProviderError(f"Upload to {repo_id} failed: {str(error).replace(token, mask(token))}") from error
    return str(url)


def check_hub_repo(repo_id: str, token: str | None) -> None:
    """Refuse, before anything trains, a Hub upload that cannot happen: a malformed repo id or no ``token``."""
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(repo_id)
    except HFValidationError as error:
        raise InvalidInput(f"--push-to-hub {repo_id!r} is not a Hub repo id (owner/name): {error}") from None
    if not token:
        raise InvalidInput("Pushing to the Hub needs a Hugging Face token with write access: set HF_TOKEN or save "
                           "it in Settings, or leave out --push-to-hub.")


def push_lora(folder: Path, repo_id: str, token: str | None, result: dict, log: Callable[[str], None]) -> None:
    """Upload a finished run's LoRA folder to the Hub, its URL into ``result``; a failed upload leaves the run
    complete (the LoRA is made and in the library) and is told in ``result["hub_error"]`` and the log."""
    try:
        result["hub_url"] = push_to_hub(folder, repo_id, token)
    except MasukaError as error:
        result["hub_error"] = f"{error} The LoRA is in the library; upload the folder {folder} yourself."
        log(f"upload to the Hub failed: {result['hub_error']}")
