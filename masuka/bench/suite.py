"""Every GPU target in one command: ``python -m masuka bench suite [--quick] [--out DIR]``.

On CUDA the checks use the real models when they are downloaded, else their real architectures with random
weights (same speed and memory, no download); on a CPU, or with ``--quick``, the same code runs on tiny random
models (the figures then say nothing of real speed: each target reads "n/a"). The checks run in order of
importance within a time budget (``--budget-s``, 8 minutes by default); a check that would start after it is
listed as skipped. The result is one JSON file and one Markdown table in ``--out``: each figure next to its
target and pass / fail.

Needs only torch, transformers, diffusers, peft, accelerate and safetensors (no data dir, no database, no
Gradio): a fresh GPU machine can run it. The per-image app overhead, which needs the app itself, is measured
when Gradio is installed and listed as skipped otherwise.
"""

from __future__ import annotations

import argparse
import importlib
import json
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from masuka.bench import machine
from masuka.bench.image import _baseline, _baseline_dtype, _downloaded, _free, measure_prepared
from masuka.errors import InvalidInput
from masuka.gpu import DevicePlan, device_plan
from masuka.models.catalog import ModelSpec, resolve_image_model

#: A standalone benchmark: the CLI runs it without opening a data dir and stores no row.
STANDALONE = True
BUDGET_S = 480
#: Step-cache threshold of the cached FLUX.1-dev figure (diffusers' first-block cache examples use 0.08-0.12).
STEP_CACHE = 0.12
#: What the app needs beyond the suite's own packages, to measure its per-image overhead.
APP_PACKAGES = ("gradio", "gradio_client", "sqlite_utils", "httpx")
#: Per-preset training steps; the first ones (load, compile, allocator warm-up) are not counted.
TRAIN_STEPS, TRAIN_WARMUP = 12, 3


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quick", action="store_true", help="tiny random models even on a GPU (minutes on a CPU)")
    parser.add_argument("--out", default="bench-suite", help="folder for bench-suite.json and bench-suite.md")
    parser.add_argument("--budget-s", type=float, default=BUDGET_S,
                        help=f"no check starts after this many seconds (default {BUDGET_S})")
    parser.add_argument("--only", default=None, metavar="GROUPS",
                        help=f"run only these groups, comma-separated: {', '.join(group[0] for group in CHECKS)} "
                             "(default: all, in that order)")


@dataclass
class Check:
    """One line of the table: a figure, its target, and whether it was met."""

    name: str
    figure: str
    target: str
    result: str  # pass, fail, n/a (tiny models or another GPU), measured (no target), skipped: …, error: …
    figures: dict[str, Any] = field(default_factory=dict)


@dataclass
class Setup:
    """Where the suite runs and on what: real architectures on CUDA, tiny models elsewhere or when quick."""

    device: str
    tiny: bool
    quick: bool
    gpu_name: str
    folder: Path
    runs: int
    warmup: int

    @classmethod
    def detect(cls, quick: bool, folder: Path) -> Setup:
        import torch

        cuda = torch.cuda.is_available()
        tiny = quick or not cuda
        return cls(device="cuda" if cuda else device_plan().device, tiny=tiny, quick=quick,
                   gpu_name=torch.cuda.get_device_name(0) if cuda else "", folder=folder,
                   runs=1 if tiny else 3, warmup=0 if quick else 1)

    def model(self, model_id: str) -> tuple[ModelSpec, Callable[[str, Any], Any], int, int]:
        """Spec, ``build(device, dtype)``, image side and steps of catalog model ``model_id`` (or its tiny twin)."""
        from masuka.models.synthetic import REAL_MODELS, real_pipeline, save_tiny_pipeline

        catalog = resolve_image_model(model_id)
        if self.tiny:
            architecture = REAL_MODELS[model_id][0]
            path = self.folder / f"tiny-{architecture}"
            if not path.exists():
                save_tiny_pipeline(architecture, path)
            return resolve_image_model(str(path)), _loader(str(path)), 64, 1 if self.quick else 2
        if _downloaded(catalog):
            return catalog, _loader(catalog.source), 1024, catalog.steps
        return catalog, lambda device, dtype: real_pipeline(model_id, device, dtype), 1024, catalog.steps

    def judge(self, passed: bool, on: str = "") -> str:
        """pass/fail for a real-model figure (on the GPU named by ``on``, when the target names one), else n/a."""
        if self.tiny or (on and on not in self.gpu_name):
            return "n/a"
        return "pass" if passed else "fail"

    def args(self, runs: int | None = None, warmup: int | None = None) -> argparse.Namespace:
        return argparse.Namespace(runs=runs or self.runs, warmup=self.warmup if warmup is None else warmup)


