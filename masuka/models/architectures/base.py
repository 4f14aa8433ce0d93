"""What a profile is: every fact MASUKA needs about one model architecture, importable without torch.

A profile names the exact diffusers pipeline classes it covers (per task), where its denoiser sits, the size
its images must be a multiple of, its largest text encoder and how the memory plans treat it, how the
form's Guidance reaches the pipeline call, its defaults, typical memory figures per plan, how a LoRA made
for it is recognised from the tensor names and shapes of a file, its training facts and a builder of tiny
random-weight components. Modules under this package each hold one profile; :mod:`.registry` lists them.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any

from masuka.errors import InvalidInput

TASKS = ("txt2img", "img2img", "inpaint", "edit", "fill")


class Match(IntEnum):
    """How surely a LoRA file is for a profile: its names fit, or its names and shapes say so outright."""

    NO = 0
    FITS = 1
    CERTAIN = 2


@dataclass(frozen=True)
class LoraModule:
    """One adapted layer of a LoRA file, by its canonical name (separators as ``_``, prefixes removed)."""

    name: str
    rank: int | None = None
    in_features: int | None = None
    out_features: int | None = None


@dataclass(frozen=True)
class LoraLayers:
    """The adapted layers of a LoRA file, canonical whatever the format (diffusers/peft, kohya, ai-toolkit)."""

    modules: dict[str, LoraModule]
    keys: tuple[str, ...] = ()

    def named(self, pattern: str) -> list[LoraModule]:
        """Modules whose canonical name matches ``pattern`` (a regular expression anchored at the start)."""
        regex = re.compile(pattern)
        return [module for name, module in self.modules.items() if regex.match(name)]

    def has(self, pattern: str) -> bool:
        return bool(self.named(pattern))

    def widths(self, pattern: str) -> set[int]:
        """Input widths of the modules matching ``pattern`` (the hidden size for attention projections)."""
        return {m.in_features for m in self.named(pattern) if m.in_features}

    def outputs(self, pattern: str) -> set[int]:
        return {m.out_features for m in self.named(pattern) if m.out_features}

    def indices(self, pattern: str) -> set[int]:
        """Block numbers captured by the first group of ``pattern``."""
        regex = re.compile(pattern)
        return {int(found.group(1)) for name in self.modules if (found := regex.match(name))}


@dataclass(frozen=True)
class Training:
    """How a profile trains a LoRA: the loss class (in :mod:`masuka.training.architectures`), targets, defaults."""

    trainer: str
    target_modules: tuple[str, ...]
    defaults: dict[str, Any]
    #: below this many GB of a preset the base weights are stored in fp8
    fp8_below_gb: int = 0
    text_encoder_targets: tuple[str, ...] = ()
    #: presets too small for this architecture, with the reason said to the user
    too_small: dict[str, str] = field(default_factory=dict)
    #: pipeline classes of this architecture that no preset can train, with the reason
    untrainable: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ControlNets:
    """How an architecture follows control images: the diffusers pipeline and ControlNet model classes, and the
    default ControlNet repo per control kind. Kinds sharing one repo share a union model, told the kind by
    ``modes`` (its ``control_mode`` numbers)."""

    pipeline: str
    model: str
    repos: dict[str, str]
    modes: dict[str, int] = field(default_factory=dict)
    #: a union model's classes and control modes, used when a control names such a model instead of the default
    union_pipeline: str = ""
    union_model: str = ""
    union_modes: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class StyleReferences:
    """How an architecture makes an image "like this one": an IP-Adapter (``ip-adapter``: ``repo``'s
    ``subfolder/weight_name`` with its CLIP image encoder in ``subfolder/image_encoder``) or a FLUX.1 Redux prior
    pipeline (``redux``: ``repo``) whose image embeddings join the prompt's."""

    kind: str
    repo: str
    subfolder: str = ""
    weight_name: str = ""
    image_encoder: str = "image_encoder"


