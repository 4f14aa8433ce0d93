"""``train --gpus 2`` (CPU, gloo) whose terminal closes (SIGHUP) or which is killed outright (SIGKILL): its
``accelerate launch`` processes save a checkpoint and end, the run is ``interrupted``, and Resume continues it, two
processes training data parallel through accelerate to the end."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

import pytest

from masuka.config import Config
from masuka.studio import Studio
from masuka.training import checkpoints
from masuka.training.runs import run_status

from .test_cli import ROOT, WAIT_S, _step, data_with_dataset, masuka, train_args, wait_for


def _children(pid: int) -> list[int]:
    """Processes whose parent is ``pid`` (read from /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.append(int(entry.name))
    return found


def _group_gone(group: int) -> bool:
    try:
        os.killpg(group, 0)
    except ProcessLookupError:
        return True
    return False


def _hangup_as_a_terminal_sends_it() -> None:
    """SIGHUP at its default in the command, as a terminal's shell starts it, whatever the tests were started under:
    a SIGHUP ignored at the start (``nohup``) is meant to stay ignored."""
    signal.signal(signal.SIGHUP, signal.SIG_DFL)


@pytest.mark.slow
def test_sighup_or_a_killed_cli_interrupts_the_training_processes(tmp_path, tiny_model):
    data = data_with_dataset(tmp_path)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    first = subprocess.Popen(masuka(data, *train_args(tiny_model("flux"), 1000, "--save-every", "2000", "--gpus", "2"),
                                    "--json"), cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             env=env, preexec_fn=_hangup_as_a_terminal_sends_it)
    wait_for(lambda: _step(data, 1) >= 2, "step 2")
    launcher = _children(first.pid)
    assert len(launcher) == 1
    first.send_signal(signal.SIGHUP)  # the terminal closed: forwarded like SIGINT/SIGTERM
    out, err = first.communicate(timeout=WAIT_S)
    interrupted = json.loads(out)
    assert first.returncode == 1 and interrupted["status"] == "interrupted", err
    wait_for(lambda: _group_gone(launcher[0]), "the training processes to end")
    saved = interrupted["steps"]
    assert saved >= 2 and "checkpoint saved" in err

    # the resumed CLI is killed outright: its processes see it and stop the same way, nothing trains detached
    second = subprocess.Popen(masuka(data, "train", "--resume", "1", "--json"), cwd=ROOT, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for(lambda: _step(data, 1) >= saved + 2, f"step {saved + 2}")
    launcher = _children(second.pid)
    assert len(launcher) == 1
    second.send_signal(signal.SIGKILL)
    second.wait(timeout=30)
    wait_for(lambda: _group_gone(launcher[0]), "the training processes to end")
    studio = Studio.open(Config.from_env(data_dir=data, auth=""))
    try:
        row = studio.store.get("jobs", 1)
        assert row["status"] == "interrupted" and "checkpoint saved" in row["error"], row["error"]
        latest = checkpoints.latest(data / "runs" / "run-00001")
        assert latest is not None and latest.step == row["step"] >= saved + 2
        # shortened so the test stays quick: two more steps
        studio.store.update("jobs", 1, total=latest.step + 2, params={**row["params"], "steps": latest.step + 2})
    finally:
        studio.close()

    # Resume finishes it, two processes training data parallel through accelerate: continuous steps, a LoRA
    done = subprocess.run(masuka(data, "train", "--resume", "1", "--json"), cwd=ROOT, capture_output=True, text=True,
                          timeout=WAIT_S, env=env)
    result = json.loads(done.stdout)
    assert result["status"] == "completed" and result["steps"] == latest.step + 2, done.stderr
    assert "on 2 process(es)" in done.stderr and Path(result["lora"]).is_file()
    studio = Studio.open(Config.from_env(data_dir=data, auth=""))
    try:
        status = run_status(studio, 1)
        assert status["status"] == "completed" and status["step"] == latest.step + 2, status["error"]
        assert [step for step, _loss in status["losses"]] == list(range(1, latest.step + 3))
    finally:
        studio.close()
