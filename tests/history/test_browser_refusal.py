"""In headless Chromium: a refusal's toast shows its whole message, ``<…>`` included."""

from __future__ import annotations

import pytest

from tests.chromium import chromium

chromium()  # skips this module without it, outside CI
pytestmark = pytest.mark.browser


def test_a_bad_entry_key_s_toast_shows_the_keys_expected(live_app, page):
    app = live_app()
    page.goto(app.url)
    page.get_by_role("tab", name="History").first.click(timeout=30_000)
    page.get_by_label("Entry (click a row or an image)").fill("g9x")
    page.get_by_role("button", name="Reuse parameters").click()  # the Entry box refuses it too, as it changes
    toast = page.get_by_test_id("toast-text").filter(has_text="'g9x' is not a history entry").first
    toast.wait_for(timeout=15_000)
    assert toast.inner_text().strip().endswith("(expected g<number> or j<number>).")
