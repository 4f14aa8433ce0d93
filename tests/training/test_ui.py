"""The Train tab's API through gradio_client against the live app."""

from __future__ import annotations

import re
import time

import gradio as gr
import pytest
from gradio_client import Client

from masuka import jobs
from masuka.ui import checkpoints
from masuka.ui import train as train_tab

from .conftest import add_dataset

WAIT_S = 240


def test_start_watch_and_stop_through_the_api(live_app, tiny_model):
    app = live_app()
    add_dataset(app.studio)
    client = Client(app.url, verbose=False)
    started = client.predict("fox", str(tiny_model("sd3")), "12gb", 3, 1e-3, 4, 4, 0, 1, 64, "adamw", "cosine", 1,
                             0.05, 7, "sks, a fox", 3, 0, 2, api_name="/start_training")
    assert started["status"] in ("queued", "running") and started["total"] == 3
    deadline = time.monotonic() + WAIT_S
    status = started
    while status["status"] in ("queued", "running"):
        assert time.monotonic() < deadline, "the run did not finish in time"
        time.sleep(0.2)
        status = client.predict(started["run"], api_name="/training_status")
    assert status["status"] == "completed", status["error"]
    assert [step for step, _loss in status["losses"]] == [1, 2, 3] and len(status["samples"]) == 1
    assert status["lora"].endswith(".safetensors") and "cached 3 image(s)" in status["log"]
    with pytest.raises(Exception, match="already completed"):
        client.predict(started["run"], False, api_name="/stop_training")
    with pytest.raises(Exception, match="has no images"):
        add_dataset(app.studio, "empty", images=0)
        client.predict("empty", str(tiny_model("sd3")), "12gb", 3, 1e-3, 4, 4, 0, 1, 64, "adamw", "constant", 0,
                       0.05, 7, "", 0, 0, 2, api_name="/start_training")


def test_the_api_takes_the_ranks_and_caption_dropouts_the_cli_takes_and_refuses_the_others_alike(live_app,
                                                                                                    tiny_model):
    """The Train tab's sliders span the checks' ranges (options.py): rank 2 and caption dropout 0.7 start a run
    through the API as through the CLI; a value out of range is refused naming the same limit."""
    from masuka.errors import InvalidInput
    from masuka.training.options import TrainOptions
    from masuka.training.runs import start_training

    app = live_app()
    add_dataset(app.studio)
    client = Client(app.url, verbose=False)
    base = str(tiny_model("flux"))

    def start(rank, dropout):
        return client.predict("fox", base, "24gb", 1, 1e-3, rank, 0, 0, 1, 64, "adamw", "constant", 0, dropout, 7,
                              "", 0, 0, 2, "local", "", api_name="/start_training")

    started = start(2, 0.7)
    params = jobs.get(app.studio.store, started["run"]).params
    assert (params["rank"], params["caption_dropout"]) == (2, 0.7)
    assert app.studio.jobs.wait(started["run"], timeout=WAIT_S).status == "completed"
    for rank, dropout, cli_says, api_says in [
        (0, 0.05, "Rank must be between 1 and 128 (got 0)", "Rank must be at least 1 (got 0)"),
        (129, 0.05, "Rank must be between 1 and 128 (got 129)", "Rank must be at most 128 (got 129)"),
        (16, 1.0, "Caption dropout must be from 0 to below 1 (got 1)", "Caption dropout must be at most 0.99 (got 1"),
    ]:
        with pytest.raises(InvalidInput, match=re.escape(cli_says)):  # what the CLI prints after "error: "
            start_training(app.studio, TrainOptions("fox", base, steps=1, preset="24gb", lr=1e-3, rank=rank,
                                                    caption_dropout=dropout, resolution=64))
        with pytest.raises(Exception, match=re.escape(api_says or cli_says)):
            start(rank, dropout)


def test_the_alpha_field_starts_empty_so_alpha_follows_the_rank(studio, tiny_model):
    add_dataset(studio)
    with gr.Blocks():
        options, _cost = train_tab._options()
    assert options["alpha"].value is None and options["alpha"].info == "Empty: the rank"
    started = train_tab.start(studio, "fox", str(tiny_model("flux")), "24gb", 1, 1e-3, 64, options["alpha"].value,
                              0, 1, 64, "adamw", "constant", 0, 0.05, 7, "", 0, 0, 2)
    assert jobs.get(studio.store, started["run"]).params["alpha"] == 64.0
    assert studio.jobs.wait(started["run"], timeout=WAIT_S)["status"] == "completed"


def test_the_caption_dropout_slider_ends_at_the_largest_dropout_the_check_takes():
    """The slider's maximum starts a run (1.0, the check's limit, is refused); one step more reaches the limit."""
    from masuka.training.options import CAPTION_DROPOUT_BELOW, TrainOptions, check_options, fill_defaults

    with gr.Blocks():
        options, _cost = train_tab._options()
    slider = options["caption_dropout"]
    assert slider.maximum < CAPTION_DROPOUT_BELOW <= slider.maximum + slider.step
    check_options(fill_defaults(TrainOptions(dataset="fox", base="x", caption_dropout=slider.maximum), "sdxl"),
                  "sdxl", 8)


@pytest.mark.parametrize("run, step, message", [
    ("#1 fox", 1, "'#1 fox' is not a run: choose one from the Run list"),
    (1, "latest", "Checkpoint step must be a whole number \\(got 'latest'\\)"),
])
def test_a_typed_run_or_checkpoint_that_is_no_number_is_refused_in_words(studio, run, step, message):
    with pytest.raises(gr.Error, match=message):
        checkpoints.keep_checkpoint(studio, run, step)
