"""Every GPU target in one command: ``python -m masuka bench suite [--quick] [--out DIR]``.

On CUDA the checks use the real models when they are downloaded, else their real architectures with random
weights (same speed and memory, no download); on a CPU, or with ``--quick``, the same code runs on tiny random
models (the figures then say nothing of real speed: each target reads "n/a"). The checks run in order of
importance, one line at a time, within a time budget (``--budget-s``, 7.5 minutes by default): a build, a compile,
an image or a training step that would overrun it does not start, an alarm at its end stops a line still running,
and every line after it is listed as skipped. A line that fails (out of memory, a missing kernel) is one error
line; the lines after it still run. The result is one JSON file and one Markdown table in ``--out``, rewritten
after every line (with the line running named, so a killed run says where it was): each figure next to its
target and pass / fail.

Needs only torch, transformers, diffusers, peft, accelerate and safetensors (no data dir, no database, no
Gradio): a fresh GPU machine can run it. The per-image app overhead, which needs the app itself, is measured
when Gradio is installed and listed as skipped otherwise.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import importlib
import importlib.util
import json
import os
import signal
import statistics
import tempfile
import threading
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
#: Seconds the checks may take (imports and start-up come on top): well within a 10-minute slot.
BUDGET_S = 450
#: Seconds a fast pipeline's first compile is expected to take until one is measured (FLUX.1-dev on an H200: 345).
COMPILE_GUESS_S = 360
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
                        help=f"the checks stop after this many seconds (default {BUDGET_S})")
    parser.add_argument("--only", default=None, metavar="GROUPS",
                        help=f"run only these groups, comma-separated: {', '.join(group[0] for group in CHECKS)} "
                             "(default: all, in that order)")


@dataclass
class Check:
    """One line of the table: a figure, its target, and whether it was met."""

    name: str
    figure: str
    target: str
    # pass, fail, n/a (tiny models or another GPU), measured (no target), skipped: …, cut: … (stopped by the
    # budget), error: …, running (while it runs)
    result: str
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
    deadline: Deadline

    @classmethod
    def detect(cls, quick: bool, folder: Path, deadline: Deadline) -> Setup:
        import torch

        cuda = torch.cuda.is_available()
        tiny = quick or not cuda
        return cls(device="cuda" if cuda else device_plan().device, tiny=tiny, quick=quick,
                   gpu_name=torch.cuda.get_device_name(0) if cuda else "", folder=folder,
                   runs=1 if tiny else 3, warmup=0 if quick else 1, deadline=deadline)

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
    deadline = Deadline(args.budget_s)
    with tempfile.TemporaryDirectory() as tmp, deadline.armed():
        setup = Setup.detect(args.quick, Path(tmp), deadline)
        report = {"machine": machine(), "device": setup.device, "models": "tiny random" if setup.tiny else "real",
                  "quick": args.quick, "budget_s": args.budget_s,
                  "created_at": datetime.now(UTC).isoformat(timespec="seconds"), "duration_s": 0.0, "checks": []}
        for _key, group in groups:
            for line in group(setup):
                checks.append(Check(line.name, "", "", "running"))
                _write(out, report, checks, started)  # a run killed now still names the line it was in
                checks[-1:] = _run_line(line, deadline)
                _write(out, report, checks, started)
    return _write(out, report, checks, started)


def _run_line(line: Line, deadline: Deadline) -> list[Check]:
    """What one line measured or, when it failed or the budget stopped it, one check saying so."""
    if deadline.left() <= 0:
        return [Check(line.name, "", "", f"skipped: the {deadline.budget_s:g} s budget was spent")]
    try:
        with deadline.running(line.name):
            measured = line.measure()
        return measured if isinstance(measured, list) else [measured]
    except _OverBudget as stop:
        return [Check(line.name, "", "", f"cut: {stop}")]
    except Exception as error:  # out of memory, a missing kernel: this line only
        return [Check(line.name, "", "", f"error: {type(error).__name__}: {error}"[:300])]
    finally:
        _free()


def _write(out: Path, report: dict, checks: list[Check], started: float) -> dict:
    """Write ``bench-suite.json`` and ``bench-suite.md`` with the checks so far, each whole or not at all (a
    kill mid-write leaves the previous version); return the report."""
    report.update(duration_s=round(time.monotonic() - started, 1), checks=[asdict(check) for check in checks])
    for name, text in (("bench-suite.json", json.dumps(report, indent=2, default=str) + "\n"),
                       ("bench-suite.md", markdown(report))):
        part = out / f".{name}.part"
        part.write_text(text, encoding="utf-8")
        os.replace(part, out / name)
    return report


class _OverBudget(BaseException):
    """The budget ran out before or during a line (a BaseException, so that no ``except Exception`` in the
    libraries a line runs swallows it)."""


def _now() -> float:
    return time.monotonic()


class Deadline:
    """The suite's time budget. Each costly step (a build, a compile, an image, a training step) checks it first
    and raises :class:`_OverBudget` when it is spent or when the step's expected seconds would overrun it; an
    alarm at the end of the budget stops a line still running (a compile that took longer than expected)."""

    def __init__(self, budget_s: float) -> None:
        self.budget_s = budget_s
        self.end = _now() + budget_s
        self.compile_s: float = COMPILE_GUESS_S  # expected seconds of a real model's first compile
        self.step = ""
        self._in_line = False

    def left(self) -> float:
        return self.end - _now()

    def check(self, step: str, need_s: float = 0.0, now: float | None = None) -> None:
        """Before ``step`` (at ``now``): raise :class:`_OverBudget` unless ``need_s`` seconds (and some) are left."""
        left = self.end - (_now() if now is None else now)
        if left <= 0:
            raise _OverBudget(f"the {self.budget_s:g} s budget ran out before {step}")
        if left < need_s:
            raise _OverBudget(f"{step} needs about {need_s:.0f} s, {left:.0f} s of the {self.budget_s:g} s budget "
                              "were left")
        self.step = step

    def pace(self, what: str, first_s: float = 0.0) -> Callable[[], None]:
        """A check before each image of ``what``: the first needs ``first_s`` (a compile), each one after the
        second as long as the one before took (the first includes compiling and warming up)."""
        starts: list[float] = []

        def before_image() -> None:
            now = _now()
            need = first_s if not starts else (now - starts[-1] if len(starts) > 1 else 0.0)
            step = (f"the compile and first image of {what}" if first_s and not starts
                    else f"image {len(starts) + 1} of {what}")
            self.check(step, need, now)
            starts.append(now)

        return before_image

    @contextlib.contextmanager
    def running(self, line: str) -> Iterator[None]:
        """While ``line`` runs, the alarm stops it."""
        self.step, self._in_line = line, True
        try:
            yield
        finally:
            self._in_line = False

    @contextlib.contextmanager
    def armed(self) -> Iterator[None]:
        """An alarm at the end of the budget (on the main thread, where signals arrive)."""
        if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "setitimer"):
            yield
            return

        def ring(_signum: int, _frame: Any) -> None:
            if self._in_line:
                raise _OverBudget(f"the {self.budget_s:g} s budget ran out during {self.step}")

        previous = signal.signal(signal.SIGALRM, ring)
        signal.setitimer(signal.ITIMER_REAL, max(self.left(), 0.001))
        try:
            yield
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)


@dataclass
class Line:
    """One line of the report, measured when ``measure`` is called: its check (or checks)."""

    name: str
    measure: Callable[[], Check | list[Check]]


def markdown(report: dict) -> str:
    """The report as a Markdown table, with the machine and the kind of models above it."""
    lines = [f"Machine: {report['machine']}; models: {report['models']}; {report['created_at']}; "
             f"{report['duration_s']} s", "", "| check | figure | target | result |", "| --- | --- | --- | --- |"]
    for check in report["checks"]:
        cells = [check["name"], check["figure"], check["target"], check["result"]]
        lines.append("| " + " | ".join(cell.replace("|", "/") for cell in cells) + " |")
    return "\n".join(lines) + "\n"


# -- the checks, most important first -----------------------------------------------------------------------

#: GiB figures of an image check: allocated and reserved peaks, and what the process uses outside the allocator.
VRAM_KEYS = ("peak_vram_gb", "peak_reserved_gb", "outside_allocator_gb")


def _image(setup: Setup, model_id: str, plan: DevicePlan | None, *, steps: int | None = None,
           runs: int | None = None, warmup: int | None = None) -> dict:
    """Median seconds per image (and peak VRAM on CUDA) of ``model_id``: plain (``plan`` None, the usual
    baseline dtype) or prepared as ``plan`` says. The budget is checked before the build and each image (the
    first image of a compiled pipeline must leave time for the compile)."""
    spec, build, size, default_steps = setup.model(model_id)
    steps = default_steps if steps is None or setup.tiny else steps
    args = setup.args(runs, warmup)
    deadline = setup.deadline
    what = f"{model_id} {'plain' if plan is None else ('fast' if plan.fast else plan.memory)}"
    compiles = plan is not None and _compiles(plan)

    def checked_build(device: str, dtype: Any) -> Any:
        deadline.check(f"building {what}")
        return build(device, dtype)

    pace = deadline.pace(what, deadline.compile_s if compiles and not setup.tiny else 0.0)
    if plan is None:
        dtype = _baseline_dtype(spec, device_plan())
        result = _baseline(lambda: checked_build(setup.device, dtype), spec, size, steps, args, pace).get("baseline")
        if result is None:
            raise MemoryError("the plain pipeline does not fit this GPU")
    else:
        result = measure_prepared(checked_build, spec, plan, size, steps, args, pace)["masuka"]
        deadline.compile_s = max(deadline.compile_s, result.get("compile_s", 0.0))
    return {"s_per_image": round(result["median_s"], 4), "first_image_s": round(result["first_s"], 2),
            **{key: round(result[key], 2) if key in result else None for key in VRAM_KEYS},
            "size": size, "steps": steps, **{name: result[name] for name in FIRST_IMAGE_PARTS if name in result}}


#: What the fast path's first image is made of (:func:`masuka.bench.image.compile_work`, fusion and fp8).
FIRST_IMAGE_PARTS = ("compile_s", "graphs", "compilations", "fuse_and_fp8_s", "fused", "fp8")


def _plan(memory: str = "full", fast: bool = False, step_cache: float = 0.0) -> DevicePlan:
    return device_plan(memory=memory, fast=fast, step_cache=step_cache)


def _compiles(plan: DevicePlan) -> bool:
    """Whether ``plan`` compiles the pipeline: the fast path without the step cache."""
    return plan.fast and not plan.step_cache


def _plain(setup: Setup, label: str, model_id: str, kind: str, plain: dict) -> Line:
    """The plain pipeline's line; its figures go into ``plain`` for the lines compared with it."""
    name = f"{label} plain {kind}"

    def measure() -> Check:
        plain.update(_image(setup, model_id, None))
        return Check(name, f"{plain['s_per_image']} s per image (first {plain['first_image_s']} s), "
                     f"{_vram(plain, setup)}", "", "n/a" if setup.tiny else "measured", dict(plain))

    return Line(name, measure)


