"""Every GPU target in one command: ``python -m masuka bench suite [--quick] [--out DIR]``.

On CUDA the checks use the real models when they are downloaded, else their real architectures with random
weights (same speed and memory, no download; each line records which); on a CPU, or with ``--quick``, the same
code runs on tiny random models (the figures then say nothing of real speed: each target reads "n/a"). The lines
run one at a time within a time budget (``--budget-s``, 7.5 minutes by default), those with a target that compile
nothing first, then the compiled fast paths, then the lines with no target: a build, a compile, an image or a
training step that would overrun the budget does not start (a line stopped before it started reads skipped), an
alarm at its end stops a line still running (cut). A line that fails (out of memory, a missing kernel), or a group
whose set-up fails, is one error line; the rest still run. The result is one JSON file and one Markdown table in
``--out``, rewritten after every line (with the line running named, so a killed run says where it was): each
figure next to its target and pass / fail, with the library versions it ran on.

Needs only torch, transformers, diffusers, peft, accelerate, safetensors and what they need (no data dir, no
database, no Gradio): a fresh GPU machine can run it; their versions are checked first. The per-image app
overhead, which needs the app itself, is measured when Gradio is installed and listed as skipped otherwise.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import gc
import importlib.util
import json
import math
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from masuka.bench import available_host_gb, host_need_gb, machine
from masuka.bench.image import _baseline, _baseline_dtype, _downloaded, _free, measure_prepared
from masuka.compat import REQUIREMENTS_FILE, installed, problems, range_problems
from masuka.errors import InvalidInput
from masuka.gpu import DevicePlan, device_plan
from masuka.image.quantized import quantized_components
from masuka.memory_plans import plan_named
from masuka.models import architectures
from masuka.models.catalog import ModelSpec, resolve_image_model

#: A standalone benchmark: the CLI runs it without opening a data dir and stores no row.
STANDALONE = True
#: Seconds the checks may take (imports and start-up come on top): well within a 10-minute slot.
BUDGET_S = 450
#: The longest budget ``--budget-s`` takes: a day (the alarm's timer refuses far larger numbers).
MAX_BUDGET_S = 86400
#: Seconds a fast pipeline's compile and first image are expected to take until one is measured (FLUX.1-dev on an
#: H200: 345); after that, the last one measured.
COMPILE_GUESS_S = 360
#: Step-cache threshold of the cached FLUX.1-dev figure (diffusers' first-block cache examples use 0.08-0.12).
STEP_CACHE = 0.12
#: What the app needs beyond the suite's own packages, to measure its per-image overhead.
APP_PACKAGES = ("gradio", "gradio_client", "sqlite_utils", "httpx")
#: Per-preset training steps; the first ones (load, compile, allocator warm-up) are not counted.
TRAIN_STEPS, TRAIN_WARMUP = 12, 3
#: The packages the suite runs on, checked at start against requirements.txt's ranges and the ranges they
#: declare on each other (transformers 5 needs huggingface_hub 1 and its own tokenizers).
SUITE_PACKAGES = ("torch", "diffusers", "transformers", "huggingface-hub", "tokenizers", "peft", "accelerate",
                  "safetensors")
#: Versions recorded in the report besides torch's (absent ones as None).
RECORDED_PACKAGES = ("diffusers", "transformers", "peft", "accelerate", "torchao", "bitsandbytes")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quick", action="store_true", help="tiny random models even on a GPU (minutes on a CPU)")
    parser.add_argument("--out", default="bench-suite", help="folder for bench-suite.json and bench-suite.md")
    parser.add_argument("--budget-s", type=budget_seconds, default=BUDGET_S,
                        help=f"the checks stop after this many seconds (default {BUDGET_S})")
    parser.add_argument("--only", default=None, metavar="GROUPS",
                        help=f"run only these groups, comma-separated: {', '.join(group[0] for group in CHECKS)} "
                             "(default: all; lines with a target run first, compiled ones next, the rest last)")
    # the report of a run whose GPU was lost: this process runs the lines after those it records (see go_on)
    parser.add_argument("--go-on-from", default=None, help=argparse.SUPPRESS)
    # with it, when the first process's budget ends (wall clock, seconds since the epoch)
    parser.add_argument("--go-on-until", type=float, default=None, help=argparse.SUPPRESS)


def budget_seconds(text: str) -> float:
    """An argparse ``type``: a number of seconds above 0, at most :data:`MAX_BUDGET_S`."""
    try:
        seconds = float(text)
    except ValueError:
        seconds = math.nan
    if not 0 < seconds <= MAX_BUDGET_S:  # nan fails both
        raise argparse.ArgumentTypeError(f"takes a number of seconds above 0 and at most {MAX_BUDGET_S} (a day) "
                                         f"(got {text!r})")
    return seconds


@dataclass
class Check:
    """One line of the table: a figure, its target, and whether it was met."""

    name: str
    figure: str
    target: str
    # pass, fail, n/a (tiny models or another GPU), n/a: … (cannot be judged on these weights), measured (no
    # target), skipped: … (did not start), cut: … (stopped by the budget while running), error: …, running
    result: str
    figures: dict[str, Any] = field(default_factory=dict)
    weights: str = ""  # real, random or tiny random: the weights of the line's model
    ran_at: str = ""  # the dtype(s) and image side it ran at (:func:`ran_at`): a tiny CPU run is not its label's


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

    def model(self, model_id: str, memory: str = "full") -> tuple[ModelSpec, Callable[[str, Any], Any], int, int]:
        """Spec, ``build(device, dtype)``, image side and steps of catalog model ``model_id`` (or its tiny twin);
        under a 4-bit plan (``memory``) the build quantizes the transformer and the big text encoder as the app
        does under NF4."""
        from masuka.models.synthetic import REAL_MODELS, real_pipeline, save_tiny_pipeline

        catalog = resolve_image_model(model_id)
        weights = self.weights(model_id)
        if weights == "random":
            def random(device: str, dtype: Any) -> Any:
                pipe = real_pipeline(model_id, device, dtype)
                if plan_named(memory).quantized:
                    profile = architectures.get(catalog.architecture)
                    encoder = profile.big_text_encoder if profile else None
                    for module in (pipe.transformer, getattr(pipe, encoder) if encoder else None):
                        if module is not None:
                            _quantize_nf4(module, dtype)
                return pipe

            return catalog, random, 1024, catalog.steps
        if weights == "real":
            return catalog, _loader(catalog.source, memory), 1024, catalog.steps
        architecture = REAL_MODELS[model_id][0]
        path = self.folder / f"tiny-{architecture}"
        if not path.exists():
            save_tiny_pipeline(architecture, path)
        return resolve_image_model(str(path)), _loader(str(path), memory), 64, 1 if self.quick else 2

    def weights(self, model_id: str) -> str:
        """What the lines of ``model_id`` run on: ``tiny random``, ``real`` (downloaded) or ``random``."""
        if self.tiny:
            return "tiny random"
        return "real" if _downloaded(resolve_image_model(model_id)) else "random"

    def judge(self, passed: bool, on: str = "") -> str:
        """pass/fail for a real-model figure (on the GPU named by ``on``, when the target names one), else n/a."""
        if self.tiny or (on and on not in self.gpu_name):
            return "n/a"
        return "pass" if passed else "fail"

    def args(self, runs: int | None = None, warmup: int | None = None) -> argparse.Namespace:
        return argparse.Namespace(runs=runs or self.runs, warmup=self.warmup if warmup is None else warmup)


def _loader(source: str, memory: str = "full") -> Callable[[str, Any], Any]:
    """``build(device, dtype)`` of the pipeline in ``source``; under a 4-bit plan its transformer is quantized while
    loading, as the app loads it (and placed by the plan)."""
    def build(device: str, dtype: Any) -> Any:
        from diffusers import DiffusionPipeline

        if plan_named(memory).quantized:
            architecture = resolve_image_model(source).architecture
            return DiffusionPipeline.from_pretrained(source, dtype=dtype, use_safetensors=True,
                                                     **quantized_components(source, memory, dtype,
                                                                            architecture=architecture))
        return DiffusionPipeline.from_pretrained(source, dtype=dtype, use_safetensors=True).to(device)

    return build


def _quantize_nf4(module: Any, dtype: Any) -> None:
    """Swap every linear layer of ``module`` (built in memory, random weights) for a bitsandbytes 4-bit NF4 one with
    double quantization, as ``nf4_offload`` loads a transformer from files; the weights are quantized when the
    layer first moves to the GPU."""
    import bitsandbytes as bnb
    import torch

    for parent in list(module.modules()):
        for name, child in list(parent.named_children()):
            if type(child) is not torch.nn.Linear:
                continue
            layer = bnb.nn.Linear4bit(child.in_features, child.out_features, bias=child.bias is not None,
                                      compute_dtype=dtype, compress_statistics=True, quant_type="nf4", device="meta")
            layer.weight = bnb.nn.Params4bit(child.weight.data, requires_grad=False, compress_statistics=True,
                                             quant_type="nf4", module=layer)
            if child.bias is not None:
                layer.bias = child.bias
            setattr(parent, name, layer)


def run(studio: Any, args: argparse.Namespace) -> dict:
    """Run the checks within the budget (lines with a target first, compiled ones next, the rest last); write
    ``bench-suite.json`` and ``bench-suite.md``."""
    groups = chosen_groups(args.only)  # a wrong name fails before anything loads
    if not args.go_on_from:  # a process that goes on runs on the packages the first one checked a moment ago
        check_versions()
    import diffusers
    import transformers

    diffusers.utils.logging.disable_progress_bar()
    transformers.utils.logging.disable_progress_bar()
    gc.freeze()  # the modules loaded so far: the collection after each line (to free its models) skips them
    out = Path(args.out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as error:  # a file of that name, or above it, is in the way; no permission
        raise InvalidInput(f"--out {args.out}: cannot make this folder ({error.strerror}).") from None
    earlier = json.loads(Path(args.go_on_from).read_text(encoding="utf-8")) if args.go_on_from else None
    end_at = args.go_on_until or time.time() + args.budget_s
    started = end_at - args.budget_s  # wall clock: a process that goes on counts the time of those before it
    checks = [Check(**check) for check in earlier["checks"]] if earlier else []
    deadline = Deadline(args.budget_s, end_at)
    with tempfile.TemporaryDirectory() as tmp, deadline.armed():
        setup = Setup.detect(args.quick, Path(tmp), deadline)
        report = earlier or {"machine": machine(), "device": setup.device, "models": "", "quick": args.quick,
                             "budget_s": args.budget_s, "versions": versions(setup),
                             "created_at": datetime.now(UTC).isoformat(timespec="seconds"), "duration_s": 0.0,
                             "checks": [], "lines_done": 0}
        lines: list[Line] = []
        for key, group in groups:
            try:
                for line in group(setup):
                    lines.append(line)
            except Exception as error:  # a group that cannot be set up: one error line, the others still run
                if not earlier:
                    checks.append(Check(f"{key} (group)", "", "", _error_result(error)))
        lines.sort(key=lambda line: LINE_KINDS.index(line.kind))
        done = {check.name: check for check in checks}
        for line in lines[:report["lines_done"]]:  # what they measured in the process before (plain figures)
            if line.restore:
                line.restore(done)
        for index in range(report["lines_done"], len(lines)):
            line = lines[index]
            checks.append(Check(line.name, "", line.target, "running", weights=line.weights))
            _write(out, report, checks, started)  # a run killed now still names the line it was in
            checks[-1:] = _run_line(line, deadline)
            report["lines_done"] = index + 1
            if index + 1 < len(lines) and gpu_lost():
                checks[-1].result += " (the GPU was unusable after it: the lines after it ran in a new process)"
                _write(out, report, checks, started)
                return go_on(args, out, lines, end_at)
            _write(out, report, checks, started)
    return _write(out, report, checks, started)


def gpu_lost() -> bool:
    """Whether this process's CUDA context is broken: after an illegal memory access every later CUDA call fails."""
    import torch

    if not torch.cuda.is_initialized():
        return False
    try:
        torch.cuda.synchronize()
    except RuntimeError:  # torch.AcceleratorError
        return True
    return False


