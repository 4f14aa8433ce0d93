"""Builds the Blocks app from one module per tab."""

from __future__ import annotations

import importlib

import gradio as gr

from masuka.studio import Studio
from masuka.ui.checked_blocks import CheckedBlocks
from masuka.ui.common import UIContext

#: Gradio's upload cache: every hour, files older than a day are deleted (all of it at each start).
UPLOAD_CACHE_CLEANING = (3600, 86400)
#: (tab label, module under masuka.ui): each module has ``build(ctx)``
TABS = [("Image", "image"), ("Queue", "queue"), ("Grid", "grid"), ("Compare", "compare"), ("Video", "video"),
        ("Datasets", "datasets"), ("Train", "train"), ("History", "history"), ("Models", "models"),
        ("Settings", "settings"), ("Characters", "characters")]


def build_app(studio: Studio) -> gr.Blocks:
    """The whole studio UI; tabs share one :class:`UIContext` for cross-tab links."""
    ctx = UIContext(studio)
    with CheckedBlocks(studio, title="MASUKA", delete_cache=UPLOAD_CACHE_CLEANING) as demo:
        gr.Markdown("# MASUKA\nPhotos → dataset → LoRA → images and videos, on one GPU.", elem_id="masuka-title")
        with gr.Tabs() as tabs:
            ctx.components["tabs"] = tabs
            for label, module in TABS:
                with gr.Tab(label, id=module):
                    importlib.import_module(f"masuka.ui.{module}").build(ctx)
        _wire(ctx, demo)
    return demo


def _wire(ctx: UIContext, demo: gr.Blocks) -> None:
    """Cross-tab links: a finished generation refreshes History; page load fills the pickers."""
    components = ctx.components
    for hook in [hook for name, hook in components.items() if name.endswith("_after_build")]:
        hook(demo)  # a tab's links to components of tabs built after it, and its page-load events
    if "history_load" in components:
        load, page, outputs = components["history_load"]
        demo.load(load, page, outputs, api_visibility="private")
        if "image_generated" in components:
            components["image_generated"].then(load, page, outputs, api_visibility="private")
        if "image_edited" in components:
            components["image_edited"].then(load, page, outputs, api_visibility="private")
    if "datasets_load" in components:
        load, picker = components["datasets_load"]
        demo.load(load, None, picker, api_visibility="private")
    if "image_load" in components:
        demo.load(components["image_load"], None, components["image_loras"], api_visibility="private")
    if "train_load" in components:
        demo.load(components["train_load"], None, components["train_dataset"], api_visibility="private")
