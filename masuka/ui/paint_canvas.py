"""The inpaint canvas: Gradio's image editor, whose value reaches MASUKA as the files the browser sent.

Gradio's own preprocessing decodes each part of an editor's value (the picture, the painted layers, the composite)
and writes it again as a PNG in its cache: 12 s for a 12 MP phone photo, for every event that reads the canvas
(Generate, and the width and height set when a picture is put on it). MASUKA reads these files itself
(:func:`~masuka.image.tasks.open_picture`, :func:`~masuka.image.masks.painted_mask`), so the handlers get the
files as they came: a part sent as a file is its path, a part sent as a blob (the page's own export) is written
to the cache as it is. The editor's own ``preprocess`` is replaced on the one instance (a subclass of a Gradio
component would have Gradio write a type stub beside this module at import).
"""

from __future__ import annotations

import functools
from typing import Any

import gradio as gr
from gradio.components.image_editor import EditorData
from gradio.data_classes import FileData
from gradio.processing_utils import save_bytes_to_cache


def paint_canvas(**options: Any) -> gr.ImageEditor:
    """A ``gr.ImageEditor(**options)`` whose value is ``{"background", "layers", "composite"}`` as file paths,
    unconverted."""
    editor = gr.ImageEditor(**options)
    editor.preprocess = functools.partial(_files_as_sent, editor)  # type: ignore[method-assign]
    return editor


def _files_as_sent(editor: gr.ImageEditor, payload: EditorData | None) -> dict[str, Any] | None:
    if payload is None:
        return None
    sent = editor.blob_storage.get(payload.id) if payload.id is not None else payload
    value = {"background": _file(editor, sent and sent.background),
             "layers": [path for layer in (sent.layers if sent else []) if (path := _file(editor, layer))],
             "composite": _file(editor, sent and sent.composite)}
    if payload.id is not None:
        editor.blob_storage.pop(payload.id, None)
    return value


def _file(editor: gr.ImageEditor, part: FileData | bytes | None) -> str | None:
    if part is None:
        return None
    if isinstance(part, FileData):
        return part.path
    return save_bytes_to_cache(part, "canvas.png", editor.GRADIO_CACHE)
