"""What a newcomer sees in the first hour, in headless Chromium: refusals that leave the page as it was,
reasons shown where the user looks, empty boxes that are empty, a quiet console."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.chromium import chromium
from tests.test_browser import generate_in_page

chromium()  # skips this module without it, outside CI
pytestmark = pytest.mark.browser


def test_a_refused_size_leaves_the_gallery_as_it_was(live_app, tiny_model, page):
    app = live_app()
    page.goto(app.url)
    page.get_by_label("Model").first.wait_for(timeout=30_000)
    generate_in_page(page, tiny_model("flux"))
    seeds = page.get_by_label("Seeds used").input_value()
    page.get_by_label("Width").fill("77")
    page.get_by_role("button", name="Generate").click()
    page.get_by_text("The width must be a multiple of 16").first.wait_for(timeout=15_000)
    assert page.get_by_text("Done: 1 image(s)").is_visible()
    assert page.locator("img[src*='gradio_api/file']").count() >= 1
    assert page.get_by_label("Seeds used").input_value() == seeds
    assert page.locator("main").get_by_text("Error", exact=True).count() == 0


def test_number_boxes_that_should_be_empty_are_empty(live_app, page):
    page.goto(live_app().url)
    page.get_by_role("tab", name="Video").first.click(timeout=30_000)
    job = page.get_by_label("Job", exact=True)
    job.wait_for(timeout=15_000)
    assert job.input_value() == ""
    assert job.evaluate("box => box.matches(':invalid')") is False
    page.get_by_role("tab", name="Datasets").first.click()
    selected = page.get_by_label("Selected image id")
    selected.wait_for(timeout=15_000)
    assert selected.input_value() == ""


def test_a_refused_upload_is_listed_with_its_reason(live_app, tmp_path, page):
    from masuka.datasets.library import create_dataset
    from masuka.store import LOCAL_USER
    from tests.datasets import corpus

    app = live_app()
    create_dataset(app.studio, "first", LOCAL_USER, "zorp")
    page.goto(app.url)
    page.get_by_role("tab", name="Datasets").first.click(timeout=30_000)
    picker = page.get_by_label("Dataset", exact=True).first
    picker.fill("first")
    picker.press("Enter")
    photo = corpus.photo(tmp_path / "cat.jpg", 7, size=(400, 300))
    notes = tmp_path / "notes.pdf"
    notes.write_bytes(b"%PDF-1.4 not a photo")
    page.locator("input[type=file]").first.set_input_files([str(photo), str(notes)])
    page.get_by_role("button", name="Add to dataset").click()
    page.get_by_text("Added 1, refused 1.").wait_for(timeout=30_000)
    page.locator("text=notes.pdf >> visible=true").first.wait_for(timeout=15_000)
    assert page.locator("text=not an image (or a format MASUKA cannot read) >> visible=true").count() == 1


def test_the_train_tab_keeps_the_console_quiet(live_app, page):
    messages = []
    page.on("console", lambda message: messages.append(f"{message.type}: {message.text}"))
    page.goto(live_app().url)
    page.get_by_role("tab", name="Train").first.click(timeout=30_000)
    page.get_by_text("No run selected.").first.wait_for(timeout=15_000)
    page.wait_for_timeout(5_000)  # a few ticks of the run panel's timer
    noisy = [m for m in messages if m.startswith(("warning", "error")) and "favicon" not in m]
    assert noisy == []


def test_a_failed_video_says_why_under_generate(live_app, fake, page):
    fake("comet").fail_jobs = True  # the form's first provider with a model that is not retired (an OpenAI-style API)
    page.goto(live_app().url)
    page.get_by_role("tab", name="Video").first.click(timeout=30_000)
    page.locator("#video-cost").get_by_text("Estimated cost").wait_for(timeout=15_000)
    page.get_by_label("Prompt", exact=True).locator("visible=true").first.fill("a paper boat")
    page.locator("button:visible", has_text="Generate").first.click()
    line = page.locator("#video-latest-job")
    line.get_by_text("failed:").wait_for(timeout=60_000)
    assert "blocked by our moderation system" in line.inner_text()


def test_a_local_video_folder_offers_the_sizes_its_config_allows(live_app, tmp_path, page):
    from masuka.models.synthetic import save_tiny_video_pipeline

    folder = save_tiny_video_pipeline(tmp_path / "tiny-wan")
    page.goto(live_app().url)
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


def test_pickers_show_what_was_added_elsewhere(live_app, tmp_path, page):
    """Compare's LoRA pickers are filled when the page opens; a dataset created after it opened is in the Train
    tab's picker once that tab is opened (no ↻); the negative prompt box starts greyed out for FLUX.1 [dev]."""
    from masuka.datasets.library import create_dataset
    from masuka.loras.imports import import_lora_file
    from masuka.models.synthetic import save_tiny_lora
    from masuka.store import LOCAL_USER

    app = live_app()
    import_lora_file(app.studio, LOCAL_USER, save_tiny_lora("flux", tmp_path / "ink.safetensors"))
    page.goto(app.url)
    negative = page.get_by_label("Negative prompt")
    negative.wait_for(timeout=30_000)
    expect(negative).not_to_be_editable()
    page.wait_for_timeout(1_000)  # the page's load events
    create_dataset(app.studio, "late", LOCAL_USER, "zorp")
    for tab, picker, option in (("Compare", "Side A LoRAs", "ink (flux)"), ("Train", "Dataset", "late")):
        page.get_by_role("tab", name=tab).first.click()
        box = page.get_by_label(picker, exact=True).locator("visible=true").first
        box.click()
        expect(page.get_by_role("option").filter(has_text=option).first).to_be_visible(timeout=15_000)
        page.keyboard.press("Escape")


def test_the_train_tab_fits_a_phone(live_app, page):
    page.goto(live_app().url)
    page.get_by_role("tab", name="Train").first.click(timeout=30_000)
    page.set_viewport_size({"width": 390, "height": 844})  # narrow, the Train tab moves under "More tabs"
    discard = page.locator("label", has_text="Discard (no checkpoint)").first
    discard.wait_for(timeout=15_000)
    assert discard.evaluate("label => label.scrollWidth <= label.clientWidth"), "the whole label shows"
    assert page.get_by_label("Alpha (0 = the rank)").input_value() == "0"
