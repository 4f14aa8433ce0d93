"""Signing in as a person does: Gradio's sign-in page in headless Chromium."""

from __future__ import annotations

import pytest

from tests.chromium import chromium

chromium()  # skips this module without it, outside CI
pytestmark = pytest.mark.browser


def sign_in(page, user: str, password: str) -> None:
    page.get_by_label("username").fill(user)
    page.get_by_label("password").fill(password)
    page.get_by_role("button", name="Login").click()


def test_a_locked_out_sign_in_says_so_on_the_page(live_app, page):
    """The page reacts to a 400 only: a lockout must be one, and the page states the rule behind it."""
    app = live_app(auth="alice:pw-alice,admin:pw-admin", login_attempts=2, login_lockout_s=600)
    page.goto(app.url)
    page.get_by_text("After 2 wrong passwords in a row").wait_for(timeout=30_000)
    for guess in ("guess-1", "guess-2"):
        sign_in(page, "alice", guess)
        page.get_by_text("Incorrect Credentials").wait_for(timeout=30_000)
    page.reload()
    sign_in(page, "alice", "pw-alice")  # the right password, refused while locked
    page.get_by_text("Incorrect Credentials").wait_for(timeout=30_000)
    assert page.get_by_text("even with the right password").is_visible()
    assert page.get_by_role("tab", name="Image").count() == 0, "still on the sign-in page"