def go_on(args: argparse.Namespace, out: Path, lines: list[Line], end_at: float) -> dict:
    """Run the ``lines`` the report in ``out`` has not done in a new process, until the budget's end ``end_at``
    (wall clock; this process's GPU is lost); its report is the run's. A line that process dies in reads so and
    the lines after it go on in another new one (one per line that ended a process); where a new process runs no
    line, those left read skipped."""
    written = out / "bench-suite.json"
    started = end_at - args.budget_s
    reason = f"the {args.budget_s:g} s budget was spent"
    report = json.loads(written.read_text(encoding="utf-8"))
    while report["lines_done"] < len(lines) and end_at - time.time() > 1:
        command = [sys.executable, "-m", "masuka", "bench", "suite", "--go-on-from", str(written.resolve()),
                   "--go-on-until", repr(end_at), "--out", str(out.resolve()), "--budget-s", f"{args.budget_s!r}",
                   *(["--only", args.only] if args.only else []), *(["--quick"] if args.quick else [])]
        # its table goes to this process's output once, at the end; its warnings and errors as they come
        done = subprocess.run(command, cwd=REQUIREMENTS_FILE.parent, stdout=subprocess.DEVNULL, check=False)
        went_on = json.loads(written.read_text(encoding="utf-8"))
        checks = [Check(**check) for check in went_on["checks"]]
        if len(checks) > len(report["checks"]) and checks[-1].result == "running":  # it died in this line
            checks[-1].result = f"{ENDED} ({_exit(done.returncode)})"
            went_on["lines_done"] += 1
            _write(out, went_on, checks, started)
        elif went_on["lines_done"] == report["lines_done"]:
            reason = f"{NO_NEW_PROCESS} ({_exit(done.returncode)}; its errors were printed)"
            break
        report = went_on
    checks = [Check(**check) for check in report["checks"]]
    checks += [Check(line.name, "", line.target, f"skipped: the GPU was lost and {reason}", weights=line.weights)
               for line in lines[report["lines_done"]:]]
    report["lines_done"] = len(lines)
    return _write(out, report, checks, started)


