"""``python -m masuka bench suite --quick`` where only the suite's own packages are installed: Gradio, gradio_client,
sqlite-utils and httpx are hidden from the process, as on a bare GPU machine. Every check runs on tiny models and
lands in one JSON file and one Markdown table."""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys

import pytest

from tests.conftest import ROOT

HIDDEN = ("gradio", "gradio_client", "sqlite_utils", "httpx")
#: Runs ``python -m masuka`` with HIDDEN unimportable (a meta-path finder that refuses them).
LAUNCHER = f"""
import importlib.abc, runpy, sys

class Hide(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in {HIDDEN!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}} (hidden by the test)", name=name)
        return None

sys.meta_path.insert(0, Hide())
sys.argv = ["masuka", *sys.argv[1:]]
runpy.run_module("masuka", run_name="__main__", alter_sys=True)
"""


def run_hidden(*args: str, cwd) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "MASUKA_COMPILE_BACKEND": "eager", "MASUKA_DEVICE": "cpu",
           "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-c", LAUNCHER, *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=600)


def test_launcher_really_hides_the_app_packages(tmp_path):
    done = run_hidden("serve", "--port", "1", "--data-dir", str(tmp_path), cwd=tmp_path)
    assert done.returncode != 0 and "hidden by the test" in done.stderr


