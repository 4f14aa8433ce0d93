"""Reuse of a video entry fills the Video tab's form (found by component name)."""

from __future__ import annotations

from gradio_client import Client


def test_reuse_fills_the_video_form_with_row_and_params(live_app):
    running = live_app()
    row = running.studio.store.insert("generations", {
        "kind": "video", "status": "completed", "prompt": "waves at night", "provider": "openai",
        "model": "sora-2", "params": {"seconds": 8, "size": "1280x720"}})
    values = Client(running.url, verbose=False).predict(f"g{row}", api_name="/history_reuse")
    assert all(value in values for value in ("waves at night", "openai", "sora-2", 8, "1280x720"))
    assert any("of the Video tab" in str(v) for v in values)
