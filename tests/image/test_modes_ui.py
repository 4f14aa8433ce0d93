"""The Image tab's modes through the live app: /edit_image, outpaint on /generate_image, Reuse, Read parameters."""

from __future__ import annotations

import gradio as gr
import numpy as np
import pytest
from PIL import Image, ImageDraw

from masuka.history.actions import reuse_parameters
from masuka.image.outpaint import canvas_size
from masuka.models.synthetic import save_tiny_pipeline
from masuka.ui.image_modes import INPAINT_FIELDS, inpaint_from_parameters, reuse_fields, task_from_parameters

SKIP = gr.skip()


@pytest.fixture(scope="module")
def kontext(tmp_path_factory):
    return save_tiny_pipeline("flux", tmp_path_factory.mktemp("tiny-kontext-ui"), task="edit")


@pytest.fixture
def photo(tmp_path):
    picture = Image.new("RGB", (80, 64), (30, 90, 160))
    ImageDraw.Draw(picture).rectangle((20, 10, 50, 40), fill=(240, 200, 20))
    picture.save(tmp_path / "photo.png")
    return tmp_path / "photo.png"


def test_edit_image_endpoint_edits_and_reuse_brings_the_images_back(shared_app, kontext, tiny_model, photo):
    from gradio_client import Client, handle_file

    app = shared_app()  # the module's one app: each test finds its row by its own prompt
    client = Client(app.url, verbose=False)
    gallery, seeds, status = client.predict(prompt="make the square red", model=str(kontext),
                                            images=[handle_file(str(photo))], steps=1, seed=9, api_name="/edit_image")
    assert seeds == "9" and status.startswith("Done") and Image.open(gallery[0]["image"]).size == (80, 64)
    (row,) = app.studio.store.find("generations", "prompt = ?", ["make the square red"])
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


def test_generate_image_endpoint_outpaints_and_reuse_picks_the_inpaint_mode(shared_app, tiny_model, photo):
    from gradio_client import Client, handle_file

    app = shared_app()
    client = Client(app.url, verbose=False)
    gallery, _seeds, _status = client.predict(prompt="a wider sky", model=str(tiny_model("flux")), steps=1, seed=2,
                                              init_image=handle_file(str(photo)), strength=1.0, mask_blur=0,
                                              outpaint="0,16,24,0", api_name="/generate_image")
    out = Image.open(gallery[0]["image"]).convert("RGB")
    assert out.size == canvas_size((80, 64), (0, 16, 24, 0), 16)
    assert out.crop((0, 24, 80, 88)).tobytes() == Image.open(photo).convert("RGB").tobytes()
    (row,) = app.studio.store.find("generations", "prompt = ?", ["a wider sky"])
    fields = reuse_fields(reuse_parameters(app.studio, "local", False, f"g{row['id']}")[1])
    assert (fields["mode"], fields["outpaint"], fields["mask_blur"]) == ("Inpaint/Outpaint", "0,16,24,0", 0)
    assert "canvas" not in fields and Image.open(fields["init_image"]).size == (80, 64), "the canvas follows it"
    with pytest.raises(Exception, match="four whole numbers"):
        client.predict(prompt="x", model=str(tiny_model("flux")), init_image=handle_file(str(photo)),
                       outpaint="1,2", api_name="/generate_image")


def test_read_parameters_fills_strength_mask_blur_and_padding():
    strength, blur, outpaint, mode = task_from_parameters({"Denoising strength": "0.6", "Mask blur": "8",
                                                           "Outpaint": "0,64,0,0"})
    assert (strength, blur, outpaint, mode) == (0.6, 8, "0,64,0,0", "Inpaint/Outpaint")
    assert task_from_parameters({"Denoising strength": "0.4"})[3] == "Image"


def test_read_parameters_fills_a1111_inpaint_options():
    """A1111's inpaint fields fill the Inpaint options (its latent noise and latent nothing, which MASUKA lacks,
    as original); an image without them sets the options as the form opens; a padding beyond the slider is left."""
    assert inpaint_from_parameters({"Mask mode": "Inpaint not masked", "Masked content": "fill",
                                    "Inpaint area": "Only masked", "Masked area padding": "16"}) == [
        "Inpaint not masked", "fill", "Only masked", 16]
    assert inpaint_from_parameters({"Masked content": "latent noise", "Inpaint area": "Whole picture"}) == \
        inpaint_from_parameters({}) == ["Inpaint masked", "original", "Whole picture", 32]
    assert inpaint_from_parameters({"Inpaint area": "Only masked", "Masked area padding": "999"})[2:] == [
        "Only masked", SKIP]


