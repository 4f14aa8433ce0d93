"""The training loop: diffusers model + peft LoRA, data-parallel through ``accelerate``.

One function, :func:`train`, runs in every process of a run (one, or N under ``accelerate launch``). It loads
the pipeline on the CPU, caches latents and text embeddings, unloads the text encoders (and the VAE unless
samples are wanted), adds the LoRA, then steps: noise, loss, backward, optimizer and LR-scheduler step, with
gradient accumulation. The main process reports each step, saves checkpoints, makes samples and hands the
final LoRA weights back; what a run does with them (export, rows) lives in :mod:`masuka.training.runs`.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol, TypeVar

from masuka.errors import MasukaError
from masuka.gpu import DevicePlan, device_plan
from masuka.image.pipelines import load_pipeline, prepare_pipeline
from masuka.model_cache import building
from masuka.models.catalog import ModelSpec
from masuka.training import checkpoints
from masuka.training.architectures import Architecture, trainer_for
from masuka.training.data import BatchOrder, Cache, TrainingSet, build_cache
from masuka.training.options import TrainOptions, presets_by_memory

log = logging.getLogger(__name__)
MAX_GRAD_NORM = 1.0
T = TypeVar("T")


def _filled(value: T | None, name: str) -> T:
    """An option :func:`~masuka.training.options.fill_defaults` fills in; a run never starts without it."""
    if value is None:
        raise ValueError(f"training option {name!r} is not filled in (fill_defaults first)")
    return value


class Hooks(Protocol):
    """How the loop talks to its run (called on the main process only)."""

    def on_step(self, step: int, loss: float, lr: float, sec_per_step: float, vram_gb: float | None) -> None: ...

    def stop_mode(self) -> str | None:
        """``None`` to go on, else ``save``, ``discard`` or ``interrupt`` (see :class:`masuka.jobs.JobContext`)."""

    def log(self, text: str) -> None: ...


@dataclass
class TrainPlan:
    """A checked run: filled-in options, the base model, its architecture and the data."""

    options: TrainOptions
    spec: ModelSpec
    architecture: str
    data: TrainingSet
    run_dir: Path
    token: str | None = None
    build: Callable[[], Any] | None = None  # builds the base pipeline on the CPU instead of loading spec.source
    screen: Callable[[Any], Any] | None = None  # a sample image as it may be saved (the mandatory safety check)
    recorded_hash: str | None = None  # the dataset hash the run recorded when created: other data cached is told


@dataclass
class Outcome:
    """How the loop ended: at ``step``, stopped (with the stop mode) or finished with the final LoRA weights."""

    step: int
    stopped: str | None = None
    final_loss: float | None = None
    layers: dict[str, dict[str, Any]] = field(default_factory=dict)
    configs: dict[str, dict] = field(default_factory=dict)
    pipe_class: Any = None


@dataclass
class Session:
    """Everything one process trains with, built by :func:`prepare`."""

    accelerator: Any
    pipe: Any
    arch: Architecture
    model: Any
    trained: dict[str, Any]
    params: list[Any]
    optimizer: Any
    scheduler: Any
    cache: Cache
    dtype: Any


def train(plan: TrainPlan, hooks: Hooks) -> Outcome:
    """Run (or resume) the loop to ``plan.options.steps``; raises :class:`MasukaError` with a remedy on failure."""
    import torch

    try:
        session = prepare(plan, hooks)
        return _loop(plan, session, hooks)
    except torch.OutOfMemoryError as error:
        raise MasukaError(out_of_memory_message(plan.options)) from error


def prepare(plan: TrainPlan, hooks: Hooks) -> Session:
    """Load the pipeline, cache the data, add the LoRA and build optimizer and LR scheduler (all processes).

    ``plan.data`` takes the hash of the bytes cached: what checkpoints and the LoRA record is the data trained on,
    even if a file changed between the run's checks (or its wait for the GPU) and its caching."""
    import torch
    from accelerate import Accelerator
    from accelerate.utils import set_seed
    from diffusers.optimization import get_scheduler
    from diffusers.training_utils import cast_training_params, free_memory
    from diffusers.utils import logging as diffusers_logging
    from peft import LoraConfig
    from transformers.utils import logging as transformers_logging

    diffusers_logging.disable_progress_bar()
    transformers_logging.disable_progress_bar()
    options = plan.options
    where = device_plan()
    mixed = {"bfloat16": "bf16", "float16": "fp16"}.get(where.dtype_name, "no")
    accelerator = Accelerator(cpu=where.device == "cpu", mixed_precision=mixed,
                              gradient_accumulation_steps=options.grad_accum)
    device, dtype = accelerator.device, where.dtype
    main = accelerator.is_main_process
    if main:
        hooks.log(f"loading {plan.spec.id} ({plan.architecture}) on {accelerator.num_processes} process(es), "
                  f"{where.device} {where.dtype_name}")
    cpu = DevicePlan("cpu", where.dtype_name)
    with building():
        pipe = prepare_pipeline(plan.build(), cpu) if plan.build else load_pipeline(plan.spec, cpu, plan.token)
    arch = trainer_for(plan.architecture)(pipe, options, plan.spec.max_sequence_length)
    encoders = [name for name in ("text_encoder", "text_encoder_2", "text_encoder_3") if getattr(pipe, name, None)]
    for name in encoders + ["vae"]:
        getattr(pipe, name).to(device)
    if main:
        hooks.log(f"caching latents and text embeddings of {len(plan.data.items)} image(s) at {options.resolution} px")
    cache = build_cache(arch, pipe, plan.data.items, _filled(options.resolution, "resolution"),
                        options.sample_prompts, device, encode_texts=not options.train_text_encoder)
    plan.data = replace(plan.data, hash=cache.hash)
    if main:
        hooks.log(f"cached {len(cache.latents)} image(s) in {len(cache.buckets())} aspect bucket(s)")
        if plan.recorded_hash and cache.hash != plan.recorded_hash:
            hooks.log("note: the dataset changed since this run was created; training on its current images")
    if not options.train_text_encoder:
        for name in encoders:
            setattr(pipe, name, None)
    pipe.vae.to("cpu")
    if not options.sample_every:
        pipe.vae = None
    free_memory()

    set_seed(options.seed)
    model = getattr(pipe, arch.model_attr)
    model.requires_grad_(False)
    if options.base_precision == "fp8":
        model.enable_layerwise_casting(storage_dtype=torch.float8_e4m3fn, compute_dtype=dtype)
    if options.gradient_checkpointing:
        model.enable_gradient_checkpointing()
    model.to(device)
    lora: dict[str, Any] = dict(r=options.rank, lora_alpha=options.alpha, init_lora_weights="gaussian")
    trained = {arch.model_attr: model}
    with building():
        model.add_adapter(LoraConfig(target_modules=arch.target_modules, **lora))
        if options.train_text_encoder:
            for name in encoders:
                getattr(pipe, name).add_adapter(LoraConfig(target_modules=arch.text_encoder_targets, **lora))
                trained[name] = getattr(pipe, name)
    cast_training_params(list(trained.values()), dtype=torch.float32)  # LoRA weights train in fp32 always
    params = [p for module in trained.values() for p in module.parameters() if p.requires_grad]
    optimizer = make_optimizer(options.optimizer, params, _filled(options.lr, "lr"))
    world = accelerator.num_processes
    scheduler = get_scheduler(options.scheduler, optimizer, num_warmup_steps=options.warmup_steps * world,
                              num_training_steps=options.steps * world)
    prepared = accelerator.prepare(*trained.values(), optimizer, scheduler)
    wrapped, optimizer, scheduler = prepared[0], prepared[-2], prepared[-1]
    return Session(accelerator, pipe, arch, wrapped, trained, params, optimizer, scheduler, cache, dtype)