@pytest.mark.slow
def test_quick_suite_runs_every_check_without_gradio_or_a_database(tmp_path):
    out = tmp_path / "out"
    done = run_hidden("bench", "suite", "--quick", "--out", str(out), "--json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert json.loads((out / "bench-suite.json").read_text()) == report
    assert report["models"] == "tiny random" and report["device"] == "cpu"
    names = [check["name"] for check in report["checks"]]
    for expected in ("FLUX.1-dev plain bf16", "FLUX.1-dev fast vs plain bf16", "FLUX.1-dev fast: first image",
                     "FLUX.1-dev fast + step cache", "FLUX.1-schnell 4 steps", "SDXL plain fp32", "SDXL fast vs fp32",
                     "SDXL fast: first image", "FLUX.1-dev fp8_offload",
                     "FLUX.1-dev group_offload", "sdxl fp8_offload", "FLUX.1 LoRA 512² rank 16",
                     "FLUX.1 LoRA preset 12gb", "Per-image app overhead"):
        assert any(name.startswith(expected) for name in names), (expected, names)
    by_name = {check["name"]: check for check in report["checks"]}
    assert not [c for c in report["checks"] if c["result"].startswith("error")], report["checks"]
    speedup = by_name["FLUX.1-dev fast vs plain bf16"]
    assert speedup["figures"]["speedup"] > 0 and speedup["target"] == ">= 2.5x" and speedup["result"] == "n/a"
    assert speedup["figure"].endswith("; fp8: no (none on cpu))")
    first = by_name["FLUX.1-dev fast: first image"]["figures"]  # where the compiled pipeline's first image went
    assert first["graphs"] >= 1 and first["compilations"] >= first["graphs"] and 0 < first["compile_s"]
    assert first["compile_s"] <= first["first_image_s"] and first["fused"] and not first["fp8"]  # no fp8 on a CPU
    training = by_name["FLUX.1 LoRA 512² rank 16, s/step"]["figures"]
    assert training["s_per_step"] > 0 and training["rank"] == 16 and training["final_loss"] is not None
    overhead = by_name["Per-image app overhead"]
    assert overhead["result"].startswith("skipped: needs gradio, gradio_client, sqlite_utils, httpx")
    # a line named for the GPU run says what it ran at: tiny models on a CPU run in fp32 at 64 px
    assert by_name["FLUX.1-dev plain bf16"]["ran_at"] == by_name["SDXL plain fp32"]["ran_at"] == "float32, 64²"
    assert speedup["ran_at"] == "float32 vs float32, 64²"
    assert by_name["FLUX.1 LoRA 512² rank 16, s/step"]["ran_at"] == "float32, 64²"
    table = (out / "bench-suite.md").read_text()
    assert "| check | figure | target | result | weights | ran at |" in table
    assert all(f"| {name} |" in table for name in names)
    assert "| tiny random | float32 vs float32, 64² |" in table


def test_only_runs_the_groups_named_and_a_wrong_name_fails_before_anything_loads(tmp_path, monkeypatch, capsys):
    from masuka.cli import main

    out = tmp_path / "out"
    # in this process (its libraries already loaded), with Gradio unimportable as in the launcher's runs above: the
    # app line is skipped for the missing package, not measured
    monkeypatch.setitem(sys.modules, "gradio", None)
    assert main(["bench", "suite", "--quick", "--only", "app", "--out", str(out), "--json"]) == 0, capsys.readouterr()
    report = json.loads((out / "bench-suite.json").read_text())
    assert report["checks"][0]["result"].startswith("skipped: needs gradio")
    assert [check["name"] for check in report["checks"]] == ["Per-image app overhead"]
    wrong = run_hidden("bench", "suite", "--only", "sdxl,flux", "--out", str(tmp_path / "wrong"), cwd=tmp_path)
    assert wrong.returncode != 0 and "--only takes some of memory, training, app, flux-dev, sdxl" in wrong.stderr
    assert "'sdxl,flux'" in wrong.stderr and not (tmp_path / "wrong").exists()


# -- one line at a time, within the budget (in process, with stand-in measurements) ------------------------

def gpu_setup(cls, quick, folder, deadline):
    """``Setup.detect`` as on an H100 with real models."""
    return cls("cuda", False, False, "NVIDIA H100 80GB HBM3", folder, 3, 1, deadline)


def suite_args(out, only=None, budget_s=600.0, quick=False):
    return argparse.Namespace(only=only, out=str(out), quick=quick, budget_s=budget_s, go_on_from=None,
                              go_on_until=None)


def test_a_lost_gpu_hands_the_lines_after_it_to_a_new_process(tmp_path, monkeypatch):
    """After an illegal memory access every CUDA call in the process fails: the suite goes on in a new one, whose
    fast line compares with the plain figure measured in this process before the loss."""
    from masuka.bench import suite

    lost_once(suite, monkeypatch)
    report = suite.run(None, suite_args(tmp_path, only="sdxl", quick=True))
    lost = "n/a (the GPU was unusable after it: the lines after it ran in a new process)"
    assert [(check["name"], check["result"]) for check in report["checks"]] == [
        ("SDXL plain fp32", lost), ("SDXL fast vs fp32", "n/a"), ("SDXL fast: first image", "measured")]
    assert json.loads((tmp_path / "bench-suite.json").read_text()) == report
    assert "SDXL fast: first image | " in (tmp_path / "bench-suite.md").read_text()
    plain, fast = report["checks"][:2]
    assert fast["figures"]["baseline"] == plain["figures"] and f"x ({plain['figures']['s_per_image']} s -> " in \
        fast["figure"]


def test_lines_left_when_no_new_process_can_go_on_read_skipped(tmp_path, monkeypatch):
    from masuka.bench import suite

    def group(setup):
        yield suite.Line("crashing line", lambda: suite.Check("crashing line", "1 s", "", "measured"))
        yield suite.Line("next line", lambda: pytest.fail("ran in the process whose GPU was lost"), target="<= 1 s")

    monkeypatch.setattr(suite, "CHECKS", [("crash", group)])
    monkeypatch.setattr(suite, "gpu_lost", lambda: True)
    monkeypatch.setattr(suite.sys, "executable", "/bin/false")  # a new process that dies before its first line
    report = suite.run(None, suite_args(tmp_path, quick=True))
    assert [(check["name"], check["target"], check["result"]) for check in report["checks"]] == [
        ("crashing line", "", "measured (the GPU was unusable after it: the lines after it ran in a new process)"),
        ("next line", "<= 1 s", "skipped: the GPU was lost and a new process could not go on (exit 1; its errors "
                                "were printed)")]


def lost_once(suite, monkeypatch):
    """The GPU of this process is lost after its first line (the new processes find theirs fine)."""
    calls = []
    monkeypatch.setattr(suite, "gpu_lost", lambda: calls.append(1) or len(calls) == 1)


#: A group of four lines run by the process a test starts: lines named in ``DIES`` end their process; ``line 1``
#: sleeps for ``SLEEPS_S`` seconds.
GROUP = """
import os, signal, time
from masuka.bench import suite

DIES, SLEEPS_S = {dies!r}, {sleeps_s!r}

def measure(name):
    if name in DIES:
        os.kill(os.getpid(), signal.SIGKILL)
    if name == "line 1":
        time.sleep(SLEEPS_S)
    return suite.Check(name, "1 s", "", "measured")

def group(setup):
    for index in range(4):
        yield suite.Line(f"line {{index}}", lambda name=f"line {{index}}": measure(name), target="<= 1 s")
"""
#: The new process: ``python -m masuka`` with the suite's groups replaced by GROUP's.
CHILD = """#!{python}
import sys
sys.path[:0] = [{root!r}, {folder!r}]
from masuka.bench import suite
import group
suite.CHECKS = [("four", group.group)]
from masuka.cli import main
sys.exit(main(sys.argv[3:]))
"""


def four_lines(suite, monkeypatch, tmp_path, dies=(), sleeps_s=0.0):
    """The suite runs GROUP's lines, in this process and in the new ones."""
    (tmp_path / "group.py").write_text(GROUP.format(dies=list(dies), sleeps_s=sleeps_s))
    child = tmp_path / "child.py"
    child.write_text(CHILD.format(python=sys.executable, root=str(ROOT), folder=str(tmp_path)))
    child.chmod(0o755)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "group", raising=False)  # another test's
    import group

    monkeypatch.setattr(suite, "CHECKS", [("four", group.group)])
    monkeypatch.setattr(suite.sys, "executable", str(child))
    lost_once(suite, monkeypatch)


