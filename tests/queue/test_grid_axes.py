"""A grid keeps each axis in its slot: a Y axis without an X, or a Z without a Y, is refused in words (the Grid
tab's buttons, the /grid and /queue_grid API calls and the grid command alike), never slid into the empty slot's
place."""

from __future__ import annotations

import gradio as gr
import pytest
from gradio_client import Client

from masuka.cli import main
from masuka.ui.grid import add_grid, grid_form, make_grid

FORM = dict(negative_prompt="", steps=1, guidance=None, width=64, height=64, seed=3, loras=None, memory_plan="auto",
            fast=False, step_cache=0.0, sampler="")


def form(model, x: str, y: str, z: str) -> tuple:
    return grid_form("local", "a red fox", str(model), *FORM.values(), x, y, z)


def test_each_axis_keeps_its_slot(tiny_model):
    model = tiny_model("flux")
    with pytest.raises(Exception, match="The Y axis is filled but the X axis is empty"):
        form(model, "", "steps=1,2", "seed=1,2")
    with pytest.raises(Exception, match="The Z axis is filled but the Y axis is empty"):
        form(model, "steps=1,2", " ", "seed=1,2")
    with pytest.raises(Exception, match="The Y axis is filled but the X axis is empty"):
        form(model, "", "steps=1,2", "")
    _, axes = form(model, "steps=1,2", "seed=1,2", "")
    assert [axis.name for axis in axes] == ["steps", "seed"]
    _, axes = form(model, "steps=1,2", "seed=1,2", "guidance=1,2")
    assert [axis.name for axis in axes] == ["steps", "seed", "guidance"]


def test_the_tab_s_buttons_refuse_a_missing_axis_and_make_nothing(studio, tiny_model):
    args = dict(prompt="a red fox", model=str(tiny_model("flux")), **FORM, x="", y="steps=1,2", z="seed=1,2")
    with pytest.raises(gr.Error, match="The Y axis is filled but the X axis is empty"):
        add_grid(studio, **args)
    with pytest.raises(gr.Error, match="The Y axis is filled but the X axis is empty"):
        make_grid(studio, **args)
    assert studio.store.count("queue") == 0 and studio.store.count("generations") == 0


def test_the_api_refuses_a_missing_axis(live_app, tiny_model):
    app = live_app()
    client = Client(app.url, verbose=False)
    form = dict(prompt="a red fox", model=str(tiny_model("flux")), steps=1, width=64, height=64, seed=3)
    for api_name in ("/grid", "/queue_grid"):
        with pytest.raises(Exception, match="The Y axis is filled but the X axis is empty"):
            client.predict(**form, x="", y="steps=1,2", z="seed=1,2", api_name=api_name)  # X emptied
        with pytest.raises(Exception, match="The Z axis is filled but the Y axis is empty"):
            client.predict(**form, x="steps=1,2", y="", z="seed=1,2", api_name=api_name)
    assert app.studio.store.count("queue") == 0 and app.studio.store.count("generations") == 0


def test_the_grid_command_refuses_a_missing_axis(config, tiny_model, capsys):
    flags = ["grid", "--data-dir", str(config.data_dir), "--model", str(tiny_model("flux")), "--prompt", "a red fox",
             "--steps", "1", "--width", "64", "--height", "64"]
    for queued in ([], ["--queue"]):  # --x is required: a Z without a Y is the command's case
        assert main([*flags, "--x", "steps=1,2", "--z", "seed=1,2", *queued]) == 2
        assert "The Z axis is filled but the Y axis is empty" in capsys.readouterr().err
    assert not config.db_path.exists()  # refused before the studio opened: nothing queued or made
