"""Reuse of a video entry gives the Video form's fields by name (the Video tab is filled from the same fields)."""

from __future__ import annotations

from gradio_client import Client


def test_reuse_fills_the_video_form_with_row_and_params(live_app):
    running = live_app()
    row = running.studio.store.insert("generations", {
        "kind": "video", "status": "completed", "prompt": "waves at night", "provider": "openai",
        "model": "sora-2", "params": {"seconds": 8, "size": "1280x720"}})
    reuse = Client(running.url, verbose=False).predict(f"g{row}", api_name="/history_reuse")
    kind, fields = reuse["kind"], reuse["fields"]
    assert kind == "video"
    assert {name: fields[name] for name in ("prompt", "provider", "model", "seconds", "size")} == {
        "prompt": "waves at night", "provider": "openai", "model": "sora-2", "seconds": 8, "size": "1280x720"}