def _against(setup: Setup, name: str, model_id: str, plan: DevicePlan, plain: dict, target: float) -> Line:
    """``model_id`` prepared as ``plan`` says against the plain figure, if that was measured; a compiled
    pipeline adds where its first image went."""
    compiled = _compiles(plan)

    def measure() -> list[Check]:
        fast = _image(setup, model_id, plan)
        speedup = _speedup(setup, name, plain, fast, target, _fp8_note(setup, fast) if compiled else "")
        return [speedup, _first_image(name.split(" vs ")[0], fast)] if compiled else [speedup]

    return Line(name, measure)


def _speedup(setup: Setup, name: str, base: dict, fast: dict, target: float, note: str = "") -> Check:
    wanted = f">= {target}x"
    extra = f"; {note}" if note else ""
    if not base:
        return Check(name, f"{fast['s_per_image']} s per image, no plain figure to compare with{extra}", wanted,
                     "measured", {"fast": fast})
    ratio = base["s_per_image"] / fast["s_per_image"]
    return Check(name, f"{ratio:.2f}x ({base['s_per_image']} s -> {fast['s_per_image']} s per image{extra})",
                 wanted, setup.judge(ratio >= target), {"speedup": round(ratio, 3), "baseline": base, "fast": fast})


def _fp8_note(setup: Setup, fast: dict) -> str:
    """Whether the compiled fast path ran fp8 and, if not, why: without it the figure measures another setup."""
    if fast.get("fp8"):
        return "fp8: yes"
    if setup.device != "cuda":
        return f"fp8: no (none on {setup.device})"
    if importlib.util.find_spec("torchao") is None:
        return "fp8: no (torchao not installed)"
    import torch

    if torch.cuda.get_device_capability() < (8, 9):
        return "fp8: no (compute capability below 8.9)"
    return "fp8: no"


