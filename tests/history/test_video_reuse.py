"""Reuse fills a Video tab's form when one is built: components are found by name, not imported."""

from __future__ import annotations

import sys
import types

from gradio_client import Client


def video_tab() -> types.ModuleType:
    """A minimal tab registering the component names a Video tab uses."""
    import gradio as gr

    module = types.ModuleType("masuka.ui.video_form_for_test")

    def build(ctx):
        ctx.components.update(video_prompt=gr.Textbox(label="Video prompt"), video_provider=gr.Textbox(label="Provider"),
                              video_duration=gr.Number(label="Seconds"), video_seed=gr.Number(label="Seed"))

    module.build = build
    return module


def test_reuse_fills_the_video_form_with_row_and_params(live_app, monkeypatch):
    from masuka.ui import app

    monkeypatch.setitem(sys.modules, "masuka.ui.video_form_for_test", video_tab())
    monkeypatch.setattr(app, "TABS", [*app.TABS, ("Video", "video_form_for_test")])
    running = live_app()
    row = running.studio.store.insert("generations", {
        "kind": "video", "status": "completed", "prompt": "waves at night", "provider": "runway", "seed": 4,
        "params": {"duration": 8}})
    values = Client(running.url, verbose=False).predict(f"g{row}", api_name="/history_reuse")
    assert all(value in values for value in ("waves at night", "runway", 8, 4))
    assert any("Filled 4 field(s) of the Video tab" in str(v) for v in values)
