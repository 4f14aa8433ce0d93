"""Outpainting on the tiny pipelines: the canvas grows, the new area is repainted, the picture comes back as it was."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image, ImageDraw

from masuka.cli import main
from masuka.errors import InvalidInput
from masuka.image.generate import ImageRequest, generate_images
from masuka.image.metadata import parse_parameters, read_parameters
from masuka.image.outpaint import canvas_size, parse_outpaint
from masuka.image.tasks import InitImage, finish, outpaint_size, prepare


@pytest.fixture
def photo(tmp_path):
    """A 72x56 gradient with a dot: no side a multiple of 16."""
    picture = Image.merge("RGB", [Image.linear_gradient("L").resize((72, 56)), Image.new("L", (72, 56), 90),
                                  Image.radial_gradient("L").resize((72, 56))])
    ImageDraw.Draw(picture).ellipse((30, 20, 42, 32), fill="white")
    picture.save(tmp_path / "photo.png")
    return tmp_path / "photo.png"


def outpaint(studio, model, photo, padding, **kw):
    init = InitImage(photo, strength=1.0, mask_blur=kw.pop("mask_blur", 4), outpaint=padding, mask=kw.pop("mask", None))
    return generate_images(studio, ImageRequest(prompt="a wider view", model=str(model), steps=2, seed=3, init=init,
                                                **kw))[0]


@pytest.mark.parametrize("architecture", ["flux", "sdxl"])
def test_outpaint_grows_the_canvas_and_keeps_the_picture_identical(studio, tiny_model, photo, architecture):
    result = outpaint(studio, tiny_model(architecture), photo, (24, 8, 16, 0))
    out = np.asarray(Image.open(result.path).convert("RGB"), dtype=np.int16)
    original = np.asarray(Image.open(photo).convert("RGB"), dtype=np.int16)
    multiple = 16 if architecture == "flux" else 8
    width, height = canvas_size((72, 56), (24, 8, 16, 0), multiple)
    assert (out.shape[1], out.shape[0]) == (width, height) and width >= 72 + 32 and height >= 56 + 16
    assert width % multiple == 0 and height % multiple == 0
    assert np.array_equal(out[16:16 + 56, 24:24 + 72], original), "the original area comes back byte-identical"
    assert np.abs(out[:16, :] - out[:16, :].mean()).mean() > 0, "the new area is painted"
    row = studio.store.get("generations", result.id)
    assert (row["params"]["task"], row["params"]["outpaint"]) == ("outpaint", [24, 8, 16, 0])
    extra = parse_parameters(read_parameters(result.path)).extra
    assert extra["Outpaint"] == "24,8,16,0" and extra["Mask blur"] == "4" and extra["Denoising strength"] == "1"


def test_size_rounds_up_on_the_right_and_bottom():
    assert canvas_size((72, 56), (24, 8, 16, 0), 16) == (112, 80)
    assert canvas_size((72, 56), (24, 8, 16, 0), 8) == (104, 72)
    assert canvas_size((64, 64), (0, 64, 0, 0), 16) == (128, 64)


@pytest.mark.parametrize("blur", [0, 8])
def test_outpaint_with_a_mask_repaints_that_part_of_the_picture_too(studio, tiny_model, photo, tmp_path, blur):
    mask = Image.new("L", (72, 56), 0)
    ImageDraw.Draw(mask).rectangle((0, 0, 23, 55), fill=255)
    mask.save(tmp_path / "mask.png")
    result = outpaint(studio, tiny_model("flux"), photo, (0, 40, 0, 8), mask=tmp_path / "mask.png", mask_blur=blur)
    out = np.asarray(Image.open(result.path).convert("RGB"), dtype=np.int16)
    original = np.asarray(Image.open(photo).convert("RGB"), dtype=np.int16)
    assert np.array_equal(out[:56, 24:72], original[:, 24:]), "the unmasked part of the picture is unchanged"
    assert np.abs(out[:56, :24] - original[:, :24]).mean() > 5, "the masked part is repainted"


@pytest.mark.parametrize(("picture", "padding", "run", "canvas"), [((64, 64), (0, 64, 0, 0), (128, 64), (128, 64)),
                                                              ((3000, 2000), (0, 1000, 0, 0), (1440, 720),
                                                               (4000, 2000))])
def test_beside_the_picture_the_result_fades_into_its_smeared_colours_not_into_black(tmp_path, picture, padding,
                                                                                     run, canvas):
    """With a mask blur the result fades in over the new area's first pixels beside the picture; what it fades
    from there is the picture's colours smeared outwards (what the pipeline started from), not the empty canvas's
    black, which drew a dark line along the seam: a white picture and a white result stay white, whether the
    canvas runs as it is or at a smaller size scaled back onto it."""
    Image.new("RGB", picture, "white").save(tmp_path / "white.png")
    task = prepare(InitImage(tmp_path / "white.png", 1.0, None, 8, outpaint=padding), *run, False, 16, own_size=True)
    assert np.asarray(task.image).min() == 255, "the pipeline starts from the smeared picture"
    out = finish(Image.new("RGB", run, "white"), task)
    assert out.size == canvas and np.asarray(out).min() == 255


@pytest.mark.parametrize("text, message", [
    ("10,10", "four whole numbers"), ("a,b,c,d", "four whole numbers"), ("-1,0,0,0", "four whole numbers"),
    ("0,0,0,0", "at least one side"), ("2000,0,0,0", "left side must be 0-1024"),
])
def test_bad_padding_is_refused(text, message):
    with pytest.raises(InvalidInput, match=message):
        parse_outpaint(text)


def test_outpaint_refuses_another_size_and_a_canvas_no_size_fits(studio, tiny_model, photo):
    with pytest.raises(InvalidInput, match="makes a 112x80 image"):
        outpaint(studio, tiny_model("flux"), photo, (24, 8, 16, 0), width=128, height=128)
    with pytest.raises(InvalidInput, match=r"makes a 2128x64 canvas, too long and thin .* between 64 and 2048"):
        outpaint(studio, tiny_model("flux"), photo, (1024, 1024, 0, 0))
    with pytest.raises(InvalidInput, match=r"makes a 112x48 canvas, below the limit"):
        outpaint_size((72, 40), (24, 8, 0, 0), 16)
    with pytest.raises(InvalidInput, match=r"makes a 9024x8000 canvas, more than 64 megapixels: pad less"):
        outpaint_size((8000, 8000), (0, 1024, 0, 0), 16)
    assert not studio.store.count("generations")


def test_a_phone_photo_is_outpainted_at_the_models_size_and_comes_back_at_its_own(studio, tiny_model, tmp_path):
    """A 3000x2000 photo grown by 1000 pixels on the right: the 4000x2000 canvas (more than a model's own size,
    and wider than an image may be) runs at its shape brought down to about a megapixel and is scaled back onto
    the canvas, where the photo comes back byte-identical; it was refused (the canvas above 2048 a side)."""
    rng = np.random.default_rng(3)
    photo = np.repeat(np.linspace(30, 220, 3000)[None, :, None], 2000, axis=0).repeat(3, axis=2)
    photo = np.clip(photo + rng.normal(0, 8, photo.shape), 0, 255).astype(np.uint8)
    Image.fromarray(photo).save(tmp_path / "photo.jpg", quality=92)
    photo = np.asarray(Image.open(tmp_path / "photo.jpg").convert("RGB"))  # as decoded
    model = tiny_model("flux")
    assert outpaint_size((3000, 2000), (0, 1000, 0, 0), 16, pixels=1024 * 1024) == (1440, 720)
    assert outpaint_size((900, 600), (0, 124, 0, 0), 16, pixels=1024 * 1024) == (1024, 608), "one that fits runs as is"
    result = outpaint(studio, model, tmp_path / "photo.jpg", (0, 1000, 0, 0), mask_blur=4)
    out = np.asarray(Image.open(result.path).convert("RGB"))
    assert out.shape == (2000, 4000, 3) and np.array_equal(out[:, :3000], photo), "the photo as it was"
    new = out[:, 3000:].astype(int)
    assert new.std() > 5 and new.mean() > 20, "the new area is painted, not left black"
    row = studio.store.get("generations", result.id)
    assert (row["width"], row["height"], row["params"]["outpaint"]) == (4000, 2000, [0, 1000, 0, 0])


def test_cli_outpaints_and_exits_2_on_bad_padding(capsys, tmp_path, tiny_model, photo):
    data = ["--data-dir", str(tmp_path / "data")]
    base = ["generate", *data, "--model", str(tiny_model("flux")), "--prompt", "a beach", "--steps", "1"]
    code = main([*base, "--init-image", str(photo), "--strength", "1", "--outpaint", "8,8,0,24", "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert Image.open(json.loads(out)["images"][0]).size == (96, 80)
    for flags, message in ((["--init-image", str(photo), "--outpaint", "8,8"], "four whole numbers"),
                           (["--outpaint", "8,8,8,8"], "--outpaint needs --init-image")):
        code = main([*base, *flags])
        err = capsys.readouterr().err
        assert code == 2 and message in err and len(err.strip().splitlines()) == 1
