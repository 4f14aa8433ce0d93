"""The Train tab's confirmation of a remote run (billed by its service): Train shows it, naming the service and the
estimated price, and starts nothing; only its click starts the run; a change of the price hides it. A local run
starts on the first click (the ``start_training`` API starts any run at once: test_remote.py). Resume of a remote
run that sends a new job asks the same way; a local run resumes at once, and so does the ``resume_training`` API."""

from __future__ import annotations

import re

import gradio as gr
import pytest
from gradio_client import Client

from masuka import jobs
from masuka.training.options import TrainOptions
from masuka.training.runs import create_run, start_training
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


def failed_fal_run(studio, server) -> int:
    """A fal run whose job failed at the service (a Resume sends a new one)."""
    server.fail_jobs = True
    add_dataset(studio)
    run_id = start_training(studio, TrainOptions(dataset="fox", base="flux-dev", steps=4), backend="fal")
    assert studio.jobs.wait(run_id, timeout=30)["status"] == "failed" and server.creates == 1
    server.fail_jobs = False
    return run_id


def test_resume_asks_before_a_remote_run_sends_a_new_job_and_resumes_a_local_one_at_once(studio, trainer,  # noqa: F811
                                                                                         tiny_model):
    server = trainer("fal")
    remote = failed_fal_run(studio, server)
    sent = len(server.requests)
    details, confirm, asked = train_tab.resume_or_confirm(studio, remote)
    assert details == gr.skip() and confirm.visible is True and asked == remote
    assert confirm.value == "Yes, resume on fal.ai for about $0.01"  # the start's estimate
    assert len(server.requests) == sent and jobs.get(studio.store, remote).status == "failed"
    with pytest.raises(gr.Error, match=f"This confirmation was for run {remote}, which is no longer picked"):
        train_tab.resume_confirmed(studio, remote + 1, asked)  # another run picked meanwhile: nothing resumes
    assert server.creates == 1
    train_tab.resume_confirmed(studio, remote, asked)  # the confirmation's click
    assert studio.jobs.wait(remote, timeout=30)["status"] == "completed" and server.creates == 2
    with pytest.raises(gr.Error, match="only a stopped, interrupted or failed run resumes"):
        train_tab.resume_or_confirm(studio, remote)
    local = create_run(studio, TrainOptions(dataset="fox", base=str(tiny_model("flux")), preset="24gb", steps=1,
                                            lr=1e-3, resolution=64, save_every=0))
    jobs.finish(studio.store, local, "cancelled", "Stopped by the user.")
    info, confirm, asked = train_tab.resume_or_confirm(studio, local)
    assert info["run"] == local and info["status"] in ("queued", "running") and confirm.visible is False
    assert asked is None
    assert studio.jobs.wait(local, timeout=WAIT_S)["status"] == "completed"


@pytest.mark.parametrize("state, asks", [
    ({}, True),
    ({"submitting": True, "upload": "https://files.test/d.zip"}, False),
], ids=["never-sent", "maybe-sent"])
def test_resume_asks_only_when_a_remote_run_would_send_a_new_job(studio, trainer, state, asks):  # noqa: F811
    """An interrupted run whose create request may have arrived is never sent again: its Resume is refused, with
    no confirmation, rather than queued to end where it started."""
    server = trainer("fal")
    add_dataset(studio)
    run_id = create_run(studio, TrainOptions(dataset="fox", base="flux-dev", steps=4), backend="fal")
    studio.store.update("jobs", run_id, status="interrupted",
                        state={**studio.store.get("jobs", run_id)["state"], **state})
    if asks:
        details, confirm, _asked = train_tab.resume_or_confirm(studio, run_id)
        assert details == gr.skip() and confirm.value == "Yes, resume on fal.ai for about $0.01"
    else:
        with pytest.raises(gr.Error, match=f"Run {run_id} needs attention: .* check your fal dashboard"):
            train_tab.resume_or_confirm(studio, run_id)
    assert server.requests == [] and jobs.get(studio.store, run_id).status == "interrupted"


def test_the_resume_training_api_resumes_a_remote_run_directly(live_app, trainer):  # noqa: F811
    server = trainer("fal")
    app = live_app()
    run_id = failed_fal_run(app.studio, server)
    resumed = Client(app.url, verbose=False).predict(run_id, api_name="/resume_training")
    assert resumed["run"] == run_id
    assert app.studio.jobs.wait(run_id, timeout=30)["status"] == "completed" and server.creates == 2


def a_remote_run_waits_for_its_confirmation(page, app, server, tiny_model) -> None:
    """Dataset "fox" exists; no run yet; the Train tab is open."""

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


def resume_of_a_remote_run_waits_for_its_confirmation(page, app, server) -> None:
    """Two fal runs whose jobs failed at the service are made here (after the page opened: the Run box takes a
    typed id); the Train tab is open."""
    made = server.creates
    server.fail_jobs = True
    first, second = (start_training(app.studio, TrainOptions(dataset="fox", base="flux-dev", steps=4), backend="fal")
                     for _ in range(2))
    assert [app.studio.jobs.wait(run, timeout=30)["status"] for run in (first, second)] == ["failed", "failed"]
    assert server.creates == made + 2
    server.fail_jobs = False
    picker = page.get_by_label("Run", exact=True).locator("visible=true").first

    def pick(run_id: int) -> None:
        """Type the run's number and take its own option once the panel's polling lists it: Enter on the typed
        number would take the first option whose label merely contains it (another run's title, its base path)."""
        picker.fill(str(run_id))
        page.get_by_role("option", name=re.compile(rf"^#{run_id} ")).click(timeout=15_000)

    resume = page.get_by_role("button", name="Resume", exact=True)
    confirm = page.get_by_role("button", name="Yes, resume on fal.ai for about $0.01")
    pick(first)
    resume.click()
    confirm.wait_for(timeout=15_000)
    pick(second)  # another run: the confirmation goes
    confirm.wait_for(state="hidden", timeout=15_000)
    assert server.creates == made + 2
    resume.click()
    confirm.wait_for(timeout=15_000)
    page.wait_for_timeout(3 * train_tab.POLL_S * 1000)  # the panel's polling leaves it
    assert confirm.is_visible() and server.creates == made + 2
    confirm.click()
    confirm.wait_for(state="hidden", timeout=15_000)
    assert app.studio.jobs.wait(second, timeout=60)["status"] == "completed" and server.creates == made + 3
    assert jobs.get(app.studio.store, first).status == "failed"


@pytest.mark.browser
def test_in_the_browser_a_remote_run_and_its_resume_wait_for_their_confirmation(live_app, page, trainer,  # noqa: F811
                                                                                 tiny_model):
    """One loaded page (a page load costs seconds of Chromium's CPU): a remote run started, a local one started on
    one click, then Resume of another remote run; each part is a function named for what it checks."""
    server = trainer("fal")
    app = live_app()
    add_dataset(app.studio)
    page.goto(app.url)
    page.get_by_role("tab", name="Train").first.click(timeout=30_000)
    a_remote_run_waits_for_its_confirmation(page, app, server, tiny_model)
    resume_of_a_remote_run_waits_for_its_confirmation(page, app, server)
