"""Training options: defaults per architecture, presets by GPU memory, and checks that run before the GPU is used.

Precedence: what the user set, then the preset, then the architecture's defaults. A filled-in
:class:`TrainOptions` is stored in the run's row (``params``) so a resume trains with exactly the same options.
"""

from __future__ import annotations

import importlib.util
import random
import re
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

from masuka.errors import InvalidInput
from masuka.extras import install_line
from masuka.image.limits import MAX_SEED
from masuka.loras.library import check_name
from masuka.models import architectures
from masuka.validation import composed, whole_number

#: the kind of the ``jobs`` rows of training runs, local and remote
KIND = "train"

OPTIMIZERS = {"adamw": None, "adamw8bit": "bitsandbytes", "adafactor": "transformers", "prodigy": "prodigyopt"}
SCHEDULERS = ("constant", "constant_with_warmup", "linear", "cosine", "cosine_with_restarts", "polynomial")
PRECISIONS = ("bf16", "fp8")
MIN_RESOLUTION, MAX_RESOLUTION = 64, 2048
MIN_RANK, MAX_RANK = 1, 128
#: caption dropout is a fraction from 0 to below this (the Train tab's slider ends one step short of it)
CAPTION_DROPOUT_BELOW = 1.0
MAX_STEPS = 100_000

#: the longest LoRA name: with ``.safetensors`` and a ``-N`` suffix its file name stays far below 255 bytes
#: GPU-memory presets: the GPU memory it is for (``gb``), resolution, gradient checkpointing, batch size (latents
#: and text embeddings are always cached before the loop). The base weights are stored in fp8 when the preset's
#: ``gb`` is below the architecture's ``training.fp8_below_gb``, else in bf16; what else suits each architecture is
#: its profile's ``training``.
PRESETS: dict[str, dict[str, Any]] = {
    "12gb": dict(gb=12, resolution=512, gradient_checkpointing=True, batch_size=1),
    "16gb": dict(gb=16, resolution=512, gradient_checkpointing=True, batch_size=1),
    "24gb": dict(gb=24, resolution=768, gradient_checkpointing=True, batch_size=1),
    "40gb": dict(gb=40, resolution=1024, gradient_checkpointing=False, batch_size=2),
}


def presets_by_memory() -> list[str]:
    """The presets' names, the smallest GPU memory first."""
    return sorted(PRESETS, key=lambda name: PRESETS[name]["gb"])


#: an option as a person meets it: the Train tab's label (its first words) and the CLI's flag
OPTION_NAMES: dict[str, tuple[str, str]] = {
    "steps": ("Steps", "--steps"), "preset": ("GPU memory preset", "--preset"),
    "lr": ("Learning rate", "--lr"), "rank": ("Rank", "--rank"), "alpha": ("Alpha", "--alpha"),
    "batch_size": ("Batch size", "--batch-size"), "grad_accum": ("Gradient accumulation", "--grad-accum"),
    "resolution": ("Resolution", "--resolution"), "optimizer": ("Optimizer", "--optimizer"),
    "scheduler": ("LR scheduler", "--scheduler"), "warmup_steps": ("Warm-up steps", "--warmup-steps"),
    "caption_dropout": ("Caption dropout", "--caption-dropout"), "seed": ("Seed", "--seed"),
    "sample_prompts": ("Sample prompts", "--sample-prompt"), "sample_every": ("Sample every N steps", "--sample-every"),
    "sample_steps": ("sample steps", "--sample-steps"), "save_every": ("Save every N steps", "--save-every"),
    "keep_last": ("Keep last K checkpoints", "--keep-last"),
    "train_text_encoder": ("Text-encoder training", "--train-text-encoder"), "gpus": ("GPUs", "--gpus"),
}


def option_name(field_name: str) -> str:
    """An option's name for a message: the Train tab's label and the CLI's flag."""
    label, flag = OPTION_NAMES.get(field_name, (field_name, "--" + field_name.replace("_", "-")))
    return f"{label} ({flag})"


@dataclass
class TrainOptions:
    """Everything a run needs; ``None`` fields are filled from the preset and the architecture."""

    dataset: str
    base: str
    steps: int = 1000
    preset: str | None = None
    lr: float | None = None
    rank: int = 16
    alpha: float | None = None
    batch_size: int | None = None
    grad_accum: int = 1
    resolution: int | None = None
    optimizer: str = "adamw"
    scheduler: str = "constant"
    warmup_steps: int = 0
    caption_dropout: float = 0.05
    seed: int = 42
    sample_prompts: list[str] = field(default_factory=list)
    sample_every: int = 0
    sample_steps: int | None = None
    save_every: int = 250
    keep_last: int = 2
    gradient_checkpointing: bool | None = None
    base_precision: str | None = None
    guidance: float | None = None
    train_text_encoder: bool = False
    name: str = ""
    gpus: int = 1
    push_to_hub: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "TrainOptions":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in known})