def _loader(source: str) -> Callable[[str, Any], Any]:
    def build(device: str, dtype: Any) -> Any:
        from diffusers import DiffusionPipeline

        return DiffusionPipeline.from_pretrained(source, dtype=dtype, use_safetensors=True).to(device)

    return build


def run(studio: Any, args: argparse.Namespace) -> dict:
    """Run the checks in order within the budget; write ``bench-suite.json`` and ``bench-suite.md``."""
    groups = chosen_groups(args.only)  # a wrong name fails before anything loads
    import diffusers
    import transformers

    diffusers.utils.logging.disable_progress_bar()
    transformers.utils.logging.disable_progress_bar()
    started = time.monotonic()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    checks: list[Check] = []
    with tempfile.TemporaryDirectory() as tmp:
        setup = Setup.detect(args.quick, Path(tmp))
        report = {"machine": machine(), "device": setup.device, "models": "tiny random" if setup.tiny else "real",
                  "quick": args.quick, "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
                  "duration_s": 0.0, "checks": []}
        for _key, name, measure in groups:
            try:
                for check in _within(measure(setup), started, args.budget_s):
                    checks.append(check)
                    _write(out, report, checks, started)  # a run killed later still leaves what it measured
            except _OverBudget:
                checks.append(Check(name, "", "", f"skipped: the {args.budget_s:g} s budget was spent"))
            except Exception as error:  # a failing check (out of memory, a missing kernel) ends only its group
                checks.append(Check(name, "", "", f"error: {type(error).__name__}: {error}"[:300]))
            finally:
                _free()
    return _write(out, report, checks, started)


def _write(out: Path, report: dict, checks: list[Check], started: float) -> dict:
    """Write ``bench-suite.json`` and ``bench-suite.md`` with the checks so far; return the report."""
    report.update(duration_s=round(time.monotonic() - started, 1), checks=[asdict(check) for check in checks])
    (out / "bench-suite.json").write_text(json.dumps(report, indent=2, default=str) + "\n", encoding="utf-8")
    (out / "bench-suite.md").write_text(markdown(report), encoding="utf-8")
    return report


class _OverBudget(Exception):
    pass


def _within(checks: Iterator[Check], started: float, budget_s: float) -> Iterator[Check]:
    """The checks of one group while the budget lasts; the rest of the group is skipped."""
    while True:
        if time.monotonic() - started > budget_s:
            raise _OverBudget
        try:
            yield next(checks)
        except StopIteration:
            return


def markdown(report: dict) -> str:
    """The report as a Markdown table, with the machine and the kind of models above it."""
    lines = [f"Machine: {report['machine']}; models: {report['models']}; {report['created_at']}; "
             f"{report['duration_s']} s", "", "| check | figure | target | result |", "| --- | --- | --- | --- |"]
    for check in report["checks"]:
        cells = [check["name"], check["figure"], check["target"], check["result"]]
        lines.append("| " + " | ".join(cell.replace("|", "/") for cell in cells) + " |")
    return "\n".join(lines) + "\n"


# -- the checks, most important first -----------------------------------------------------------------------

