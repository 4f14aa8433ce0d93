"""``python -m masuka train`` and ``runs`` as subprocesses: JSON result, signals, a killed process (two processes
training data parallel through accelerate: tests/training/test_cli_orphans.py)."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from contextlib import closing
from pathlib import Path

import pytest

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


def test_resume_refuses_options_it_would_ignore(tmp_path):
    done = run_cli(masuka(tmp_path / "data", "train", "--resume", "1", "--steps", "8", "--lr", "0.5", "--rank", "64",
                          "--dataset", "other", "--train-text-encoder"))
    assert done.returncode == 2, done.stderr
    assert ("error: --resume continues run 1 with the options it was created with: leave out --dataset, --steps, "
            "--rank, --lr, --train-text-encoder, or start a new run to change them.") in done.stderr


def test_sigint_while_the_run_waits_for_the_gpu_interrupts_it_at_once(tmp_path, tiny_model):
    from masuka.gpu import GPURunner

    data = data_with_dataset(tmp_path)
    with GPURunner(data / "locks").hold("another job"):
        waiting = subprocess.Popen(masuka(data, *train_args(tiny_model("flux"), 4), "--json"), cwd=ROOT,
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        wait_for(lambda: "waiting for the GPU" in _row(data, 1).get("log", ""), "the wait for the GPU")
        waiting.send_signal(signal.SIGINT)
        out, err = waiting.communicate(timeout=30)  # the GPU is still held: the run did not wait for it
    result = json.loads(out)
    assert waiting.returncode == 1 and result["status"] == "interrupted" and result["steps"] == 0, err
    assert ("Interrupted while it waited for the GPU; nothing was trained, so there was nothing to save. Resume "
            "queues it again.") in err
    assert not list((data / "runs" / "run-00001").glob("checkpoint-*"))


@pytest.mark.slow
def test_sigterm_interrupts_and_a_nohup_resume_outlives_its_terminal(tmp_path, tiny_model):
    """SIGTERM saves and interrupts; ``--resume`` continues from that checkpoint as a ``nohup`` run, which outlives
    its terminal (SIGHUP ignored) and finishes. (A killed CLI: tests/training/test_cli_orphans.py; its row read
    ``interrupted`` as the app next looks: tests/training/test_gone_holders.py.)"""
    from masuka.training.runs import run_status

    data = data_with_dataset(tmp_path)
    run_dir = data / "runs" / "run-00001"
    first = subprocess.Popen(masuka(data, *train_args(tiny_model("flux"), 400, "--save-every", "1000"), "--json"),
                             cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for(lambda: _step(data, 1) >= 2, "step 2")
    first.send_signal(signal.SIGTERM)
    out, err = first.communicate(timeout=WAIT_S)
    interrupted = json.loads(out)
    assert first.returncode == 1 and interrupted["status"] == "interrupted" and interrupted["lora"] is None, err
    assert "checkpoint saved" in err and interrupted["steps"] >= 2
    saved = interrupted["steps"]
    assert err.count("checkpoint saved at step") == 1, err  # printed once (a stop at a scheduled save: see
    # tests/training/test_interrupt_checkpoint.py)
    assert [c.name for c in run_dir.glob("checkpoint-*")] == [f"checkpoint-{saved:06d}"]
    studio = Studio.open(Config.from_env(data_dir=data, auth=""))
    try:  # 60 more steps rather than the rest of 400, so the test stays quick: same row, same checkpoint
        row = studio.store.get("jobs", 1)
        studio.store.update("jobs", 1, total=saved + 60, params={**row["params"], "steps": saved + 60})
    finally:
        studio.close()

    # --resume continues the same run from that checkpoint, as a ``nohup`` run: its terminal closes while it
    # trains, and it goes on to the end
    second = subprocess.Popen(masuka(data, "train", "--resume", "1", "--json"), cwd=ROOT, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, preexec_fn=_ignore_sighup,
                              env={**os.environ, "OMP_NUM_THREADS": "1"})
    wait_for(lambda: second.poll() is not None or _step(data, 1) > saved, "the run to train again")
    assert second.poll() is None, second.communicate()  # still training when the terminal closes
    second.send_signal(signal.SIGHUP)  # the terminal closed
    out, err = second.communicate(timeout=WAIT_S)
    result = json.loads(out)
    assert second.returncode == 0 and result["status"] == "completed" and result["steps"] == saved + 60, err
    assert f"resumed from the checkpoint at step {saved}" in _row(data, 1)["log"]
    studio = Studio.open(Config.from_env(data_dir=data, auth=""))
    try:
        status = run_status(studio, 1)
        assert status["status"] == "completed" and status["step"] == saved + 60, status["error"]
        assert [step for step, _loss in status["losses"]] == list(range(1, saved + 61))  # continuous steps
    finally:
        studio.close()
    listed = json.loads(run_cli(masuka(data, "runs", "--json")).stdout)["runs"]
    assert [(r["run"], r["status"], r["step"]) for r in listed] == [(1, "completed", saved + 60)]


def _ignore_sighup() -> None:
    signal.signal(signal.SIGHUP, signal.SIG_IGN)  # what ``nohup`` does before it execs the command


def _row(data: Path, run_id: int) -> dict:
    """The run's row as the processes left it (its columns that are set; ``log`` and ``step`` are what the waits
    read): one plain query, cheap enough to repeat every 50 ms while a subprocess works."""
    database = data / "masuka.db"
    if not database.is_file():
        return {}
    with closing(sqlite3.connect(database, timeout=30)) as conn:
        conn.row_factory = sqlite3.Row
        row = conn.execute("select * from jobs where id = ?", [run_id]).fetchone()
    return {key: row[key] for key in row.keys() if row[key] is not None} if row else {}


def _step(data: Path, run_id: int) -> int:
    return _row(data, run_id).get("step", 0)
