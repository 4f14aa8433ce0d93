"""What a newcomer sees in the first hour, in headless Chromium: refusals that leave the page as it was,
reasons shown where the user looks, empty boxes that are empty, a quiet console.

A page load costs seconds of Chromium's CPU (Gradio's front end builds every tab), so the checks below share one
loaded page, each in the order that leaves the state the next one starts from; each part is a function named for
what it checks. (A refused size leaving the gallery as it was: tests/test_browser.py, on its generated image.)"""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.chromium import chromium

chromium()  # skips this module without it, outside CI
pytestmark = pytest.mark.browser


def number_boxes_that_should_be_empty_are_empty(page, tab: str) -> None:
    """The Datasets tab's selected image id, or the Video tab's job number, as the page opened them."""
    page.get_by_role("tab", name=tab).first.click(timeout=30_000)
    if tab == "Datasets":
        selected = page.get_by_label("Selected image id")
        selected.wait_for(timeout=15_000)
        assert selected.input_value() == ""
        return
    job = page.get_by_label("Job", exact=True)
    job.wait_for(timeout=15_000)
    assert job.input_value() == ""
    assert job.evaluate("box => box.matches(':invalid')") is False


def a_refused_upload_is_listed_with_its_reason(page, tmp_path) -> None:
    """Dataset "first" exists."""
    from tests.datasets import corpus

    page.get_by_role("tab", name="Datasets").first.click(timeout=30_000)
    picker = page.get_by_label("Dataset", exact=True).locator("visible=true").first  # the Train tab has one too
    picker.fill("first")
    picker.press("Enter")
    photo = corpus.photo(tmp_path / "cat.jpg", 7, size=(400, 300))
    notes = tmp_path / "notes.pdf"
    notes.write_bytes(b"%PDF-1.4 not a photo")
    # the tab's Photos box, the page's one file input that takes several (Video's first frame takes one)
    page.locator("input[type=file][multiple]").first.set_input_files([str(photo), str(notes)])
    page.get_by_role("button", name="Add to dataset").click()
    page.get_by_text("Added 1, refused 1.").wait_for(timeout=30_000)
    page.locator("text=notes.pdf >> visible=true").first.wait_for(timeout=15_000)
    assert page.locator("text=not an image (or a format MASUKA cannot read) >> visible=true").count() == 1


def pickers_show_what_was_added_elsewhere(page) -> None:
    """Compare's LoRA pickers were filled when the page opened (LoRA "ink" imported before); a dataset created after
    it opened ("late") is in the Train tab's picker once that tab is opened (no ↻)."""
    for tab, picker, option in (("Compare", "Side A LoRAs", "ink (flux)"), ("Train", "Dataset", "late")):
        page.get_by_role("tab", name=tab).first.click()
        box = page.get_by_label(picker, exact=True).locator("visible=true").first
        box.click()
        expect(page.get_by_role("option").filter(has_text=option).first).to_be_visible(timeout=15_000)
        page.keyboard.press("Escape")


def the_train_tab_keeps_the_console_quiet(page, messages: list[str]) -> None:
    """``messages``: every console message since before the page loaded; only the Image tab was shown before."""
    page.get_by_role("tab", name="Train").first.click(timeout=30_000)
    page.get_by_text("No run selected.").first.wait_for(timeout=15_000)
    page.wait_for_timeout(5_000)  # a few ticks of the run panel's timer
    noisy = [m for m in messages if m.startswith(("warning", "error")) and "favicon" not in m]
    assert noisy == []


def a_failed_video_says_why_under_generate(page) -> None:
    """The fake "comet" provider fails its jobs."""
    page.get_by_role("tab", name="Video").first.click(timeout=30_000)
    page.locator("#video-cost").get_by_text("Estimated cost").wait_for(timeout=15_000)
    page.get_by_label("Prompt", exact=True).locator("visible=true").first.fill("a paper boat")
    page.locator("button:visible", has_text="Generate").first.click()
    line = page.locator("#video-latest-job")
    line.get_by_text("failed:").wait_for(timeout=60_000)
    assert "blocked by our moderation system" in line.inner_text()


def a_local_video_folder_offers_the_sizes_its_config_allows(page, folder) -> None:
    page.get_by_role("tab", name="Video").first.click(timeout=30_000)
    provider = page.get_by_label("Provider", exact=True)
    provider.fill("Local (diffusers, this GPU)")
    provider.press("Enter")
    model = page.get_by_label("Model", exact=True).locator("visible=true").first
    # the provider's event fills in its first model: typing before it lands would be overwritten
    expect(model).to_have_value("Wan 2.1 T2V 1.3B", timeout=15_000)
    model.fill(str(folder))
    model.press("Enter")
    size = page.get_by_label("Size", exact=True)
    expect(size).to_have_value("512x512", timeout=15_000)
    cost = page.locator("#video-cost")
    # The estimate follows the new size once its event has run (it may still show the last one for a moment);
    # the locator is queried afresh, since Gradio may replace the element it renders the Markdown into.
    expect(cost).to_contain_text("at 512x512", timeout=15_000)
    assert "1280x720" not in cost.inner_text()


def the_train_tab_fits_a_phone(page) -> None:
    page.get_by_role("tab", name="Train").first.click(timeout=30_000)
    page.set_viewport_size({"width": 390, "height": 844})  # narrow, the Train tab moves under "More tabs"
    discard = page.locator("label", has_text="Discard (no checkpoint)").first
    discard.wait_for(timeout=15_000)
    assert discard.evaluate("label => label.scrollWidth <= label.clientWidth"), "the whole label shows"
    assert page.get_by_label("Alpha (0 = the rank)").input_value() == "0"


def test_a_newcomers_first_hour_on_one_page(live_app, fake, tmp_path, page):
    """Empty boxes, a refused upload, pickers that follow the studio, a quiet console, a failed and a local video,
    the Train tab on a phone: the negative prompt box starts greyed out for FLUX.1 [dev]."""
    from masuka.datasets.library import create_dataset
    from masuka.loras.imports import import_lora_file
    from masuka.models.synthetic import save_tiny_lora, save_tiny_video_pipeline
    from masuka.store import LOCAL_USER

    fake("comet").fail_jobs = True  # the form's first provider with a model that is not retired (an OpenAI-style API)
    folder = save_tiny_video_pipeline(tmp_path / "tiny-wan")
    app = live_app()
    import_lora_file(app.studio, LOCAL_USER, save_tiny_lora("flux", tmp_path / "ink.safetensors"))
    create_dataset(app.studio, "first", LOCAL_USER, "zorp")
    messages: list[str] = []
    page.on("console", lambda message: messages.append(f"{message.type}: {message.text}"))
    page.goto(app.url)
    negative = page.get_by_label("Negative prompt")
    negative.wait_for(timeout=30_000)
    expect(negative).not_to_be_editable()
    page.wait_for_timeout(1_000)  # the page's load events
    create_dataset(app.studio, "late", LOCAL_USER, "zorp")  # after the page opened, before the Train tab did

    the_train_tab_keeps_the_console_quiet(page, messages)
    pickers_show_what_was_added_elsewhere(page)
    number_boxes_that_should_be_empty_are_empty(page, "Datasets")
    a_refused_upload_is_listed_with_its_reason(page, tmp_path)
    number_boxes_that_should_be_empty_are_empty(page, "Video")
    a_failed_video_says_why_under_generate(page)
    a_local_video_folder_offers_the_sizes_its_config_allows(page, folder)
    the_train_tab_fits_a_phone(page)