def _first_image(name: str, fast: dict) -> Check:
    """Where a fast pipeline's first image went: compiling (graphs, recompilations), fusing and fp8."""
    before = " and ".join(step for step, done in (("fusing QKV", fast["fused"]), ("converting to fp8", fast["fp8"]))
                          if done) or "preparing"
    return Check(f"{name}: first image", f"{fast['first_image_s']} s: {fast['compile_s']} s compiling "
                 f"{fast['graphs']} graphs in {fast['compilations']} compilations, {fast['fuse_and_fp8_s']} s "
                 f"{before}", "", "measured", {name: fast[name] for name in ("first_image_s", *FIRST_IMAGE_PARTS)})


def flux_dev(setup: Setup) -> Iterator[Line]:
    """FLUX.1-dev 1024² 28 steps: plain bf16, then the fast path against it, without and with the step cache."""
    plain: dict = {}
    yield _plain(setup, "FLUX.1-dev", "flux-dev", "bf16", plain)
    yield _against(setup, "FLUX.1-dev fast vs plain bf16", "flux-dev", _plan(fast=True), plain, 2.5)
    yield _against(setup, f"FLUX.1-dev fast + step cache {STEP_CACHE} vs plain bf16", "flux-dev",
                   _plan(fast=True, step_cache=STEP_CACHE), plain, 4.0)