def test_a_line_whose_new_process_dies_says_so_and_the_lines_after_it_go_on_in_another(tmp_path, monkeypatch):
    """Line 1 ends the first new process; the next goes on with line 2 (measured) and ends in line 3."""
    from masuka.bench import suite

    dies = ["line 1", "line 3"]
    four_lines(suite, monkeypatch, tmp_path, dies)
    report = suite.run(None, suite_args(tmp_path / "out", quick=True))
    results = [check["result"] for check in report["checks"]]
    ended = "error: the process running it ended (exit -9: SIGKILL)"
    assert results[1:] == [ended if f"line {index}" in dies else "measured" for index in (1, 2, 3)]
    assert report["lines_done"] == 4 and suite.exit_status(report) == 1
    assert json.loads((tmp_path / "out" / "bench-suite.json").read_text()) == report


def test_a_run_whose_lines_all_ran_exits_0_and_one_that_lost_lines_exits_1(tmp_path, monkeypatch, capsys):
    from masuka.bench import suite
    from masuka.cli import main

    four_lines(suite, monkeypatch, tmp_path)
    assert main(["bench", "suite", "--quick", "--out", str(tmp_path / "out")]) == 0
    monkeypatch.setattr(suite.sys, "executable", "/bin/false")
    lost_once(suite, monkeypatch)
    assert main(["bench", "suite", "--quick", "--out", str(tmp_path / "lost")]) == 1
    assert "skipped: the GPU was lost and a new process could not go on (exit 1;" in capsys.readouterr().out


def test_a_new_process_keeps_the_budget_and_the_time_of_the_run(tmp_path, monkeypatch):
    """The process that goes on ends when the budget ends and words it as the report does; the run's duration
    counts the new process's start-up."""
    import diffusers  # noqa: F401 (imported before the clock starts, as the suite imports it before its start)
    import transformers  # noqa: F401

    from masuka.bench import suite

    four_lines(suite, monkeypatch, tmp_path, sleeps_s=600.0)
    report = suite.run(None, suite_args(tmp_path / "out", budget_s=4.0, quick=True))
    results = [check["result"] for check in report["checks"]]
    assert results[1] in ("cut: the 4 s budget ran out during line 1", "skipped: the 4 s budget was spent")
    assert results[2:] == ["skipped: the 4 s budget was spent"] * 2
    # the lines were cut or skipped because the budget ran out, so the run took (nearly: the last second is not
    # started in a new process) the whole budget: a duration counted from the new process's own start (seconds of
    # imports later) would fall short of it, however loaded the machine
    assert report["budget_s"] == 4.0 and report["duration_s"] >= report["budget_s"] - 1
    assert suite.exit_status(report) == 0  # every line ran or was left out for the budget


def test_a_line_keeps_its_own_error_when_freeing_the_gpu_after_it_fails(tmp_path, monkeypatch):
    from masuka.bench import suite

    def failing():
        raise ValueError("the kernel failed")

    def group(setup):
        yield suite.Line("failing line", failing)
        yield suite.Line("next line", lambda: suite.Check("next line", "1 s", "", "measured"))

    def free():
        raise RuntimeError("CUDA error: an illegal memory access was encountered")

    monkeypatch.setattr(suite, "CHECKS", [("failing", group)])
    monkeypatch.setattr(suite, "_free", free)
    report = suite.run(None, suite_args(tmp_path, quick=True))
    assert [(check["name"], check["result"]) for check in report["checks"]] == [
        ("failing line", "error: ValueError: the kernel failed"), ("next line", "measured")]