#: The result of a line whose process died while running it, and why lines after a lost GPU were not run where no
#: new process could: a report with either misses lines the budget left time for (the command exits with 1).
ENDED = "error: the process running it ended"
NO_NEW_PROCESS = "a new process could not go on"


def _exit(code: int) -> str:
    """A process's exit status in words: its code, or the signal that killed it."""
    return f"exit {code}" if code >= 0 else f"exit {code}: {signal.Signals(-code).name}"


def exit_status(report: dict) -> int:
    """The command's exit status: 1 where a line went unmeasured because a process died or none could go on."""
    return int(any(check["result"].startswith(ENDED) or NO_NEW_PROCESS in check["result"]
                   for check in report["checks"]))


def check_versions() -> None:
    """Refuse to start, with every reason in one message, where the suite's packages are missing or their versions
    do not fit requirements.txt or each other (an older transformers cannot build the offline tokenizers), or where
    the libraries would refuse each other at run time."""
    found = range_problems(SUITE_PACKAGES) + problems()
    if found:
        raise InvalidInput("bench suite cannot run with these packages: " + "; ".join(found) + ". Install the "
                           "versions of requirements.lock (README: Performance, bench suite, on a fresh GPU box).")


def versions(setup: Setup) -> dict[str, str | None]:
    """What the figures were taken with: torch, CUDA, the driver, the device, the libraries, the git commit."""
    import torch

    cuda = setup.device == "cuda"
    return {"torch": torch.__version__, "cuda": torch.version.cuda if cuda else None,
            "driver": _output("nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader") if cuda else None,
            "device": setup.gpu_name or setup.device, **{name: installed(name) for name in RECORDED_PACKAGES},
            "commit": _output("git", "-C", str(REQUIREMENTS_FILE.parent), "rev-parse", "--short=12", "HEAD")}


