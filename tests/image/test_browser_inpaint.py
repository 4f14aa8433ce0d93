"""In headless Chromium: a picture sent to the Inpaint/Outpaint mode, a mask painted over it with the brush,
Generate, and the result sent on to the other modes, the Upscale panel, the Video tab and the Datasets tab; a
photo larger than the canvas shows put in that mode, painted over as a smaller copy and repainted at its own
size."""

from __future__ import annotations

import io
import time

import numpy as np
import pytest
from PIL import Image
from playwright.sync_api import expect

from masuka.ui import paint_canvas
from tests.chromium import chromium

chromium()  # skips this module without it, outside CI
pytestmark = pytest.mark.browser


def paint_stroke(page, canvas) -> None:
    """Drag the brush across the middle of the picture on the editor's canvas."""
    canvas.scroll_into_view_if_needed()
    box = canvas.bounding_box()
    y = box["y"] + box["height"] / 2
    page.mouse.move(box["x"] + box["width"] * 0.45, y)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] * 0.55, y, steps=4)  # each move repaints the editor: a few do
    page.mouse.up()


def drawn(page, editor) -> None:
    """Wait until the editor's canvas shows a picture (seconds on a busy machine): its screenshot is no longer of
    one colour."""
    canvas = editor.locator("canvas").last
    canvas.scroll_into_view_if_needed()
    for _ in range(60):
        if np.asarray(Image.open(io.BytesIO(canvas.screenshot())).convert("L")).std() > 20:
            return
        page.wait_for_timeout(500)
    raise AssertionError("the canvas shows no picture")


def opened_with(page, app, model) -> None:
    """The app's page open, with ``model`` (a tiny SDXL) picked and its defaults arrived (SDXL's 30 steps)."""
    page.goto(app.url)
    page.get_by_role("tab").first.wait_for(timeout=30_000)
    page.get_by_label("Model").fill(str(model))
    page.get_by_label("Model").press("Enter")
    page.wait_for_function("() => [...document.querySelectorAll('input[type=number]')].some("
                           "i => i.getAttribute('aria-label') === 'number input for Steps' && i.value === '30')",
                           timeout=15_000)


def paint_and_generate(page, editor, prompt: str, red_stroke: bool = False) -> None:
    """Once the canvas shows its picture: a stroke painted with the brush (checked to show in red over a picture
    of no red), then Generate with ``prompt``."""
    drawn(page, editor)
    editor.get_by_role("button", name="Brush", exact=True).click()
    paint_stroke(page, editor.locator("canvas").last)
    # the stroke is in the editor's history before Generate sends the layers: sent sooner, the layer came over
    # empty once and the painted mask was refused as unreadable
    expect(editor.get_by_role("button", name="Undo", exact=True)).to_be_enabled(timeout=15_000)
    if red_stroke:  # the mask's see-through red shows over the picture (white strokes vanished on white)
        shot = np.asarray(Image.open(io.BytesIO(editor.locator("canvas").last.screenshot())).convert("RGB"))
        assert ((shot[..., 0].astype(int) - shot[..., 1]) > 80).sum() > 400, "the stroke shows"  # 850; white: 44
    page.get_by_label("Prompt", exact=True).fill(prompt)
    page.get_by_role("button", name="Generate").click()


def completed(app, count: int, wait_s: float = 60) -> list[dict]:
    """The completed generations once there are ``count`` of them (the images are made in the background)."""
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        rows = app.studio.store.find("generations", "status = 'completed'", order_by="id")
        if len(rows) >= count:
            return rows
        time.sleep(0.1)
    raise AssertionError(f"fewer than {count} images were made in {wait_s:g} s")


