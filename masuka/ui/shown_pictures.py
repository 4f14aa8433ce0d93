"""Pictures put in the page that browsers cannot show (an iPhone's HEIC, a TIFF) swapped for a copy they can.

Chrome and Firefox show neither format, so such a picture in an image box was a broken icon (though MASUKA read
it). Each image box an event reads gets an upload listener that puts an upright JPEG (a photo) or PNG (a lossless
picture) of it in its place, beside the upload. The inpaint canvas takes no upload: it shows the starting image's
copy (:func:`~masuka.ui.paint_canvas.canvas_picture`).
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import gradio as gr

from masuka.errors import MasukaError
from masuka.image.copies import picture_format, upright_copy

#: picture formats (Pillow's names) that current Chrome, Firefox and Safari all show
SHOWN = frozenset({"JPEG", "MPO", "PNG", "WEBP", "GIF", "AVIF", "BMP"})


def show_pictures_in_browsers(demo: gr.Blocks) -> None:
    """Wire :func:`shown_copy` to every image box of ``demo`` an event reads."""
    read = {id(block) for fn in demo.fns.values() for block in fn.inputs}
    for block in list(demo.blocks.values()):
        if isinstance(block, gr.Image) and id(block) in read and block.interactive is not False:
            block.upload(shown_copy, block, block, api_visibility="private", show_progress="hidden")


def shown_copy(path: str | None) -> Any:
    """The box's new value: a copy of the picture browsers show, or no change (a picture they show already, or
    one that is no readable picture: the event that reads it says so)."""
    fmt = picture_format(path) if path else None
    if fmt is None or fmt in SHOWN:
        return gr.skip()
    # Gradio keeps identical uploads in one folder: a name of its own, so two users' copies never meet mid-write
    try:
        suffix, data = upright_copy(path, fmt)
        copy = Path(path).with_name(f"{Path(path).stem}-shown-{uuid.uuid4().hex[:8]}{suffix}")
        copy.write_bytes(data)
    except (MasukaError, OSError):  # the picture stays as it was given, and is read as such
        return gr.skip()
    return str(copy)
