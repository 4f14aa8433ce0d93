"""An interrupt (Ctrl-C, SIGTERM) at a step that was just checkpointed on schedule saves that step once."""

from __future__ import annotations

import threading

from masuka.training.options import TrainOptions
from masuka.training.runs import create_run, run_status, submit_run

WAIT_S = 240


def test_an_interrupt_at_a_scheduled_checkpoint_saves_and_logs_it_once(studio, tiny_model, dataset):
    interrupt = threading.Event()
    run = create_run(studio, TrainOptions(dataset="fox", base=str(tiny_model("flux")), steps=6, resolution=64,
                                          lr=1e-3, save_every=2, seed=7))
    submit_run(studio, run, interrupt, on_step=lambda step: step == 4 and interrupt.set())
    studio.jobs.wait(run, timeout=WAIT_S)
    status = run_status(studio, run)
    assert status["status"] == "interrupted" and status["checkpoint_step"] == 4, status["error"]
    saves = [line.split(" ", 1)[1] for line in status["log"].splitlines() if "checkpoint saved at step" in line]
    assert saves == ["checkpoint saved at step 2", "checkpoint saved at step 4"], status["log"]
