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


def test_checkpoint_actions_say_what_is_wrong_in_the_tab_s_words(studio, tiny_model):
    """No run chosen is "Choose a run first." (not "run None does not exist"); a shared setting out of range is
    named once, not blamed on a cell by a server path; an admin keeping another user's checkpoint is told whose
    library it went to."""
    from masuka.ui import train

    with pytest.raises(gr.Error) as unchosen:
        train.stop_run(studio, None, False)
    assert unchosen.value.message == "Choose a run first."
    add_dataset(studio)
    run = start_training(studio, options(tiny_model("flux"), steps=2, save_every=1))
    assert finish(studio, run)["status"] == "completed"
    request = gr.Request(session_hash="checkpoint-words")
    with pytest.raises(gr.Error) as refused:
        checkpoints.compare_checkpoints(studio, run, "sks, a fox", 4, 1, 63, 64, request=request,
                                        progress=lambda *_a, **_k: None)
    assert refused.value.message.startswith("Width must be") and str(studio.config.data_dir) not in str(refused.value)
    studio.store.update("jobs", run, owner="ann")  # ann's run; the caller may see it (an admin, as every user here)
    kept = checkpoints.keep_checkpoint(studio, run, 1, request=gr.Request(username="root"))
    assert "in ann's LoRA library" in kept and studio.store.find("loras")[0]["owner"] == "ann"
