"""``python -m masuka train`` and ``runs`` as subprocesses: JSON result, signals, a killed process, two processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from masuka.config import Config
from masuka.studio import Studio

from .conftest import add_dataset

ROOT = Path(__file__).resolve().parents[2]
WAIT_S = 240


def masuka(data_dir: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "masuka", *args, "--data-dir", str(data_dir)]


def train_args(model: Path, steps: int, *extra: str) -> list[str]:
    return ["train", "--dataset", "fox", "--base", str(model), "--steps", str(steps), "--resolution", "64",
            "--lr", "1e-3", *extra]


def run_cli(command: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=WAIT_S)


def wait_for(predicate, what: str, timeout: float = WAIT_S) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def data_with_dataset(tmp_path: Path) -> Path:
    studio = Studio.open(Config.from_env(data_dir=tmp_path / "data", auth=""))
    add_dataset(studio)
    studio.close()
    return tmp_path / "data"


def test_bad_options_exit_2_with_a_message(tmp_path, tiny_model):
    data = data_with_dataset(tmp_path)
    done = run_cli(masuka(data, *train_args(tiny_model("flux"), 3), "--rank", "0"))
    assert done.returncode == 2 and "error: Rank must be between 1 and 128" in done.stderr


def test_sigterm_saves_a_checkpoint_marks_interrupted_and_resume_prints_json(tmp_path, tiny_model):
    data = data_with_dataset(tmp_path)
    process = subprocess.Popen(masuka(data, *train_args(tiny_model("flux"), 400, "--save-every", "1000"), "--json"),
                               cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for(lambda: _step(data, 1) >= 2, "step 2")
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=WAIT_S)
    interrupted = json.loads(out)
    assert process.returncode == 1 and interrupted["status"] == "interrupted", err
    studio = Studio.open(Config.from_env(data_dir=data, auth=""))
    row = studio.store.get("jobs", interrupted["run"])
    checkpoint = sorted((data / "runs" / "run-00001").glob("checkpoint-*"))[-1]
    assert "checkpoint saved" in row["error"] and int(checkpoint.name.split("-")[1]) == row["step"] >= 2
    # the resume finishes the same run (shortened so the test stays quick: remaining steps, same row)
    studio.store.update("jobs", row["id"], total=row["step"] + 2,
                        params={**row["params"], "steps": row["step"] + 2})
    studio.close()
    done = run_cli(masuka(data, "train", "--resume", str(interrupted["run"]), "--json"))
    result = json.loads(done.stdout)
    assert result["status"] == "completed" and result["steps"] == row["step"] + 2, done.stderr
    assert result["run"] == interrupted["run"] and Path(result["lora"]).is_file() and result["final_loss"] > 0
    assert f"resumed from the checkpoint at step {row['step']}" in done.stderr
    assert f"step {row['step'] + 2}/{row['step'] + 2} loss" in done.stderr and "LoRA written and checked" in done.stderr
    listed = json.loads(run_cli(masuka(data, "runs", "--json")).stdout)["runs"]
    assert [(r["run"], r["status"], r["step"]) for r in listed] == [(result["run"], "completed", row["step"] + 2)]


def test_killed_process_leaves_an_interrupted_run_that_resumes(tmp_path, tiny_model):
    from masuka.training.runs import resume_run, run_status

    data = data_with_dataset(tmp_path)
    process = subprocess.Popen(masuka(data, *train_args(tiny_model("sd3"), 400, "--save-every", "2")), cwd=ROOT,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for(lambda: any((data / "runs" / "run-00001").glob("checkpoint-000002")), "the first checkpoint")
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    studio = Studio.open(Config.from_env(data_dir=data, auth=""))
    try:
        row = studio.store.get("jobs", 1)
        assert row["status"] == "interrupted" and "stopped before this finished" in row["error"]
        saved = run_status(studio, 1)["checkpoint_step"]
        assert saved >= 2
        studio.store.update("jobs", 1, total=saved + 2, params={**row["params"], "steps": saved + 2})
        resume_run(studio, 1)
        studio.jobs.wait(1, timeout=WAIT_S)
        status = run_status(studio, 1)
        assert status["status"] == "completed" and status["step"] == saved + 2
        assert [step for step, _loss in status["losses"]] == list(range(1, saved + 3))
    finally:
        studio.close()


def test_two_processes_train_data_parallel_through_accelerate(tmp_path, tiny_model):
    data = data_with_dataset(tmp_path)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(masuka(data, *train_args(tiny_model("flux"), 2, "--gpus", "2"), "--json"), cwd=ROOT,
                          capture_output=True, text=True, timeout=WAIT_S, env=env)
    result = json.loads(done.stdout)
    assert result["status"] == "completed" and result["steps"] == 2, done.stderr
    assert "on 2 process(es)" in done.stderr and Path(result["lora"]).is_file()


def _step(data: Path, run_id: int) -> int:
    from masuka.store import Store

    store = Store(data / "masuka.db")
    try:
        row = store.get("jobs", run_id)
    finally:
        store.close()
    return (row["step"] or 0) if row else 0