def test_read_parameters_of_a_text_to_image_switches_to_text_mode(studio, photo, tmp_path):
    """Read in Image or Inpaint mode, a text-to-image's parameters (no denoising strength) switch the form to Text
    mode, the mode fields as the form opens: else Generate would still vary the starting picture there."""
    from masuka.image.metadata import save_image
    from masuka.ui import image

    save_image(Image.new("RGB", (64, 64)), tmp_path / "t2i.png", "a fox\nSteps: 2, Seed: 1, Size: 64x64")
    strength, blur, outpaint, mode = image.read_image_parameters(studio, str(tmp_path / "t2i.png"))[10:14]
    assert (strength, blur, outpaint, mode) == (0.75, 4, "", "Text")
    assert image.image_request("local", "a fox", "flux-dev", "", 1, 1.0, 64, 64, 1, 1, [], "auto", False, 0.0,
                               init_image=str(photo), strength=strength, mode=mode).init is None
    assert task_from_parameters({"Denoising strength": "0.4"}) == (0.4, 4, "", "Image")


def test_a_painted_mask_and_a_mask_file_together_are_refused(photo, tmp_path):
    """Strokes on the canvas and a mask file: which one counts is not the user's guess (the file was ignored)."""
    from masuka.errors import InvalidInput
    from masuka.ui.image_modes import INPAINT, mode_request_inputs

    layer = Image.new("RGBA", (80, 64), (0, 0, 0, 0))
    ImageDraw.Draw(layer).rectangle((0, 0, 10, 10), fill="white")
    layer.save(tmp_path / "layer.png")
    Image.new("L", (80, 64), 255).save(tmp_path / "mask.png")
    canvas = {"background": str(photo), "layers": [str(tmp_path / "layer.png")]}
    with pytest.raises(InvalidInput, match=r"^Paint the mask or give a mask file, not both: clear one of them\.$"):
        mode_request_inputs(INPAINT, None, str(tmp_path / "mask.png"), "", canvas)
    assert mode_request_inputs(INPAINT, None, str(tmp_path / "mask.png"), "", {"background": str(photo)})[1] == \
        str(tmp_path / "mask.png")
    assert mode_request_inputs(INPAINT, None, None, "", canvas)[1] is not None, "the strokes alone"


def test_edit_and_inpaint_modes_hide_the_size_they_do_not_take(studio):
    """An edit takes its first image's size, an inpaint or outpaint its picture's (plus the padding): Aspect, Width
    and Height go in those modes (in Inpaint/Outpaint they were shown and ignored) and come back after."""
    from masuka.ui.app import build_app
    from masuka.ui.image_modes import MODES, ModeWidgets

    show = next(fn for fn in build_app(studio).fns.values() if fn.fn is ModeWidgets.show)
    sizes = [index for index, block in enumerate(show.outputs)
             if getattr(block, "label", None) in ("Aspect", "Width", "Height")]
    assert len(sizes) == 3
    for mode in MODES:
        assert [ModeWidgets.show(mode)[index]["visible"] for index in sizes] == [mode in ("Text", "Image")] * 3
    assert len(ModeWidgets.show("Text")) == len(show.outputs)
    (options,) = [index for index, block in enumerate(show.outputs) if getattr(block, "label", None) ==
                  "Inpaint options"]
    assert [mode for mode in MODES if ModeWidgets.show(mode)[options]["visible"]] == ["Inpaint/Outpaint"]


def test_inpaint_takes_the_starting_image_else_the_canvas_picture(studio, photo, tmp_path):
    """Inpaint/Outpaint repaints the starting image (the canvas shows it, perhaps as a smaller copy, which is not
    what runs); without one, the canvas's own picture (an API caller's); with neither, Generate and Add to queue
    refuse, rather than make a text-to-image."""
    from masuka.errors import InvalidInput
    from masuka.ui import image
    from masuka.ui.image_modes import INPAINT, mode_request_inputs

    preview = tmp_path / "preview.png"
    Image.open(photo).resize((40, 32)).save(preview)
    canvas = {"background": str(preview), "layers": [], "composite": str(preview)}
    assert mode_request_inputs(INPAINT, str(photo), None, "0,16,0,0", canvas) == (str(photo), None, (0, 16, 0, 0))
    assert mode_request_inputs(INPAINT, None, None, "0,16,0,0", canvas)[0] == str(preview)
    for empty in (None, {"background": None, "layers": [], "composite": None}):
        with pytest.raises(InvalidInput, match=r"^Add the picture to inpaint or outpaint\.$"):
            mode_request_inputs(INPAINT, None, None, "0,16,0,0", empty)
    with pytest.raises(InvalidInput, match="Add the picture to inpaint or outpaint"):
        image.image_request("local", "a fox", "flux-dev", "", 1, 1.0, 64, 64, 1, 1, [], "auto", False, 0.0,
                            strength=0.6, outpaint="0,16,0,0", mode=INPAINT)


