"""Builds the Blocks app from one module per tab."""

from __future__ import annotations

import importlib

import gradio as gr

from masuka.picture_formats import read_heif
from masuka.studio import Studio
from masuka.ui.checked_blocks import CheckedBlocks
from masuka.ui.common import UIContext
from masuka.ui.component_signatures import pin_component_signatures
from masuka.ui.shown_pictures import show_pictures_in_browsers

#: Gradio's upload cache: every hour, files older than a day are deleted (all of it at each start).
UPLOAD_CACHE_CLEANING = (3600, 86400)
#: (tab label, module under masuka.ui): each module has ``build(ctx)``
TABS = [("Image", "image"), ("Queue", "queue"), ("Grid", "grid"), ("Compare", "compare"), ("Video", "video"),
        ("Datasets", "datasets"), ("Train", "train"), ("History", "history"), ("Models", "models"),
        ("Settings", "settings"), ("Characters", "characters")]


def build_app(studio: Studio) -> gr.Blocks:
    """The whole studio UI; tabs link to each other through one :class:`UIContext`."""
    pin_component_signatures()  # before the first component is built
    ctx = UIContext(studio)
    read_heif()  # Gradio opens the pictures sent to image inputs itself, before a handler does: HEIC ones too
    # the queue's settings go in with the Blocks: Gradio rebuilds its whole server app on each queue() call
    queue = {"max_size": studio.config.queue_size, "default_concurrency_limit": None, "api_open": False}
    with CheckedBlocks(studio, queue=queue, title="MASUKA", delete_cache=UPLOAD_CACHE_CLEANING) as demo:
        gr.Markdown("# MASUKA\nPhotos → dataset → LoRA → images and videos, on one GPU.", elem_id="masuka-title")
        with gr.Tabs() as ctx.tabs:
            for label, module in TABS:
                with gr.Tab(label, id=module):
                    importlib.import_module(f"masuka.ui.{module}").build(ctx)
        ctx.finish(demo)
        show_pictures_in_browsers(demo)
    return demo