def test_a_failing_line_costs_only_itself_and_says_which_model_and_plan(tmp_path, monkeypatch):
    from masuka.bench import suite

    def image(setup, model_id, plan, **kwargs):
        if model_id == "flux-dev" and plan and plan.memory == "group_offload":
            raise RuntimeError("CUDA out of memory (stand-in)")
        if model_id == "flux-dev" and plan and plan.fast and not plan.step_cache:
            raise RuntimeError("no kernel image is available (stand-in)")
        return {"s_per_image": 2.0 if plan is None else 1.0, "first_image_s": 3.0, "peak_vram_gb": 14.0,
                "peak_reserved_gb": 15.5, "outside_allocator_gb": 0.5, "size": 1024, "steps": 4}

    monkeypatch.setattr(suite.Setup, "detect", classmethod(gpu_setup))
    monkeypatch.setattr(suite, "_image", image)
    monkeypatch.setattr(suite, "host_need_gb", lambda model_id: 200.0 if model_id == "qwen-image" else 40.0)
    monkeypatch.setattr(suite, "available_host_gb", lambda: 120.0)
    report = suite.run(None, suite_args(tmp_path, only="flux-dev,memory"))
    results = {check["name"]: check["result"] for check in report["checks"]}
    assert results["FLUX.1-dev plain bf16"] == "measured"  # measured before the fast path failed, and kept
    assert results["FLUX.1-dev fast vs plain bf16"] == "error: RuntimeError: no kernel image is available (stand-in)"
    # 2x, still measured (random weights: not judged)
    assert results["FLUX.1-dev fast + step cache 0.12 vs plain bf16"] == suite.NEEDS_REAL_WEIGHTS
    assert results["FLUX.1-dev group_offload"] == "error: RuntimeError: CUDA out of memory (stand-in)"
    targets = {check["name"]: check["target"] for check in report["checks"]}
    assert targets["FLUX.1-dev group_offload"] == "<= 10 GB on the GPU (reserved + outside PyTorch)"
    assert targets["FLUX.1-dev fast vs plain bf16"] == ">= 2.5x"  # an error line keeps its target
    assert results["FLUX.1-dev fp8_offload"] == "fail"  # judged on the 15.5 GiB reserved + 0.5 outside, not 14
    for model_id in ("sdxl", "flux2-klein-4b", "z-image-turbo", "sd35-large"):  # after the failure: still measured
        assert results[f"{model_id} fp8_offload"] == results[f"{model_id} group_offload"] == "measured"
    memory_lines = [check["name"] for check in report["checks"] if check["name"].endswith("_offload")]
    assert memory_lines[-2:] == ["qwen-image fp8_offload", "qwen-image group_offload"]
    assert results["qwen-image group_offload"] == ("skipped: needs about 200 GiB of host memory (its weights are "
                                                   "built on the CPU), 120 GiB available")
    assert json.loads((tmp_path / "bench-suite.json").read_text()) == report
    assert sorted(path.name for path in tmp_path.iterdir()) == ["bench-suite.json", "bench-suite.md"]


class Clock:
    """A stand-in for the suite's clock that moves only when a test says so."""

    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def test_every_architecture_but_flux1_has_memory_lines_smallest_first():
    """The models of the reported memory lines come from the profiles: a new one with published sizes is in."""
    from masuka.bench import suite
    from masuka.models import architectures
    from masuka.models.catalog import resolve_image_model

    reported = [resolve_image_model(model).architecture for model in suite.OTHER_MEMORY_MODELS]
    assert reported == sorted(reported, key=lambda name: architectures.PROFILES[name].memory_gb.get("full", math.inf))
    assert set(architectures.PROFILES) - {"flux"} == {
        resolve_image_model(model).architecture for model in suite.OTHER_MEMORY_MODELS}


def test_a_line_still_running_when_the_budget_ends_is_cut_not_reported(tmp_path, monkeypatch):
    from masuka.bench import suite

    clock = Clock()
    monkeypatch.setattr(suite, "_now", clock)
    seen_running = []

    def slow_group(setup):
        def slow():
            seen_running.append(json.loads((tmp_path / "bench-suite.json").read_text())["checks"][-1])
            setup.deadline.check("building the slow model")
            clock.now += 100  # a build that took longer than the whole budget
            setup.deadline.check("image 1 of the slow model")
            return suite.Check("slow line", "1.0 s per image", "", "measured")

        yield suite.Line("slow line", slow)
        yield suite.Line("next line", lambda: pytest.fail("a line started after the budget"))

    monkeypatch.setattr(suite, "CHECKS", [("slow", slow_group)])
    report = suite.run(None, suite_args(tmp_path, budget_s=30, quick=True))
    assert seen_running == [{"name": "slow line", "figure": "", "target": "", "result": "running", "figures": {},
                             "weights": "", "ran_at": ""}]
    assert [(check["name"], check["figure"], check["result"]) for check in report["checks"]] == [
        ("slow line", "", "cut: the 30 s budget ran out before image 1 of the slow model"),
        ("next line", "", "skipped: the 30 s budget was spent")]


def test_each_image_checks_the_budget_first(tmp_path, monkeypatch):
    from masuka.bench import suite

    ticks = iter(range(0, 1000, 10))  # each look at the clock: 10 s later (the build, then each image)
    monkeypatch.setattr(suite, "_now", lambda: next(ticks))
    setup = suite.Setup.detect(True, tmp_path, suite.Deadline(25))
    with pytest.raises(suite._OverBudget, match="^the 25 s budget ran out before image 2 of flux-dev plain$"):
        suite._image(setup, "flux-dev", None, runs=1, warmup=1)


def test_the_alarm_stops_a_line_that_would_overrun_the_budget(tmp_path, monkeypatch):
    import time

    from masuka.bench import suite

    def stuck_group(setup):
        yield suite.Line("stuck line", lambda: time.sleep(60))  # a compile that takes far longer than guessed

    monkeypatch.setattr(suite, "CHECKS", [("stuck", stuck_group)])
    started = time.monotonic()
    report = suite.run(None, suite_args(tmp_path, budget_s=0.5, quick=True))
    assert time.monotonic() - started < 30
    assert [check["result"] for check in report["checks"]] == ["cut: the 0.5 s budget ran out during stuck line"]


