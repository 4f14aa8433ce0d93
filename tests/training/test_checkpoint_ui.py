"""The Train tab's checkpoint comparison through gradio_client against the live app."""

from __future__ import annotations

import gradio as gr
import pytest
from gradio_client import Client

from masuka.training.runs import start_training
from masuka.ui import checkpoints

from .conftest import add_dataset
from .test_runs import finish, options


def test_compare_and_use_a_checkpoint_through_the_api(live_app, tiny_model):
    app = live_app()
    add_dataset(app.studio)
    run = start_training(app.studio, options(tiny_model("flux"), steps=2, save_every=1))
    assert finish(app.studio, run)["status"] == "completed"
    client = Client(app.url, verbose=False)

    grid, cells = client.predict(run, "sks, a fox", 4, 1, 64, 64, api_name="/compare_checkpoints")
    assert grid.endswith(".png") and len(cells) == 2
    assert [cell["caption"] for cell in cells] == [f"lora run-{run:05d}-step{step}.safetensors" for step in (1, 2)]
    kept = client.predict(run, 1, api_name="/use_checkpoint")
    assert f"run{run}-step1" in kept and "LoRA list" in kept
    with pytest.raises(Exception, match="no checkpoint at step 5"):
        client.predict(run, 5, api_name="/use_checkpoint")


def test_comparing_checkpoints_stops_between_steps_and_keeps_the_cells_made(studio, tiny_model):
    from tests.image.test_grid import StopAfter

    add_dataset(studio)
    run = start_training(studio, options(tiny_model("flux"), steps=2, save_every=1))
    assert finish(studio, run)["status"] == "completed"
    request = gr.Request(session_hash="checkpoints")
    with pytest.raises(gr.Error, match=r"Stopped by the user after 1 of 2 cells; the cells made are kept"):
        checkpoints.compare_checkpoints(studio, run, "sks, a fox", 4, 1, 64, 64, request=request,
                                        progress=StopAfter(studio, checkpoints.TAB, request, images=1))
    assert studio.store.count("generations", "status = 'completed'") == 1
