"""/generate_image as the CLI and /queue_add take a request: the picture files as given (a 16-bit PNG keeps its
tones), and the steps, guidance and size a caller leaves out the model's own (the size a starting picture's)."""

from __future__ import annotations

import gradio as gr
import numpy as np
import pytest
from gradio_client import Client, handle_file
from PIL import Image

from masuka.image.tasks import open_picture
from masuka.models.catalog import resolve_image_model


def grey_16_bit(path, width: int = 96, height: int = 64):
    """A 16-bit greyscale PNG: a left-to-right ramp over the middle of the range (8-bit mean about 128)."""
    ramp = np.linspace(16_000, 50_000, width, dtype=np.uint16)
    Image.fromarray(np.tile(ramp, (height, 1))).save(path)
    return path


def test_a_16_bit_starting_image_keeps_its_tones_through_the_api(live_app, tiny_model, tmp_path):
    """Gradio's default image_mode ("RGB") converted the upload first, clipping an I;16 picture to white; the file
    is now read as the CLI reads it (open_picture), and the stored input copy keeps its mean tone."""
    picture = grey_16_bit(tmp_path / "g16.png")
    assert Image.open(picture).mode == "I;16"
    wanted = np.asarray(Image.open(picture), dtype=np.float64).mean() / 257
    app = live_app()
    client = Client(app.url, verbose=False)
    _gallery, _seeds, status = client.predict(prompt="a grey ramp", model=str(tiny_model("flux")), steps=1, seed=3,
                                              width=96, height=64, init_image=handle_file(str(picture)),
                                              strength=0.5, api_name="/generate_image")
    assert status.startswith("Done")
    row = app.studio.store.find("generations")[0]
    kept_file = app.studio.config.absolute(row["params"]["init_image"])
    assert Image.open(kept_file).mode == "I;16", "the copy kept is the 16-bit picture given"
    kept = np.asarray(open_picture(kept_file, "init image").convert("L"))  # read as MASUKA reads it
    assert abs(kept.mean() - wanted) < 2, f"the kept copy's mean tone is {kept.mean():.1f}, not {wanted:.1f}"
    assert (kept == 255).mean() < 0.05, "the picture was clipped to white"


def test_every_picture_a_user_gives_reaches_masuka_as_the_file_given(studio):
    """Every picture a user uploads is read by MASUKA itself (open_picture: a 16-bit PNG keeps its tones, a PNG's
    parameters text stays), not converted and saved again by Gradio on the way (image_mode None)."""
    from masuka.ui.app import build_app

    uploads = [block for block in build_app(studio).blocks.values()
               if isinstance(block, gr.Image) and block.interactive is not False]
    assert {"Starting image", "Mask file (white = repaint), or paint on the canvas", "Control image",
            "Reference image (IP-Adapter / Redux)", "First frame (optional: image-to-video)",
            "PNG made here or by another tool"} <= {image.label for image in uploads}
    assert {image.label: image.image_mode for image in uploads} == dict.fromkeys(image.label for image in uploads)


def test_omitted_numbers_are_the_models_own_and_the_size_the_pictures(live_app, tiny_model, tmp_path):
    """gradio_client fills a parameter left out with its component's value: the form's opening model's 28 steps,
    3.5 guidance and 1024x1024, which stretched a starting picture. Left out, they are now what the CLI and
    /queue_add give: the model's own steps and guidance, the picture's size rounded to the model's multiple, and a
    picture no size fits is refused rather than stretched."""
    model = tiny_model("sdxl")
    spec = resolve_image_model(str(model))
    assert (spec.steps, spec.guidance, spec.size_multiple) == (30, 7.0, 8)  # not the form's 28 and 3.5
    Image.new("RGB", (100, 75), (200, 120, 40)).save(tmp_path / "photo.png")
    app = live_app()
    client = Client(app.url, verbose=False)
    gallery, _seeds, status = client.predict(prompt="an orange field", model=str(model), seed=2,
                                             init_image=handle_file(str(tmp_path / "photo.png")), strength=1.0,
                                             api_name="/generate_image")
    assert status.startswith("Done")
    assert Image.open(gallery[0]["image"]).size == (96, 72), "the picture's size, rounded down to a multiple of 8"
    row = app.studio.store.find("generations")[0]
    assert (row["steps"], row["guidance"], row["width"], row["height"]) == (spec.steps, spec.guidance, 96, 72)
    Image.new("RGB", (4000, 64), "navy").save(tmp_path / "strip.png")
    with pytest.raises(Exception, match=r"The init image is 4000x64: its shape does not fit"):
        client.predict(prompt="a strip", model=str(model), init_image=handle_file(str(tmp_path / "strip.png")),
                       api_name="/generate_image")
    assert len(app.studio.store.find("generations")) == 1


def test_an_edit_s_omitted_steps_and_guidance_are_the_edit_model_s_own(live_app, tmp_path):
    """/edit_image, as /generate_image: a caller who leaves steps and guidance out gets the edit model's own (FLUX.1
    Kontext's guidance 2.5), not the form's opening model's 3.5."""
    from masuka.models.synthetic import save_tiny_pipeline

    kontext = save_tiny_pipeline("flux", tmp_path / "kontext", task="edit")
    spec = resolve_image_model(str(kontext))
    assert spec.guidance != 3.5
    Image.new("RGB", (64, 64), (30, 90, 160)).save(tmp_path / "photo.png")
    app = live_app()
    client = Client(app.url, verbose=False)
    _gallery, _seeds, status = client.predict(prompt="make it red", model=str(kontext), seed=4,
                                              images=[handle_file(str(tmp_path / "photo.png"))],
                                              api_name="/edit_image")
    assert status.startswith("Done")
    row = app.studio.store.find("generations")[0]
    assert (row["steps"], row["guidance"]) == (spec.steps, spec.guidance)
