"""The inpaint canvas hands the handlers the files the browser sent, unconverted: Gradio's own preprocessing wrote
each part again as a PNG (12 s for a 12 MP photo, at every event that read the canvas)."""

from __future__ import annotations

import gradio as gr
from gradio.components.image_editor import EditorData, EditorDataBlobs
from gradio.data_classes import FileData
from PIL import Image

from masuka.ui.paint_canvas import paint_canvas


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