def _output(*command: str) -> str | None:
    """The first line ``command`` prints, or None where it cannot run."""
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=20, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip().splitlines()[0] if done.stdout.strip() else None


def _run_line(line: Line, deadline: Deadline) -> list[Check]:
    """What one line measured or, when it failed or the budget stopped it, one check saying so with the line's
    target; each with the line's weights."""
    if deadline.left() <= 0:
        checks = [Check(line.name, "", line.target, f"skipped: the {deadline.budget_s:g} s budget was spent")]
    else:
        try:
            with deadline.running(line.name):
                measured = line.measure()
            checks = measured if isinstance(measured, list) else [measured]
        except _OverBudget as stop:
            checks = [Check(line.name, "", line.target, f"{'cut' if stop.started else 'skipped'}: {stop}")]
        except Exception as error:  # out of memory, a missing kernel: this line only
            checks = [Check(line.name, "", line.target, _error_result(error))]
        finally:
            with contextlib.suppress(RuntimeError):  # a lost GPU fails here too: the line says its own error
                _free()
    for check in checks:
        check.weights = line.weights
        check.ran_at = ran_at(check.figures)
    return checks


def ran_at(figures: dict[str, Any]) -> str:
    """The dtype and image side a check's figures were taken at, both pipelines' dtypes for a comparison
    ("float32 vs float32, 64²"): on a CPU or tiny models, not the bf16 or 1024² its name gives."""
    runs = [figures[part] for part in ("baseline", "fast") if isinstance(figures.get(part), dict)] or [figures]
    dtypes = [run.get("dtype") for run in runs]
    side = runs[-1].get("size") or runs[-1].get("resolution")
    return f"{' vs '.join(dtypes)}, {side}²" if all(dtypes) and side else ""


def _error_result(error: Exception) -> str:
    return f"error: {type(error).__name__}: {error}"[:300]


def _write(out: Path, report: dict, checks: list[Check], started: float) -> dict:
    """Write ``bench-suite.json`` and ``bench-suite.md`` with the checks so far, each whole or not at all (a
    kill mid-write leaves the previous version), the run having started at ``started`` (wall clock); return the
    report."""
    report.update(duration_s=round(time.time() - started, 1), checks=[asdict(check) for check in checks],
                  models=", ".join(sorted({check.weights for check in checks} - {""})))
    for name, text in (("bench-suite.json", json.dumps(report, indent=2, default=str) + "\n"),
                       ("bench-suite.md", markdown(report))):
        part = out / f".{name}.part"
        part.write_text(text, encoding="utf-8")
        os.replace(part, out / name)
    return report