def flux_schnell(setup: Setup) -> Iterator[Line]:
    """FLUX.1-schnell 1024² 4 steps on the fast path."""
    name = "FLUX.1-schnell 4 steps, fast"

    def measure() -> Check:
        fast = _image(setup, "flux-schnell", _plan(fast=True), steps=4, runs=max(setup.runs, 5))
        seconds = fast["s_per_image"]
        return Check(name, f"{seconds} s per image; {_fp8_note(setup, fast)}", "<= 0.45 s on H200",
                     setup.judge(seconds <= 0.45, "H200"), fast)

    yield Line(name, measure)


def sdxl(setup: Setup) -> Iterator[Line]:
    """SDXL 1024²: the usual fp32 pipeline, then the fast path against it."""
    plain: dict = {}
    yield _plain(setup, "SDXL", "sdxl", "fp32", plain)
    yield _against(setup, "SDXL fast vs fp32", "sdxl", _plan(fast=True), plain, 3.0)


#: Peak VRAM targets of FLUX.1-dev per memory plan, GiB reserved by PyTorch (the CUDA context comes on top).
FLUX_MEMORY_TARGETS = {"fp8_offload": 15.0, "group_offload": 10.0}
#: Other architectures whose peak VRAM per plan is reported (no target yet); Qwen-Image, the largest, last.
OTHER_MEMORY_MODELS = ("flux2-klein-4b", "z-image-turbo", "sd35-large", "sdxl", "qwen-image")
#: Host memory a memory-plan line needs beyond its weights: a share of them (pinned layers in flight, the
#: allocator's slack) and the process itself (torch, CUDA libraries), GiB.
HOST_MARGIN, HOST_BASE_GB = 1.15, 4.0


def memory_plans(setup: Setup) -> Iterator[Line]:
    """Peak VRAM under the small plans (4 steps: the peak does not depend on the step count), one line per model
    and plan."""
    for model_id in ("flux-dev", *OTHER_MEMORY_MODELS[:1 if setup.quick else None]):
        for memory in FLUX_MEMORY_TARGETS:
            name = f"{'FLUX.1-dev' if model_id == 'flux-dev' else model_id} {memory}"
            yield Line(name, functools.partial(_memory_line, setup, name, model_id, memory))