def make_optimizer(name: str, params: list[Any], lr: float) -> Any:
    """AdamW, AdamW 8-bit (bitsandbytes), Adafactor (transformers) or Prodigy (prodigyopt)."""
    import torch

    if name == "adamw8bit":
        import bitsandbytes

        return bitsandbytes.optim.AdamW8bit(params, lr=lr, weight_decay=1e-4)
    if name == "adafactor":
        from transformers.optimization import Adafactor

        return Adafactor(params, lr=lr, relative_step=False, scale_parameter=False, warmup_init=False)
    if name == "prodigy":
        import prodigyopt

        return prodigyopt.Prodigy(params, lr=lr, weight_decay=1e-4, safeguard_warmup=True)
    return torch.optim.AdamW(params, lr=lr, weight_decay=1e-4)


def lora_layers(session: Session) -> tuple[dict[str, dict[str, Any]], dict[str, dict]]:
    """The LoRA weights (peft state dicts, on the CPU) and configs of every trained module."""
    from peft.utils import get_peft_model_state_dict

    layers = {name: {k: v.detach().float().cpu() for k, v in get_peft_model_state_dict(module).items()}
              for name, module in session.trained.items()}
    configs = {name: module.peft_config["default"].to_dict() for name, module in session.trained.items()}
    return layers, configs