def test_each_training_line_reports_its_own_peak_vram(tmp_path, monkeypatch):
    """The loop reads ``torch.cuda.max_memory_allocated``, the peak since the last reset: each line resets it
    first, or every line would show the highest peak so far (38 GiB, from an earlier check here)."""
    import sys

    import torch

    from masuka.bench import suite

    peak = {"gib": 38.0}
    monkeypatch.setattr(torch.cuda, "is_available",  # "CUDA" only where the peaks are read and reset
                        lambda: sys._getframe(1).f_code.co_name in ("_loop", "train_speed"))
    monkeypatch.setattr(torch.cuda, "max_memory_allocated", lambda device=None: peak["gib"] * 2**30)
    monkeypatch.setattr(torch.cuda, "max_memory_reserved", lambda device=None: peak["gib"] * 2**30)
    monkeypatch.setattr(torch.cuda, "reset_peak_memory_stats", lambda device=None: peak.update(gib=1.5))
    setup = suite.Setup.detect(True, tmp_path, suite.Deadline(600))
    lines = list(suite.training(setup))
    assert [line.name for line in lines] == ["FLUX.1 LoRA 512² rank 16, s/step", "FLUX.1 LoRA preset 12gb"]
    figures = lines[0].measure().figures  # the presets' lines measure the same way
    assert (figures["peak_vram_gb"], figures["peak_reserved_gb"]) == (1.5, 1.5)


def test_a_fast_line_says_when_fp8_was_left_out(tmp_path, monkeypatch):
    from masuka.bench import suite

    setup = gpu_setup(suite.Setup, False, tmp_path, suite.Deadline(600))
    assert suite._fp8_note(setup, {"fp8": True}) == "fp8: yes"
    monkeypatch.setattr(suite.importlib.util, "find_spec", lambda name: None)
    assert suite._fp8_note(setup, {"fp8": False}) == "fp8: no (torchao not installed)"


def test_quick_app_overhead_is_not_judged_and_a_judged_one_takes_ten_rounds(tmp_path, monkeypatch):
    """Three rounds on a busy machine can read -343.6 ms: a quick run reports the figure, not pass or fail; a
    full run judges from ten rounds, on a CPU (tiny models) too."""
    import types

    from masuka.bench import suite

    shares = {"masuka_share_ms": -343.6, "a1111_share_ms": 12.0, "openai_share_ms": 45.0}
    asked: list[int] = []
    monkeypatch.setattr(suite, "_importable", lambda name: True)
    monkeypatch.setitem(sys.modules, "masuka.bench.through_app", types.SimpleNamespace(
        measure_through_app=lambda folder, rounds: asked.append(rounds) or shares))
    for quick, expected, taken in ((True, ["n/a", "n/a", "n/a"], 3), (False, ["pass", "pass", "fail"], 10)):
        setup = suite.Setup("cpu", True, quick, "", tmp_path, 1, 0, suite.Deadline(600))
        [line] = suite.app_overhead(setup)
        assert [check.result for check in line.measure()] == expected
        assert asked.pop() == taken


# -- what a default run measures within the budget (fake clock, stand-in builds and images) -----------------

#: (model, kind) -> seconds of the build, the first image (compile included), each later image; others: memory
#: lines (build on the CPU, then two images)
TIMES = {("flux-dev", "plain"): (20, 9, 5), ("flux-dev", "fast"): (20, 60, 3), ("flux-dev", "cache"): (20, 12, 9),
         ("flux-schnell", "fast"): (20, 50, 0.5), ("sdxl", "plain"): (10, 8, 6), ("sdxl", "fast"): (10, 50, 2)}


def timed_suite(monkeypatch, tmp_path, budget_s):
    """``{name: result}`` of :func:`timed_report`, in the order the lines ran."""
    return {check["name"]: check["result"] for check in timed_report(monkeypatch, tmp_path, budget_s)["checks"]}