def _memory_line(setup: Setup, name: str, model_id: str, memory: str) -> Check:
    """Line ``name``: peak VRAM of ``model_id`` under plan ``memory``, judged on the reserved peak where
    FLUX.1-dev has a target; skipped where the weights, built on the CPU, would not fit the host's available
    memory."""
    target = f"<= {FLUX_MEMORY_TARGETS[memory]:g} GiB reserved" if model_id == "flux-dev" else "(reported)"
    if not setup.tiny:
        need, available = _host_need_gb(model_id), _available_host_gb()
        if need > available:
            return Check(name, "", target, f"skipped: needs about {need:.0f} GiB of host memory (its weights are "
                         f"built on the CPU), {available:.0f} GiB available")
    figures = _image(setup, model_id, _plan(memory), steps=4, runs=1, warmup=0)
    reserved = figures["peak_reserved_gb"]
    shown = _vram(figures, setup)
    if reserved is None:
        shown = f"{figures['s_per_image']} s per image, {shown}"
    if model_id != "flux-dev":
        return Check(name, shown, target, "n/a" if setup.tiny else "measured", figures)
    return Check(name, shown, target, setup.judge(reserved is not None and reserved <= FLUX_MEMORY_TARGETS[memory]),
                 figures)


@functools.cache
def _host_need_gb(model_id: str) -> float:
    """Host GiB a memory-plan line of ``model_id`` needs: its weights in 16 bits (counted on the meta device),
    with :data:`HOST_MARGIN` and :data:`HOST_BASE_GB`."""
    import torch

    from masuka.models.synthetic import real_pipeline

    modules = [part for part in real_pipeline(model_id, "meta").components.values()
               if isinstance(part, torch.nn.Module)]
    count = sum(tensor.numel() for module in modules for tensor in (*module.parameters(), *module.buffers()))
    return count * 2 / 2**30 * HOST_MARGIN + HOST_BASE_GB


def _available_host_gb() -> float:
    import psutil  # an accelerate dependency

    return psutil.virtual_memory().available / 2**30


def training(setup: Setup) -> Iterator[Line]:
    """LoRA training s/step and peak VRAM: FLUX.1 512² rank 16 (the target), then each preset's settings."""
    from masuka.training.options import PRESETS, TrainOptions, fill_defaults

    spec, build, _size, _steps = setup.model("flux-dev")
    target = TrainOptions(dataset="bench", base=spec.source, preset="40gb", resolution=512, batch_size=1, rank=16)
    name = "FLUX.1 LoRA 512² rank 16, s/step"

    def measure_target() -> Check:
        figures = train_speed(setup, spec, build, target)
        return Check(name, f"{figures['s_per_step']} s/step, {_vram(figures, setup)}", "<= 0.4 s/step on H200",
                     setup.judge(figures["s_per_step"] <= 0.4, "H200"), figures)

    yield Line(name, measure_target)
    seen = []
    for preset in PRESETS:
        options = fill_defaults(TrainOptions(dataset="bench", base=spec.source, preset=preset, rank=16),
                                spec.architecture or "flux")
        settings = (options.resolution, options.batch_size, options.gradient_checkpointing, options.base_precision)
        if settings in seen:
            continue  # same settings as a smaller preset
        seen.append(settings)
        preset_name = f"FLUX.1 LoRA preset {preset}"
        yield Line(preset_name, functools.partial(_preset_line, setup, preset_name, spec, build, options))
        if setup.quick:
            break


def _preset_line(setup: Setup, name: str, spec: ModelSpec, build: Callable[[str, Any], Any], options: Any
                 ) -> Check:
    figures = train_speed(setup, spec, build, options)
    return Check(name, f"{figures['s_per_step']} s/step, {_vram(figures, setup)}",
                 "(reported)", "n/a" if setup.tiny else "measured", figures)


def train_speed(setup: Setup, spec: ModelSpec, build: Callable[[str, Any], Any], options: Any) -> dict:
    """The real training loop on generated images: median seconds per step after warm-up, and this run's own
    peak VRAM (the peak is reset first)."""
    from dataclasses import replace

    import numpy as np
    import torch
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
    what = f"training {options.preset} at {options.resolution}²"
    hooks = _StepTimes(setup.deadline, what, options.steps)
    dtype = device_plan().dtype

    def checked_build() -> Any:
        setup.deadline.check(f"building the model for {what}")
        return build("cpu", dtype)

    plan = TrainPlan(options, spec, architecture, TrainingSet(None, "bench", "zxq", items),
                     setup.folder / f"run-{time.monotonic_ns()}", build=checked_build)
    _free()
    cuda = torch.cuda.is_available()
    if cuda:
        torch.cuda.reset_peak_memory_stats()  # this run's peak, not the highest of the process so far
    outcome = train(plan, hooks)
    counted = hooks.seconds[TRAIN_WARMUP:] or hooks.seconds
    return {"s_per_step": round(statistics.median(counted), 4),
            "peak_vram_gb": round(max(hooks.vram), 2) if hooks.vram else None,
            "peak_reserved_gb": round(torch.cuda.max_memory_reserved() / 2**30, 2) if cuda else None,
            "final_loss": outcome.final_loss, "resolution": options.resolution, "batch_size": options.batch_size,
            "rank": options.rank, "gradient_checkpointing": options.gradient_checkpointing,
            "base_precision": options.base_precision}