class _OverBudget(BaseException):
    """The budget ran out before or during a line (a BaseException, so that no ``except Exception`` in the
    libraries a line runs swallows it); ``started``: whether the line had begun its work."""

    def __init__(self, message: str, started: bool = True) -> None:
        super().__init__(message)
        self.started = started


def _now() -> float:
    return time.monotonic()


class Deadline:
    """The suite's time budget. Each costly step (a build, a compile, an image, a training step) checks it first
    and raises :class:`_OverBudget` when it is spent or when the step's expected seconds would overrun it; an
    alarm at the end of the budget stops a line still running (a compile that took longer than expected)."""

    def __init__(self, budget_s: float, end_at: float | None = None) -> None:
        """``budget_s`` seconds from now, or (a process that goes on) until ``end_at``, wall clock."""
        self.budget_s = budget_s
        self.end = _now() + (budget_s if end_at is None else end_at - time.time())
        self.compile_s: float = COMPILE_GUESS_S  # expected seconds of a real model's compile and first image
        self.step = ""
        self.started = False  # whether a step of the running line has begun
        self._in_line = False

    def left(self) -> float:
        return self.end - _now()

    def check(self, step: str, need_s: float = 0.0, now: float | None = None) -> None:
        """Before ``step`` (at ``now``): raise :class:`_OverBudget` unless ``need_s`` seconds (and some) are left."""
        left = self.end - (_now() if now is None else now)
        if left <= 0:
            raise _OverBudget(f"the {self.budget_s:g} s budget ran out before {step}", self.started)
        if left < need_s:
            raise _OverBudget(f"{step} needs about {need_s:.0f} s, {left:.0f} s of the {self.budget_s:g} s budget "
                              "were left", self.started)
        self.step, self.started = step, True

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
        self.step, self.started, self._in_line = line, False, True
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


#: The order lines run in: those with a target that compile nothing, the compiled fast paths (minutes each),
#: then those with no target (or none these weights can meet).
LINE_KINDS = ("target", "compiles", "reported")
#: The target column of a line that has no target: its figures are reported.
REPORTED = "(reported)"


@dataclass
class Line:
    """One line of the report, measured when ``measure`` is called: its check (or checks), on ``weights``;
    ``target`` is also shown where the line did not measure (skipped, cut, error)."""

    name: str
    measure: Callable[[], Check | list[Check]]
    weights: str = ""
    kind: str = "target"
    target: str = ""
    #: in a process that goes on after a lost GPU, given the checks (by name) of the process before, where this
    #: line ran: takes back what later lines need (the plain figures the fast lines compare with)
    restore: Callable[[dict[str, Check]], None] | None = None


def markdown(report: dict) -> str:
    """The report as a Markdown table, with the machine, the kind of models, the versions and the budget above it."""
    found = report["versions"]
    libraries = ", ".join(f"{name} {found[name] or '-'}" for name in RECORDED_PACKAGES)
    lines = [f"Machine: {report['machine']}; models: {report['models']}; {report['created_at']}; "
             f"{report['duration_s']} s",
             f"Device: {found['device']}; torch {found['torch']} (CUDA {found['cuda'] or '-'}, driver "
             f"{found['driver'] or '-'}), {libraries}; commit {found['commit'] or '-'}; "
             f"budget {report['budget_s']:g} s",
             "", "| check | figure | target | result | weights | ran at |", "| --- | --- | --- | --- | --- | --- |"]
    for check in report["checks"]:
        cells = [check["name"], check["figure"], check["target"], check["result"], check["weights"],
                 check.get("ran_at", "")]
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
    spec, build, size, default_steps = setup.model(model_id, "full" if plan is None else plan.memory)
    steps = default_steps if steps is None or setup.tiny else steps
    args = setup.args(runs, warmup)
    deadline = setup.deadline
    what = f"{model_id} {'plain' if plan is None else ('fast' if plan.fast else plan.memory)}"
    compiles = plan is not None and _compiles(plan)
    first_s = deadline.compile_s if compiles and not setup.tiny else 0.0

    def checked_build(device: str, dtype: Any) -> Any:  # a compile that cannot fit does not build either
        deadline.check(f"the compile and first image of {what}" if first_s else f"building {what}", first_s)
        return build(device, dtype)

    pace = deadline.pace(what, first_s)
    dtype = _baseline_dtype(spec, device_plan()) if plan is None else plan.dtype
    if plan is None:
        result = _baseline(lambda: checked_build(setup.device, dtype), spec, size, steps, args, pace).get("baseline")
        if result is None:
            raise MemoryError("the plain pipeline does not fit this GPU")
    else:
        result = measure_prepared(checked_build, spec, plan, size, steps, args, pace)["masuka"]
        if compiles:
            deadline.compile_s = result["first_s"]  # measured: the next compile is expected to take as long
    return {"s_per_image": round(result["median_s"], 4), "first_image_s": round(result["first_s"], 2),
            **{key: round(result[key], 2) if key in result else None for key in VRAM_KEYS},
            "size": size, "steps": steps, "dtype": str(dtype).removeprefix("torch."),
            **{name: result[name] for name in FIRST_IMAGE_PARTS if name in result}}


