"""``python -m masuka bench suite --quick`` where only the suite's own packages are installed: Gradio, gradio_client,
sqlite-utils and httpx are hidden from the process, as on a bare GPU machine. Every check runs on tiny models and
lands in one JSON file and one Markdown table."""

from __future__ import annotations

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
    for expected in ("FLUX.1-dev fast vs plain bf16", "FLUX.1-dev fast: first image", "FLUX.1-dev fast + step cache",
                     "FLUX.1-schnell 4 steps", "SDXL fast vs fp32", "FLUX.1-dev fp8_offload",
                     "FLUX.1-dev group_offload", "flux2-klein-4b fp8_offload", "FLUX.1 LoRA 512² rank 16",
                     "FLUX.1 LoRA preset 12gb", "Per-image app overhead"):
        assert any(name.startswith(expected) for name in names), (expected, names)
    by_name = {check["name"]: check for check in report["checks"]}
    assert not [c for c in report["checks"] if c["result"].startswith("error")], report["checks"]
    speedup = by_name["FLUX.1-dev fast vs plain bf16"]
    assert speedup["figures"]["speedup"] > 0 and speedup["target"] == ">= 2.5x" and speedup["result"] == "n/a"
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
