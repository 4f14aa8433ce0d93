"""In headless Chromium: Reuse parameters fills the Image form and keeps the reused steps and size."""

from __future__ import annotations

import pytest

from tests.chromium import chromium

chromium()  # skips this module without it, outside CI
pytestmark = pytest.mark.browser


def test_reuse_fills_the_image_tab(live_app, page):
    app = live_app()
    app.studio.store.insert("generations", {"kind": "image", "status": "completed", "prompt": "a castle",
                                            "negative_prompt": "fog", "model": "sd35-medium", "seed": 77, "steps": 12,
                                            "guidance": 6.5, "width": 768, "height": 512, "loras": []})
    page.goto(app.url)
    page.get_by_role("tab", name="History").first.click(timeout=30_000)
    key = page.get_by_label("Entry (click a row or an image)")
    key.fill("g1")
    key.press("Enter")
    page.get_by_text("g1 · image · completed").wait_for(timeout=15_000)
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


def test_reuse_gives_the_video_form_the_entrys_model_choices_and_empties_what_it_lacks(live_app, page):
    """Reusing a Runway entry after a Veo one with a negative prompt: the Model list, Seconds and Size are
    Runway's (the entry's values kept) and the negative prompt box is emptied and greyed out, so the next
    Generate sends nothing of the entry reused before."""
    app = live_app()
    for provider, model, negative, seconds, size in (("gemini", "veo-3.1-generate-001", "fog", 6, "1280x720"),
                                                      ("runway", "gen4.5", "", 10, "720x1280")):
        app.studio.store.insert("generations", {"kind": "video", "status": "completed", "prompt": f"a {provider}",
                                                "provider": provider, "model": model, "negative_prompt": negative,
                                                "params": {"seconds": seconds, "size": size}})
    page.goto(app.url)
    visible = {label: page.get_by_label(label, exact=True).locator("visible=true").first
               for label in ("Negative prompt", "Model", "Seconds", "Size")}
    for key, prompt in (("g1", "a gemini"), ("g2", "a runway")):
        page.get_by_role("tab", name="History").first.click(timeout=30_000)
        box = page.get_by_label("Entry (click a row or an image)")
        box.fill(key)
        box.press("Enter")
        page.get_by_text(f"{key} · video · completed").wait_for(timeout=15_000)
        page.get_by_role("button", name="Reuse parameters").click()
        page.wait_for_function(f"() => [...document.querySelectorAll('textarea')].some(t => t.value === "
                               f"'{prompt}')", timeout=15_000)
        if key == "g1":
            assert visible["Negative prompt"].input_value() == "fog" and visible["Negative prompt"].is_editable()
    page.wait_for_timeout(1000)  # let any follow-up events settle: the reused values must stay
    assert visible["Negative prompt"].input_value() == "" and not visible["Negative prompt"].is_editable()
    assert (visible["Seconds"].input_value(), visible["Size"].input_value()) == ("10", "720x1280")
    visible["Model"].click()
    options = page.locator("ul[role=listbox] li").locator("visible=true").all_inner_texts()
    assert visible["Model"].input_value() == "Gen-4.5" and any("Aleph" in option for option in options), options
