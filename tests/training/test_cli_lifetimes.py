"""How long ``python -m masuka train`` and its ``--gpus N`` workers live: a ``nohup`` run outlives its terminal, and a
worker whose ``accelerate launch`` process died while the worker was still starting ends too."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest

from .test_cli import ROOT, WAIT_S, _step, data_with_dataset, masuka, train_args, wait_for


def _ignore_sighup() -> None:
    signal.signal(signal.SIGHUP, signal.SIG_IGN)  # what ``nohup`` does before it execs the command


def test_a_nohup_run_goes_on_when_its_terminal_closes(tmp_path, tiny_model):
    data = data_with_dataset(tmp_path)
    run = subprocess.Popen(masuka(data, *train_args(tiny_model("flux"), 60, "--save-every", "1000"), "--json"),
                           cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                           preexec_fn=_ignore_sighup, env={**os.environ, "OMP_NUM_THREADS": "1"})
    wait_for(lambda: _step(data, 1) >= 2, "step 2")
    run.send_signal(signal.SIGHUP)  # the terminal closed
    out, err = run.communicate(timeout=WAIT_S)
    result = json.loads(out)
    assert run.returncode == 0 and result["status"] == "completed" and result["steps"] == 60, err


# The worker: started by a stand-in for ``accelerate launch`` (the command's child), it waits until that process
# has died (it died while the worker imported), then arranges to end with it, as a ``--gpus N`` worker does.
WORKER = """
import os, signal, sys
launcher, command = int(sys.argv[2]), int(sys.argv[3])
sys.stdout.write("started\\n"); sys.stdout.flush()
while sys.argv[1] == "launcher-dies" and os.getppid() == launcher:
    signal.sigtimedwait([signal.SIGUSR1], 0.05)
from masuka.commands.train import _die_with_launcher, interrupt_on_signals
interrupt = interrupt_on_signals()
_die_with_launcher(command)
print("interrupted at once" if interrupt.is_set() else "running")
if sys.argv[1] == "launcher-lives":
    os.kill(launcher, signal.SIGKILL)  # killed outright now: the arranged signal comes
print("interrupted" if interrupt.wait(60) else "went on")
"""
LAUNCHER = """
import os, subprocess, sys
worker = subprocess.Popen([sys.executable, "-c", sys.argv[1], sys.argv[2], str(os.getpid()), sys.argv[3]],
                          stdout=sys.stdout)
if sys.argv[2] == "launcher-dies":
    sys.exit(0)
worker.wait()
"""


@pytest.mark.parametrize("case", ["launcher-dies", "launcher-lives"])
def test_a_worker_whose_launcher_died_during_its_start_ends(case):
    command = str(os.getpid())  # this test process stands for ``train --gpus 2`` (--launched-by)
    done = subprocess.run([sys.executable, "-c", LAUNCHER, WORKER, case, command], cwd=ROOT, capture_output=True,
                          text=True, timeout=WAIT_S)
    lines = done.stdout.split()
    expected = {"launcher-dies": "started interrupted at once interrupted",
                "launcher-lives": "started running interrupted"}[case]
    assert " ".join(lines) == expected, done.stderr
