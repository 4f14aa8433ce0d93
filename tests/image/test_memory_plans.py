"""Memory plans are rows of one table: a row added there reaches the CLI, the Image tab, validation and placement."""

from __future__ import annotations

import json

import gradio as gr
import pytest
from diffusers.hooks.group_offloading import _is_group_offload_enabled

from masuka import memory_plans
from masuka.cli import build_parser, main
from masuka.config import Config
from masuka.errors import InvalidInput
from masuka.image.generate import ImageRequest, generate_images
from masuka.image.pipelines import get_pipeline
from masuka.memory_plans import MemoryPlan
from masuka.models.catalog import resolve_image_model
from masuka.store import Store
from masuka.ui import image
from masuka.ui.common import UIContext

STREAM = MemoryPlan("stream_test", "a test plan: layers stream one at a time", "group_offload")


@pytest.fixture
def stream_plan(monkeypatch):
    """The table with one more row, placed as ``group_offload`` places (applied even on the CPU)."""
    monkeypatch.setattr(memory_plans, "PLANS", (*memory_plans.PLANS, STREAM))


def test_a_plan_is_refused_until_its_row_is_in_the_table(studio, tiny_model, capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["generate", "--prompt", "a fox", "--memory-plan", STREAM.name])
    assert "invalid choice: 'stream_test'" in capsys.readouterr().err
    with pytest.raises(InvalidInput, match=r"Unknown memory plan 'stream_test': use auto, full, model_offload"):
        generate_images(studio, ImageRequest(prompt="a fox", model=str(tiny_model("flux")), memory_plan=STREAM.name))


def test_a_row_added_to_the_table_is_offered_and_applied(stream_plan, studio, tiny_model, tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["generate", "--help"])
    assert f"{STREAM.name} ({STREAM.help})" in " ".join(capsys.readouterr().out.split())
    ctx = UIContext(studio)
    with gr.Blocks() as demo:
        with gr.Tabs() as ctx.tabs, gr.Tab("Image", id="image"):
            image.build(ctx)
    dropdown = next(b for b in demo.blocks.values() if getattr(b, "label", None) == "Memory plan")
    assert (f"{STREAM.name}: {STREAM.help}", STREAM.name) in dropdown.choices

    data, model = tmp_path / "data", str(tiny_model("flux"))
    code = main(["generate", "--data-dir", str(data), "--model", model, "--prompt", "a fox", "--steps", "2",
                 "--width", "64", "--height", "64", "--memory-plan", STREAM.name, "--json"])
    assert code == 0, capsys.readouterr().err
    assert len(json.loads(capsys.readouterr().out)["images"]) == 1
    row = Store(Config.from_env(data_dir=data).db_path).find("generations", limit=1)[0]
    assert row["status"] == "completed" and row["params"]["memory_plan"] == STREAM.name

    pipe = get_pipeline(studio.models, resolve_image_model(model), memory=STREAM.name)
    assert _is_group_offload_enabled(pipe.transformer) and pipe.vae.use_tiling  # the row's placement, VAE tiled


def test_a_row_s_package_is_asked_for_before_anything_loads(monkeypatch, studio, tiny_model):
    needy = MemoryPlan("needy_test", "needs a package", "model_offload", package="masuka_no_such_package")
    monkeypatch.setattr(memory_plans, "PLANS", (*memory_plans.PLANS, needy))
    with pytest.raises(InvalidInput, match=r"needy_test memory plan needs the masuka_no_such_package package, "
                                           r"which is not installed: pip install masuka_no_such_package"):
        generate_images(studio, ImageRequest(prompt="a fox", model=str(tiny_model("flux")), memory_plan=needy.name))
    assert studio.models.loads == 0