def _image(setup: Setup, model_id: str, plan: DevicePlan | None, *, steps: int | None = None,
           runs: int | None = None, warmup: int | None = None) -> dict:
    """Median seconds per image (and peak VRAM on CUDA) of ``model_id``: plain (``plan`` None, the usual
    baseline dtype) or prepared as ``plan`` says."""
    spec, build, size, default_steps = setup.model(model_id)
    steps = default_steps if steps is None or setup.tiny else steps
    args = setup.args(runs, warmup)
    if plan is None:
        dtype = _baseline_dtype(spec, device_plan())
        result = _baseline(lambda: build(setup.device, dtype), spec, size, steps, args).get("baseline")
        if result is None:
            raise MemoryError("the plain pipeline does not fit this GPU")
    else:
        result = measure_prepared(build, spec, plan, size, steps, args)["masuka"]
    return {"s_per_image": round(result["median_s"], 4), "first_image_s": round(result["first_s"], 2),
            "peak_vram_gb": round(result["peak_vram_gb"], 2) if "peak_vram_gb" in result else None,
            "size": size, "steps": steps, **{name: result[name] for name in FIRST_IMAGE_PARTS if name in result}}


#: What the fast path's first image is made of (:func:`masuka.bench.image.compile_work`, fusion and fp8).
FIRST_IMAGE_PARTS = ("compile_s", "graphs", "compilations", "fuse_and_fp8_s", "fused", "fp8")


def _plan(memory: str = "full", fast: bool = False, step_cache: float = 0.0) -> DevicePlan:
    return device_plan(memory=memory, fast=fast, step_cache=step_cache)


def _speedup(setup: Setup, name: str, base: dict, fast: dict, target: float, on: str = "") -> Check:
    ratio = base["s_per_image"] / fast["s_per_image"]
    return Check(name, f"{ratio:.2f}x ({base['s_per_image']} s -> {fast['s_per_image']} s per image)",
                 f">= {target}x" + (f" on {on}" if on else ""), setup.judge(ratio >= target, on),
                 {"speedup": round(ratio, 3), "baseline": base, "fast": fast})


def _first_image(name: str, fast: dict) -> Check:
    """Where a fast pipeline's first image went: compiling (graphs, recompilations), fusing and fp8."""
    before = " and ".join(step for step, done in (("fusing QKV", fast["fused"]), ("converting to fp8", fast["fp8"]))
                          if done) or "preparing"
    return Check(f"{name}: first image", f"{fast['first_image_s']} s: {fast['compile_s']} s compiling "
                 f"{fast['graphs']} graphs in {fast['compilations']} compilations, {fast['fuse_and_fp8_s']} s "
                 f"{before}", "", "measured", {name: fast[name] for name in ("first_image_s", *FIRST_IMAGE_PARTS)})


def flux_dev(setup: Setup) -> Iterator[Check]:
    """FLUX.1-dev 1024² 28 steps: the fast path against plain bf16, without and with the step cache."""
    plain = _image(setup, "flux-dev", None)
    fast = _image(setup, "flux-dev", _plan(fast=True))
    yield _speedup(setup, "FLUX.1-dev fast vs plain bf16", plain, fast, 2.5)
    yield _first_image("FLUX.1-dev fast", fast)
    cached = _image(setup, "flux-dev", _plan(fast=True, step_cache=STEP_CACHE))
    yield _speedup(setup, f"FLUX.1-dev fast + step cache {STEP_CACHE} vs plain bf16", plain, cached, 4.0)


def flux_schnell(setup: Setup) -> Iterator[Check]:
    """FLUX.1-schnell 1024² 4 steps on the fast path."""
    fast = _image(setup, "flux-schnell", _plan(fast=True), steps=4, runs=max(setup.runs, 5))
    seconds = fast["s_per_image"]
    yield Check("FLUX.1-schnell 4 steps, fast", f"{seconds} s per image", "<= 0.45 s on H200",
                setup.judge(seconds <= 0.45, "H200"), fast)


def sdxl(setup: Setup) -> Iterator[Check]:
    """SDXL 1024² on the fast path against the usual fp32 pipeline."""
    yield _speedup(setup, "SDXL fast vs fp32", _image(setup, "sdxl", None), _image(setup, "sdxl", _plan(fast=True)),
                   3.0)