@dataclass(frozen=True)
class Profile:
    """Every fact about one architecture; see the module docstring."""

    id: str
    label: str
    pipelines: dict[str, str]
    matches_lora: Callable[[LoraLayers], Match]
    tiny_components: Callable[[int], dict[str, Any]]
    #: seconds per denoising step per megapixel on ZeroGPU's H200 slice, with a margin (what a request asks
    #: ZeroGPU for: :func:`masuka.zerogpu.request_seconds`)
    step_seconds: float
    #: other pipeline classes of the same architecture (another model family member's own pipeline)
    also_covers: tuple[str, ...] = ()
    #: pipeline classes that edit (they take reference images as ``image=``, the prompt is the instruction),
    #: with how many reference images each takes
    edit_pipelines: dict[str, int] = field(default_factory=dict)
    #: edit pipeline class -> the call arguments (from the planned width and height) that make it keep that size,
    #: for a pipeline that otherwise resizes its output or references on its own (FLUX.1 Kontext)
    edit_size_arguments: dict[str, Callable[[int, int], dict[str, Any]]] = field(default_factory=dict)
    #: components of a miniature edit pipeline, where they differ from :attr:`tiny_components`
    tiny_edit_components: Callable[[int], dict[str, Any]] | None = None
    #: components of a miniature fill pipeline (``pipelines["fill"]``: a model that only inpaints and outpaints)
    tiny_fill_components: Callable[[int], dict[str, Any]] | None = None
    denoiser: str = "transformer"
    #: the samplers it takes while its own scheduler is unknown (:mod:`masuka.image.samplers`): ``flow``
    #: (flow-matching) or ``diffusion`` (the classic ones); a known scheduler decides instead (an EDM one: ``edm``)
    scheduler_family: str = "flow"
    size_multiple: int = 16
    #: the pipeline component holding the largest text encoder, loaded in 8-bit by the smallest memory plans
    big_text_encoder: str | None = None
    #: the pipeline argument the form's Guidance goes to (``None``: the model takes no guidance)
    guidance_argument: str | None = "guidance_scale"
    negative_prompt: bool = True
    #: classifier-free guidance, and so the negative prompt, is on only for a guidance above this
    cfg_above: float = 1.0
    defaults: dict[str, Any] = field(default_factory=dict)
    #: typical peak GPU memory (GB) per memory plan, for models not in the catalog
    memory_gb: dict[str, float] = field(default_factory=dict)
    #: the keyword its pipeline's ``save_lora_weights`` takes the denoiser's LoRA layers under
    lora_layers_argument: str = "transformer_lora_layers"
    #: prefixes of ``ss_base_model_version`` (kohya metadata) that name this architecture
    kohya_versions: tuple[str, ...] = ()
    training: Training | None = None
    #: catalog id -> component -> (class name, config values of the published checkpoint), for random weights
    real_models: dict[str, dict[str, tuple[str, dict]]] = field(default_factory=dict)
    #: pipeline class -> Python package it needs beyond the requirements (told by :attr:`notes` when missing)
    requires: dict[str, str] = field(default_factory=dict)
    #: people run it in fp32 even on CUDA (the plain-diffusers baseline ``bench image`` compares with)
    baseline_fp32: bool = False
    #: what the user must know about loading it (missing optional packages and such)
    notes: str = ""
    #: how its prompts read best, for the prompt optimizer: "natural" (sentences) or "tags" (comma-separated tags)
    prompt_style: str = "natural"
    #: ControlNet support (``None``: the architecture takes no control images in MASUKA)
    controlnets: ControlNets | None = None
    #: reference ("like this image") support (``None``: none in MASUKA)
    style_references: StyleReferences | None = None

    @property
    def pipeline(self) -> str:
        """The text-to-image pipeline class."""
        return self.pipelines["txt2img"]

    @property
    def trains(self) -> Training:
        """:attr:`training`, for code that only runs on a trainable architecture; :class:`InvalidInput` otherwise."""
        if self.training is None:
            raise InvalidInput(f"MASUKA does not train LoRAs for {self.label}.")
        return self.training

    def covers(self, pipeline_class: str) -> bool:
        return (pipeline_class in self.pipelines.values() or pipeline_class in self.also_covers
                or pipeline_class in self.edit_pipelines)

    def task_pipeline(self, pipeline_class: str, task: str) -> str | None:
        """The pipeline class that runs ``task`` (``img2img``, ``inpaint``) on the weights of ``pipeline_class``:
        the profile's own for its text-to-image class, the class itself for a folder saved as that task's class (the
        SDXL refiner); ``None`` where diffusers has none (FLUX.2 img2img) and for another family member or an edit
        model (FLUX.2 [dev], Kontext), whose components the task classes don't take."""
        if pipeline_class == self.pipeline:
            return self.pipelines.get(task)
        return pipeline_class if pipeline_class == self.pipelines.get(task) else None

    def task_only(self, pipeline_class: str) -> str | None:
        """The task (``img2img``, ``inpaint``) of a task class that is not also the text-to-image one: a folder saved
        as it (the SDXL refiner, an inpainting checkpoint) needs a starting image."""
        return next((task for task in ("img2img", "inpaint")
                     if pipeline_class == self.pipelines.get(task) != self.pipeline), None)

    def fill_only(self, pipeline_class: str) -> bool:
        """A fill model's own pipeline (FLUX.1 Fill): it inpaints and outpaints, and nothing else."""
        return pipeline_class == self.pipelines.get("fill")

    def edit_only(self, pipeline_class: str) -> bool:
        """An edit pipeline that does not also make images from text alone (FLUX.1 Kontext, Qwen-Image-Edit)."""
        return (pipeline_class in self.edit_pipelines and pipeline_class != self.pipeline
                and pipeline_class not in self.also_covers)


