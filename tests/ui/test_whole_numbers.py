"""A whole-number input given a fraction (``seed=1.5``, ``width=64.5``, ``seconds=4.5``) is refused by its handler
with the field's name, and nothing is made, queued or charged: no box rounds it first (Gradio's ``precision=0``
would), and no handler cuts it with ``int()``."""

from __future__ import annotations

import inspect
import re

import gradio as gr
import pytest
from gradio_client import Client
from PIL import Image

from masuka.errors import InvalidInput
from masuka.image.generate import plan_request
from masuka.training.backends import REMOTE_BACKENDS
from masuka.training.runs import start_training
from masuka.ui import checkpoints, compare, datasets, queue, train, upscale
from masuka.ui.video import price
from tests.training.conftest import add_dataset
from tests.training.test_runs import finish, options

#: the tab's label of each whole-number box that a fraction reaches unrounded, by tab
WHOLE_NUMBER_BOXES = {
    "Image": ["Width", "Height", "Seed (-1 = random)"],
    "Queue": ["Job (click a row; 0 = all of yours)", "Random picks per line (0 = every combination)"],
    "Train": ["Steps", "Batch size (0 = preset)", "Gradient accumulation", "Resolution (0 = preset)",
              "Warm-up steps", "Seed", "Sample every N steps (0 = never)", "Save every N steps",
              "Keep last K checkpoints", "Seed (-1 = one random seed)", "Steps (0 = model's)", "Width (0 = model's)",
              "Height (0 = model's)"],
    "Settings": ["Steps (0 = the model's)", "Width (0 = the model's)", "Height (0 = the model's)"],
    "Datasets": ["Minimum short side (px)"],
    "Compare": ["Seeds per prompt"],
    "Upscale": ["Tile size (px; 0 = whole, or with Detail the model's native size)", "Seed (detail; -1 = random)"],
}


def test_whole_number_boxes_pass_a_fraction_on_unrounded(studio):
    from masuka.ui.app import build_app

    numbers = [block for block in build_app(studio).blocks.values() if isinstance(block, gr.Number)]
    labels = [label for labels in WHOLE_NUMBER_BOXES.values() for label in labels]
    boxes = [box for box in numbers if box.label in labels]
    assert {box.label for box in boxes} == set(labels)
    assert [box.label for box in boxes if box.precision is not None] == []
    assert all(box.preprocess(64.5) == 64.5 for box in boxes)
    # nor does a Page box (History, Datasets): a fraction is refused (tests/history/test_paging.py)
    assert [box.label for box in numbers if box.precision is not None] == []
    assert [box.preprocess(1.6) for box in numbers if box.label == "Page"] == [1.6, 1.6]


def test_fractions_through_the_api_are_refused_and_nothing_is_made_or_charged(live_app, tiny_model, fake):
    server = fake("openai")
    app = live_app()
    client = Client(app.url, verbose=False)
    form = {"prompt": "a fox", "model": str(tiny_model("flux")), "steps": 1, "width": 64, "height": 64}
    for name, value in (("seed", 1.5), ("width", 64.5), ("height", 64.5)):
        for api in ("/generate_image", "/queue_add"):
            with pytest.raises(Exception) as refused:
                client.predict(**{**form, name: value}, api_name=api)
            assert re.search(rf"(?i){name} must be a whole number \(got '?{value}'?\)", str(refused.value)), api
    with pytest.raises(Exception) as refused:
        client.predict("a paper boat", "openai", "sora-2", 4.5, "1280x720", None, "", [], api_name="/generate_video")
    assert "Seconds must be a whole number (got 4.5)." in str(refused.value)
    assert not app.studio.store.find("generations") and not app.studio.store.find("queue")
    assert not app.studio.store.find("jobs") and server.creates == 0
    assert price(app.studio, "openai", "sora-2", 4.5, "1280x720", None, [], "a boat") == (
        "⚠️ Seconds must be a whole number (got 4.5).")
    assert price(app.studio, "openai", "sora-2", "4", "1280x720", None, [], "a boat").startswith(
        "**Estimated cost: $0.40**")


def test_handlers_refuse_a_fraction_they_used_to_cut(studio, tiny_model):
    request = gr.Request(username="ann")
    with pytest.raises(gr.Error, match=r"Random picks must be a whole number \(got 1.5\)"):
        queue.queue_form(studio, "a {red|blue} fox", "m", "", None, None, None, None, -1, 1, [], "auto", False, 0.0,
                         "", 1.5, False, False, False, 0.4, request=request)
    with pytest.raises(InvalidInput, match=r"Batch must be a whole number \(got 1.5\)"):
        plan_request(studio, queue.form_request("ann", "a fox", str(tiny_model("flux")), batch=1.5))
    with pytest.raises(gr.Error, match=r"Minimum short side must be a whole number \(got 300.5\)"):
        datasets.create_dataset(studio, "cats", "sks cat", min_side=300.5, request=request)
    assert not studio.store.find("queue") and not studio.store.find("datasets")
    assert train.remote_price(REMOTE_BACKENDS[0], "", 2.5) == "⚠️ Steps must be a whole number (got 2.5)."
    chosen = inspect.signature(train.start).bind(studio, "mine", "base", steps=2.0, seed=1.5)
    chosen.apply_defaults()
    options = train.run_options(chosen.arguments)  # a whole float as the int it is; a fraction left to the checks
    assert (options.steps, type(options.steps), options.seed) == (2, int, 1.5)


def test_compare_and_upscale_refuse_a_fraction_they_used_to_cut(studio, tiny_model, tmp_path):
    request = gr.Request(username="ann", session_hash="fractions")
    with pytest.raises(gr.Error, match=r"Seeds per prompt must be a whole number \(got 1.5\)"):
        compare.make(studio, "a fox", "m", "", None, None, None, None, -1, 1, [], "auto", False, 0.0, [], [], "",
                     1.5, request=request, progress=lambda *_a, **_k: None)
    picture = tmp_path / "small.png"
    Image.new("RGB", (64, 64), "teal").save(picture)
    with pytest.raises(gr.Error, match=r"Tile size must be a whole number \(got 512.5\)"):
        upscale.upscale(studio, str(picture), tile=512.5, request=request)
    with pytest.raises(gr.Error, match=r"Seed must be a whole number \(got 1.5\)"):
        upscale.upscale(studio, str(picture), detail=True, model=str(tiny_model("flux")), prompt="teal", tile=0,
                        seed=1.5, request=request)
    assert not studio.store.find("generations") and not studio.store.find("comparisons")


def test_checkpoint_comparisons_refuse_a_fractional_seed_or_size(studio, tiny_model):
    add_dataset(studio)
    run = start_training(studio, options(tiny_model("flux"), steps=2, save_every=1))
    assert finish(studio, run)["status"] == "completed"
    request = gr.Request(username="local")
    for seed, width, refusal in ((1.5, 64, "Seed must be a whole number"), (4, 64.5, "Width must be a whole number")):
        with pytest.raises(gr.Error, match=refusal):
            checkpoints.queue_checkpoints(studio, run, "sks, a fox", seed, 1, width, 64, request=request)
    assert not studio.store.find("queue") and not studio.store.find("generations")