def test_send_to_sets_the_size_to_the_pictures(studio, tiny_model, tmp_path):
    """A 160x64 result sent to Image (or Inpaint/Outpaint) sets the width and height as an upload does, so an
    image-to-image does not squash it into the size the form had; Edit takes no size."""
    from masuka.ui.app import build_app
    from masuka.ui.image_modes import EDIT, IMAGE, INPAINT, send_picture

    wide = tmp_path / "wide.png"
    Image.new("RGB", (160, 64), "teal").save(wide)
    gallery, model = [{"image": {"path": str(wide)}, "caption": None}], str(tiny_model("sdxl"))
    assert send_picture(studio, IMAGE, gallery, None, model)[1:] == (str(wide), SKIP, 160, 64)
    assert send_picture(studio, INPAINT, gallery, 0, model) == (INPAINT, str(wide), SKIP, 160, 64)
    assert send_picture(studio, EDIT, gallery, 0, model)[1:] == (SKIP, [str(wide)], SKIP, SKIP)
    demo = build_app(studio)
    sends = [fn for fn in demo.fns.values() if fn.name == "send_picture"]
    assert len(sends) == 3 and all([getattr(block, "label", None) for block in fn.outputs][-2:] == ["Width", "Height"]
                                   for fn in sends), "each Send to button sets the size fields"


def test_a_mode_chosen_takes_the_picture_of_the_mode_left_into_its_empty_field(studio, tiny_model, tmp_path):
    """As A1111's "Copy image to": a picture in Image mode goes into Edit's empty list when Edit is chosen, and the
    first image to edit becomes the empty starting image (with its size) when Image or Inpaint/Outpaint is; a field
    that holds a picture keeps it. Image and Inpaint/Outpaint share the starting image: nothing moves between them."""
    from masuka.ui.app import build_app
    from masuka.ui.image_modes import EDIT, IMAGE, INPAINT, TEXT, carry_picture

    wide, other = tmp_path / "wide.png", tmp_path / "other.png"
    Image.new("RGB", (160, 64), "teal").save(wide)
    Image.new("RGB", (64, 64), "plum").save(other)
    model, unchanged = str(tiny_model("sdxl")), (SKIP,) * 4
    assert carry_picture(studio, EDIT, IMAGE, str(wide), [], model) == (SKIP, [str(wide)], SKIP, SKIP)
    assert carry_picture(studio, EDIT, INPAINT, str(wide), None, model) == (SKIP, [str(wide)], SKIP, SKIP)
    for mode in (IMAGE, INPAINT):
        assert carry_picture(studio, mode, EDIT, None, [str(wide)], model) == (str(wide), SKIP, 160, 64)
        assert carry_picture(studio, mode, EDIT, str(other), [str(wide)], model) == unchanged
    assert carry_picture(studio, INPAINT, IMAGE, str(wide), [], model) == unchanged
    assert carry_picture(studio, EDIT, IMAGE, str(wide), [str(other)], model) == unchanged
    assert carry_picture(studio, IMAGE, TEXT, None, None, model) == unchanged
    assert carry_picture(studio, TEXT, IMAGE, str(wide), None, model) == unchanged
    assert carry_picture(studio, IMAGE, "", None, [str(wide)], model) == unchanged, "no mode chosen before"
    demo = build_app(studio)
    [carry] = [fn for fn in demo.fns.values() if fn.name == "carry_picture"]
    labels = [block.label for block in carry.inputs[2:4]]
    assert labels[0] == "Starting image" and labels[1].startswith("Images to edit")


