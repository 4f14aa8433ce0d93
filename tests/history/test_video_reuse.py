"""Reuse of a video entry fills the Video tab's form (found by component name)."""

from __future__ import annotations

from pathlib import Path

from gradio_client import Client


def test_reuse_fills_the_video_form_with_row_and_params(live_app):
    running = live_app()
    row = running.studio.store.insert("generations", {
        "kind": "video", "status": "completed", "prompt": "waves at night", "provider": "openai",
        "model": "sora-2", "params": {"seconds": 8, "size": "1280x720"}})
    values = Client(running.url, verbose=False).predict(f"g{row}", api_name="/history_reuse")
    assert all(value in values for value in ("waves at night", "openai", "sora-2", 8, "1280x720"))
    assert any("of the Video tab" in str(v) for v in values)


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
    values = Client(running.url, verbose=False).predict(f"g{row}", api_name="/history_reuse")
    assert "off" in values  # the Sound choice
    files = [v for v in values if isinstance(v, list) and len(v) == 2]
    assert len(files) == 1, values
    assert sorted(Path(str(f.get("path", f) if isinstance(f, dict) else f)).name for f in files[0]) == [
        "a.png", "b.png"]