def timed_report(monkeypatch, tmp_path, budget_s):
    """``suite.run`` as on an H200 with random weights, the clock moved only by the stand-in builds, images and
    training steps."""
    from masuka.bench import suite

    clock = Clock()
    monkeypatch.setattr(suite, "_now", clock)

    def model(self, model_id, memory="full"):
        def build(device, dtype):
            clock.now += times(model_id, kind[0])[0]

        return resolve_image_model(model_id), build, 1024, 28

    kind = [""]

    def times(model_id, what):
        return TIMES.get((model_id, what), (40, 15, 15))

    def images(model_id, what, build, args, before_image, extra):
        kind[0] = what
        build("cpu", None)
        first, each = times(model_id, what)[1:]
        for seconds in (first, *[each] * args.runs):
            before_image()
            clock.now += seconds
        return {"median_s": each, "first_s": first, "peak_vram_gb": 9.0, "peak_reserved_gb": 9.5,
                "outside_allocator_gb": 0.5, **extra}

    def baseline(build, spec, size, steps, args, before_image):
        return {"baseline": images(spec.id, "plain", lambda *_: build(), args, before_image, {})}

    def prepared(build, spec, plan, size, steps, args, before_image):
        what = "cache" if plan.step_cache else "fast" if plan.fast else plan.memory
        extra = {"compile_s": 1.0, "graphs": 1, "compilations": 1, "fuse_and_fp8_s": 1.0, "fused": True,
                 "fp8": True} if plan.fast else {}
        return {"masuka": images(spec.id, what, build, args, before_image, extra)}

    def train_speed(setup, spec, build, options):
        setup.deadline.check("building the model for training")
        clock.now += 40
        for step in range(12):
            setup.deadline.check(f"step {step}", 0.5)
            clock.now += 0.5
        return {"s_per_step": 0.5, "peak_vram_gb": 30.0, "peak_reserved_gb": 31.0}

    from masuka.models.catalog import resolve_image_model

    monkeypatch.setattr(suite.Setup, "detect", classmethod(gpu_setup))
    monkeypatch.setattr(suite.Setup, "model", model)
    monkeypatch.setattr(suite.Setup, "weights", lambda self, model_id: "random")
    monkeypatch.setattr(suite, "_baseline", baseline)
    monkeypatch.setattr(suite, "measure_prepared", prepared)
    monkeypatch.setattr(suite, "train_speed", train_speed)
    monkeypatch.setattr(suite, "host_need_gb", lambda model_id: 40.0)
    monkeypatch.setattr(suite, "available_host_gb", lambda: 120.0)
    monkeypatch.setattr(suite, "_importable", lambda name: False)  # no Gradio, no bitsandbytes
    return suite.run(None, suite_args(tmp_path, budget_s=budget_s))


TARGETS = ("FLUX.1-dev fp8_offload", "FLUX.1-dev group_offload", "FLUX.1 LoRA 512² rank 16, s/step",
           "FLUX.1-dev fast vs plain bf16", "SDXL fast vs fp32", "FLUX.1-schnell 4 steps, fast")


def test_a_default_run_measures_cheap_targets_first_then_compiles_as_long_as_the_last_compile_took(tmp_path,
                                                                                                  monkeypatch):
    """The first compile (FLUX.1-dev, 60 s here) replaces the 360 s guess, so the next compiled lines start."""
    results = timed_suite(monkeypatch, tmp_path, budget_s=900)
    names = list(results)
    assert names[:3] == ["FLUX.1-dev fp8_offload", "FLUX.1-dev group_offload", "FLUX.1-dev nf4_offload"]
    assert names.index("SDXL plain fp32") < names.index("FLUX.1-dev fast vs plain bf16")
    assert names.index("FLUX.1-schnell 4 steps, fast") < names.index("sdxl fp8_offload")  # no target
    assert {name: results[name] for name in TARGETS if results[name] not in ("pass", "fail", "n/a")} == {}


def test_a_compile_that_cannot_fit_is_skipped_before_its_build_and_the_cheap_targets_are_measured(tmp_path,
                                                                                                  monkeypatch):
    results = timed_suite(monkeypatch, tmp_path, budget_s=450)
    assert [results[name] for name in TARGETS[:3]] == ["pass", "fail", "n/a"]  # n/a: the H200 target on an H100
    assert results["FLUX.1-dev fast vs plain bf16"] == (
        "skipped: the compile and first image of flux-dev fast needs about 360 s, 184 s of the 450 s budget were left")
    assert results["FLUX.1-dev nf4_offload"].startswith("skipped: needs bitsandbytes")
    assert all(results[name].startswith("skipped: the compile and first image") for name in TARGETS[3:])


def test_a_line_that_did_not_run_still_shows_its_target(tmp_path, monkeypatch):
    report = timed_report(monkeypatch, tmp_path, budget_s=450)
    targets = {check["name"]: check["target"] for check in report["checks"] if check["result"].startswith("skipped")}
    assert {name: targets[name] for name in TARGETS[3:]} == {
        "FLUX.1-dev fast vs plain bf16": ">= 2.5x", "SDXL fast vs fp32": ">= 3.0x",
        "FLUX.1-schnell 4 steps, fast": "<= 0.45 s on H200"}
    assert targets["FLUX.1-dev nf4_offload"] == "<= 6 GB on the GPU (reserved + outside PyTorch)"
    assert "| FLUX.1-dev fast vs plain bf16 |  | >= 2.5x | skipped: " in (tmp_path / "bench-suite.md").read_text()


# -- what the report says about the models, the memory figures and the versions -----------------------------

def stand_in_image(setup, model_id, plan, **kwargs):
    return {"s_per_image": 5.0 if plan is None else 2.5, "first_image_s": 9.0, "peak_vram_gb": 13.0,
            "peak_reserved_gb": 13.5, "outside_allocator_gb": 0.6, "size": 1024, "steps": 28}


