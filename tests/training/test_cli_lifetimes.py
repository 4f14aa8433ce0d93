"""How long ``python -m masuka train --gpus N`` workers live: a worker whose ``accelerate launch`` process died while
the worker was still starting ends too. (A ``nohup`` run outliving its terminal: tests/training/test_cli.py.)"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from .test_cli import ROOT, WAIT_S

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
