"""Instruction editing on tiny FLUX.1 Kontext and FLUX.2 [klein] pipelines loaded through from_pretrained."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
from PIL import Image, ImageDraw

from masuka.cli import main
from masuka.errors import InvalidInput, ModelUnavailable
from masuka.image.generate import ImageRequest, generate_images
from masuka.models.catalog import resolve_image_model
from masuka.models.synthetic import save_tiny_pipeline


@pytest.fixture(scope="module")
def kontext(tmp_path_factory):
    return save_tiny_pipeline("flux", tmp_path_factory.mktemp("tiny-kontext"), task="edit")


@pytest.fixture
def pictures(tmp_path):
    """Two different 80x64 pictures."""
    paths = []
    for name, colour in (("red", (200, 30, 30)), ("blue", (30, 30, 200))):
        picture = Image.new("RGB", (80, 64), colour)
        ImageDraw.Draw(picture).ellipse((10, 8, 60, 50), fill=(240, 240, 240))
        picture.save(tmp_path / f"{name}.png")
        paths.append(tmp_path / f"{name}.png")
    return paths


def edit(studio, model, references, **kw):
    values = dict(prompt="make the circle green", model=str(model), steps=2, seed=7, references=list(references))
    return generate_images(studio, ImageRequest(**{**values, **kw}))[0]


def small(path):
    """A 48x64 copy of ``path``: under the 64-pixel side every edit model needs."""
    shrunk = path.with_name(f"small-{path.name}")
    Image.open(path).resize((48, 64)).save(shrunk)
    return shrunk


def pixels(result) -> np.ndarray:
    return np.asarray(Image.open(result.path).convert("RGB"), dtype=np.int16)


def test_kontext_is_recognised_from_its_pipeline_class(kontext):
    spec = resolve_image_model(str(kontext))
    assert (spec.pipeline, spec.architecture) == ("FluxKontextPipeline", "flux")
    kontext_dev = resolve_image_model("flux-kontext-dev")
    assert kontext_dev.source == "black-forest-labs/FLUX.1-Kontext-dev" and kontext_dev.vram_gb
    qwen_edit = resolve_image_model("qwen-image-edit-2509")
    assert (qwen_edit.source, qwen_edit.architecture) == ("Qwen/Qwen-Image-Edit-2509", "qwen_image")


def test_kontext_edits_a_reference_at_its_size_and_keeps_it(studio, kontext, pictures):
    red, blue = pictures
    from_red = edit(studio, kontext, [red])
    from_blue = edit(studio, kontext, [blue])
    assert Image.open(from_red.path).size == (80, 64), "the output takes the reference's size"
    assert not np.array_equal(pixels(from_red), pixels(from_blue)), "the reference steers the result"
    row = studio.store.get("generations", from_red.id)
    assert row["params"]["task"] == "edit" and row["prompt"] == "make the circle green"
    kept = studio.config.absolute(row["params"]["references"][0])
    assert kept.parent.name == "inputs" and kept.is_relative_to(studio.config.outputs_dir)
    assert np.array_equal(np.asarray(Image.open(kept)), np.asarray(Image.open(red))), "the reference is copied"
    assert studio.models.loads == 1


def test_flux2_takes_several_references(studio, tiny_model, pictures):
    red, blue = pictures
    model = tiny_model("flux2")
    one = edit(studio, model, [red], width=64, height=64)
    two = edit(studio, model, [red, blue], width=64, height=64)
    assert not np.array_equal(pixels(one), pixels(two)), "the second reference changes the result"
    assert len(studio.store.get("generations", two.id)["params"]["references"]) == 2


@pytest.mark.parametrize("case, message", [
    ("text model", "has no edit pipeline in MASUKA"), ("two for kontext", "takes at most 1 reference image"),
    ("no reference", "is an edit model: give it one or more images"), ("with init", "one or the other"),
    ("missing", "does not exist"), ("too small", "is 48x64: each side must be at least 64 pixels"),
])
def test_bad_edits_are_refused_before_any_work(studio, tiny_model, kontext, pictures, case, message):
    from masuka.image.tasks import InitImage

    red, blue = pictures
    request = {"text model": dict(model=tiny_model("sdxl"), references=[red]),
               "two for kontext": dict(model=kontext, references=[red, blue]),
               "no reference": dict(model=kontext, references=[]),
               "with init": dict(model=kontext, references=[red], init=InitImage(blue)),
               "missing": dict(model=kontext, references=[red.parent / "nope.png"]),
               "too small": dict(model=tiny_model("flux2"), references=[small(red)])}[case]
    with pytest.raises(InvalidInput, match=message):
        edit(studio, **request)
    assert not studio.store.count("generations")


def test_qwen_edit_says_it_needs_torchvision_when_it_is_missing(studio, tmp_path, pictures, monkeypatch):
    monkeypatch.setitem(sys.modules, "torchvision", None)  # as on the CPU-only torch wheel: not importable
    folder = tmp_path / "qwen-edit"
    folder.mkdir()
    (folder / "model_index.json").write_text(json.dumps({"_class_name": "QwenImageEditPlusPipeline"}))
    with pytest.raises(ModelUnavailable, match="needs torchvision"):
        edit(studio, folder, pictures)


def test_cli_edit_prints_generate_json_and_exits_2_on_bad_input(capsys, tmp_path, kontext, tiny_model, pictures):
    red, blue = pictures
    data = ["--data-dir", str(tmp_path / "data")]
    code = main(["edit", *data, "--model", str(kontext), "--image", str(red), "--prompt", "add a hat", "--steps", "1",
                 "--seed", "3", "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    result = json.loads(out)
    assert set(result) == {"images", "seeds", "ids"} and result["seeds"] == [3]
    assert Image.open(result["images"][0]).size == (80, 64)
    for model, images, message in ((kontext, [red, blue], "takes at most 1"),
                                   (tiny_model("sdxl"), [red], "has no edit pipeline in MASUKA")):
        code = main(["edit", *data, "--model", str(model), *[f"--image={p}" for p in images], "--prompt", "x"])
        err = capsys.readouterr().err
        assert code == 2 and message in err and len(err.strip().splitlines()) == 1


def test_an_edit_pipeline_keeps_the_planned_size_by_its_profiles_arguments(monkeypatch):
    """The call arguments that keep an edit pipeline at the planned size are its profile's
    (``edit_size_arguments``), for any edit pipeline class."""
    from dataclasses import replace

    from masuka.image.edit import edit_kwargs
    from masuka.models import architectures

    profile = replace(architectures.require("flux"), id="stand-in", pipelines={"txt2img": "StandInPipeline"},
                      edit_pipelines={"StandInEditPipeline": 1},
                      edit_size_arguments={"StandInEditPipeline": lambda width, height: {"target": (width, height)}})
    monkeypatch.setitem(architectures.PROFILES, "stand-in", profile)
    picture = Image.new("RGB", (64, 64))
    pipe = type("StandInEditPipeline", (), {})()
    assert edit_kwargs(pipe, [picture], 96, 48) == {"image": picture, "target": (96, 48)}
    kontext = type("FluxKontextPipeline", (), {})()
    assert edit_kwargs(kontext, [picture], 96, 48) == {"image": picture, "max_area": 96 * 48, "_auto_resize": False}
