"""Reuse of a video entry gives the Video form's fields by name (the Video tab is filled from the same fields)."""

from __future__ import annotations

from pathlib import Path

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


def test_reuse_gives_back_reference_images_and_the_sound_choice(live_app):
    from PIL import Image

    running = live_app()
    folder = running.studio.config.data_dir / "inputs"
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("a.png", "b.png"):
        Image.new("RGB", (16, 16), "teal").save(folder / name)
    row = running.studio.store.insert("generations", {
        "kind": "video", "status": "completed", "prompt": "a red kite", "provider": "gemini",
        "model": "veo-3.1-generate-001", "params": {"seconds": 8, "size": "1280x720", "audio": False,
                                                    "references": ["inputs/a.png", "inputs/b.png"]}})
    fields = Client(running.url, verbose=False).predict(f"g{row}", api_name="/history_reuse")["fields"]
    assert fields["sound"] == "off"
    assert sorted(Path(path).name for path in fields["references"]) == ["a.png", "b.png"]