#: Peak VRAM targets of FLUX.1-dev per memory plan, GB.
FLUX_MEMORY_TARGETS = {"fp8_offload": 15.0, "group_offload": 10.0}
#: Other architectures whose peak VRAM per plan is reported (no target yet), newest first.
OTHER_MEMORY_MODELS = ("flux2-klein-4b", "z-image-turbo", "qwen-image", "sd35-large", "sdxl")


def memory_plans(setup: Setup) -> Iterator[Check]:
    """Peak VRAM under the small plans (4 steps: the peak does not depend on the step count)."""
    for model_id in ("flux-dev", *OTHER_MEMORY_MODELS[:1 if setup.quick else None]):
        for memory in FLUX_MEMORY_TARGETS:
            figures = _image(setup, model_id, _plan(memory), steps=4, runs=1, warmup=0)
            peak = figures["peak_vram_gb"]
            shown = (_vram(peak, setup) if peak is not None
                     else f"{figures['s_per_image']} s per image, {_vram(peak, setup)}")
            if model_id == "flux-dev":
                target = FLUX_MEMORY_TARGETS[memory]
                yield Check(f"FLUX.1-dev {memory}", shown, f"<= {target:g} GB",
                            setup.judge(peak is not None and peak <= target), figures)
            else:
                yield Check(f"{model_id} {memory}", shown, "(reported)", "n/a" if setup.tiny else "measured", figures)


def training(setup: Setup) -> Iterator[Check]:
    """LoRA training s/step and peak VRAM: FLUX.1 512² rank 16 (the target), then each preset's settings."""
    from masuka.training.options import PRESETS, TrainOptions, fill_defaults

    spec, build, _size, _steps = setup.model("flux-dev")
    target = TrainOptions(dataset="bench", base=spec.source, preset="40gb", resolution=512, batch_size=1, rank=16)
    figures = train_speed(setup, spec, build, target)
    yield Check("FLUX.1 LoRA 512² rank 16, s/step", f"{figures['s_per_step']} s/step, "
                f"{_vram(figures['peak_vram_gb'], setup)}", "<= 0.4 s/step on H200",
                setup.judge(figures["s_per_step"] <= 0.4, "H200"), figures)
    seen = []
    for preset in PRESETS:
        options = fill_defaults(TrainOptions(dataset="bench", base=spec.source, preset=preset, rank=16),
                                spec.architecture or "flux")
        settings = (options.resolution, options.batch_size, options.gradient_checkpointing, options.base_precision)
        if settings in seen:
            continue  # same settings as a smaller preset
        seen.append(settings)
        figures = train_speed(setup, spec, build, options)
        yield Check(f"FLUX.1 LoRA preset {preset}", f"{figures['s_per_step']} s/step, "
                    f"{_vram(figures['peak_vram_gb'], setup)}", "(reported)", "n/a" if setup.tiny else "measured",
                    figures)
        if setup.quick:
            break


def train_speed(setup: Setup, spec: ModelSpec, build: Callable[[str, Any], Any], options: Any) -> dict:
    """The real training loop on generated images: median seconds per step after warm-up, peak VRAM."""
    from dataclasses import replace

    import numpy as np
    from PIL import Image

    from masuka.training.data import TrainingSet
    from masuka.training.loop import TrainPlan, train
    from masuka.training.options import check_options, fill_defaults

    architecture = spec.architecture or "flux"
    options = fill_defaults(replace(options, steps=TRAIN_STEPS, save_every=0, caption_dropout=0.0), architecture)
    if setup.tiny:
        options = replace(options, resolution=64, steps=TRAIN_WARMUP + (1 if setup.quick else 3))
    check_options(options, architecture, spec.size_multiple)
    images = setup.folder / "train-images"
    images.mkdir(exist_ok=True)
    rng = np.random.default_rng(0)
    items = []
    for index in range(4):
        path = images / f"{index}.png"
        Image.fromarray(rng.integers(0, 255, (options.resolution,) * 2 + (3,), dtype=np.uint8)).save(path)
        items.append((path, f"zxq, picture {index}"))
    hooks = _StepTimes()
    dtype = device_plan().dtype
    plan = TrainPlan(options, spec, architecture, TrainingSet(None, "bench", "zxq", items),
                     setup.folder / f"run-{time.monotonic_ns()}", build=lambda: build("cpu", dtype))
    outcome = train(plan, hooks)
    counted = hooks.seconds[TRAIN_WARMUP:] or hooks.seconds
    return {"s_per_step": round(statistics.median(counted), 4),
            "peak_vram_gb": round(max(hooks.vram), 2) if hooks.vram else None, "final_loss": outcome.final_loss,
            "resolution": options.resolution, "batch_size": options.batch_size, "rank": options.rank,
            "gradient_checkpointing": options.gradient_checkpointing, "base_precision": options.base_precision}


