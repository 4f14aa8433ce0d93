"""In headless Chromium, on one loaded page of the History tab (a page load costs seconds of Chromium's CPU):
an entry's summary shows its prompt as stored, not read as Markdown, HTML or maths; Reuse parameters fills the
Image form and keeps the reused steps and size, and gives the Video form the entry's model choices; a refusal's
toast shows its whole message, ``<…>`` included. Each part is a function named for what it checks."""

from __future__ import annotations

import pytest

from tests.chromium import chromium

chromium()  # skips this module without it, outside CI
pytestmark = pytest.mark.browser

PROMPT = r"# a **bold** <b>fox</b> _in_ [snow](http://x.y) `code` ~~gone~~ & &amp; \ $$x^2$$ 50% a_b <img src=x>"


def show_entry(page, key: str, heading: str) -> None:
    page.get_by_role("tab", name="History").first.click(timeout=30_000)
    box = page.get_by_label("Entry (click a row or an image)")
    box.fill(key)
    box.press("Enter")
    page.get_by_text(heading).wait_for(timeout=15_000)


def the_summary_shows_the_prompt_as_stored(page) -> None:
    """g4 holds ``PROMPT``; no other entry was shown yet (so the only "Prompt:" is g4's)."""
    show_entry(page, "g4", "g4 · image · completed")
    shown = page.get_by_text("Prompt:").locator("xpath=..")
    shown.wait_for(timeout=15_000)
    assert shown.inner_text() == f"Prompt: {PROMPT}"
    assert not page.locator(".prose strong", has_text="bold").count() and not page.locator(".prose img").count()


def reuse_fills_the_image_tab(page) -> None:
    """g1: an image entry of Stable Diffusion 3.5 Medium."""
    show_entry(page, "g1", "g1 · image · completed")
    page.get_by_role("button", name="Reuse parameters").click()
    prompt = page.get_by_label("Prompt").first
    page.wait_for_function("() => [...document.querySelectorAll('textarea')].some(t => t.value === 'a castle')",
                           timeout=15_000)
    assert prompt.is_visible()  # the Image tab is shown
    page.wait_for_timeout(1000)  # let any follow-up events settle: the reused values must stay
    assert page.get_by_label("Steps").first.input_value() == "12"
    assert page.get_by_label("Width").first.input_value() == "768"
    assert page.get_by_label("Seed (-1 = random)").input_value() == "77"
    assert page.get_by_label("Model").first.input_value() == "Stable Diffusion 3.5 Medium"


def reuse_gives_the_video_form_the_entrys_model_choices_and_empties_what_it_lacks(page) -> None:
    """Reusing a Runway entry (g3) after a Veo one with a negative prompt (g2): the Model list, Seconds and Size are
    Runway's (the entry's values kept) and the negative prompt box is emptied and greyed out, so the next
    Generate sends nothing of the entry reused before."""
    visible = {label: page.get_by_label(label, exact=True).locator("visible=true").first
               for label in ("Negative prompt", "Model", "Seconds", "Size")}
    for key, prompt in (("g2", "a gemini"), ("g3", "a runway")):
        show_entry(page, key, f"{key} · video · completed")
        page.get_by_role("button", name="Reuse parameters").click()
        page.wait_for_function(f"() => [...document.querySelectorAll('textarea')].some(t => t.value === "
                               f"'{prompt}')", timeout=15_000)
        if key == "g2":
            assert visible["Negative prompt"].input_value() == "fog" and visible["Negative prompt"].is_editable()
    page.wait_for_timeout(1000)  # let any follow-up events settle: the reused values must stay
    assert visible["Negative prompt"].input_value() == "" and not visible["Negative prompt"].is_editable()
    assert (visible["Seconds"].input_value(), visible["Size"].input_value()) == ("10", "720x1280")
    visible["Model"].click()
    options = page.locator("ul[role=listbox] li").locator("visible=true").all_inner_texts()
    assert visible["Model"].input_value() == "Gen-4.5" and any("Aleph" in option for option in options), options
    page.keyboard.press("Escape")


def a_bad_entry_key_s_toast_shows_the_keys_expected(page) -> None:
    page.get_by_role("tab", name="History").first.click(timeout=30_000)
    page.get_by_label("Entry (click a row or an image)").fill("g9x")
    page.get_by_role("button", name="Reuse parameters").click()  # the Entry box refuses it too, as it changes
    toast = page.get_by_test_id("toast-text").filter(has_text="'g9x' is not a history entry").first
    toast.wait_for(timeout=15_000)
    assert toast.inner_text().strip().endswith("(expected g<number> or j<number>).")


def test_the_history_tab_shows_reuses_and_refuses_entries_on_one_page(live_app, page):
    app = live_app()
    insert = app.studio.store.insert
    insert("generations", {"kind": "image", "status": "completed", "prompt": "a castle", "negative_prompt": "fog",
                           "model": "sd35-medium", "seed": 77, "steps": 12, "guidance": 6.5, "width": 768,
                           "height": 512, "loras": []})
    for provider, model, negative, seconds, size in (("gemini", "veo-3.1-generate-001", "fog", 6, "1280x720"),
                                                      ("runway", "gen4.5", "", 10, "720x1280")):
        insert("generations", {"kind": "video", "status": "completed", "prompt": f"a {provider}",
                               "provider": provider, "model": model, "negative_prompt": negative,
                               "params": {"seconds": seconds, "size": size}})
    insert("generations", {"kind": "image", "status": "completed", "prompt": PROMPT, "model": "fake/tiny_model"})
    page.goto(app.url)
    the_summary_shows_the_prompt_as_stored(page)
    reuse_fills_the_image_tab(page)
    reuse_gives_the_video_form_the_entrys_model_choices_and_empties_what_it_lacks(page)
    a_bad_entry_key_s_toast_shows_the_keys_expected(page)