@pytest.mark.parametrize("downloaded", [False, True])
def test_each_line_records_its_weights_and_random_ones_leave_the_step_cache_unjudged(tmp_path, monkeypatch,
                                                                                      downloaded):
    from masuka.bench import suite

    monkeypatch.setattr(suite.Setup, "detect", classmethod(gpu_setup))
    monkeypatch.setattr(suite, "_downloaded", lambda spec: downloaded and spec.id == "flux-dev")
    monkeypatch.setattr(suite, "_image", stand_in_image)
    report = suite.run(None, suite_args(tmp_path, only="flux-dev"))
    weights = "real" if downloaded else "random"
    assert report["models"] == weights and {check["weights"] for check in report["checks"]} == {weights}
    cache = {check["name"]: check for check in report["checks"]}["FLUX.1-dev fast + step cache 0.12 vs plain bf16"]
    assert cache["figure"].startswith("2.00x") and cache["result"] == ("fail" if downloaded
                                                                       else suite.NEEDS_REAL_WEIGHTS)
    assert f"| {weights} |" in (tmp_path / "bench-suite.md").read_text()


def test_memory_targets_are_gb_of_everything_on_the_gpu(tmp_path, monkeypatch):
    """13.5 GiB reserved is within 15 GB, but with the 0.6 GiB outside PyTorch the GPU holds 15.14 GB."""
    from masuka.bench import suite

    setup = gpu_setup(suite.Setup, False, tmp_path, suite.Deadline(600))
    monkeypatch.setattr(suite, "_image", stand_in_image)
    monkeypatch.setattr(suite, "host_need_gb", lambda model_id: 40.0)
    monkeypatch.setattr(suite, "available_host_gb", lambda: 120.0)
    check = suite._memory_line(setup, "FLUX.1-dev fp8_offload", "flux-dev", "fp8_offload")
    assert (check.result, check.figures["peak_on_gpu_gb"]) == ("fail", 15.14)
    assert check.target == "<= 15 GB on the GPU (reserved + outside PyTorch)"
    assert check.figure.startswith("15.14 GB on the GPU: peak VRAM 13.0 GiB allocated, 13.5 GiB reserved")


def test_the_4bit_line_is_in_the_suite_and_says_why_it_was_skipped(tmp_path, monkeypatch):
    from masuka.bench import suite

    lines = {line.name: line for line in suite.memory_plans(gpu_setup(suite.Setup, False, tmp_path,
                                                                       suite.Deadline(600)))}
    monkeypatch.setattr(suite, "_importable", lambda name: False)
    check = lines["FLUX.1-dev nf4_offload"].measure()
    assert check.target == "<= 6 GB on the GPU (reserved + outside PyTorch)"
    assert check.result == "skipped: needs bitsandbytes (pip install 'bitsandbytes>=0.46.1,<1')"
    monkeypatch.setattr(suite, "_importable", lambda name: True)
    cpu = suite.Setup("cpu", True, False, "", tmp_path, 1, 0, suite.Deadline(600))
    assert suite._memory_line(cpu, "FLUX.1-dev nf4_offload", "flux-dev", "nf4_offload").result == (
        "skipped: bitsandbytes's 4-bit layers need CUDA")


def test_random_weights_get_a_4bit_transformer_as_the_nf4_plan_loads_one(tmp_path):
    bnb = pytest.importorskip("bitsandbytes")
    import torch

    from masuka.bench import suite
    from masuka.models.synthetic import random_module

    module = random_module("FluxTransformer2DModel", {"num_layers": 1, "num_single_layers": 1,
                                                      "attention_head_dim": 16, "num_attention_heads": 2,
                                                      "joint_attention_dim": 32, "pooled_projection_dim": 32,
                                                      "axes_dims_rope": (4, 6, 6), "in_channels": 16},
                           "cpu", torch.bfloat16)
    suite._quantize_nf4(module, torch.bfloat16)
    layers = [child for child in module.modules() if isinstance(child, torch.nn.Linear)]
    assert layers and all(isinstance(layer, bnb.nn.Linear4bit) for layer in layers)
    module.to("cpu")  # bitsandbytes quantizes as a layer moves
    assert {layer.weight.quant_type for layer in layers} == {"nf4"}


def test_the_report_records_versions_and_the_markdown_header_names_them(tmp_path, monkeypatch):
    from masuka.bench import suite

    monkeypatch.setattr(suite, "CHECKS", [("one", lambda setup: iter([suite.Line(
        "one line", lambda: suite.Check("one line", "1 s", "", "measured"), "tiny random")]))])
    report = suite.run(None, suite_args(tmp_path, budget_s=60, quick=True))
    found = report["versions"]
    assert set(found) == {"torch", "cuda", "driver", "device", "diffusers", "transformers", "peft", "accelerate",
                          "torchao", "bitsandbytes", "commit"}
    assert found["diffusers"] and found["transformers"] and found["device"] == report["device"]
    header = (tmp_path / "bench-suite.md").read_text().splitlines()[1]
    assert header.startswith(f"Device: {found['device']}; torch {found['torch']}") and header.endswith("budget 60 s")
    assert f"transformers {found['transformers']}" in header


