"""The inpaint canvas shows the starting image, a smaller copy of a large one (the browser encodes and uploads
every part of the canvas as a PNG for each event: over a minute for a 12 MP photo put on it), and hands the
handlers the files the browser sent, unconverted (Gradio's own preprocessing wrote each part again as a PNG: 12 s
for a 12 MP photo, at every event that read the canvas)."""

from __future__ import annotations

from pathlib import Path

import gradio as gr
import numpy as np
import pytest
from gradio.components.image_editor import EditorData, EditorDataBlobs
from gradio.data_classes import FileData
from gradio.utils import get_upload_folder
from PIL import Image, ImageDraw

from masuka.ui.paint_canvas import CANVAS_PIXELS, canvas_picture, paint_canvas
from tests.photos import SIDEWAYS_HEIC, difference, upright


def canvas() -> gr.ImageEditor:
    with gr.Blocks():
        return paint_canvas(type="filepath", format="png")


def test_parts_sent_as_files_are_their_paths_and_the_picture_stays_the_file_given(tmp_path):
    """A client's JPEG stays that JPEG (Gradio's preprocessing made an RGBA PNG of it); the page draws Gradio's
    own editor."""
    Image.new("RGB", (64, 48), "teal").save(tmp_path / "photo.jpg")
    Image.new("RGBA", (64, 48)).save(tmp_path / "layer.png")
    editor = canvas()
    value = editor.preprocess(EditorData(background=FileData(path=str(tmp_path / "photo.jpg")),
                                         layers=[FileData(path=str(tmp_path / "layer.png"))], composite=None))
    assert value == {"background": str(tmp_path / "photo.jpg"), "layers": [str(tmp_path / "layer.png")],
                     "composite": None}
    assert editor.get_block_name() == "imageeditor" and editor.preprocess(None) is None
    assert not editor.sources, "a picture reaches the canvas as the starting image, not dropped on it"


def test_parts_sent_as_blobs_are_written_as_they_came_and_forgotten(tmp_path):
    """The page sends its own export of the canvas as blobs, kept by id until the event reads them."""
    Image.new("RGB", (64, 48), "teal").save(tmp_path / "photo.png")
    Image.new("RGBA", (64, 48), (255, 255, 255, 255)).save(tmp_path / "layer.png")
    picture, layer = (tmp_path / "photo.png").read_bytes(), (tmp_path / "layer.png").read_bytes()
    editor = canvas()
    editor.blob_storage["sent"] = EditorDataBlobs(background=picture, layers=[layer, None], composite=picture)
    value = editor.preprocess(EditorData(id="sent"))
    assert open(value["background"], "rb").read() == open(value["composite"], "rb").read() == picture
    assert [open(path, "rb").read() for path in value["layers"]] == [layer]
    assert "sent" not in editor.blob_storage
    assert editor.preprocess(EditorData(id="gone")) == {"background": None, "layers": [], "composite": None}


def test_the_canvas_shows_a_small_upright_picture_itself(tmp_path):
    for name in ("small.png", "small.jpg", "small.webp"):
        Image.new("RGB", (1536, 1024), "teal").save(tmp_path / name)
        assert canvas_picture(str(tmp_path / name)) == {"background": str(tmp_path / name), "layers": [],
                                                         "composite": str(tmp_path / name)}
    assert canvas_picture(None) is None and canvas_picture("") is None


@pytest.mark.parametrize(("name", "size", "kind"), [("photo.jpg", (4032, 3024), "JPEG"),
                                                    ("screen.png", (2560, 1600), "PNG")])
