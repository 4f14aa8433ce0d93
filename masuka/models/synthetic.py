"""Pipelines with random weights, built without any download.

``tiny`` builds a miniature pipeline of every architecture profile (a few layers, a tokenizer written from a small
vocabulary) that run in a fraction of a second on a CPU: the test suite and CPU benchmarks load them through
the real ``from_pretrained`` path after :func:`save_tiny_pipeline` writes them to a folder;
:func:`save_tiny_lora` writes a LoRA that fits them.

``real`` builds the real architectures of catalog models from their published config values
(:data:`REAL_MODELS`), with random weights: the same speed and memory as the real model, so GPU benchmarks
run without downloading anything. Modules are built on the ``meta`` device and materialised straight on the
target device in the target dtype, so a 12B-parameter transformer never passes through CPU memory in fp32.
Tokenizers are the small offline ones: prompts are padded to the real sequence lengths all the same.

``python -m masuka.models.synthetic ARCH FOLDER`` writes a tiny pipeline folder usable as a model (ARCH may also
be a video variant such as ``wan2.2-ti2v`` or ``ltx2``, usable as a local video model).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from masuka.model_cache import building
from masuka.models import architectures
from masuka.models.architectures.shared import TOKENIZERS

TINY_ARCHITECTURES = tuple(architectures.PROFILES)
TINY_TASKS = ("txt2img", "edit", "fill")
#: what a tiny LoRA adapts on a profile that does not train: the attention projections every denoiser has
ATTENTION_TARGETS = ("to_q", "to_k", "to_v", "to_out.0")


def tiny_components(architecture: str, seed: int = 0) -> dict[str, Any]:
    """Random-weight components of a miniature pipeline of ``architecture`` (a profile id)."""
    profile = architectures.get(architecture)
    if profile is None:
        raise ValueError(f"no tiny pipeline for {architecture!r}; choose one of {', '.join(TINY_ARCHITECTURES)}")
    with building():
        return profile.tiny_components(seed)


def tiny_pipeline(architecture: str, seed: int = 0, task: str = "txt2img") -> Any:
    """A miniature pipeline of ``architecture`` for ``task`` (``txt2img``; ``edit``: its edit pipeline; ``fill``:
    its fill model's pipeline)."""
    profile = architectures.get(architecture)
    if profile is None or task not in TINY_TASKS or task not in profile.pipelines:
        raise ValueError(f"no tiny {task} pipeline for {architecture!r}")
    builder = {"edit": profile.tiny_edit_components, "fill": profile.tiny_fill_components}.get(task)
    with building():
        return _pipeline(profile.pipelines[task], (builder or profile.tiny_components)(seed))


def _pipeline(class_name: str, components: dict[str, Any]) -> Any:
    """The pipeline ``class_name`` around ``components``; optional components it was not given are ``None``."""
    import diffusers

    cls = getattr(diffusers, class_name)
    missing = {name: None for name in getattr(cls, "_optional_components", []) if name not in components}
    return cls(**components, **missing)


def save_tiny_pipeline(architecture: str, folder: str | Path, seed: int = 0, task: str = "txt2img") -> Path:
    """Write a tiny random pipeline as a diffusers folder (safetensors) that ``from_pretrained`` loads."""
    folder = Path(folder)
    tiny_pipeline(architecture, seed, task).save_pretrained(folder, safe_serialization=True)
    return folder


def tiny_video_pipeline(image_to_video: bool = False, seed: int = 0, variant: str | None = None) -> Any:
    """A miniature video pipeline of a video profile's ``variant`` (see
    :mod:`masuka.models.architectures.video`): by default Wan 2.1 text-to-video, or image-to-video without a CLIP
    image encoder; 9 frames at 32x32 take a few seconds on a CPU."""
    from masuka.models.architectures.video import tiny_video_pipeline as build

    with building():
        return build(variant or ("wan2.1-i2v" if image_to_video else "wan2.1"), seed)


def save_tiny_video_pipeline(folder: str | Path, image_to_video: bool = False, seed: int = 0,
                             variant: str | None = None) -> Path:
    """Write a tiny random video pipeline as a diffusers folder (safetensors)."""
    folder = Path(folder)
    tiny_video_pipeline(image_to_video, seed, variant).save_pretrained(folder, safe_serialization=True)
    return folder


def save_tiny_lora(architecture: str, path: str | Path, rank: int = 4, seed: int = 1) -> Path:
    """Write a random LoRA (``path``, a .safetensors file) for the tiny pipeline of ``architecture`` on the layers
    its profile trains (the attention projections for one that does not train), with ``masuka.architecture`` in
    its metadata as MASUKA's trainer writes it."""
    import diffusers
    import torch
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict
    from safetensors.torch import load_file, save_file

    path = Path(path)
    profile = architectures.require(architecture)
    denoiser = tiny_components(architecture)[profile.denoiser]
    torch.manual_seed(seed)
    with building():
        denoiser.add_adapter(LoraConfig(r=rank, lora_alpha=rank, init_lora_weights=False,
                                        target_modules=list(profile.training.target_modules if profile.training
                                                            else ATTENTION_TARGETS)))
    with torch.no_grad():  # strong enough to change a tiny model's image visibly
        for name, param in denoiser.named_parameters():
            if "lora_" in name:
                param.normal_(0, 0.5)
    getattr(diffusers, profile.pipeline).save_lora_weights(
        path.parent, weight_name=path.name, safe_serialization=True,
        **{profile.lora_layers_argument: get_peft_model_state_dict(denoiser)})
    save_file(load_file(path), path, metadata={"format": "pt", "masuka.architecture": architecture})
    return path


# -- real architectures -------------------------------------------------------------------------------------

#: catalog id -> (architecture, component -> (class name, config values of the published checkpoint))
REAL_MODELS: dict[str, tuple[str, dict[str, tuple[str, dict]]]] = {
    model_id: (profile.id, specs) for profile in architectures.PROFILES.values()
    for model_id, specs in profile.real_models.items()}


def real_pipeline(model_id: str, device: str = "meta", dtype: Any = None, seed: int = 0) -> Any:
    """The real architecture of catalog model ``model_id`` with random weights on ``device`` in ``dtype``.

    ``device="meta"`` builds the structure only (no memory, a second or two), enough to count parameters.
    """
    if model_id not in REAL_MODELS:
        raise ValueError(f"no real architecture for {model_id!r}; known: {', '.join(REAL_MODELS)}")
    architecture, specs = REAL_MODELS[model_id]
    untokenized = [class_name for name, (class_name, _config) in specs.items()
                   if name.startswith("text_encoder") and class_name not in TOKENIZERS]
    if untokenized:
        raise ValueError(f"no offline tokenizer for {', '.join(untokenized)} ({model_id}): add one to TOKENIZERS in "
                         "masuka/models/architectures/shared.py")
    import diffusers
    import torch

    generator = None if device == "meta" else torch.Generator(_draw_device(device)).manual_seed(seed)
    components: dict[str, Any] = {}
    for name, (class_name, config) in specs.items():
        if class_name.endswith("Scheduler"):
            components[name] = getattr(diffusers, class_name)(**config)
            continue
        components[name] = random_module(class_name, config, device, dtype or torch.float32, generator)
        if name.startswith("text_encoder"):
            components[name.replace("text_encoder", "tokenizer")] = TOKENIZERS[class_name]()
    from masuka.models.catalog import image_models

    pipeline = image_models().get(model_id, {}).get("pipeline") or architectures.require(architecture).pipeline
    return _pipeline(pipeline, components)


def random_module(class_name: str, config: dict, device: str, dtype: Any, generator: Any = None) -> Any:
    """A diffusers or transformers model built on ``meta`` and, unless ``device`` is meta, materialised there."""
    import diffusers
    import transformers
    from accelerate import init_empty_weights

    cls = getattr(diffusers, class_name, None) or getattr(transformers, class_name)
    with building(), init_empty_weights():
        module = cls(cls.config_class(**config)) if issubclass(cls, transformers.PreTrainedModel) else cls(**config)
    if hasattr(module, "tie_weights"):
        module.tie_weights()  # T5's token embedding is shared with its encoder
    if device != "meta":
        materialise(module, device, dtype, generator)
    return module.eval()


def materialise(module: Any, device: str, dtype: Any, generator: Any = None) -> None:
    """Give every ``meta`` parameter of ``module`` random values (N(0, 0.02)) placed on ``device``.

    Values are drawn on the GPU when there is one, also for a model that stays on the CPU (offload plans,
    training): a CPU draws about 0.3 GB/s, so a 17B-parameter model would take minutes there.
    """
    import torch
    from accelerate.utils import set_module_tensor_to_device

    draw = generator.device.type if generator is not None else _draw_device(device)
    with torch.no_grad():
        for name, param in list(module.named_parameters()):
            value = torch.empty(param.shape, dtype=dtype, device=draw).normal_(0, 0.02, generator=generator)
            set_module_tensor_to_device(module, name, device, value=value.to(device), dtype=dtype)
    if hasattr(module, "tie_weights"):
        module.tie_weights()
    module.to(device)  # buffers: built with their real values at construction


def _draw_device(device: str) -> str:
    """Where random values for ``device`` are drawn: the GPU for a CPU model when CUDA is there."""
    import torch

    return "cuda" if device == "cpu" and torch.cuda.is_available() else device


def main(argv: list[str] | None = None) -> int:
    import argparse

    from masuka.models.architectures.video import video_profiles

    parser = argparse.ArgumentParser(prog="python -m masuka.models.synthetic",
                                     description="Write a tiny random-weight pipeline folder (a usable model).")
    videos = tuple(name for profile in video_profiles().values() for name in profile.tiny)
    parser.add_argument("architecture", choices=TINY_ARCHITECTURES + videos,
                        help="an image profile, or a video variant (a local video model folder)")
    parser.add_argument("folder")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--task", choices=TINY_TASKS, default="txt2img",
                        help="edit: the architecture's edit pipeline (FLUX.1 Kontext, Qwen-Image-Edit-Plus, FLUX.2); "
                             "fill: its fill model (FLUX.1 Fill)")
    args = parser.parse_args(argv)
    if args.architecture in videos:
        save_tiny_video_pipeline(args.folder, seed=args.seed, variant=args.architecture)
    else:
        save_tiny_pipeline(args.architecture, args.folder, args.seed, args.task)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
