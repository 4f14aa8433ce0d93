"""Samplers: a grid axis whose cells differ, the name in the image's parameters, the model's own scheduler back
afterwards, and a sampler the model cannot use refused in one line."""

from __future__ import annotations

import re

import diffusers
import numpy as np
import pytest
from PIL import Image

from masuka.cli import main
from masuka.errors import InvalidInput
from masuka.image.generate import ImageRequest, generate_images, plan_request
from masuka.image.grid import parse_axis, plan_grid, run_grid
from masuka.image.metadata import parse_parameters, read_parameters


def pixels(path) -> np.ndarray:
    return np.asarray(Image.open(path), dtype=np.int16)


def test_sampler_axis_cells_differ_and_carry_their_sampler(studio, tiny_model):
    base = ImageRequest(prompt="a red fox", model=str(tiny_model("flux")), steps=3, width=64, height=64, seed=4)
    axes = [parse_axis("sampler=Euler,euler karras,Euler Exponential")]
    result = run_grid(studio, axes, plan_grid(studio, base, axes))
    made = [pixels(r.path) for r in result.images]
    assert not np.array_equal(made[0], made[1]) and not np.array_equal(made[0], made[2])
    assert [parse_parameters(read_parameters(r.path)).sampler for r in result.images] == [
        "Euler", "Euler Karras", "Euler Exponential"]
    rows = [studio.store.get("generations", r.id) for r in result.images]
    assert rows[1]["params"]["sampler"] == "Euler Karras" and rows[1]["params"]["grid"] == {"sampler": "euler karras"}


def test_sdxl_samplers_and_the_models_own_scheduler_afterwards(studio, tiny_model):
    model = str(tiny_model("sdxl"))
    request = ImageRequest(prompt="a red fox", model=model, steps=2, width=64, height=64, seed=8)
    own = pixels(generate_images(studio, request)[0].path)
    ancestral = generate_images(studio, ImageRequest(**{**request.__dict__, "sampler": "Euler a"}))[0]
    again = pixels(generate_images(studio, request)[0].path)
    assert not np.array_equal(own, pixels(ancestral.path))
    assert np.array_equal(own, again)  # the cached pipeline went back to its own scheduler
    assert parse_parameters(read_parameters(ancestral.path)).sampler == "Euler a"


def test_a_sampler_the_model_cannot_use_is_refused(studio, tiny_model, capsys, tmp_path):
    flux = ImageRequest(prompt="a fox", model=str(tiny_model("flux")), sampler="DPM++ 2M Karras")
    with pytest.raises(InvalidInput, match="flow-matching model.*Euler Karras"):
        plan_request(studio, flux)
    with pytest.raises(InvalidInput, match="Unknown sampler 'Bogus'"):
        plan_request(studio, ImageRequest(prompt="a fox", model=str(tiny_model("sdxl")), sampler="Bogus"))
    capsys.readouterr()  # what building the tiny models printed
    code = main(["grid", "--data-dir", str(tmp_path / "data"), "--model", str(tiny_model("flux")), "--prompt", "a fox",
                 "--x", "sampler=Euler,DDIM"])
    err = capsys.readouterr().err
    assert code == 2 and "sampler=DDIM" in err and len(err.strip().splitlines()) == 1


def test_an_unknown_sampler_lists_only_the_samplers_the_model_can_use(studio, tiny_model):
    """An unknown name on an SDXL model lists the classic samplers, not the flow-matching ones it would refuse in
    turn; while the model's family is unknown every name is listed."""
    from masuka.image.samplers import DIFFUSION_SAMPLERS, SAMPLER_NAMES, check_sampler

    with pytest.raises(InvalidInput) as refused:
        plan_request(studio, ImageRequest(prompt="a fox", model=str(tiny_model("sdxl")), sampler="Bogus"))
    said = str(refused.value)
    assert said.startswith("Unknown sampler 'Bogus': ") and "is a classic diffusion model" in said
    assert f"use {', '.join(DIFFUSION_SAMPLERS)}, or the model's own." in said and "Euler Karras" not in said
    with pytest.raises(InvalidInput, match=re.escape(f"use one of {', '.join(SAMPLER_NAMES)}.")):
        check_sampler("Bogus", None, "some/repo")