def fill_defaults(options: TrainOptions, architecture: str) -> TrainOptions:
    """A copy with every ``None`` replaced by the preset's value, then the architecture's default, the LoRA's
    name composed (:func:`~masuka.validation.composed`) and a seed of -1 drawn at random (the run records it)."""
    if options.preset and options.preset not in PRESETS:
        raise InvalidInput(f"Unknown preset {options.preset!r}: choose one of {', '.join(PRESETS)}.")
    training = architectures.require(architecture).trains
    if options.preset and options.preset in training.too_small:
        raise InvalidInput(f"The {options.preset} preset does not fit: {training.too_small[options.preset]}.")
    preset = dict(PRESETS.get(options.preset or "", {}))
    if options.preset:
        preset["base_precision"] = "fp8" if preset["gb"] < training.fp8_below_gb else "bf16"
    values = {**training.defaults, "gradient_checkpointing": False, "base_precision": "bf16",
              "batch_size": 1, **preset}
    filled = {name: values[name] for name in values
              if name in TrainOptions.__dataclass_fields__ and getattr(options, name) is None}
    result = replace(options, **filled, name=composed(options.name))
    if result.alpha is None:
        result = replace(result, alpha=float(result.rank))
    if result.seed == -1:
        result = replace(result, seed=random.randint(0, MAX_SEED))
    return result


def check_options(options: TrainOptions, architecture: str, size_multiple: int) -> None:
    """Refuse options that cannot train, naming the field and an acceptable value."""
    whole_number("Steps", options.steps, 1, MAX_STEPS)
    whole_number("Rank", options.rank, MIN_RANK, MAX_RANK)
    whole_number("Batch size", options.batch_size, 1, 64)
    whole_number("Gradient accumulation", options.grad_accum, 1, 128)
    resolution = whole_number("Resolution", options.resolution, MIN_RESOLUTION, MAX_RESOLUTION)
    if resolution % size_multiple:
        nearest = max(size_multiple, round(resolution / size_multiple) * size_multiple)
        raise InvalidInput(f"Resolution must be a multiple of {size_multiple} for {architecture.upper()} "
                           f"(got {options.resolution}; try {nearest}).")
    if options.lr is None or options.alpha is None:
        raise ValueError("check_options needs the options fill_defaults returns")
    if not 0 < float(options.lr) <= 1:
        raise InvalidInput(f"Learning rate must be above 0 and at most 1 (got {options.lr:g}); 1e-4 is typical.")
    if not 0 < float(options.alpha) <= 4 * MAX_RANK:
        raise InvalidInput(f"Alpha must be above 0 and at most {4 * MAX_RANK} (got {options.alpha:g}).")
    if not 0 <= float(options.caption_dropout) < CAPTION_DROPOUT_BELOW:
        raise InvalidInput(f"Caption dropout must be from 0 to below {CAPTION_DROPOUT_BELOW:g} "
                           f"(got {options.caption_dropout:g}).")
    whole_number("Warm-up steps", options.warmup_steps, 0, options.steps - 1)
    whole_number("Sample every", options.sample_every, 0, MAX_STEPS)
    whole_number("Sample steps", options.sample_steps, 1, 200)
    whole_number("Save every", options.save_every, 0, MAX_STEPS)
    whole_number("Keep last", options.keep_last, 1, 100)
    whole_number("Seed", options.seed, 0, MAX_SEED)
    whole_number("GPUs", options.gpus, 1, 64)
    if options.sample_every and not any(p.strip() for p in options.sample_prompts):
        raise InvalidInput("Sampling every N steps needs at least one sample prompt.")
    if options.optimizer not in OPTIMIZERS:
        raise InvalidInput(f"Unknown optimizer {options.optimizer!r}: choose one of {', '.join(OPTIMIZERS)}.")
    package = OPTIMIZERS[options.optimizer]
    if package and importlib.util.find_spec(package) is None:
        raise InvalidInput(f"The {options.optimizer} optimizer needs the {package!r} package: "
                           f"{install_line(package)} (see requirements-extras.txt), or choose adamw.")
    if options.scheduler not in SCHEDULERS:
        raise InvalidInput(f"Unknown LR scheduler {options.scheduler!r}: choose one of {', '.join(SCHEDULERS)}.")
    if options.base_precision not in PRECISIONS:
        raise InvalidInput(f"Base precision must be one of {', '.join(PRECISIONS)}.")
    if options.train_text_encoder and not architectures.require(architecture).trains.text_encoder_targets:
        offered = [p.label for p in architectures.PROFILES.values() if p.training and p.training.text_encoder_targets]
        raise InvalidInput(f"Text-encoder LoRA is offered for {', '.join(offered)} only.")
    if options.train_text_encoder and options.gpus > 1:
        raise InvalidInput("Text-encoder LoRA trains on one GPU only; use --gpus 1 or leave the text encoder frozen.")
    if options.name:
        check_name(options.name)


def with_warmup(options: TrainOptions) -> TrainOptions:
    """The options a new run records: diffusers' ``constant`` schedule ignores warm-up steps, so asking for both
    means ``constant_with_warmup``. Only for new runs: a run recorded with ``constant`` resumes on its own schedule."""
    if options.scheduler == "constant" and options.warmup_steps:
        return replace(options, scheduler="constant_with_warmup")
    return options


def lora_name(options: TrainOptions, dataset: str, label: str, run_id: int) -> str:
    """The name of a run's LoRA: the one chosen, else dataset, architecture (or remote service) and run."""
    return options.name or f"{_slug(dataset)}-{label}-run{run_id}"


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-").lower() or "lora"