#: What the fast path's first image is made of (:func:`masuka.bench.image.compile_work`, fusion and fp8).
FIRST_IMAGE_PARTS = ("compile_s", "graphs", "compilations", "fuse_and_fp8_s", "fused", "fp8")


def _plan(memory: str = "full", fast: bool = False, step_cache: float = 0.0) -> DevicePlan:
    return device_plan(memory=memory, fast=fast, step_cache=step_cache)


def _compiles(plan: DevicePlan) -> bool:
    """Whether ``plan`` compiles the pipeline: the fast path without the step cache."""
    return plan.fast and not plan.step_cache


def _plain(setup: Setup, label: str, model_id: str, kind: str, plain: dict) -> Line:
    """The plain pipeline's line (run with the targets: the fast lines compare with it); its figures go into
    ``plain`` for the lines compared with it."""
    name = f"{label} plain {kind}"

    def measure() -> Check:
        plain.update(_image(setup, model_id, None))
        return Check(name, f"{plain['s_per_image']} s per image (first {plain['first_image_s']} s), "
                     f"{_vram(plain, setup)}", "", "n/a" if setup.tiny else "measured", dict(plain))

    def restore(earlier: dict[str, Check]) -> None:
        if name in earlier:  # its figures, where it measured (none where it failed)
            plain.update(earlier[name].figures)

    return Line(name, measure, setup.weights(model_id), restore=restore)


#: The result of the step-cache line on random weights: the first-block cache skips a step only when the first
#: block's output barely changes, which trained weights do and random ones never.
NEEDS_REAL_WEIGHTS = "n/a: needs the real weights (on random ones the cache never skips a step)"


def _against(setup: Setup, name: str, model_id: str, plan: DevicePlan, plain: dict, target: float) -> Line:
    """``model_id`` prepared as ``plan`` says against the plain figure, if that was measured; a compiled
    pipeline adds where its first image went. The step cache's target is not judged on random weights."""
    compiled = _compiles(plan)
    weights = setup.weights(model_id)
    unjudged = NEEDS_REAL_WEIGHTS if plan.step_cache and weights == "random" else ""

    def measure() -> list[Check]:
        fast = _image(setup, model_id, plan)
        speedup = _speedup(setup, name, plain, fast, target, _fp8_note(setup, fast) if compiled else "", unjudged)
        return [speedup, _first_image(name.split(" vs ")[0], fast)] if compiled else [speedup]

    def restore(earlier: dict[str, Check]) -> None:
        fast = earlier[name].figures.get("fast") if name in earlier else None
        if compiled and fast:  # the next compile is expected to take as long as this one
            setup.deadline.compile_s = fast["first_image_s"]

    return Line(name, measure, weights, "compiles" if compiled else "reported" if unjudged else "target",
                _wanted(target), restore)


def _speedup(setup: Setup, name: str, base: dict, fast: dict, target: float, note: str = "",
             unjudged: str = "") -> Check:
    wanted = _wanted(target)
    extra = f"; {note}" if note else ""
    if not base:
        return Check(name, f"{fast['s_per_image']} s per image, no plain figure to compare with{extra}", wanted,
                     "measured", {"fast": fast})
    ratio = base["s_per_image"] / fast["s_per_image"]
    return Check(name, f"{ratio:.2f}x ({base['s_per_image']} s -> {fast['s_per_image']} s per image{extra})",
                 wanted, unjudged or setup.judge(ratio >= target),
                 {"speedup": round(ratio, 3), "baseline": base, "fast": fast})


def _wanted(speedup: float) -> str:
    """The target of a speed-up line."""
    return f">= {speedup}x"


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
                 f"{before}", "", "measured",
                 {name: fast[name] for name in ("first_image_s", "dtype", "size", *FIRST_IMAGE_PARTS)})