def test_inpaint_mode_repaints_what_the_brush_covers(live_app, tiny_model, page):
    app = live_app()
    opened_with(page, app, tiny_model("sdxl"))
    for name, value in (("Width", "128"), ("Height", "96")):
        page.get_by_label(name, exact=True).fill(value)
    page.get_by_label("number input for Steps").fill("4")  # a few steps do: the test is about the mask
    page.get_by_label("Prompt", exact=True).fill("a harbour at dusk")
    page.get_by_role("button", name="Generate").click()
    (made,) = completed(app, 1)
    assert made["steps"] == 4
    picture = Image.open(app.studio.config.absolute(made["output_path"])).convert("RGB")
    page.get_by_text("Done: 1 image(s)").wait_for(timeout=30_000)
    page.get_by_role("button", name="Send to Inpaint/Outpaint").click()  # the picture goes on the canvas
    expect(page.get_by_label("Inpaint/Outpaint", exact=True)).to_be_checked(timeout=30_000)  # the mode switched
    editor = page.locator("#masuka-canvas")
    editor.wait_for(state="visible", timeout=30_000)
    paint_and_generate(page, editor, "a red balloon")
    row = completed(app, 2)[1]
    assert (row["status"], row["params"]["task"]) == ("completed", "inpaint")
    mask = np.asarray(Image.open(app.studio.config.absolute(row["params"]["mask"])).convert("L"))
    assert mask.shape == (96, 128) and 0 < (mask > 0).mean() < 0.5, "the stroke, not the whole picture, is the mask"
    out = np.asarray(Image.open(app.studio.config.absolute(row["output_path"])).convert("RGB"))
    assert out.shape == (96, 128, 3), "the size follows the picture"
    far = mask == 0
    far[max(0, np.argwhere(mask).min(0)[0] - 16):np.argwhere(mask).max(0)[0] + 16] = False  # past the blur
    assert np.array_equal(out[far], np.asarray(picture)[far]), "pixels away from the stroke come back identical"
    page.get_by_text("Done: 1 image(s)").wait_for(timeout=30_000)
    page.get_by_role("button", name="Send to Edit").click()
    page.get_by_role("button", name="Edit", exact=True).wait_for(state="visible", timeout=15_000)
    assert page.get_by_label("Edit", exact=True).is_checked(), "Send to Edit switches to the Edit mode"
    page.get_by_text(".png").first.wait_for(timeout=15_000)  # the result is now the image to edit
    page.get_by_role("button", name="Send to Video first frame").click()
    video = page.get_by_role("tabpanel").filter(has_text="First frame (optional: image-to-video)")
    video.locator("img[src*='gradio_api/file']").first.wait_for(timeout=15_000)  # the result is the first frame
    assert page.get_by_role("tab", name="Video").get_attribute("aria-selected") == "true"
    page.get_by_role("tab", name="Image").click()
    page.get_by_role("button", name="Send to Upscale").click()
    upscale = page.locator("label:has-text('Picture to upscale')").locator(
        "xpath=ancestor::div[contains(@class, 'block')][1]")
    upscale.locator("img").first.wait_for(timeout=30_000)  # the result is the picture to upscale, the panel open
    page.get_by_role("button", name="Send to Datasets").click()
    page.get_by_role("tab", name="Datasets").wait_for(timeout=30_000)
    page.wait_for_function("() => [...document.querySelectorAll('[role=tab]')].some("
                           "t => t.textContent.trim() === 'Datasets' && t.getAttribute('aria-selected') === 'true')",
                           timeout=30_000)
    page.get_by_role("tabpanel").filter(has_text="Photos, a .zip").get_by_text(".png").first.wait_for(timeout=30_000)


def test_a_large_photo_is_painted_over_as_a_smaller_copy_and_repainted_at_its_size(live_app, tiny_model, page,
                                                                                     tmp_path, monkeypatch):
    """A photo larger than the canvas shows, put in the Starting image of the Inpaint/Outpaint mode: the canvas shows
    a smaller copy, the stroke painted over the copy becomes a mask at the photo's size, and the result is the photo
    at its size with every pixel away from the stroke its own. Scaled down here (a 480x360 canvas for a 640x480
    photo rather than 1536x1024 for a phone's 12 MP): a headless Chromium without a GPU took 30 s to encode a 1.5 MP
    canvas's layers for Generate on a 2-core machine, and the repaint's time grows with the photo's pixels. (The
    copy's size at the app's own limit: tests/ui/test_paint_canvas.py.)"""
    monkeypatch.setattr(paint_canvas, "CANVAS_PIXELS", 480 * 360)
    rng = np.random.default_rng(5)
    photo = np.repeat(np.linspace(40, 220, 640, dtype=np.uint8)[None, :, None], 480, axis=0).repeat(3, axis=2)
    photo = np.clip(photo + rng.integers(0, 40, photo.shape), 0, 255).astype(np.uint8)  # a gradient, some grain
    Image.fromarray(photo).save(tmp_path / "photo.jpg", quality=90)
    photo = np.asarray(Image.open(tmp_path / "photo.jpg").convert("RGB"))  # as decoded
    app = live_app()
    opened_with(page, app, tiny_model("sdxl"))
    page.get_by_label("number input for Steps").fill("1")
    page.get_by_label("Inpaint/Outpaint", exact=True).check()
    editor = page.locator("#masuka-canvas")
    editor.wait_for(state="visible", timeout=30_000)
    with page.expect_response(lambda response: "-canvas." in response.url, timeout=30_000) as shown:
        page.locator("input[type=file]").first.set_input_files(str(tmp_path / "photo.jpg"))  # the Starting image
    copy = Image.open(io.BytesIO(page.request.get(shown.value.url).body()))
    assert copy.size == (480, 360), "the canvas shows the smaller copy"
    paint_and_generate(page, editor, "a red balloon", red_stroke=True)  # a grey photo
    (row,) = completed(app, 1, wait_s=240)  # a repaint at the photo's size on a busy 2-core machine's CPU
    assert (row["params"]["task"], row["width"], row["height"]) == ("inpaint", 640, 480)
    mask = np.asarray(Image.open(app.studio.config.absolute(row["params"]["mask"])).convert("L"))
    rows, columns = np.nonzero(mask)
    assert mask.shape == (480, 640) and 0 < (mask > 0).mean() < 0.1, "the stroke, at the photo's size"
    assert abs(rows.mean() - 240) < 20 and abs(columns.mean() - 320) < 40, "where it was painted"
    out = np.asarray(Image.open(app.studio.config.absolute(row["output_path"])).convert("RGB"))
    far = np.ones(mask.shape, bool)
    far[rows.min() - 40:rows.max() + 40, columns.min() - 40:columns.max() + 40] = False  # past the blur
    assert out.shape == photo.shape and np.array_equal(out[far], photo[far])