def test_the_image_tab_s_sampler_picker_is_used_recorded_and_reused(live_app, tiny_model, studio):
    from gradio_client import Client

    from masuka.ui.image import model_defaults

    model = str(tiny_model("sdxl"))
    *_, picker = model_defaults(studio, model)
    assert [value for _label, value in picker.choices][:3] == ["", "Euler", "Euler a"], "the model's own first"
    assert "Euler Karras" not in [value for _label, value in picker.choices], "flow-matching names are not offered"
    running = live_app()
    client = Client(running.url, verbose=False)
    _gallery, seeds, status = client.predict(prompt="a lighthouse", model=model, steps=2, width=64, height=64,
                                             seed=5, sampler="Euler a", api_name="/generate_image")
    assert status.startswith("Done"), status
    (row,) = running.studio.store.find("generations")
    assert row["params"]["sampler"] == "Euler a"
    assert parse_parameters(read_parameters(running.studio.config.absolute(row["output_path"]))).sampler == "Euler a"
    fields = client.predict(f"g{row['id']}", api_name="/history_reuse")["fields"]
    assert fields["sampler"] == "Euler a", "Reuse puts the sampler back in the picker"


@pytest.fixture(scope="module")
def edm_model(tmp_path_factory):
    """A tiny SDXL pipeline with Playground v2.5's EDM scheduler."""
    from masuka.models.architectures.sdxl import PROFILE
    from masuka.models.synthetic import tiny_pipeline

    pipe = tiny_pipeline("sdxl")
    class_name, config = PROFILE.real_models["playground-v2.5"]["scheduler"]
    pipe.scheduler = getattr(diffusers, class_name)(**config)
    folder = tmp_path_factory.mktemp("tiny-edm")
    pipe.save_pretrained(folder, safe_serialization=True)
    return folder


def test_an_edm_model_takes_only_the_edm_samplers(studio, edm_model):
    from masuka.image.samplers import fitting_sampler, model_scheduler, samplers_for
    from masuka.models.catalog import resolve_image_model
    from masuka.ui.image import model_defaults

    model = str(edm_model)
    *_, picker = model_defaults(studio, model)
    assert [value for _label, value in picker.choices] == ["", "DPM++ 2M EDM", "Euler EDM"]
    with pytest.raises(InvalidInput, match=r"EDM model.*'Euler a' does not fit it; use DPM\+\+ 2M EDM, Euler EDM"):
        plan_request(studio, ImageRequest(prompt="a fox", model=model, sampler="Euler a"))
    assert fitting_sampler("Euler a", model) == "", "an A1111 client's default sampler leaves the model's own"
    playground = resolve_image_model("playground-v2.5")  # known before its weights are downloaded
    assert list(samplers_for(playground.architecture, model_scheduler(playground))) == ["DPM++ 2M EDM", "Euler EDM"]
    request = ImageRequest(prompt="a red fox", model=model, steps=3, width=64, height=64, seed=2)
    own = generate_images(studio, request)[0]
    euler = generate_images(studio, ImageRequest(**{**request.__dict__, "sampler": "Euler EDM"}))[0]
    assert parse_parameters(read_parameters(own.path)).sampler == "DPM++ 2M EDM"
    assert parse_parameters(read_parameters(euler.path)).sampler == "Euler EDM"
    assert not np.array_equal(pixels(own.path), pixels(euler.path)) and pixels(euler.path).std() > 1


def test_samplers_before_loading_follow_the_profiles_scheduler_family(monkeypatch):
    """While a model's scheduler is unknown its profile's ``scheduler_family`` says which samplers fit, whatever
    its denoiser (a flow-matching UNet takes the flow samplers)."""
    from dataclasses import replace

    from masuka.image.samplers import FLOW_SAMPLERS, check_sampler, samplers_for
    from masuka.models import architectures

    flow_unet = replace(architectures.require("sdxl"), id="flow-unet", scheduler_family="flow")
    monkeypatch.setitem(architectures.PROFILES, "flow-unet", flow_unet)
    assert samplers_for("flow-unet") == FLOW_SAMPLERS
    with pytest.raises(InvalidInput, match="flow-matching model"):
        check_sampler("Euler a", "flow-unet", "a flow unet")
    assert "Euler a" in samplers_for("sdxl")