def flux_dev(setup: Setup) -> Iterator[Line]:
    """FLUX.1-dev 1024² 28 steps: plain bf16, then the fast path against it, without and with the step cache."""
    plain: dict = {}
    yield _plain(setup, "FLUX.1-dev", "flux-dev", "bf16", plain)
    yield _against(setup, "FLUX.1-dev fast vs plain bf16", "flux-dev", _plan(fast=True), plain, 2.5)
    yield _against(setup, f"FLUX.1-dev fast + step cache {STEP_CACHE} vs plain bf16", "flux-dev",
                   _plan(fast=True, step_cache=STEP_CACHE), plain, 4.0)


def flux_schnell(setup: Setup) -> Iterator[Line]:
    """FLUX.1-schnell 1024² 4 steps on the fast path."""
    name, target = "FLUX.1-schnell 4 steps, fast", "<= 0.45 s on H200"

    def measure() -> Check:
        fast = _image(setup, "flux-schnell", _plan(fast=True), steps=4, runs=max(setup.runs, 5))
        seconds = fast["s_per_image"]
        return Check(name, f"{seconds} s per image; {_fp8_note(setup, fast)}", target,
                     setup.judge(seconds <= 0.45, "H200"), fast)

    yield Line(name, measure, setup.weights("flux-schnell"), "compiles", target)


def sdxl(setup: Setup) -> Iterator[Line]:
    """SDXL 1024²: the usual fp32 pipeline, then the fast path against it."""
    plain: dict = {}
    yield _plain(setup, "SDXL", "sdxl", "fp32", plain)
    yield _against(setup, "SDXL fast vs fp32", "sdxl", _plan(fast=True), plain, 3.0)


#: Peak GPU memory targets of FLUX.1-dev per memory plan, GB (10^9 bytes) of all the process holds on the GPU:
#: PyTorch's reserved peak plus what it uses outside the allocator (CUDA context, libraries).
FLUX_MEMORY_TARGETS = {"fp8_offload": 15.0, "group_offload": 10.0, "nf4_offload": 6.0}
#: Other architectures whose peak VRAM under these plans is reported (no target yet): each profile's first model
#: with published sizes (``real_models``), smallest first (by ``memory_gb``: the largest may not fit the host)
OTHER_MEMORY_MODELS = tuple(next(iter(p.real_models)) for p in sorted(
    (p for p in architectures.PROFILES.values() if p.real_models and p.id != "flux"),
    key=lambda p: p.memory_gb.get("full", math.inf)))
OTHER_MEMORY_PLANS = ("fp8_offload", "group_offload")


def memory_plans(setup: Setup) -> Iterator[Line]:
    """Peak VRAM under the small plans (4 steps: the peak does not depend on the step count), one line per model
    and plan: FLUX.1-dev's (with targets) first."""
    for memory in FLUX_MEMORY_TARGETS:
        name = f"FLUX.1-dev {memory}"
        yield Line(name, functools.partial(_memory_line, setup, name, "flux-dev", memory), setup.weights("flux-dev"),
                   target=_memory_target("flux-dev", memory))
    for model_id in OTHER_MEMORY_MODELS[:1 if setup.quick else None]:
        for memory in OTHER_MEMORY_PLANS:
            name = f"{model_id} {memory}"
            yield Line(name, functools.partial(_memory_line, setup, name, model_id, memory), setup.weights(model_id),
                       "reported", _memory_target(model_id, memory))


def _memory_target(model_id: str, memory: str) -> str:
    """The target of ``model_id``'s peak GPU memory under plan ``memory``: FLUX.1-dev's, others are reported."""
    return (f"<= {FLUX_MEMORY_TARGETS[memory]:g} GB on the GPU (reserved + outside PyTorch)"
            if model_id == "flux-dev" else REPORTED)


def _memory_line(setup: Setup, name: str, model_id: str, memory: str) -> Check:
    """Line ``name``: peak VRAM of ``model_id`` under plan ``memory``, judged where FLUX.1-dev has a target on all
    the process held on the GPU (GB); skipped where a 4-bit plan cannot run or the weights, built on the CPU,
    would not fit the host's available memory."""
    target = _memory_target(model_id, memory)
    plan = plan_named(memory)
    if plan.package and not _importable(plan.package):
        return Check(name, "", target, f"skipped: needs {plan.package} ({plan.install})")
    if plan.quantized and setup.device != "cuda":
        return Check(name, "", target, f"skipped: {plan.package}'s 4-bit layers need CUDA")
    if not setup.tiny:
        need, available = host_need_gb(model_id), available_host_gb()
        if need > available:
            return Check(name, "", target, f"skipped: needs about {need:.0f} GiB of host memory (its weights are "
                         f"built on the CPU), {available:.0f} GiB available")
    figures = _image(setup, model_id, _plan(memory), steps=4, runs=1, warmup=0)
    reserved, outside = figures["peak_reserved_gb"], figures["outside_allocator_gb"]
    shown = _vram(figures, setup)
    if reserved is None or outside is None:
        shown = f"{figures['s_per_image']} s per image, {shown}"
        on_gpu = None
    else:
        on_gpu = figures["peak_on_gpu_gb"] = round((reserved + outside) * 2**30 / 1e9, 2)
        shown = f"{on_gpu} GB on the GPU: {shown}"
    if model_id != "flux-dev":
        return Check(name, shown, target, "n/a" if setup.tiny else "measured", figures)
    return Check(name, shown, target, setup.judge(on_gpu is not None and on_gpu <= FLUX_MEMORY_TARGETS[memory]),
                 figures)


