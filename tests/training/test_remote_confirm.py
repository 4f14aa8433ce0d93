"""The Train tab's confirmation of a remote run (billed by its service): Train shows it, naming the service and the
estimated price, and starts nothing; only its click starts the run; a change of the price hides it. A local run
starts on the first click (the ``start_training`` API starts any run at once: test_remote.py)."""

from __future__ import annotations

import re

import gradio as gr
import pytest

from masuka.ui import train as train_tab

from .conftest import add_dataset
from .test_remote import trainer  # noqa: F401  (the fixture is used by name)

WAIT_S = 240


def runs(studio) -> list[dict]:
    return studio.store.find("jobs", "kind = ?", ["train"], order_by="id")


def test_train_asks_before_a_remote_run_and_starts_a_local_one_at_once(studio, trainer, tiny_model):  # noqa: F811
    server = trainer("fal")
    add_dataset(studio)
    details, run, confirm = train_tab.train_or_confirm(studio, "fox", "flux-dev", steps=1000, backend="fal")
    assert (details, run) == (gr.skip(), gr.skip())
    assert confirm.visible is True and confirm.value == "Yes, train on fal.ai for about $2.00"
    assert runs(studio) == [] and server.requests == []
    with pytest.raises(gr.Error, match="trains LoRAs for flux-dev"):  # no price, no confirmation
        train_tab.train_or_confirm(studio, "fox", "sdxl", steps=100, backend="replicate")
    info, run, confirm = train_tab.train_or_confirm(studio, "fox", str(tiny_model("flux")), "24gb", steps=1,
                                                    lr=1e-3, resolution=64, save_every=0)
    assert run == info["run"] and confirm.visible is False
    assert [row["id"] for row in runs(studio)] == [run] and server.requests == []
    assert studio.jobs.wait(run, timeout=WAIT_S)["status"] == "completed"


@pytest.mark.parametrize("backend, chosen, unset, refusal", [
    ("fal", {}, "FAL_KEY", "No API key for fal: set FAL_KEY"),
    ("replicate", dict(destination=""), None, "Training on Replicate needs a destination model"),
    ("fal", dict(dataset="nope"), None, "nope"),
], ids=["no-key", "no-destination", "unknown-dataset"])
def test_train_shows_a_remote_runs_refusal_before_its_confirmation(studio, monkeypatch, backend, chosen, unset,
                                                                   refusal, trainer):  # noqa: F811
    """What the confirmed start would refuse is refused on Train's click: no confirmation, no row, no request."""
    server = trainer(backend)
    add_dataset(studio)
    if unset:
        monkeypatch.delenv(unset)
    values = {**dict(dataset="fox", base="flux-dev", steps=4, backend=backend, destination="me/fox-lora"), **chosen}
    with pytest.raises(gr.Error, match=refusal):
        train_tab.train_or_confirm(studio, **values)
    assert runs(studio) == [] and server.requests == []
    with pytest.raises(gr.Error, match=refusal):  # the confirmed start refuses it the same way
        train_tab.start(studio, **values)
    assert runs(studio) == [] and server.requests == []


@pytest.mark.browser
def test_in_the_browser_a_remote_run_waits_for_its_confirmation(live_app, page, trainer, tiny_model):  # noqa: F811
    server = trainer("fal")
    app = live_app()
    add_dataset(app.studio)
    page.goto(app.url)
    page.get_by_role("tab", name="Train").first.click(timeout=30_000)

    def field(label: str):
        return page.get_by_label(label, exact=True).locator("visible=true").first  # other tabs' are hidden

    def enter(label: str, value: str) -> None:
        field(label).fill(value)
        field(label).press("Enter")

    enter("Dataset", "fox")
    field("fal").check()
    page.locator("#train-cost", has_text="estimated $2.00").wait_for(timeout=15_000)
    train = page.get_by_role("button", name="Train", exact=True)
    train.click()
    page.get_by_role("button", name="Yes, train on fal.ai for about $2.00").wait_for(timeout=15_000)
    assert runs(app.studio) == [] and server.requests == []
    enter("Steps", "4")  # another price: the confirmation goes
    page.get_by_role("button", name="Yes, train on fal.ai for about $2.00").wait_for(state="hidden", timeout=15_000)
    page.locator("#train-cost", has_text="estimated $0.01").wait_for(timeout=15_000)
    train.click()
    confirm = page.get_by_role("button", name="Yes, train on fal.ai for about $0.01")
    confirm.click(timeout=15_000)
    confirm.wait_for(state="hidden", timeout=15_000)
    page.get_by_text(re.compile(r"step \d/4\b")).first.wait_for(timeout=15_000)  # the panel follows the run
    [remote] = runs(app.studio)
    assert app.studio.jobs.wait(remote["id"], timeout=60)["status"] == "completed" and server.creates == 1

    field("local").check()  # one click starts a local run
    enter("Base model", str(tiny_model("flux")))
    enter("Steps", "1")
    page.get_by_text("More options", exact=True).locator("visible=true").first.click()
    enter("Resolution (0 = preset)", "64")
    train.click()
    page.get_by_text(re.compile(r"step \d/1\b")).first.wait_for(timeout=15_000)
    _remote, local = runs(app.studio)
    assert app.studio.jobs.wait(local["id"], timeout=WAIT_S)["status"] == "completed" and server.creates == 1
