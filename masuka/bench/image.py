"""Image generation: seconds per image, it/s and peak memory of MASUKA against plain diffusers, same run.

The model is a tiny random pipeline (``--tiny ARCH``, the default without CUDA), a local folder or catalog
model that is downloaded, or the real architecture of a catalog model with random weights
(``--random-weights``, automatic when the model is not downloaded): same speed and memory as the real one.
Loadable models go through ``generate_images`` (the path the UI takes, PNG and history rows included, in a
throw-away data dir: the user's History and outputs are left alone); random-weight models through the same
pipeline preparation (memory plan, fast path).

Tiny models add the per-image overhead of the UI and CLI paths over a bare diffusers call, the loads a
second generation performs (0 expected), what switching task costs (image-to-image at strength 0.5 after
text-to-image: no load, about half the denoising time) and the time to switch LoRAs, normally and by hotswap.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import gc
import io
import itertools
import resource
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from masuka import memory_plans
from masuka.bench import available_host_gb, host_need_gb, timed
from masuka.cli import at_least
from masuka.gpu import device_plan
from masuka.image.limits import MAX_SIDE, MIN_SIDE
from masuka.models.catalog import ModelSpec, resolve_image_model
from masuka.models.synthetic import REAL_MODELS, TINY_ARCHITECTURES, real_pipeline, save_tiny_lora, save_tiny_pipeline

if TYPE_CHECKING:
    from masuka.studio import Studio

PROMPT = "a photo of a red fox in the snow, detailed fur, soft morning light"
TINY_SIZE, TINY_STEPS = 256, 4


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", help="catalog id, repo id or pipeline folder (default: flux-dev on CUDA, "
                                        "else --tiny flux)")
    parser.add_argument("--tiny", choices=TINY_ARCHITECTURES, help="a tiny random pipeline of this architecture")
    parser.add_argument("--random-weights", action="store_true",
                        help="the catalog model's real architecture with random weights (no download)")
    parser.add_argument("--size", type=side, help=f"image side in pixels, a multiple of 16 (default 1024; tiny "
                                                 f"{TINY_SIZE})")
    parser.add_argument("--steps", type=at_least(1), help=f"denoising steps (default: the model's; tiny {TINY_STEPS})")
    parser.add_argument("--fast", action="store_true", help="the fast path (compile, fused QKV, fp8, hotswap)")
    parser.add_argument("--memory-plan", default="auto", choices=["auto", *memory_plans.plan_names()],
                        help="the 4-bit plans (" + ", ".join(p.name for p in memory_plans.PLANS if p.quantized)
                        + ") need the model's files: not --random-weights")
    parser.add_argument("--step-cache", type=float, default=0.0, help="first-block cache threshold (fast path)")
    parser.add_argument("--runs", type=at_least(1), default=5, help="measured images per variant (median reported)")
    parser.add_argument("--warmup", type=at_least(0), default=1, help="images before measuring (compiles, caches)")
    parser.add_argument("--through-app", action="store_true",
                        help="per-image time of a live app's /generate_image against a bare Gradio app and the bare "
                             "call, alternated (tiny flux unless --model names a folder); takes --runs, --size, "
                             "--steps")


def side(text: str) -> int:
    """An argparse ``type``: an image side generation takes (:data:`MIN_SIDE` to :data:`MAX_SIDE` pixels), a
    multiple of 16 (every profile's multiple)."""
    number = at_least(MIN_SIDE)(text)
    if number > MAX_SIDE or number % 16:
        raise argparse.ArgumentTypeError(f"must be a multiple of 16 from {MIN_SIDE} to {MAX_SIDE} (got {number})")
    return number


def run(studio: Studio, args: argparse.Namespace) -> dict:
    import diffusers
    import torch
    import transformers

    diffusers.utils.logging.disable_progress_bar()
    transformers.utils.logging.disable_progress_bar()
    if args.through_app:
        from masuka.bench.through_app import SIZE, STEPS, measure_through_app

        _check_through_app(args)
        with tempfile.TemporaryDirectory() as tmp:
            return measure_through_app(Path(tmp), args.runs, args.size or SIZE, args.steps or STEPS, args.model)
    with tempfile.TemporaryDirectory() as tmp:
        tiny = args.tiny or (None if args.model or torch.cuda.is_available() else "flux")
        model = str(save_tiny_pipeline(tiny, Path(tmp) / f"tiny-{tiny}")) if tiny else args.model or "flux-dev"
        spec = resolve_image_model(model)
        size = args.size or (TINY_SIZE if tiny else 1024)
        steps = args.steps or (TINY_STEPS if tiny else spec.steps)
        figures: dict[str, Any] = {"model": tiny and f"tiny-{tiny}" or spec.id, "size": size, "steps": steps,
                                   "fast": args.fast, "runs": args.runs}
        if args.random_weights or (not spec.is_local and not _downloaded(spec)):
            figures.update(_random_weights(spec, args, size, steps))
        else:
            with _scratch_studio(Path(tmp), studio) as scratch:
                figures.update(_loadable(scratch, spec, args, size, steps))
                if tiny:
                    figures.update(_tiny_extras(scratch, spec, tiny, args, size, steps, Path(tmp)))
    figures.update(_peak_memory())
    return figures


def exit_status(figures: dict) -> int:
    """The command's exit status: 1 where ``--through-app`` found MASUKA's share over a regression bound."""
    return 1 if figures.get("over_bounds") else 0


def _check_through_app(args: argparse.Namespace) -> None:
    """Refuse what ``--through-app`` does not take: the options of the other measurements, and a model that is
    not a pipeline folder (both apps load it with ``from_pretrained``, nothing is downloaded)."""
    from masuka.errors import InvalidInput

    ignored = [flag for flag, given in (("--tiny", args.tiny), ("--random-weights", args.random_weights),
                                        ("--fast", args.fast), ("--memory-plan", args.memory_plan != "auto"),
                                        ("--step-cache", args.step_cache), ("--warmup", args.warmup != 1)) if given]
    if ignored:
        raise InvalidInput(f"--through-app does not take {', '.join(ignored)}: it measures a tiny Flux (or the "
                           "pipeline folder --model names) with --runs, --size and --steps.")
    if args.model and not resolve_image_model(args.model).is_local:
        raise InvalidInput(f"--through-app measures a pipeline folder, not {args.model!r}: name a folder saved with "
                           "save_pretrained (python -m masuka.models.synthetic flux ./tiny-flux writes one).")


@contextlib.contextmanager
def _scratch_studio(tmp: Path, studio: Studio) -> Iterator[Studio]:
    """A throw-away studio in ``tmp`` for the benchmark's images, with ``studio``'s keys (a Hugging Face token):
    the user's History and outputs stay as they were (the user's studio keeps only the result row)."""
    from masuka.config import Config
    from masuka.studio import Studio

    scratch = Studio.open(Config.from_env(data_dir=tmp / "data", auth=""))
    scratch.keys = studio.keys
    try:
        yield scratch
    finally:
        scratch.close()


# -- the two ways of measuring ------------------------------------------------------------------------------

def _loadable(studio: Studio, spec: ModelSpec, args: argparse.Namespace, size: int, steps: int) -> dict:
    """Bare ``from_pretrained`` + call against ``generate_images`` on the same model: taken in turns on the
    CPU (drift in machine load hits both alike), one after the other on CUDA (two copies may not fit)."""
    from diffusers import DiffusionPipeline

    plan = device_plan(spec.vram_gb)
    request = _request(spec, args, size, steps)
    masuka_call = lambda: _generate(studio, request)  # noqa: E731

    def build() -> Any:
        dtype = _baseline_dtype(spec, plan)
        return DiffusionPipeline.from_pretrained(spec.source, dtype=dtype, use_safetensors=True).to(plan.device)

    if plan.device == "cuda":
        results = {**_baseline(build, spec, size, steps, args), **_measure({"masuka": masuka_call}, args)}
    else:
        bare = build()
        bare.set_progress_bar_config(disable=True)
        results = _measure({"baseline": lambda: bare(**_bare_kwargs(bare, spec, size, steps)),
                            "masuka": masuka_call}, args)
    used = studio.store.find("generations", limit=1)[0]["params"]
    return _compare(results, steps, used["memory_plan"], plan.device)


def _random_weights(spec: ModelSpec, args: argparse.Namespace, size: int, steps: int) -> dict:
    """The real architecture with random weights: the plain pipeline, freed, then the prepared one."""
    from masuka.errors import InvalidInput

    if spec.id not in REAL_MODELS:
        raise InvalidInput(f"No real architecture is known for {spec.id!r} (known: {', '.join(REAL_MODELS)}); "
                           "download it, or use --tiny.")
    chosen = memory_plans.find_plan(args.memory_plan)
    if chosen and chosen.quantized:  # built in memory, the transformer would stay unquantized
        raise InvalidInput(f"The {args.memory_plan} plan quantizes the transformer while loading it from files, so it "
                           f"cannot be measured with random weights: download {spec.id} (or name its folder) first.")
    plan = device_plan(spec.vram_gb, memory=args.memory_plan, memory_needs_gb=spec.memory_needs_gb, fast=args.fast,
                       step_cache=args.step_cache)
    if plan.device != "cuda" or plan.memory != "full":  # the weights are built in host memory
        width = plan.dtype.itemsize if plan.device == "cuda" else max(plan.dtype.itemsize,
                                                                        _baseline_dtype(spec, plan).itemsize)
        need, available = host_need_gb(spec.id, width), available_host_gb()
        if need > available:
            raise InvalidInput(f"{spec.id} with random weights needs about {need:.0f} GiB of host memory "
                               f"({8 * width}-bit weights on {plan.device}), {available:.0f} GiB available: "
                               "use --tiny, or a machine with more memory.")
    results = _baseline(lambda: real_pipeline(spec.id, plan.device, _baseline_dtype(spec, plan)), spec, size, steps,
                        args)
    results.update(measure_prepared(lambda device, dtype: real_pipeline(spec.id, device, dtype), spec, plan, size,
                                    steps, args))
    return {"weights": "random", **_compare(results, steps, plan.memory, plan.device)}


def measure_prepared(build: Callable[[str, Any], Any], spec: ModelSpec, plan: Any, size: int, steps: int,
                     args: argparse.Namespace, before_image: Callable[[], None] | None = None) -> dict[str, dict]:
    """``build(device, dtype)``'s pipeline prepared as ``plan`` says (memory plan, fast path), measured alone
    as ``masuka``, then freed; ``before_image`` (if given) is called before each image."""
    from masuka.image.fast import compile_once
    from masuka.image.memory import prepare_decode
    from masuka.image.pipelines import prepare_pipeline

    pipe = prepare_pipeline(build(plan.device if plan.memory == "full" else "cpu", plan.dtype), plan)
    try:
        before = compile_work() if plan.fast else {}
        start = time.perf_counter()
        compile_once(pipe)  # fuses QKV and converts to fp8 now; compiling happens in the first image
        prepared_s = time.perf_counter() - start
        prepare_decode(pipe, plan, size, size)
        results = _measure({"masuka": lambda: pipe(**_bare_kwargs(pipe, spec, size, steps))}, args, before_image)
        if before:
            after = compile_work()
            state = pipe.masuka_fast
            results["masuka"].update({"fuse_and_fp8_s": round(prepared_s, 2), "fused": state.fused, "fp8": state.fp8,
                                      **{name: round(after[name] - before[name], 2) for name in after}})
        return results
    finally:
        pipe = None  # drop the last reference before freeing memory
        _free()


def compile_work() -> dict[str, float]:
    """What ``torch.compile`` has done in this process so far: distinct graphs, compilations (a recompile counts
    again) and their seconds; taken before and after a fast pipeline's first image, it says where that went."""
    from torch._dynamo import utils as dynamo

    runs = dynamo.compilation_time_metrics.get("_compile.compile_inner", [])
    return {"graphs": dynamo.counters["stats"]["unique_graphs"], "compilations": len(runs), "compile_s": sum(runs)}


def _tiny_extras(studio: Studio, spec: ModelSpec, tiny: str, args: argparse.Namespace, size: int, steps: int,
                 tmp: Path) -> dict:
    """CPU-measurable figures: CLI overhead (a process's work: load, then one image) over a bare script's
    ``from_pretrained`` and call, loads a second generation performs, LoRA switch times (file to file)."""
    from diffusers import DiffusionPipeline

    from masuka.cli import main as cli_main
    from masuka.image.pipelines import get_pipeline
    from masuka.loras.files import inspect_lora

    plan = device_plan()
    request = _request(spec, args, size, steps)

    def bare_load_and_call() -> None:
        pipe = DiffusionPipeline.from_pretrained(spec.source, dtype=plan.dtype, use_safetensors=True).to(plan.device)
        pipe.set_progress_bar_config(disable=True)
        pipe(**_bare_kwargs(pipe, spec, size, steps))

    cli_args = ["generate", "--model", spec.source, "--prompt", PROMPT, "--steps", str(steps), "--width", str(size),
                "--height", str(size), "--seed", "1", "--data-dir", str(studio.config.data_dir), "--memory-plan",
                args.memory_plan] + (["--fast"] if args.fast else [])
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        cold = _measure({"baseline": bare_load_and_call, "masuka": lambda: cli_main(cli_args)}, args)
    _generate(studio, request)
    loads = studio.models.loads
    _generate(studio, request)
    second_loads = studio.models.loads - loads
    tasks = _task_switch(studio, request, args, tmp)

    loras = [inspect_lora(save_tiny_lora(tiny, tmp / f"lora-{seed}.safetensors", seed=seed)) for seed in (1, 2)]
    switches = {}
    for name, fast in (("lora_switch_s", False), ("lora_hotswap_s", True)):
        pipe = get_pipeline(studio.models, spec, memory=args.memory_plan, fast=fast)
        turns = itertools.cycle(loras)
        switches[name] = round(timed(functools.partial(_switch, pipe, turns), runs=args.runs,
                                     warmup=1)["median_s"], 4)
    cli, bare = cold["masuka"]["median_s"], cold["baseline"]["median_s"]
    return {"cli_s": round(cli, 4), "bare_load_and_call_s": round(bare, 4),
            "cli_overhead_pct": round(100 * (cli / bare - 1), 2),
            "second_generation_loads": second_loads, **tasks, **switches}


def _task_switch(studio: Studio, request: Any, args: argparse.Namespace, tmp: Path) -> dict:
    """Image-to-image at strength 0.5 on the model text-to-image just used: the loads it performs (the img2img
    pipeline shares the loaded weights, ``from_pipe``) and its time over text-to-image's at the same steps."""
    from dataclasses import replace

    from PIL import Image

    from masuka.image.tasks import InitImage

    picture = tmp / "start.png"
    Image.new("RGB", (request.width, request.height), (90, 120, 160)).save(picture)
    img2img = replace(request, init=InitImage(picture, strength=0.5))
    loads = studio.models.loads
    _generate(studio, img2img)
    task_loads = studio.models.loads - loads
    times = _measure({"txt2img": functools.partial(_generate, studio, request),
                      "img2img": functools.partial(_generate, studio, img2img)}, args)
    ratio = times["img2img"]["median_s"] / times["txt2img"]["median_s"]
    return {"task_switch_loads": task_loads, "img2img_half_strength_time_ratio": round(ratio, 3)}


# -- helpers ------------------------------------------------------------------------------------------------

def _measure(calls: dict[str, Callable[[], Any]], args: argparse.Namespace,
             before_image: Callable[[], None] | None = None) -> dict[str, dict]:
    """Per call: the first image (compile, caches), then after warm-up ``args.runs`` rounds taking the calls
    in turn; median seconds, and when measured alone on CUDA the peak GiB PyTorch's allocator handed out
    (``peak_vram_gb``) and took from the GPU (``peak_reserved_gb``), and the GiB the process uses outside it
    (CUDA context, libraries: ``outside_allocator_gb``). ``before_image`` (if given) runs before each image."""
    import torch

    cuda = torch.cuda.is_available()

    def image(call: Callable[[], Any]) -> float:
        if before_image:
            before_image()
        start = time.perf_counter()
        _synced(call, cuda)
        return time.perf_counter() - start

    results: dict[str, dict] = {name: {"first_s": image(call), "samples": []} for name, call in calls.items()}
    for _ in range(max(0, args.warmup - 1)):
        for call in calls.values():
            image(call)
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    for _ in range(args.runs):
        for name, call in calls.items():
            results[name]["samples"].append(image(call))
    for result in results.values():
        result["median_s"] = statistics.median(result.pop("samples"))
        if cuda and len(calls) == 1:
            free, total = torch.cuda.mem_get_info()
            result.update(peak_vram_gb=torch.cuda.max_memory_allocated() / 2**30,
                          peak_reserved_gb=torch.cuda.max_memory_reserved() / 2**30,
                          outside_allocator_gb=(total - free - torch.cuda.memory_reserved()) / 2**30)
    return results


def _baseline(build: Callable[[], Any], spec: ModelSpec, size: int, steps: int, args: argparse.Namespace,
              before_image: Callable[[], None] | None = None) -> dict[str, dict]:
    """The plain pipeline built and measured alone, then freed; on a card too small for it, no figure."""
    import torch

    bare = None
    try:
        bare = build()
        bare.set_progress_bar_config(disable=True)
        return _measure({"baseline": lambda: bare(**_bare_kwargs(bare, spec, size, steps))}, args, before_image)
    except torch.OutOfMemoryError:
        return {}
    finally:
        bare = None
        _free()


def _synced(call: Callable[[], Any], cuda: bool) -> None:
    import torch

    call()
    if cuda:
        torch.cuda.synchronize()


def _compare(results: dict[str, dict], steps: int, memory: str, device: str) -> dict:
    masuka = results["masuka"]
    figures: dict[str, Any] = {"device": device, "memory_plan": memory,
                               "masuka_s_per_image": round(masuka["median_s"], 4),
                               "masuka_first_image_s": round(masuka["first_s"], 3),
                               "masuka_it_per_s": round(steps / masuka["median_s"], 3)}
    baseline = results.get("baseline")
    if baseline is None:
        figures["baseline_s_per_image"] = "out of GPU memory"
    else:
        figures.update(baseline_s_per_image=round(baseline["median_s"], 4),
                       speedup=round(baseline["median_s"] / masuka["median_s"], 3),
                       overhead_pct=round(100 * (masuka["median_s"] / baseline["median_s"] - 1), 2))
    for name, result in results.items():
        for key in ("peak_vram_gb", "peak_reserved_gb"):
            if key in result:
                figures[f"{name}_{key}"] = round(result[key], 2)
    return figures


def _switch(pipe: Any, turns: Any) -> None:
    """One LoRA switch: the next file of ``turns`` replaces the loaded one."""
    from masuka.image.adapters import apply_loras

    apply_loras(pipe, [(next(turns), 1.0)])


def _baseline_dtype(spec: ModelSpec, plan: Any) -> Any:
    """The plain pipeline people compare with: bf16 (fp16) on CUDA, or fp32 where that is the profile's usual
    baseline."""
    import torch

    return torch.float32 if plan.device != "cuda" or (spec.profile and spec.profile.baseline_fp32) else plan.dtype


def _bare_kwargs(pipe: Any, spec: ModelSpec, size: int, steps: int) -> dict:
    import inspect

    import torch

    argument = spec.profile.guidance_argument if spec.profile else "guidance_scale"
    kwargs = dict(prompt=PROMPT, num_inference_steps=steps, width=size, height=size,
                  generator=torch.Generator("cpu").manual_seed(1), max_sequence_length=spec.max_sequence_length)
    if argument:
        kwargs[argument] = spec.guidance
    if argument == "true_cfg_scale":
        kwargs["negative_prompt"] = " "  # as the model cards call it: diffusers runs true CFG only with one
    accepted = inspect.signature(pipe.__call__).parameters
    return {k: v for k, v in kwargs.items() if k in accepted and v is not None}


def _request(spec: ModelSpec, args: argparse.Namespace, size: int, steps: int) -> Any:
    from masuka.image.generate import ImageRequest

    return ImageRequest(prompt=PROMPT, model=spec.source if spec.is_local else spec.id, steps=steps, width=size,
                        height=size, seed=1, guidance=spec.guidance, memory_plan=args.memory_plan, fast=args.fast,
                        step_cache=args.step_cache)


def _generate(studio: Studio, request: Any) -> None:
    from masuka.image.generate import generate_images

    generate_images(studio, request, allow_any_path=True)


def _downloaded(spec: ModelSpec) -> bool:
    from huggingface_hub import try_to_load_from_cache

    return isinstance(try_to_load_from_cache(spec.source, "model_index.json"), str)


def _free() -> None:
    """Release what freed pipelines leave cached: GPU memory, and pinned host memory (streamed offloading)."""
    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
        empty_host_cache = (getattr(torch.accelerator, "empty_host_cache", None)
                            or getattr(torch._C, "_host_emptyCache", None))
        if empty_host_cache:
            empty_host_cache()


def _peak_memory() -> dict:
    """Peak resident memory of this process (Linux reports KiB), for CPU runs."""
    return {"peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 3)}

