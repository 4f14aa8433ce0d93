"""The Image tab's modes through the live app: /edit_image, outpaint on /generate_image, Reuse, Read parameters."""

from __future__ import annotations

import pytest
from PIL import Image, ImageDraw

from masuka.history.actions import reuse_parameters
from masuka.image.outpaint import canvas_size
from masuka.models.synthetic import save_tiny_pipeline
from masuka.ui.image_modes import reuse_fields, task_from_parameters


@pytest.fixture(scope="module")
def kontext(tmp_path_factory):
    return save_tiny_pipeline("flux", tmp_path_factory.mktemp("tiny-kontext-ui"), task="edit")


@pytest.fixture
def photo(tmp_path):
    picture = Image.new("RGB", (80, 64), (30, 90, 160))
    ImageDraw.Draw(picture).rectangle((20, 10, 50, 40), fill=(240, 200, 20))
    picture.save(tmp_path / "photo.png")
    return tmp_path / "photo.png"


def test_edit_image_endpoint_edits_and_reuse_brings_the_images_back(live_app, kontext, tiny_model, photo):
    from gradio_client import Client, handle_file

    app = live_app()
    client = Client(app.url, verbose=False)
    gallery, seeds, status = client.predict(prompt="make the square red", model=str(kontext),
                                            images=[handle_file(str(photo))], steps=1, seed=9, api_name="/edit_image")
    assert seeds == "9" and status.startswith("Done") and Image.open(gallery[0]["image"]).size == (80, 64)
    row = app.studio.store.find("generations")[0]
    assert row["params"]["task"] == "edit"
    kind, fields = reuse_parameters(app.studio, "local", False, f"g{row['id']}")
    fields = reuse_fields(fields)
    assert (kind, fields["mode"], fields["prompt"]) == ("image", "Edit", "make the square red")
    assert Image.open(fields["references"][0]).size == (80, 64), "the kept image goes back to the Edit mode"
    with pytest.raises(Exception, match="has no edit pipeline in MASUKA"):
        client.predict(prompt="x", model=str(tiny_model("sdxl")), images=[handle_file(str(photo))],
                       api_name="/edit_image")
    with pytest.raises(Exception, match="Add one or more images"):
        client.predict(prompt="x", model=str(kontext), images=[], api_name="/edit_image")


def test_generate_image_endpoint_outpaints_and_reuse_picks_the_inpaint_mode(live_app, tiny_model, photo):
    from gradio_client import Client, handle_file

    app = live_app()
    client = Client(app.url, verbose=False)
    gallery, _seeds, _status = client.predict(prompt="a wider sky", model=str(tiny_model("flux")), steps=1, seed=2,
                                              init_image=handle_file(str(photo)), strength=1.0, mask_blur=0,
                                              outpaint="0,16,24,0", api_name="/generate_image")
    out = Image.open(gallery[0]["image"]).convert("RGB")
    assert out.size == canvas_size((80, 64), (0, 16, 24, 0), 16)
    assert out.crop((0, 24, 80, 88)).tobytes() == Image.open(photo).convert("RGB").tobytes()
    row = app.studio.store.find("generations")[0]
    fields = reuse_fields(reuse_parameters(app.studio, "local", False, f"g{row['id']}")[1])
    assert (fields["mode"], fields["outpaint"], fields["mask_blur"]) == ("Inpaint/Outpaint", "0,16,24,0", 0)
    assert fields["canvas"]["background"] == fields["init_image"]
    with pytest.raises(Exception, match="four whole numbers"):
        client.predict(prompt="x", model=str(tiny_model("flux")), init_image=handle_file(str(photo)),
                       outpaint="1,2", api_name="/generate_image")


def test_read_parameters_fills_strength_mask_blur_and_padding():
    strength, blur, outpaint, mode = task_from_parameters({"Denoising strength": "0.6", "Mask blur": "8",
                                                           "Outpaint": "0,64,0,0"})
    assert (strength, blur, outpaint, mode) == (0.6, 8, "0,64,0,0", "Inpaint/Outpaint")
    assert task_from_parameters({"Denoising strength": "0.4"})[3] == "Image"
