"""Style references on the tiny pipelines: a random IP-Adapter (SDXL) and Redux prior (FLUX.1) written at test
time in the layouts their real loaders read, the parameters text and the CLI's ``--reference``."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image, ImageDraw

from masuka.cli import main
from masuka.errors import InvalidInput
from masuka.image.metadata import parse_parameters, read_parameters
from masuka.image.reference import StyleReference, parse_reference, read_references
from masuka.models.tiny_control import save_tiny_ip_adapter, save_tiny_redux
from tests.image.guides import go_offline, offline_refusal, pixels, point_profile, run


@pytest.fixture(scope="session")
def tiny_references(tmp_path_factory):
    """architecture -> folder of its tiny IP-Adapter (SDXL) or Redux prior (FLUX.1)."""
    return {"sdxl": save_tiny_ip_adapter("sdxl", tmp_path_factory.mktemp("ip-adapter")),
            "flux": save_tiny_redux("flux", tmp_path_factory.mktemp("redux"))}


@pytest.fixture
def local_references(monkeypatch, tiny_references):
    """The profiles' reference repos pointed at the tiny folders."""
    for architecture, folder in tiny_references.items():
        point_profile(monkeypatch, architecture, reference=str(folder))


@pytest.fixture
def pictures(tmp_path):
    red = Image.new("RGB", (64, 64), "white")
    ImageDraw.Draw(red).ellipse((8, 8, 56, 56), fill="red")
    red.save(tmp_path / "red.png")
    Image.new("RGB", (80, 48), "teal").save(tmp_path / "teal.png")
    return tmp_path / "red.png", tmp_path / "teal.png"


@pytest.mark.parametrize("architecture", ["sdxl", "flux"])
def test_a_reference_changes_the_image_and_is_recorded(studio, tiny_model, local_references, pictures,
                                                       architecture):
    red, teal = pictures
    model = tiny_model(architecture)
    plain = run(studio, model)
    like_red = run(studio, model, style_references=[StyleReference(red, 1.0)])
    like_both = run(studio, model, style_references=[StyleReference(red, 1.0), StyleReference(teal, 0.5)])
    again = run(studio, model)
    assert not np.array_equal(pixels(like_red), pixels(plain)), "the reference changes the image"
    assert not np.array_equal(pixels(like_both), pixels(like_red)), "a second reference counts too"
    assert np.array_equal(pixels(again), pixels(plain)), "without references the model is as it was"
    assert studio.models.loads == 1
    row = studio.store.get("generations", like_both.id)
    kept = row["params"]["style_references"]
    assert [k["weight"] for k in kept] == [1.0, 0.5]
    copy = studio.config.absolute(kept[1]["image"])
    assert copy.parent.name == "inputs" and Image.open(copy).size == (80, 48)
    assert row["params"]["reference_weight"] == 1.0
    assert read_references(parse_parameters(read_parameters(like_both.path)).extra) == [1.0, 0.5]


@pytest.mark.parametrize("reference, message", [
    (dict(weight=2.5), "weight must be between 0 and 2"), (dict(image="missing"), "does not exist"),
])
def test_bad_references_are_refused(studio, tiny_model, pictures, tmp_path, reference, message):
    values = {"image": pictures[0], **reference}
    if values["image"] == "missing":
        values["image"] = tmp_path / "nope.png"
    with pytest.raises(InvalidInput, match=message):
        run(studio, tiny_model("sdxl"), style_references=[StyleReference(**values)])
    assert not studio.store.count("generations")


def test_a_reference_on_a_model_without_support_names_the_model(studio, tiny_model, pictures):
    model = tiny_model("sd3")
    with pytest.raises(InvalidInput, match=rf"{model}.*SD3.*no reference images"):
        run(studio, model, style_references=[StyleReference(pictures[0])])


def test_parse_reference():
    assert parse_reference("/a/b.png:0.4") == StyleReference("/a/b.png", 0.4)
    assert parse_reference("/a/b.png") == StyleReference("/a/b.png", 1.0)
    assert parse_reference("c:/b.png") == StyleReference("c:/b.png", 1.0)


def test_cli_reference_flag(capsys, tmp_path, tiny_model, local_references, pictures):
    data = ["--data-dir", str(tmp_path / "data")]
    base = ["generate", *data, "--model", str(tiny_model("sdxl")), "--prompt", "a boat", "--steps", "1",
            "--width", "64", "--height", "64"]
    code = main([*base, "--reference", f"{pictures[0]}:0.7", "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert read_references(parse_parameters(read_parameters(json.loads(out)["images"][0])).extra) == [0.7]
    assert main([*base, "--reference", f"{pictures[0]}:9"]) == 2
    assert "weight must be between 0 and 2" in capsys.readouterr().err
    assert main(["generate", *data, "--model", str(tiny_model("sd3")), "--prompt", "a boat",
                 "--reference", str(pictures[0])]) == 2
    assert "no reference images" in capsys.readouterr().err


def test_an_ip_adapter_that_cannot_be_had_is_named(capsys, tmp_path, tiny_model, pictures, monkeypatch):
    """Offline, with the IP-Adapter not in the cache: one line naming it and offline as the reason."""
    go_offline(monkeypatch)
    code = main(["generate", "--data-dir", str(tmp_path / "data"), "--model", str(tiny_model("sdxl")), "--prompt",
                 "a boat", "--steps", "1", "--width", "64", "--height", "64", "--reference", f"{pictures[0]}:0.6"])
    line = offline_refusal(capsys, code)
    assert "The IP-Adapter h94/IP-Adapter is not downloaded" in line


def test_a_reference_leaves_no_adapter_behind_for_a_detail_upscale(studio, tiny_model, local_references, pictures):
    """A reference loads the IP-Adapter into the cached pipeline; a later detail upscale (anyone's) gives no
    reference and runs with the adapter unloaded."""
    from masuka.image.upscale.job import upscale_image
    from masuka.image.upscale.request import UpscaleRequest

    model = tiny_model("sdxl")
    run(studio, model, style_references=[StyleReference(pictures[0], 0.6)])
    [made] = upscale_image(studio, UpscaleRequest(pictures[1], scale=2, detail=True, model=str(model), prompt="x",
                                                  strength=0.5, steps=2, tile=64, owner="bob"))
    assert Image.open(made.path).size == (160, 96)
    assert studio.models.loads == 1


@pytest.mark.parametrize("architecture", ["sdxl", "flux"])
def test_face_detail_repaints_with_the_reference(studio, tiny_model, local_references, pictures, monkeypatch,
                                                 architecture):
    """Face detail on an image made with a reference repaints the face with the same reference (SDXL's UNet, which
    holds the adapter, needs its pictures); the images are saved."""
    monkeypatch.setattr("masuka.image.face_detail.find_faces", lambda image: [(16, 16, 48, 48)])
    model = tiny_model(architecture)
    references = [StyleReference(pictures[0], 0.6)]
    plain = run(studio, model, style_references=references, batch=2)
    detailed = run(studio, model, style_references=references, batch=2, face_detail=True, face_strength=0.5)
    assert not np.array_equal(pixels(detailed), pixels(plain)), "the face is repainted"
    assert studio.store.get("generations", detailed.id)["params"]["face_detail"]["faces"] == [[16, 16, 48, 48]]
    run(studio, model, face_detail=True, face_strength=0.5)  # and without a reference, with the adapter unloaded