#: what LoRA tools put before a layer's name (diffusers/peft, ai-toolkit, kohya, BFL originals)
_PREFIXES = ("base_model.model.", "model.diffusion_model.", "diffusion_model.", "transformer.", "unet.",
             "lora_unet_", "lora_transformer_")
_TEXT_PREFIXES = {"text_encoder_2.": "te2_", "text_encoder.": "te1_", "lora_te2_": "te2_", "lora_te1_": "te1_",
                  "lora_te_": "te_"}
_PART = re.compile(r"\.(lora_A|lora_B|lora_down|lora_up)(?:\.default)?\.weight$|\.(alpha|dora_scale)$")
#: parts of LyCORIS adapters (LoHa, LoKr) that diffusers does not apply
LYCORIS_PART = re.compile(r"\.(hada_w[12]_[ab]|hada_t[12]|lokr_w[12](_[ab])?|lokr_t2)$")


def canonical(module: str) -> str:
    """``transformer.single_transformer_blocks.0.attn.to_q`` and ``lora_unet_single_transformer_blocks_0_attn_to_q``
    -> ``single_transformer_blocks_0_attn_to_q``; text-encoder layers start ``te_``, ``te1_`` or ``te2_``."""
    for prefix, short in _TEXT_PREFIXES.items():
        if module.startswith(prefix):
            return short + module[len(prefix):].replace(".", "_")
    stripped = True
    while stripped:
        stripped = False
        for prefix in _PREFIXES:
            if module.startswith(prefix):
                module, stripped = module[len(prefix):], True
    return module.replace(".", "_")


def lora_layers(header: dict[str, Any]) -> LoraLayers:
    """The adapted layers of a safetensors header (``{key: {"shape": [...]}}``) with ranks and widths."""
    found: dict[str, dict[str, int | None]] = {}
    for key, value in header.items():
        part = _PART.search(key)
        if part is None or not isinstance(value, dict):
            continue
        entry = found.setdefault(canonical(key[:part.start()]), {})
        shape = value.get("shape") or []
        if part.group(1) in ("lora_A", "lora_down") and len(shape) >= 2:
            entry.update(rank=shape[0], in_features=shape[1])
        elif part.group(1) in ("lora_B", "lora_up") and len(shape) >= 2:
            entry["out_features"] = shape[0]
    return LoraLayers({name: LoraModule(name, **values) for name, values in found.items()}, tuple(header))


def width_match(widths: set[int], real: set[int], others: set[int]) -> Match:
    """CERTAIN when every width is one of the architecture's real sizes, NO when one is another real
    architecture's, FITS otherwise (no width, or a miniature test model's)."""
    if widths and widths <= real:
        return Match.CERTAIN
    if widths & others:
        return Match.NO
    return Match.FITS


#: hidden sizes of every supported and refused transformer, to tell a miniature model from another architecture
KNOWN_WIDTHS = {1536, 1920, 2048, 2432, 3072, 3840, 4096, 5120, 6144}