def _resume(plan: TrainPlan, session: Session, hooks: Hooks) -> tuple[int, float | None]:
    """Load the latest checkpoint into the LoRA, optimizer, scheduler and RNG; return its step (0 if none) and the
    loss of that step (None if none, or a checkpoint saved before checkpoints recorded it)."""
    from peft import set_peft_model_state_dict

    checkpoint = checkpoints.latest(plan.run_dir)
    if checkpoint is None:
        return 0, None
    layers, state = checkpoints.load(checkpoint, session.optimizer, session.scheduler)
    for name, module in session.trained.items():
        set_peft_model_state_dict(module, layers[name])
    if session.accelerator.is_main_process:
        hooks.log(f"resumed from the checkpoint at step {checkpoint.step}")
    loss = state.get("loss")
    return checkpoint.step, float(loss) if isinstance(loss, (int, float)) else None


def _loop(plan: TrainPlan, session: Session, hooks: Hooks) -> Outcome:
    import torch

    options, accelerator = plan.options, session.accelerator
    main = accelerator.is_main_process
    # a run resumed after its last step (its final checkpoint saved, the export failed) trains no step: its final
    # loss is the one its checkpoint recorded
    step, loss_value = _resume(plan, session, hooks)
    order = BatchOrder(session.cache, _filled(options.batch_size, "batch_size"), options.seed,
                       accelerator.process_index, accelerator.num_processes)
    micro = step * options.grad_accum
    if main and step < options.steps:
        hooks.log(f"training steps {step + 1}-{options.steps}")
    session.model.train()
    started = time.perf_counter()
    while step < options.steps:
        losses = []
        for _ in range(options.grad_accum):
            losses.append(_micro_step(plan, session, order.batch(micro), micro))
            micro += 1
        step += 1
        loss_value = accelerator.reduce(torch.stack(losses).mean(), "mean").item()
        if not math.isfinite(loss_value):
            raise MasukaError(f"The loss became {loss_value} at step {step}: training diverged. Start a new run "
                              f"with a lower learning rate (this one used {options.lr:g}) or a lower rank; "
                              "the checkpoints saved before this step are kept.")
        saved = False  # this step's checkpoint, saved on schedule: a stop at it saves nothing more
        if main:
            elapsed = time.perf_counter() - started
            vram = torch.cuda.max_memory_allocated(accelerator.device) / 2**30 if torch.cuda.is_available() else None
            hooks.on_step(step, loss_value, session.scheduler.get_last_lr()[0], elapsed, vram)
            if options.save_every and step % options.save_every == 0 and step < options.steps:
                _save(plan, session, step, hooks, loss_value)
                saved = True
            if options.sample_every and step % options.sample_every == 0:
                sample(plan, session, step)
        mode = hooks.stop_mode() if main and step < options.steps else None
        if mode:
            accelerator.set_trigger()
        if accelerator.check_trigger():
            if main and mode != "discard" and not saved:
                _save(plan, session, step, hooks, loss_value)
            accelerator.wait_for_everyone()
            return Outcome(step, stopped=mode or "save", final_loss=loss_value)
        accelerator.wait_for_everyone()
        started = time.perf_counter()
    outcome = Outcome(step, final_loss=loss_value, pipe_class=type(session.pipe))
    if main:
        _save(plan, session, step, hooks, loss_value)
        outcome.layers, outcome.configs = lora_layers(session)
    accelerator.wait_for_everyone()
    return outcome


def _micro_step(plan: TrainPlan, session: Session, indices: list[int], micro: int) -> Any:
    """Forward and backward one micro-batch; the optimizer steps when the accumulation is complete."""
    import torch

    options, accelerator, cache = plan.options, session.accelerator, session.cache
    generator = torch.Generator().manual_seed(options.seed * 100_003 + micro * 131 + accelerator.process_index)
    device = accelerator.device
    latents = torch.cat([cache.latents[i] for i in indices]).to(device, session.dtype)
    dropped = (torch.rand(len(indices), generator=generator) < options.caption_dropout).tolist()
    if options.train_text_encoder:
        text = session.arch.encode_text(session.pipe, ["" if drop else cache.captions[i]
                                                       for i, drop in zip(indices, dropped, strict=True)], device)
    else:
        rows = [cache.empty if drop else cache.texts[i] for i, drop in zip(indices, dropped, strict=True)]
        text = {key: torch.cat([row[key] for row in rows]).to(device, session.dtype) for key in rows[0]}
    with accelerator.accumulate(session.model):
        loss = session.arch.loss(session.model, latents, text, [cache.sizes[i] for i in indices], generator)
        accelerator.backward(loss)
        if accelerator.sync_gradients:
            accelerator.clip_grad_norm_(session.params, MAX_GRAD_NORM)
        session.optimizer.step()
        session.scheduler.step()
        session.optimizer.zero_grad(set_to_none=True)
    return loss.detach()


