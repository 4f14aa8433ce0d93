"""ControlNet on the tiny SDXL and FLUX pipelines: tiny random ControlNets loaded through from_pretrained, the
canny and depth preprocessors, the parameters text and the CLI's ``--control``."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image, ImageDraw

from masuka.cli import main
from masuka.errors import InvalidInput
from masuka.image.control import Control, parse_control, read_controls
from masuka.image.metadata import parse_parameters, read_parameters
from masuka.image.preprocess import canny, depth, depth_estimator
from masuka.image.tasks import InitImage
from masuka.models.tiny_control import save_tiny_controlnet, save_tiny_depth_model
from tests.image.guides import go_offline, offline_refusal, pixels, point_profile, run, square_picture


@pytest.fixture(scope="session")
def tiny_controlnet(tmp_path_factory):
    made = {}

    def make(architecture: str):
        if architecture not in made:
            made[architecture] = save_tiny_controlnet(architecture, tmp_path_factory.mktemp(f"cn-{architecture}"))
        return made[architecture]

    return make


@pytest.fixture(scope="session")
def tiny_depth(tmp_path_factory):
    return save_tiny_depth_model(tmp_path_factory.mktemp("depth"))


@pytest.fixture
def square(tmp_path):
    return square_picture(tmp_path)


@pytest.mark.parametrize("architecture", ["sdxl", "flux"])
def test_a_control_steers_the_image_and_weight_zero_leaves_it_alone(studio, tiny_model, tiny_controlnet, square,
                                                                    architecture):
    model, net = tiny_model(architecture), str(tiny_controlnet(architecture))
    plain = run(studio, model)
    steered = run(studio, model, controls=[Control("canny", square, 1.0, 0.0, 1.0, net)])
    parked = run(studio, model, controls=[Control("canny", square, 0.0, model=net)])
    assert np.abs(pixels(steered) - pixels(plain)).mean() > 1, "the control changes the image"
    assert np.array_equal(pixels(parked), pixels(plain)), "weight 0 is the same as no control"
    assert studio.models.loads == 1, "the ControlNet pipeline shares the loaded weights"
    row = studio.store.get("generations", steered.id)
    (kept,) = row["params"]["controls"]
    assert (kept["kind"], kept["weight"], kept["model"]) == ("canny", 1.0, net)
    copy = studio.config.absolute(kept["image"])
    assert copy.parent.name == "inputs" and copy.is_relative_to(studio.config.data_dir)
    assert np.array_equal(np.asarray(Image.open(copy).convert("RGB")), np.asarray(Image.open(square).convert("RGB")))
    assert row["params"]["control_kind"] == "canny" and row["params"]["control_image"] == kept["image"]


def test_several_controls_with_their_own_weights_and_steps(studio, tiny_model, tiny_controlnet, square):
    model, net = tiny_model("sdxl"), str(tiny_controlnet("sdxl"))
    one = run(studio, model, controls=[Control("canny", square, 1.0, model=net)])
    two = run(studio, model, controls=[Control("canny", square, 1.0, model=net),
                                       Control("image", square, 0.8, 0.0, 0.5, model=net)])
    assert not np.array_equal(pixels(one), pixels(two))
    text = read_parameters(two.path)
    assert 'ControlNet 1: "Module: none, Model: ' in text
    controls = read_controls(parse_parameters(text).extra)
    assert controls == [dict(kind="canny", model=net, weight=1.0, start=0.0, end=1.0),
                        dict(kind="image", model=net, weight=0.8, start=0.0, end=0.5)]


def test_canny_draws_the_edges_white_on_black(square):
    edges = np.asarray(canny(Image.open(square)).convert("L"))
    assert edges.shape == (64, 64)
    assert set(np.unique(edges)) == {0, 255}
    assert edges[32, 32] == 0 and edges[4, 4] == 0, "flat areas have no edge"
    assert edges[14:19, 32].max() == 255 and edges[32, 14:19].max() == 255, "the square's sides are edges"


def test_depth_from_a_tiny_model_has_the_picture_size(tiny_depth):
    picture = Image.new("RGB", (96, 80), "navy")
    ImageDraw.Draw(picture).ellipse((20, 10, 70, 60), fill="orange")
    result = depth(picture, depth_estimator(str(tiny_depth)))
    assert result.size == (96, 80) and result.mode == "RGB"


def test_a_depth_control_runs_through_the_depth_model(studio, tiny_model, tiny_controlnet, tiny_depth, square,
                                                      monkeypatch):
    monkeypatch.setenv("MASUKA_DEPTH_MODEL", str(tiny_depth))
    net = str(tiny_controlnet("flux"))
    result = run(studio, tiny_model("flux"), controls=[Control("depth", square, 0.7, model=net)])
    assert 'ControlNet 0: "Module: depth' in read_parameters(result.path)
    assert studio.store.get("generations", result.id)["status"] == "completed"


@pytest.mark.parametrize("control, message", [
    (dict(weight=2.5), "weight must be between 0 and 2"), (dict(weight=-0.1), "weight must be between 0 and 2"),
    (dict(start=0.6, end=0.4), "start and end"), (dict(image="missing"), "does not exist"),
    (dict(kind="pose"), "unknown kind"), (dict(weight="strong"), "weight must be a number"),
    (dict(end=float("nan")), "start and end"),
])
def test_bad_controls_are_refused_before_anything_runs(studio, tiny_model, square, tmp_path, control, message):
    values = {"kind": "canny", "image": square, **control}
    if values["image"] == "missing":
        values["image"] = tmp_path / "nope.png"
    with pytest.raises(InvalidInput, match=message):
        run(studio, tiny_model("sdxl"), controls=[Control(**values)])
    assert not studio.store.count("generations")


def test_control_on_a_model_without_controlnet_names_the_model(studio, tiny_model, square):
    model = tiny_model("sd3")
    with pytest.raises(InvalidInput, match=rf"{model}.*SD3.*no ControlNet pipeline"):
        run(studio, model, controls=[Control("canny", square)])


def test_control_with_a_starting_image_or_fast_is_refused(studio, tiny_model, square):
    with pytest.raises(InvalidInput, match="text-to-image"):
        run(studio, tiny_model("sdxl"), init=InitImage(square, 0.5), controls=[Control("canny", square)])
    with pytest.raises(InvalidInput, match="Fast is for text-to-image without control images"):
        run(studio, tiny_model("sdxl"), fast=True, controls=[Control("canny", square)])


def test_parse_control_takes_kind_path_and_weight():
    assert parse_control("canny:/a/b.png:0.6") == Control("canny", "/a/b.png", 0.6)
    assert parse_control("depth:c:/x.png") == Control("depth", "c:/x.png", 1.0)
    with pytest.raises(InvalidInput, match="KIND:PATH"):
        parse_control("sketch:/a.png")


def test_a1111_controlnet_fields_read_back():
    text = ('a cat\nSteps: 20, Sampler: Euler, Seed: 1, ControlNet 0: "Module: depth_midas, Model: '
            'control_v11f1p_sd15_depth [cfd03158], Weight: 0.75, Resize Mode: Crop and Resize, '
            'Guidance Start: 0.1, Guidance End: 0.9"')
    assert read_controls(parse_parameters(text).extra) == [
        dict(kind="depth", model="control_v11f1p_sd15_depth [cfd03158]", weight=0.75, start=0.1, end=0.9)]


def test_cli_control_flag(capsys, tmp_path, tiny_model, tiny_controlnet, square, monkeypatch):
    point_profile(monkeypatch, "sdxl", controlnet=str(tiny_controlnet("sdxl")))
    data = ["--data-dir", str(tmp_path / "data")]
    base = ["generate", *data, "--model", str(tiny_model("sdxl")), "--prompt", "a boat", "--steps", "1",
            "--width", "64", "--height", "64"]
    code = main([*base, "--control", f"canny:{square}:0.9", "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    image = json.loads(out)["images"][0]
    assert read_controls(parse_parameters(read_parameters(image)).extra)[0]["weight"] == 0.9
    for flag, message in ((f"sketch:{square}", "KIND:PATH"), (f"canny:{square}:3", "weight"),
                          (f"canny:{tmp_path / 'nope.png'}", "does not exist")):
        assert main([*base, "--control", flag]) == 2
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1
    assert main(["queue", "add", *data, "--model", str(tiny_model("sdxl")), "--prompt", "a boat",
                 "--control", f"canny:{square}"]) == 2
    assert "not pictures" in capsys.readouterr().err


def test_a_controlnet_that_cannot_be_had_is_named(capsys, tmp_path, tiny_model, square, monkeypatch):
    """Offline, with the default ControlNet not in the cache: one line naming it and offline as the reason (as the
    base model's does), not the loader's missing config.json."""
    go_offline(monkeypatch)
    code = main(["generate", "--data-dir", str(tmp_path / "data"), "--model", str(tiny_model("sdxl")), "--prompt",
                 "a boat", "--steps", "1", "--width", "64", "--height", "64", "--control", f"canny:{square}"])
    line = offline_refusal(capsys, code)
    assert "The ControlNet diffusers/controlnet-canny-sdxl-1.0 is not downloaded" in line
    assert "config.json" not in line


def test_a_named_sdxl_union_controlnet_runs_several_kinds(capsys, tmp_path, tiny_model, tiny_depth, square,
                                                          monkeypatch):
    monkeypatch.setenv("MASUKA_DEPTH_MODEL", str(tiny_depth))
    union = str(save_tiny_controlnet("sdxl", tmp_path / "union", union=True))
    base = ["generate", "--data-dir", str(tmp_path / "data"), "--model", str(tiny_model("sdxl")), "--prompt",
            "a boat", "--steps", "1", "--width", "64", "--height", "64", "--seed", "3", "--json"]
    assert main([*base, "--controlnet", union, "--control", f"canny:{square}", "--control", f"depth:{square}:0.5"]) == 0
    guided = json.loads(capsys.readouterr().out)["images"][0]
    assert main(base) == 0
    plain = json.loads(capsys.readouterr().out)["images"][0]
    assert not np.array_equal(np.asarray(Image.open(guided)), np.asarray(Image.open(plain)))
    assert [c["model"] for c in read_controls(parse_parameters(read_parameters(guided)).extra)] == [union, union]
    assert main([*base, "--controlnet", union, "--control", f"image:{square}"]) == 2
    assert "no mode for 'image'" in capsys.readouterr().err


def test_a_tiny_controlnet_follows_the_profiles_denoiser(monkeypatch):
    """Any UNet profile's tiny ControlNet is made from its UNet (and is its union class when asked), not only
    SDXL's."""
    from dataclasses import replace

    from masuka.models import architectures
    from masuka.models.tiny_control import tiny_controlnet

    monkeypatch.setitem(architectures.PROFILES, "unet-stand-in", replace(architectures.require("sdxl"),
                                                                          id="unet-stand-in"))
    union = tiny_controlnet("unet-stand-in", union=True)
    assert type(union).__name__ == "ControlNetUnionModel"
    assert type(tiny_controlnet("unet-stand-in")).__name__ == "ControlNetModel"