def training(setup: Setup) -> Iterator[Line]:
    """LoRA training s/step and peak VRAM: FLUX.1 512² rank 16 (the target), then each preset's settings."""
    from masuka.training.options import PRESETS, TrainOptions, fill_defaults

    spec, build, _size, _steps = setup.model("flux-dev")
    target = TrainOptions(dataset="bench", base=spec.source, preset="40gb", resolution=512, batch_size=1, rank=16)
    name, wanted = "FLUX.1 LoRA 512² rank 16, s/step", "<= 0.4 s/step on H200"

    def measure_target() -> Check:
        figures = train_speed(setup, spec, build, target)
        return Check(name, f"{figures['s_per_step']} s/step, {_vram(figures, setup)}", wanted,
                     setup.judge(figures["s_per_step"] <= 0.4, "H200"), figures)

    weights = setup.weights("flux-dev")
    yield Line(name, measure_target, weights, target=wanted)
    seen = []
    for preset in PRESETS:
        options = fill_defaults(TrainOptions(dataset="bench", base=spec.source, preset=preset, rank=16),
                                spec.architecture or "flux")
        settings = (options.resolution, options.batch_size, options.gradient_checkpointing, options.base_precision)
        if settings in seen:
            continue  # same settings as a smaller preset
        seen.append(settings)
        preset_name = f"FLUX.1 LoRA preset {preset}"
        yield Line(preset_name, functools.partial(_preset_line, setup, preset_name, spec, build, options), weights,
                   "reported", REPORTED)
        if setup.quick:
            break


def _preset_line(setup: Setup, name: str, spec: ModelSpec, build: Callable[[str, Any], Any], options: Any
                 ) -> Check:
    figures = train_speed(setup, spec, build, options)
    return Check(name, f"{figures['s_per_step']} s/step, {_vram(figures, setup)}",
                 REPORTED, "n/a" if setup.tiny else "measured", figures)


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
            "final_loss": outcome.final_loss, "resolution": options.resolution,
            "dtype": str(dtype).removeprefix("torch."), "batch_size": options.batch_size, "rank": options.rank,
            "gradient_checkpointing": options.gradient_checkpointing, "base_precision": options.base_precision}


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
    REST request over the bare call: ten rounds, judged; ``--quick`` takes three, too few to judge."""
    name, target = "Per-image app overhead", "<= 30 ms"
    missing = [package for package in APP_PACKAGES if not _importable(package)]
    if missing:
        yield Line(name, lambda: Check(name, "", target, f"skipped: needs {', '.join(missing)} "
                                       "(pip install -r requirements.txt)"), "tiny random", target=target)
        return

    def measure() -> list[Check]:
        from masuka.bench.through_app import measure_through_app

        figures = measure_through_app(setup.folder, rounds=3 if setup.quick else 10)
        lines = [(f"{name} (MASUKA over a bare Gradio app)", "masuka_share_ms"),
                 *((f"{name} ({route} over the bare call)", key) for route, key in
                   (("/sdapi/v1/txt2img", "a1111_share_ms"), ("/v1/images/generations", "openai_share_ms")))]
        return [Check(line, f"{figures[key]} ms", target,
                      "n/a" if setup.quick else "pass" if figures[key] <= 30 else "fail", figures)
                for line, key in lines]

    yield Line(name, measure, "tiny random", target=target)


def _importable(name: str) -> bool:
    """Whether ``name`` can be imported: found, and not a bare folder (a namespace package) of that name."""
    try:
        spec = importlib.util.find_spec(name)
    except Exception:  # a parent that fails to import, a finder that refuses the name
        return False
    return spec is not None and spec.origin is not None


#: (key for ``--only``, its lines): the cheap groups first; within each kind of line (:data:`LINE_KINDS`) the
#: lines run in this order
CHECKS: list[tuple[str, Callable[[Setup], Iterator[Line]]]] = [
    ("memory", memory_plans),
    ("training", training),
    ("app", app_overhead),
    ("flux-dev", flux_dev),
    ("sdxl", sdxl),
    ("flux-schnell", flux_schnell),
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