def _save(plan: TrainPlan, session: Session, step: int, hooks: Hooks, loss: float | None) -> None:
    """Checkpoint ``step`` with its ``loss``; reads nothing of the dataset (its hash is the one of the bytes
    cached, see :func:`prepare`)."""
    from masuka.training.export import lora_metadata, write_lora

    layers, configs = lora_layers(session)
    name = f"{plan.run_dir.name}-step{step}.safetensors"
    checkpoints.save(plan.run_dir, step, layers, session.optimizer, session.scheduler,
                     {"dataset_hash": plan.data.hash, "loss": loss}, plan.options.keep_last,
                     lambda folder: write_lora(type(session.pipe), folder, name, layers, configs,
                                               lora_metadata(plan, step)))
    hooks.log(f"checkpoint saved at step {step}")


def sample(plan: TrainPlan, session: Session, step: int) -> list[Path]:
    """Images of the sample prompts with the LoRA as it is now, saved under ``samples/`` of the run folder. A
    trained text encoder encodes the prompts again each time, so its LoRA shows in the samples too."""
    import torch

    options, pipe, cache = plan.options, session.pipe, session.cache
    device = session.accelerator.device
    texts, empty = cache.samples, cache.empty
    if options.train_text_encoder:
        with torch.no_grad():
            texts = [session.arch.encode_text(pipe, [prompt], device) for prompt in options.sample_prompts]
            empty = session.arch.encode_text(pipe, [""], device)
    folder = plan.run_dir / "samples"
    folder.mkdir(parents=True, exist_ok=True)
    session.model.eval()
    pipe.vae.to(device)
    pipe.set_progress_bar_config(disable=True)
    paths = []
    guidance = {session.arch.guidance_argument: plan.spec.guidance} if session.arch.guidance_argument else {}
    try:
        for index, text in enumerate(texts):
            on_device = lambda embeds: {k: v.to(device, session.dtype) for k, v in embeds.items()}  # noqa: E731
            kwargs = session.arch.sample_kwargs(on_device(text), on_device(empty))
            with torch.no_grad(), session.accelerator.autocast():
                image = pipe(**kwargs, **guidance, num_inference_steps=options.sample_steps,
                             width=options.resolution, height=options.resolution, output_type="pil",
                             generator=torch.Generator("cpu").manual_seed(options.seed + index)).images[0]
            path = folder / f"step-{step:06d}-{index}.png"
            (plan.screen(image) if plan.screen else image).save(path)
            paths.append(path)
    finally:
        pipe.vae.to("cpu")
        session.model.train()
    return paths


def out_of_memory_message(options: TrainOptions) -> str:
    """What to lower after an out-of-memory error, in words."""
    names = presets_by_memory()
    advice = []
    if options.preset not in names:
        listed = f"{', '.join(names[:-1])} or {names[-1]}" if len(names) > 1 else names[0]
        advice.append(f"choose the preset of your GPU's memory ({listed})")
    elif names.index(options.preset) > 0:
        advice.append(f"choose the {names[names.index(options.preset) - 1]} preset")
    if options.resolution and options.resolution > 256:
        advice.append(f"lower the resolution from {options.resolution} to {max(256, options.resolution - 256)} px")
    if options.batch_size and options.batch_size > 1:
        advice.append(f"lower the batch size from {options.batch_size} to 1 (raise gradient accumulation instead)")
    if not options.gradient_checkpointing:
        advice.append("turn on gradient checkpointing")
    if not advice:
        advice.append("this model needs a GPU with more memory")
    return (f"Out of GPU memory at {options.resolution} px, batch size {options.batch_size}, preset "
            f"{options.preset or 'none'}: {'; '.join(advice)}. Checkpoints already saved are kept.")
