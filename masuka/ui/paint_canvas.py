"""The inpaint canvas: Gradio's image editor, showing the starting image for a mask to be painted over it.

The browser encodes each part of an editor's value (the picture, the painted layers, the composite) as a PNG and
uploads it for every event that reads the canvas: for a 12 MP phone photo put on it, over a minute in a headless
Chromium, and some 80 MB sent per Generate. So the canvas takes no upload of its own: it shows the starting image
(:func:`canvas_picture`), a copy of at most :data:`CANVAS_PIXELS` where the picture is larger, and the mask
painted over that copy is scaled to the picture (:func:`~masuka.image.masks.painted_mask`).

Gradio's own preprocessing of the value decodes each part and writes it again as a PNG in its cache. MASUKA reads
these files itself (:func:`~masuka.image.tasks.open_picture`, :func:`~masuka.image.masks.painted_mask`), so the
handlers get the files as they came: a part sent as a file is its path, a part sent as a blob (the page's own
export) is written to the cache as it is. The editor's own ``preprocess`` is replaced on the one instance (a
subclass of a Gradio component would have Gradio write a type stub beside this module at import).
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import gradio as gr
from gradio.components.image_editor import EditorData
from gradio.data_classes import FileData
from gradio.processing_utils import save_bytes_to_cache
from gradio.utils import get_upload_folder
from PIL import Image

from masuka.errors import MasukaError
from masuka.image.copies import picture_format, smaller_copy
from masuka.image.tasks import stands_upright
from masuka.ui.shown_pictures import SHOWN

#: the most pixels the canvas shows (1536x1024): a mask painted over a copy of this size follows a brush stroke
#: closely enough once scaled to the picture, and the browser encodes and sends it in a fraction of the time
CANVAS_PIXELS = 1536 * 1024


def paint_canvas(**options: Any) -> gr.ImageEditor:
    """A ``gr.ImageEditor(**options)`` that takes no upload of its own (its picture is set by
    :func:`canvas_picture`), whose value is ``{"background", "layers", "composite"}`` as file paths, unconverted."""
    editor = gr.ImageEditor(sources=(), **options)
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


def canvas_picture(path: str | None) -> dict[str, Any] | None:
    """The canvas's value for the starting image at ``path``: the picture itself where browsers show it as it is
    (upright, of at most :data:`CANVAS_PIXELS`); else an upright copy of it of that size, in Gradio's cache (not
    beside the picture: a reused or sent one is in the user's data folder). Empty without a picture, or with one
    that is no readable picture (Generate says why)."""
    if not path:
        return None
    try:
        if not _shown_as_is(path):
            suffix, data = smaller_copy(path, CANVAS_PIXELS)
            path = save_bytes_to_cache(data, f"{Path(path).stem}-canvas{suffix}", get_upload_folder())
    except (MasukaError, OSError):
        return None
    return {"background": path, "layers": [], "composite": path}


def _shown_as_is(path: str) -> bool:
    if picture_format(path) not in SHOWN:
        return False
    with Image.open(path) as header:
        return stands_upright(header) and header.width * header.height <= CANVAS_PIXELS