def test_a_large_picture_is_shown_as_a_smaller_copy_of_its_shape(tmp_path, name, size, kind):
    """A 12 MP photo is shown at 1448x1086 (a JPEG), a large screenshot as a PNG; the picture itself is untouched."""
    picture = Image.new("RGB", size, "white")
    ImageDraw.Draw(picture).rectangle((0, 0, size[0] // 2, size[1]), fill="navy")  # the left half
    picture.save(tmp_path / name)
    before = (tmp_path / name).read_bytes()
    shown = canvas_picture(str(tmp_path / name))
    assert shown["background"] == shown["composite"] != str(tmp_path / name)
    assert (tmp_path / name).read_bytes() == before
    with Image.open(shown["background"]) as copy:
        assert copy.format == kind and copy.width * copy.height <= CANVAS_PIXELS
        assert copy.width * copy.height > 0.99 * CANVAS_PIXELS
        assert abs(copy.width / copy.height - size[0] / size[1]) < 0.01
        assert difference(copy, picture.resize(copy.size)) < 2
    assert Path(shown["background"]).parent.parent == Path(get_upload_folder()).resolve(), "in Gradio's cache"
    assert sorted(path.name for path in tmp_path.iterdir()) == [name], "nothing written beside the picture"


def test_a_turned_phone_photo_and_a_heic_are_shown_upright(tmp_path):
    import shutil

    """A photo stored sideways with its turn in the EXIF, and an iPhone's HEIC (which browsers do not show), are
    shown as upright JPEGs: the mask painted over one is the picture's way up."""
    sideways = Image.new("RGB", (80, 60), "white")
    ImageDraw.Draw(sideways).rectangle((0, 0, 39, 59), fill="navy")
    exif = Image.Exif()
    exif[0x0112] = 6  # turn a quarter right to show it
    sideways.save(tmp_path / "phone.jpg", exif=exif.tobytes())
    with Image.open(canvas_picture(str(tmp_path / "phone.jpg"))["background"]) as shown:
        assert shown.format == "JPEG" and shown.size == (60, 80) and not shown.getexif()
        assert difference(shown, sideways.rotate(-90, expand=True)) < 3
    heic = shutil.copy(SIDEWAYS_HEIC, tmp_path)
    with Image.open(canvas_picture(str(heic))["background"]) as shown:
        assert (shown.format, shown.size) == ("JPEG", (288, 384)) and difference(shown, upright()) < 8


def test_an_unreadable_picture_leaves_the_canvas_empty(tmp_path):
    (tmp_path / "cut.jpg").write_bytes(b"\xff\xd8\xff\xe0 not a whole photo")
    assert canvas_picture(str(tmp_path / "cut.jpg")) is None
    assert canvas_picture(str(tmp_path / "gone.png")) is None


def test_a_mask_painted_over_the_smaller_copy_is_scaled_to_the_picture_smoothly(tmp_path):
    """A disc painted over the 1448x1086 copy of a 12 MP photo covers the same disc of the photo, its edge within
    1.5 pixels of the true circle's everywhere: scaled in blocks, it was up to 2.1 pixels off."""
    from masuka.image.masks import save_painted_mask

    Image.new("RGB", (4032, 3024), "teal").save(tmp_path / "photo.jpg")
    shown = canvas_picture(str(tmp_path / "photo.jpg"))
    copy = Image.open(shown["background"]).size
    assert copy == (1448, 1086)
    layer = Image.new("RGBA", copy, (0, 0, 0, 0))
    ImageDraw.Draw(layer).ellipse((500, 400, 700, 600), fill=(255, 255, 255, 180))  # a soft brush still counts
    layer.save(tmp_path / "layer.png")
    mask = np.asarray(Image.open(save_painted_mask([str(tmp_path / "layer.png")], str(tmp_path / "photo.jpg"))))
    assert mask.shape == (3024, 4032) and set(np.unique(mask)) == {0, 255}
    scale, (ys, xs) = 4032 / copy[0], np.mgrid[:3024, :4032]
    off = (np.hypot((xs + 0.5) / scale - 600.5, (ys + 0.5) / scale - 500.5) - 100.5) * scale  # pixels past the edge
    wrong = (mask == 255) != (off <= 0)
    assert wrong.any() and np.abs(off[wrong]).max() < 1.5
