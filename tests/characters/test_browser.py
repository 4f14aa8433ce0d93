"""In headless Chromium: what the Characters tab shows of a character, and its creation form's Views slider.
Both on one loaded page (a page load costs seconds of Chromium's CPU); each part is a function named for what it
checks."""

from __future__ import annotations

import pytest

from masuka.characters.making import create_character
from tests.chromium import chromium

from .test_making import request

chromium()  # skips this module without it, outside CI
pytestmark = pytest.mark.browser


def the_views_slider_moved_by_the_keyboard_picks_a_set_and_typed_prompts_move_it(page) -> None:
    """The form as the page opened it (no character picked yet)."""
    box = page.get_by_label("Prompt set (one view a line; saved with the character)")
    page.wait_for_function("box => box.value.split('\\n').length === 24", arg=box.element_handle(), timeout=30_000)
    page.get_by_label("range slider for Views").focus()
    page.keyboard.press("ArrowRight")  # 25: no pointer, so no "release"
    page.wait_for_function("box => box.value.split('\\n').length === 25", arg=box.element_handle(), timeout=30_000)
    box.fill("front view\nback view\nprofil")
    box.press_sequentially("e")  # a key typed (Playwright's fill alone makes no event Gradio passes on)
    number = page.get_by_label("number input for Views")
    page.wait_for_function("n => n.value === '3'", arg=number.element_handle(), timeout=30_000)
    assert box.input_value() == "front view\nback view\nprofile", "the typed set stays"


def the_face_crops_are_shown_whole(page) -> None:
    """Character "anna" exists."""
    picker = page.get_by_label("Character", exact=True)
    picker.fill("anna")
    picker.press("Enter")
    crop = page.locator(".block", has_text="Faces the views are compared with").locator("img").first
    for _ in range(300):  # the locator found again each time: a gallery drawn again replaces its <img>
        if crop.evaluate("img => img.complete && img.naturalWidth > 0", timeout=30_000):
            break
        page.wait_for_timeout(100)
    else:
        raise AssertionError("the face crop never loaded")
    shown = crop.evaluate("""img => {
        const own = img.getBoundingClientRect(), seen = img.closest('.grid-wrap').getBoundingClientRect();
        return {fit: getComputedStyle(img).objectFit, width: own.width, height: own.height,
                inside: own.top >= seen.top - 1 && own.bottom <= seen.bottom + 1};
    }""")
    assert shown["fit"] == "contain", "the whole face, not the part that fills the box"
    assert shown["inside"], "not cut off by the gallery's height"
    assert shown["width"] < 300 and shown["height"] < 300, "one small square, not stretched across the row"


def test_the_characters_tab_s_views_slider_and_face_crops(live_app, tiny_model, tiny_clip, portrait, page):
    app = live_app()
    create_character(app.studio, request(tiny_model("sdxl"), tiny_clip, portrait, views=1))
    page.goto(app.url)
    page.get_by_role("tab", name="Characters").first.click(timeout=30_000)
    the_views_slider_moved_by_the_keyboard_picks_a_set_and_typed_prompts_move_it(page)
    the_face_crops_are_shown_whole(page)
