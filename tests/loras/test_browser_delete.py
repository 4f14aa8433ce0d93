"""In headless Chromium: Models → LoRAs' Delete confirmation names the LoRA and goes when the choice changes or
the deletion is refused, so its click never deletes a LoRA chosen after it was shown."""

from __future__ import annotations

import pytest

from masuka.loras.imports import import_lora_file
from masuka.loras.library import delete_lora
from tests.chromium import chromium
from tests.loras.test_imports import write_flux_lora

chromium()  # skips this module without it, outside CI
pytestmark = pytest.mark.browser


def test_the_delete_confirmation_follows_the_chosen_lora(live_app, page, tmp_path):
    app = live_app()
    for name in ("ink", "pen"):
        write_flux_lora(tmp_path / f"{name}.safetensors")
        import_lora_file(app.studio, "local", tmp_path / f"{name}.safetensors")
    page.goto(app.url)
    page.get_by_role("tab", name="Models").first.click(timeout=30_000)
    page.get_by_role("tab", name="LoRAs").first.click(timeout=30_000)
    doomed = page.get_by_label("LoRA to delete (id or name)")

    def choose(name: str) -> None:
        doomed.click()
        page.get_by_role("option", name=name, exact=True).click()

    choose("ink")
    page.get_by_role("button", name="Delete LoRA…").click()
    confirm = page.get_by_role("button", name="Yes, delete LoRA ink and its file")
    confirm.wait_for(timeout=15_000)
    choose("pen")
    confirm.wait_for(state="hidden", timeout=15_000)
    page.get_by_role("button", name="Delete LoRA…").click()
    confirm = page.get_by_role("button", name="Yes, delete LoRA pen and its file")
    confirm.wait_for(timeout=15_000)
    delete_lora(app.studio, "pen", "local", False)  # gone meanwhile (the CLI, another tab): the click is refused
    confirm.click()
    page.get_by_text("No LoRA").first.wait_for(timeout=15_000)
    confirm.wait_for(state="hidden", timeout=15_000)
    assert [row["name"] for row in app.studio.store.find("loras")] == ["ink"]
