"""``python -m masuka bench suite --quick`` where only the suite's own packages are installed: Gradio, gradio_client,
sqlite-utils and httpx are hidden from the process, as on a bare GPU machine. Every check runs on tiny models and
lands in one JSON file and one Markdown table."""

from __future__ import annotations

import argparse
import json
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
                     "FLUX.1-dev group_offload", "flux2-klein-4b fp8_offload", "FLUX.1 LoRA 512² rank 16",
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
    table = (out / "bench-suite.md").read_text()
    assert "| check | figure | target | result |" in table
    assert all(f"| {name} |" in table for name in names)


def test_only_runs_the_groups_named_and_a_wrong_name_fails_before_anything_loads(tmp_path):
    out = tmp_path / "out"
    done = run_hidden("bench", "suite", "--quick", "--only", "app", "--out", str(out), "--json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads((out / "bench-suite.json").read_text())
    assert [check["name"] for check in report["checks"]] == ["Per-image app overhead"]
    wrong = run_hidden("bench", "suite", "--only", "sdxl,flux", "--out", str(tmp_path / "wrong"), cwd=tmp_path)
    assert wrong.returncode != 0 and "--only takes some of flux-dev, flux-schnell, sdxl" in wrong.stderr
    assert "'sdxl,flux'" in wrong.stderr and not (tmp_path / "wrong").exists()


# -- one line at a time, within the budget (in process, with stand-in measurements) ------------------------

def gpu_setup(cls, quick, folder, deadline):
    """``Setup.detect`` as on an H100 with real models."""
    return cls("cuda", False, False, "NVIDIA H100 80GB HBM3", folder, 3, 1, deadline)


def suite_args(out, only=None, budget_s=600.0, quick=False):
    return argparse.Namespace(only=only, out=str(out), quick=quick, budget_s=budget_s)


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
    monkeypatch.setattr(suite, "_host_need_gb", lambda model_id: 200.0 if model_id == "qwen-image" else 40.0)
    monkeypatch.setattr(suite, "_available_host_gb", lambda: 120.0)
    report = suite.run(None, suite_args(tmp_path, only="flux-dev,memory"))
    results = {check["name"]: check["result"] for check in report["checks"]}
    assert results["FLUX.1-dev plain bf16"] == "measured"  # measured before the fast path failed, and kept
    assert results["FLUX.1-dev fast vs plain bf16"] == "error: RuntimeError: no kernel image is available (stand-in)"
    assert results["FLUX.1-dev fast + step cache 0.12 vs plain bf16"] == "fail"  # 2x, still measured
    assert results["FLUX.1-dev group_offload"] == "error: RuntimeError: CUDA out of memory (stand-in)"
    assert results["FLUX.1-dev fp8_offload"] == "fail"  # judged on the 15.5 GiB reserved, not the 14 allocated
    for model_id in ("flux2-klein-4b", "z-image-turbo", "sd35-large", "sdxl"):  # after the failure: still measured
        assert results[f"{model_id} fp8_offload"] == results[f"{model_id} group_offload"] == "measured"
    assert [check["name"] for check in report["checks"]][-2:] == ["qwen-image fp8_offload", "qwen-image group_offload"]
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


def test_a_line_still_running_when_the_budget_ends_is_cut_not_reported(tmp_path, monkeypatch):
    from masuka.bench import suite

    clock = Clock()
    monkeypatch.setattr(suite, "_now", clock)
    seen_running = []

    def slow_group(setup):
        def slow():
            seen_running.append(json.loads((tmp_path / "bench-suite.json").read_text())["checks"][-1])
            clock.now += 100  # a build that took longer than the whole budget
            setup.deadline.check("image 1 of the slow model")
            return suite.Check("slow line", "1.0 s per image", "", "measured")

        yield suite.Line("slow line", slow)
        yield suite.Line("next line", lambda: pytest.fail("a line started after the budget"))

    monkeypatch.setattr(suite, "CHECKS", [("slow", slow_group)])
    report = suite.run(None, suite_args(tmp_path, budget_s=30, quick=True))
    assert seen_running == [{"name": "slow line", "figure": "", "target": "", "result": "running", "figures": {}}]
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


def test_quick_app_overhead_is_not_judged(tmp_path, monkeypatch):
    """Three rounds on a busy machine can read -343.6 ms: a quick run reports the figure, not pass or fail."""
    import types

    from masuka.bench import suite

    shares = {"masuka_share_ms": -343.6, "a1111_share_ms": 12.0, "openai_share_ms": 45.0}
    monkeypatch.setattr(suite, "_importable", lambda name: True)
    monkeypatch.setitem(sys.modules, "masuka.bench.through_app",
                        types.SimpleNamespace(measure_through_app=lambda folder, rounds: shares))
    for quick, expected in ((True, ["n/a", "n/a", "n/a"]), (False, ["pass", "pass", "fail"])):
        setup = suite.Setup("cpu", True, quick, "", tmp_path, 1, 0, suite.Deadline(600))
        [line] = suite.app_overhead(setup)
        assert [check.result for check in line.measure()] == expected