def test_the_api_inpaints_a_canvas_as_the_tab_does(shared_app, tiny_model, photo, tmp_path):
    """/generate_image given a canvas (its picture, the strokes painted over it) inpaints the strokes, as the
    Inpaint/Outpaint mode does, rather than ignoring it; a starting image as well is refused."""
    from gradio_client import Client, handle_file

    stroke = Image.new("RGBA", (80, 64), (0, 0, 0, 0))
    ImageDraw.Draw(stroke).rectangle((0, 0, 31, 31), fill="white")
    stroke.save(tmp_path / "stroke.png")
    canvas = {"background": handle_file(str(photo)), "layers": [handle_file(str(tmp_path / "stroke.png"))],
              "composite": None}
    app = shared_app()
    client = Client(app.url, verbose=False)
    gallery, _seeds, status = client.predict(prompt="a red square", model=str(tiny_model("flux")), steps=1, seed=2,
                                             canvas=canvas, strength=1.0, mask_blur=0, api_name="/generate_image")
    out, original = (np.asarray(Image.open(path).convert("RGB")) for path in (gallery[0]["image"], photo))
    assert status.startswith("Done") and out.shape == original.shape
    assert (out[32:] == original[32:]).all() and (out[:32, :32] != original[:32, :32]).any()
    assert [row["params"]["task"] for row in app.studio.store.find("generations", "prompt = ?", ["a red square"])] == [
        "inpaint"]
    with pytest.raises(Exception, match="as init_image .* or as the canvas's background .*, not both"):
        client.predict(prompt="x", model=str(tiny_model("flux")), init_image=handle_file(str(photo)), canvas=canvas,
                       api_name="/generate_image")

    options = {"mask_mode": "Inpaint not masked", "masked_content": "fill", "inpaint_area": "Only masked",
               "only_masked_padding": 8}
    gallery, _seeds, status = client.predict(prompt="all but the square", model=str(tiny_model("flux")), steps=1,
                                             seed=2, canvas=canvas, strength=1.0, mask_blur=0, **options,
                                             api_name="/generate_image")
    out = np.asarray(Image.open(gallery[0]["image"]).convert("RGB"))
    assert status.startswith("Done") and (out[:32, :32] == original[:32, :32]).all(), "the strokes are kept"
    assert (out[32:] != original[32:]).any(), "the rest is repainted"
    (row,) = app.studio.store.find("generations", "prompt = ?", ["all but the square"])
    assert {name: row["params"].get(name) for name in ("invert_mask", "fill_masked", "only_masked_padding")} == {
        "invert_mask": True, "fill_masked": True, "only_masked_padding": 8}
    from masuka.ui import image

    read = image.read_image_parameters(app.studio, str(app.studio.config.absolute(row["output_path"])))
    assert list(read[-4:]) == list(options.values()), "Read parameters fills them back"
    fields = reuse_fields(reuse_parameters(app.studio, "local", False, f"g{row['id']}")[1])
    assert [fields[name] for name in INPAINT_FIELDS] == list(options.values()), "and so does Reuse"
    assert Image.open(fields["mask"]).getpixel((0, 0)) == 255, "the mask as painted: Reuse inverts it again"


def test_read_parameters_of_an_image_without_guides_empties_them(studio, photo, tmp_path):
    """An image made without Control or Reference leaves none of those already in the form (their pictures
    emptied, their settings as the form opens), as Reuse does, so the next Generate does not use them."""
    from masuka.image.metadata import save_image
    from masuka.ui import image
    from masuka.ui.image_modes import GUIDE_BLANKS

    save_image(Image.new("RGB", (64, 64)), tmp_path / "plain.png", "a fox\nSteps: 2, Seed: 1, Size: 64x64")
    values = image.read_image_parameters(studio, str(tmp_path / "plain.png"))
    guides = dict(zip(image.GUIDE_FIELDS, values[15:15 + len(image.GUIDE_FIELDS)]))
    assert guides == {**GUIDE_BLANKS, "control_image": None, "reference_image": None}
    form = {**guides, "init_image": None}
    assert not image.image_request("local", "a fox", "flux-dev", "", 1, 1.0, 64, 64, 1, 1, [], "auto", False, 0.0,
                                   **form).controls


def test_an_edit_image_too_long_for_the_sides_limits_is_refused(studio, kontext, tmp_path):
    """An edit takes its first image's size: a 4000x64 one has no size within 64-2048 of its shape, and is refused
    rather than squashed to 2048x64."""
    from masuka.errors import InvalidInput
    from masuka.image.generate import ImageRequest, plan_request

    Image.new("RGB", (4000, 64), "navy").save(tmp_path / "strip.png")
    with pytest.raises(InvalidInput, match=r"^The first image to edit is 4000x64: .* 64-2048 pixels a side"):
        plan_request(studio, ImageRequest(prompt="make it red", model=str(kontext),
                                          references=[tmp_path / "strip.png"]))