def _vram(peak: float | None, setup: Setup) -> str:
    return f"{peak} GB peak VRAM" if peak is not None else f"no VRAM figure on {setup.device}"


class _StepTimes:
    """Training hooks that keep each step's seconds and peak VRAM, and never stop the run."""

    def __init__(self) -> None:
        self.seconds: list[float] = []
        self.vram: list[float] = []

    def on_step(self, step: int, loss: float, lr: float, sec_per_step: float, vram_gb: float | None) -> None:
        self.seconds.append(sec_per_step)
        if vram_gb is not None:
            self.vram.append(vram_gb)

    def stop_mode(self) -> str | None:
        return None

    def log(self, text: str) -> None:
        pass


def app_overhead(setup: Setup) -> Iterator[Check]:
    """MASUKA's own share of a ``/generate_image`` request over a bare Gradio app making the same call, and of a
    REST request over the bare call."""
    missing = [name for name in APP_PACKAGES if not _importable(name)]
    if missing:
        yield Check("Per-image app overhead", "", "<= 30 ms", f"skipped: needs {', '.join(missing)} "
                    "(pip install -r requirements.txt)")
        return
    from masuka.bench.through_app import measure_through_app

    figures = measure_through_app(setup.folder, rounds=3 if setup.tiny else 10)
    share = figures["masuka_share_ms"]
    yield Check("Per-image app overhead (MASUKA over a bare Gradio app)", f"{share} ms", "<= 30 ms",
                "pass" if share <= 30 else "fail", figures)
    for route, key in (("/sdapi/v1/txt2img", "a1111_share_ms"), ("/v1/images/generations", "openai_share_ms")):
        yield Check(f"Per-image app overhead ({route} over the bare call)", f"{figures[key]} ms", "<= 30 ms",
                    "pass" if figures[key] <= 30 else "fail", figures)


def _importable(name: str) -> bool:
    try:
        importlib.import_module(name)
    except ImportError:
        return False
    return True


#: (key for ``--only``, group name, its checks), in order of importance
CHECKS: list[tuple[str, str, Callable[[Setup], Iterator[Check]]]] = [
    ("flux-dev", "FLUX.1-dev fast vs plain bf16", flux_dev),
    ("flux-schnell", "FLUX.1-schnell 4 steps, fast", flux_schnell),
    ("sdxl", "SDXL fast vs fp32", sdxl),
    ("memory", "Peak VRAM per memory plan", memory_plans),
    ("training", "LoRA training", training),
    ("app", "Per-image app overhead", app_overhead),
]


def chosen_groups(only: str | None) -> list[tuple[str, str, Callable[[Setup], Iterator[Check]]]]:
    """The groups ``--only`` names (comma-separated keys), in the suite's order; every group when unset."""
    if not only:
        return CHECKS
    keys = [key.strip() for key in only.split(",") if key.strip()]
    unknown = [key for key in keys if key not in {group[0] for group in CHECKS}]
    if unknown or not keys:
        raise InvalidInput(f"--only takes some of {', '.join(group[0] for group in CHECKS)} (got {only!r}).")
    return [group for group in CHECKS if group[0] in keys]