def test_old_transformers_and_hub_stop_the_suite_with_one_clear_error(tmp_path, monkeypatch):
    from masuka import compat
    from masuka.bench import suite

    real = compat.installed
    old = {"transformers": "4.57.1", "huggingface-hub": "0.36.0"}
    monkeypatch.setattr(compat, "installed", lambda name: old.get(name) or real(name))
    with pytest.raises(suite.InvalidInput) as caught:
        suite.run(None, suite_args(tmp_path / "out"))
    message = str(caught.value)
    assert "requirements.txt needs transformers" in message and "4.57.1 is installed" in message
    assert "needs huggingface-hub" in message and "0.36.0 is installed" in message
    assert "requirements.lock" in message and not (tmp_path / "out").exists()


# -- a group that fails, an app package that is only a folder, a budget that is no number ------------------

def test_a_group_that_fails_to_set_up_is_one_error_line_and_the_others_run(tmp_path, monkeypatch):
    from masuka.bench import suite

    def broken(setup):
        raise ImportError("stand-in: a missing package")
        yield

    def fine(setup):
        yield suite.Line("after", lambda: suite.Check("after", "1 s", "", "measured"))

    monkeypatch.setattr(suite, "CHECKS", [("one", fine), ("broken", broken), ("two", fine)])
    report = suite.run(None, suite_args(tmp_path, budget_s=60, quick=True))
    assert [(check["name"], check["result"]) for check in report["checks"]] == [
        ("broken (group)", "error: ImportError: stand-in: a missing package"), ("after", "measured"),
        ("after", "measured")]


def test_an_empty_folder_named_like_a_package_is_not_importable(tmp_path, monkeypatch):
    from masuka.bench import suite

    (tmp_path / "stray_app_pkg").mkdir()
    (tmp_path / "real_app_pkg").mkdir()
    (tmp_path / "real_app_pkg" / "__init__.py").write_text("")
    (tmp_path / "broken_app_pkg").mkdir()
    (tmp_path / "broken_app_pkg" / "__init__.py").write_text("raise RuntimeError('broken')")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert not suite._importable("stray_app_pkg") and suite._importable("real_app_pkg")
    assert not suite._importable("broken_app_pkg.part")


@pytest.mark.parametrize("given", ["inf", "nan", "0", "-5", "soon", "1e12", "86401"])
def test_the_budget_is_a_number_of_seconds_above_zero_and_at_most_a_day(given, capsys):
    """1e12 s once reached the alarm's timer, which raised OverflowError."""
    from masuka.bench import suite

    parser = argparse.ArgumentParser()
    suite.add_arguments(parser)
    assert parser.parse_args(["--budget-s", "480"]).budget_s == 480.0
    assert parser.parse_args(["--budget-s", "86400"]).budget_s == 86400.0
    with pytest.raises(SystemExit):
        parser.parse_args(["--budget-s", given])
    assert f"takes a number of seconds above 0 and at most 86400 (a day) (got {given!r})" in capsys.readouterr().err


def test_an_out_that_names_a_file_is_one_line_error(tmp_path, monkeypatch, capsys):
    from masuka.cli import main

    monkeypatch.chdir(tmp_path)
    (tmp_path / "taken").write_text("not a folder")
    for out in ("taken", "taken/inside"):
        assert main(["bench", "suite", "--quick", "--out", out]) == 2
        assert capsys.readouterr().err.splitlines() == [f"error: --out {out}: cannot make this folder "
                                                        f"({'File exists' if out == 'taken' else 'Not a directory'})."]
    assert (tmp_path / "taken").read_text() == "not a folder"


def test_the_readme_wheel_list_pins_what_the_lock_pins():
    """The ``pip download`` lines of the README's fresh-GPU-box recipe pin the versions requirements.lock pins for
    Python 3.12 on x86-64 Linux, so the list cannot drift from the lock."""
    from packaging.markers import Marker

    from masuka.compat import canonical

    box = {"python_version": "3.12", "python_full_version": "3.12.0", "sys_platform": "linux",
           "platform_machine": "x86_64"}
    lock = {}
    for line in (ROOT / "requirements.lock").read_text(encoding="utf-8").splitlines():
        requirement, _, marker = line.partition(";")
        if "==" in requirement and not line.startswith((" ", "#")) and (
                not marker.strip() or Marker(marker.strip()).evaluate(box)):
            name, _, version = requirement.partition("==")
            lock[canonical(name)] = version.strip()
    readme = (ROOT / "README.md").read_text(encoding="utf-8").replace("\\\n", " ")
    commands = [line for line in readme.splitlines() if line.startswith("python3 -m pip download")]
    pinned = {canonical(name): version for command in commands
              for name, _, version in (word.partition("==") for word in command.split()) if version}
    assert len(commands) == 3 and {"diffusers", "transformers", "numpy", "importlib-metadata"} <= set(pinned)
    assert {name: lock.get(name) for name in pinned} == pinned