def _vram(figures: dict, setup: Setup) -> str:
    """Peak VRAM in GiB: what PyTorch's allocator handed out and what it reserved from the GPU; the CUDA context
    and libraries (about half a GiB) come on top."""
    if figures.get("peak_vram_gb") is None:
        return f"no VRAM figure on {setup.device}"
    outside = figures.get("outside_allocator_gb")
    return (f"peak VRAM {figures['peak_vram_gb']} GiB allocated, {figures['peak_reserved_gb']} GiB reserved"
            + (f" (+{outside} GiB outside PyTorch)" if outside is not None else ""))


class _StepTimes:
    """Training hooks that keep each step's seconds and peak VRAM and check the budget while steps remain (the
    loop calls them between steps)."""

    def __init__(self, deadline: Deadline, what: str, steps: int) -> None:
        self.deadline, self.what, self.steps = deadline, what, steps
        self.seconds: list[float] = []
        self.vram: list[float] = []

    def on_step(self, step: int, loss: float, lr: float, sec_per_step: float, vram_gb: float | None) -> None:
        self.seconds.append(sec_per_step)
        if vram_gb is not None:
            self.vram.append(vram_gb)
        if step < self.steps:
            self.deadline.check(f"step {step + 1} of {self.what}", sec_per_step)

    def stop_mode(self) -> str | None:
        return None

    def log(self, text: str) -> None:
        if len(self.seconds) < self.steps:
            self.deadline.check(f"{self.what}: {text}")


def app_overhead(setup: Setup) -> Iterator[Line]:
    """MASUKA's own share of a ``/generate_image`` request over a bare Gradio app making the same call, and of a
    REST request over the bare call (judged only from a full run: ``--quick`` takes too few rounds)."""
    name = "Per-image app overhead"
    missing = [package for package in APP_PACKAGES if not _importable(package)]
    if missing:
        yield Line(name, lambda: Check(name, "", "<= 30 ms", f"skipped: needs {', '.join(missing)} "
                                       "(pip install -r requirements.txt)"))
        return

    def measure() -> list[Check]:
        from masuka.bench.through_app import measure_through_app

        figures = measure_through_app(setup.folder, rounds=3 if setup.tiny else 10)
        lines = [(f"{name} (MASUKA over a bare Gradio app)", "masuka_share_ms"),
                 *((f"{name} ({route} over the bare call)", key) for route, key in
                   (("/sdapi/v1/txt2img", "a1111_share_ms"), ("/v1/images/generations", "openai_share_ms")))]
        return [Check(line, f"{figures[key]} ms", "<= 30 ms",
                      "n/a" if setup.quick else "pass" if figures[key] <= 30 else "fail", figures)
                for line, key in lines]

    yield Line(name, measure)


def _importable(name: str) -> bool:
    try:
        importlib.import_module(name)
    except ImportError:
        return False
    return True


#: (key for ``--only``, its lines), in order of importance
CHECKS: list[tuple[str, Callable[[Setup], Iterator[Line]]]] = [
    ("flux-dev", flux_dev),
    ("flux-schnell", flux_schnell),
    ("sdxl", sdxl),
    ("memory", memory_plans),
    ("training", training),
    ("app", app_overhead),
]


def chosen_groups(only: str | None) -> list[tuple[str, Callable[[Setup], Iterator[Line]]]]:
    """The groups ``--only`` names (comma-separated keys), in the suite's order; every group when unset."""
    if not only:
        return CHECKS
    keys = [key.strip() for key in only.split(",") if key.strip()]
    unknown = [key for key in keys if key not in {group[0] for group in CHECKS}]
    if unknown or not keys:
        raise InvalidInput(f"--only takes some of {', '.join(group[0] for group in CHECKS)} (got {only!r}).")
    return [group for group in CHECKS if group[0] in keys]
