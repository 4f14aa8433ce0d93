"""The Video tab through its API (gradio_client against the live app): generate, follow, cancel, resume."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys

import gradio as gr
import pytest
from gradio_client import Client

from tests.conftest import ROOT
from tests.video.conftest import wait_until


@pytest.fixture
def app(shared_app, fast_video):
    """One app for the module's tests that follow their own job ids against fake providers of their own (providers'
    addresses, keys and timing are read from the environment per request): not for a test that reads the whole
    gallery or provider health, or marks a provider unhealthy."""
    return shared_app()


def follow(client: Client, job_id: int, until=("completed", "failed", "cancelled", "interrupted")) -> list:
    """Call ``video_status`` as the tab's timer does until the job's row reaches one of ``until``."""
    seen = {}

    def finished() -> bool:
        table, gallery, latest, health, job_line = client.predict(api_name="/video_status")
        rows = {row[0]: row for row in table["data"]}
        seen.update(row=rows.get(job_id), rest=[gallery, latest, health, job_line])
        return job_id in rows and rows[job_id][2] in until

    assert wait_until(finished, timeout=60), f"job {job_id} did not finish: {seen.get('row')}"
    return [seen["row"], *seen["rest"]]


def test_generate_follow_and_play_a_video(live_app, fake):
    server = fake("openai")
    app = live_app()
    client = Client(app.url, verbose=False)
    job, message = client.predict("a paper boat", "openai", "sora-2", 8, "1280x720", None, "", [],
                                  api_name="/generate_video")
    job_id = int(job)
    assert "estimated $0.80" in message
    row, gallery, latest, health, job_line = follow(client, job_id)
    assert row[2] == "completed" and row[4] == "100%" and row[7] == 0.8
    assert job_line == f"Job {job_id} (openai sora-2) is done."
    latest = latest["video"] if isinstance(latest, dict) else latest
    assert str(latest).endswith(".mp4") and len(gallery) == 1
    assert server.creates == 1 and health == ""


def test_bad_choice_is_refused_with_the_reason(app, fake):
    fake("openai")
    client = Client(app.url, verbose=False)
    try:
        client.predict("a boat", "openai", "sora-2", 5, "1280x720", None, "", [], api_name="/generate_video")
    except Exception as error:  # gradio_client raises AppError carrying the gr.Error message
        assert "makes clips of 4, 8, 12 seconds" in str(error)
    else:
        raise AssertionError("an invalid duration was accepted")


def test_no_key_is_refused_before_a_job_exists(app):
    client = Client(app.url, verbose=False)
    jobs = app.studio.store.count("jobs")
    try:
        client.predict("a boat", "gemini", "veo-3.1-generate-preview", 8, "1280x720", None, "", [],
                       api_name="/generate_video")
    except Exception as error:
        assert "no API key for gemini" in str(error) and "GEMINI_API_KEY" in str(error)
    else:
        raise AssertionError("a job was started without a key")
    assert app.studio.store.count("jobs") == jobs, "no job row"


def test_a_failed_job_says_why_next_to_generate(app, fake):
    server = fake("openai")
    server.fail_jobs = True
    client = Client(app.url, verbose=False)
    job_id = int(client.predict("a boat", "openai", "sora-2", 4, "1280x720", None, "", [],
                                api_name="/generate_video")[0])
    row, *_, job_line = follow(client, job_id)
    assert row[2] == "failed"
    assert job_line.startswith(f"⚠️ **Job {job_id} (openai sora-2) failed:**")
    assert "blocked by our moderation system" in job_line


def test_cancel_from_the_tab(app, fake):
    server = fake("runway")
    server.release.clear()
    client = Client(app.url, verbose=False)
    job_id = int(client.predict("a storm", "runway", "gen4.5", 5, "1280x720", None, "", [],
                                api_name="/generate_video")[0])
    assert server.polled.wait(20)
    assert "cancel requested" in client.predict(str(job_id), api_name="/cancel_video")  # the Job box is text
    row = follow(client, job_id)[0]
    assert row[2] == "cancelled" and server.cancels == 1


def test_app_start_resumes_a_job_left_by_a_killed_process(live_app, fake, tmp_path):
    server = fake("fal")
    server.release.clear()
    data = tmp_path / "shared-data"
    process = subprocess.Popen([sys.executable, "-m", "masuka", "video", "--data-dir", str(data), "--provider", "fal",
                                "--model", "fal-ai/veo3", "--prompt", "a comet", "--seconds", "4"],
                               cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    try:
        assert server.polled.wait(30)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait(10)
    server.release.set()
    client = Client(live_app(data_dir=data).url, verbose=False)
    row = follow(client, 1)[0]
    assert row[2] == "completed" and server.creates == 1


def test_form_offers_only_valid_choices_and_prices_the_chain(studio):
    from masuka.ui.video import _seconds_choices, price

    assert _seconds_choices("gemini", "veo-3.1-generate-preview", "1920x1080")[0] == 8
    assert 4 in _seconds_choices("gemini", "veo-3.1-generate-preview", "1280x720")
    assert _seconds_choices("local", "wan2.1-t2v-1.3b") == [1, 2, 3, 4, 5]  # text-only: no chains offered
    text = price(studio, "openai", "sora-2-pro", 30, "1792x1024", None, ["comet:sora-2-pro"], "a fox")
    assert "Estimated cost: $16.00" in text and "12 s + 12 s + 8 s" in text and "Fallback comet sora-2-pro" in text
    assert price(studio, "openai", "sora-2", 5, "1280x720", None, [], "a fox").startswith("⚠️")


def field_name(block) -> str | None:
    return getattr(block, "label", None) or getattr(block, "elem_id", None)


def fire(demo: gr.Blocks, form: dict, field: str, event: str = "input") -> None:
    """Do what the page does when ``event`` happens to ``field``: run its listeners and those chained after them
    on the values in ``form`` (field label or elem_id -> value), set what they return, and fire ``change`` on each
    field whose value that changed."""
    from gradio.state_holder import SessionState

    block = next(b for b in demo.blocks.values() if field_name(b) == field)
    listeners = [fn for fn in demo.fns.values() if (block._id, event) in fn.targets]
    changed = []
    while listeners:
        fn = listeners.pop(0)
        inputs = [form.get(field_name(component)) for component in fn.inputs]
        data = asyncio.run(demo.process_api(block_fn=fn, inputs=inputs, state=SessionState(demo)))["data"]
        for component, value in zip(fn.outputs, data):
            value = value.get("value", form.get(field_name(component))) if isinstance(value, dict) else value
            if value != form.get(field_name(component)):
                form[field_name(component)] = value
                changed.append(field_name(component))
        listeners += [then for then in demo.fns.values() if then.trigger_after == fn._id]
    for label in changed:
        fire(demo, form, label, "change")


def test_changing_provider_or_showing_retired_models_updates_seconds_and_size(studio):
    """Both set Model from code, which fires no input event of its own: they set that model's limits too, so the
    form is not left with the last model's Seconds and Size (priced with a warning and refused by Generate)."""
    from masuka.ui import video
    from masuka.ui.common import UIContext
    from masuka.video.catalog import model_entry

    with gr.Blocks() as demo:
        video.build(UIContext(studio))
    form = {field_name(b): getattr(b, "value", None) for b in demo.blocks.values()}
    form.update({"Prompt": "a fox", "Seconds": 8, "Size": "1280x720", "Provider": "local"})
    fire(demo, form, "Provider")
    assert (form["Model"], form["Seconds"], form["Size"]) == ("wan2.1-t2v-1.3b", 1, "832x480")
    assert form["video-cost"].startswith("**Estimated cost: $0.00** for 1 s at 832x480")
    form.update({"Seconds": 8, "Size": "1280x720", "Show retired models": True})
    fire(demo, form, "Show retired models")
    assert form["Size"] in model_entry("local", form["Model"])["sizes"]
    assert form["video-cost"].startswith("**Estimated cost: $0.00**"), form["video-cost"]


def test_first_frame_upload_and_unhealthy_provider_notice(live_app, fake, first_frame, monkeypatch):
    from gradio_client import handle_file

    monkeypatch.setenv("MASUKA_VIDEO_UNHEALTHY_AFTER", "1")
    runway, openai = fake("runway"), fake("openai")
    openai.fault("create", 502)
    client = Client(live_app().url, verbose=False)
    job_id = int(client.predict("she turns and smiles", "runway", "gen4_turbo", 5, "1280x720",
                                handle_file(str(first_frame)), "", [], api_name="/generate_video")[0])
    assert follow(client, job_id)[0][2] == "completed"
    payload = runway.jobs["job1"]["payload"]
    assert payload["route"] == "/v1/image_to_video" and payload["promptImage"].startswith("data:image/png")
    failed = int(client.predict("a boat", "openai", "sora-2", 4, "1280x720", None, "", [],
                                api_name="/generate_video")[0])
    row, _gallery, _latest, health, _line = follow(client, failed)
    assert row[2] == "failed" and "HTTP 502" in row[9]
    assert "openai is marked unhealthy" in health


def test_reference_images_and_sound_go_from_the_form_to_the_provider(app, fake, tmp_path):
    from gradio_client import handle_file
    from PIL import Image

    gemini, fal = fake("gemini"), fake("fal")
    client = Client(app.url, verbose=False)
    references = []
    for colour in ("navy", "gold"):
        Image.new("RGB", (32, 32), colour).save(tmp_path / f"{colour}.png")
        references.append(handle_file(str(tmp_path / f"{colour}.png")))
    job, _message = client.predict("a red kite", "gemini", "veo-3.1-generate-001", 8, "1280x720", None, "", [],
                                   None, None, references, "default", api_name="/generate_video")
    follow(client, int(job))
    sent = gemini.jobs["job1"]["payload"]["instances"][0]["referenceImages"]
    assert len(sent) == 2 and all(r["referenceType"] == "ASSET" for r in sent)
    job, _message = client.predict("a red kite", "fal", "fal-ai/veo3", 4, "1280x720", None, "", [], None, None,
                                   [], "off", api_name="/generate_video")
    follow(client, int(job))
    assert fal.jobs["job1"]["payload"]["generate_audio"] is False


def test_the_negative_prompt_box_follows_the_models_catalog_flag(studio):
    """Free for a model whose provider sends a negative prompt, with a hint when only text-to-video takes it;
    emptied and greyed out for one that takes none (the first model offered, CometAPI's Veo 3 Fast)."""
    from masuka.ui import video
    from masuka.ui.common import UIContext

    with gr.Blocks() as demo:
        video.build(UIContext(studio))
    negative = next(b for b in demo.blocks.values() if field_name(b) == "Negative prompt")
    assert negative.interactive is False and "takes no negative prompt" in negative.placeholder
    veo = video.limits_for("gemini", "veo-3.1-generate-001", None)[2]
    assert veo.interactive is True and "text-to-video only" not in veo.placeholder
    assert "text-to-video only" in video.limits_for("fal", "fal-ai/veo3.1", None)[2].placeholder
    runway = video.models_for("runway", False, None)[3]
    assert (runway.value, runway.interactive) == ("", False) and runway.placeholder.endswith("takes no negative prompt")


def test_reuse_gives_the_form_the_choices_of_the_entrys_provider_and_model(studio):
    """Reuse sets Provider and Model from code (no input event): the Model list, Seconds, Size and the negative
    prompt box come with them, for that model, keeping the entry's values."""
    from masuka.history.actions import reuse_parameters
    from masuka.ui import video
    from masuka.ui.common import UIContext
    from masuka.video.catalog import listed_models

    ctx = UIContext(studio)
    with gr.Blocks():
        video.build(ctx)
    form = ctx.forms["video"]
    row = studio.store.insert("generations", {
        "kind": "video", "status": "completed", "prompt": "waves", "provider": "gemini", "negative_prompt": "fog",
        "model": "veo-3.1-fast-generate-001", "params": {"seconds": 20, "size": "1280x720"}})
    fields = form.reuse(reuse_parameters(studio, "local", False, f"g{row}")[1])
    assert [key for _name, key in fields["model"].choices] == list(listed_models("gemini"))
    assert fields["model"].value == "veo-3.1-fast-generate-001"
    assert (fields["seconds"].value, fields["size"].value) == (20, "1280x720")
    assert [value for _name, value in fields["seconds"].choices] == video._seconds_choices(
        "gemini", "veo-3.1-fast-generate-001", "1280x720")
    assert (fields["negative"].value, fields["negative"].interactive) == ("fog", True)
    row = studio.store.insert("generations", {
        "kind": "video", "status": "completed", "prompt": "waves", "provider": "runway", "model": "gen4.5",
        "params": {"seconds": 10, "size": "720x1280"}})
    fields = form.reuse(reuse_parameters(studio, "local", False, f"g{row}")[1])
    assert "gen4.5" in [key for _name, key in fields["model"].choices]
    assert fields["size"].value == "720x1280" and "720x1280" in [value for _name, value in fields["size"].choices]
    assert (fields["negative"].value, fields["negative"].interactive) == ("", False)


def test_the_cost_line_warns_of_a_negative_prompt_before_generate(studio):
    from masuka.ui import video
    from masuka.ui.common import UIContext

    assert "takes no negative prompt" in video.price(studio, "runway", "gen4.5", 5, "1280x720", None, [], "a fox",
                                                     negative_prompt="fog")
    with gr.Blocks() as demo:
        video.build(UIContext(studio))
    form = {field_name(b): getattr(b, "value", None) for b in demo.blocks.values()}
    form.update({"Prompt": "a fox", "Provider": "runway", "Model": "gen4.5", "Seconds": 5, "Size": "1280x720",
                 "Negative prompt": "fog"})
    fire(demo, form, "Negative prompt", "change")
    assert form["video-cost"].startswith("⚠️") and "takes no negative prompt" in form["video-cost"]


def test_seconds_offers_only_lengths_the_model_can_make():
    """A model of 8 s clips cannot reach 60 s (8 s clips or 7 s extensions overshoot): not offered; every length
    offered for any model and size can be made."""
    from masuka.ui.video import _seconds_choices
    from masuka.video.catalog import model_entry, video_catalog
    from masuka.video.request import clip_segments

    assert _seconds_choices("gemini", "veo-3.1-generate-001", "1920x1080") == [8, 15, 20, 30, 45]
    assert _seconds_choices("gemini", "veo-3.1-generate-001", "1280x720")[-1] == 45
    assert _seconds_choices("runway", "gen4.5", "1280x720")[-1] == 60
    for provider, entry in video_catalog().items():
        for model, spec in entry["models"].items():
            for size in spec["sizes"]:
                for seconds in _seconds_choices(provider, model, size):
                    assert clip_segments(model_entry(provider, model), size, seconds), (provider, model, seconds)


def test_seconds_follow_the_source_clip_of_a_video_to_video_model(studio, tmp_path):
    """Choosing a source clip for Runway Aleph, or Aleph with a clip chosen, sets Seconds to the clip's length:
    the price and the job are for that length."""
    from masuka.testing.video import make_mp4
    from masuka.ui import video
    from masuka.ui.common import UIContext

    clip = str(make_mp4(tmp_path / "three.mp4", frames=24))  # 3 s at 8 fps
    assert video.seconds_of_source("runway", "aleph2", clip) == 3
    assert not isinstance(video.seconds_of_source("runway", "gen4.5", clip), int)  # gr.skip(): it ignores clips
    assert video.limits_for("runway", "aleph2", "1280x720", clip)[0].value == 3
    with gr.Blocks() as demo:
        video.build(UIContext(studio))
    form = {field_name(b): getattr(b, "value", None) for b in demo.blocks.values()}
    source = next(b for b in demo.blocks.values() if isinstance(b, gr.Video) and b.interactive is not False)
    form.update({"Prompt": "watercolor", "Provider": "runway", "Model": "aleph2", "Seconds": 1, "Size": "1280x720",
                 field_name(source): {"path": clip, "meta": {"_type": "gradio.FileData"}}})
    fire(demo, form, field_name(source), "change")
    assert form["Seconds"] == 3 and form["video-cost"].startswith("**Estimated cost: $0.45** for 3 s")


def test_changing_size_keeps_the_seconds_while_the_model_still_makes_them(studio):
    """Size's input event sets Seconds: the chosen length stays where the model makes it at the new size."""
    from masuka.ui import video
    from masuka.ui.common import UIContext

    with gr.Blocks() as demo:
        video.build(UIContext(studio))
    form = {field_name(b): getattr(b, "value", None) for b in demo.blocks.values()}
    form.update({"Prompt": "a fox", "Provider": "gemini", "Model": "veo-3.1-generate-001", "Seconds": 6,
                 "Size": "720x1280"})
    fire(demo, form, "Size")
    assert form["Seconds"] == 6
    form["Size"] = "1920x1080"  # Veo 3.1 makes only 8 s clips at 1080p
    fire(demo, form, "Size")
    assert form["Seconds"] == 8
    assert video.limits_for("gemini", "veo-3.1-generate-001", "1280x720", None, "20")[0].value == 20
    # a typed length the model makes by chaining clips is kept (and offered) when Size changes
    seconds = video.limits_for("comet", "veo3-fast", "720x1280", None, "12")[0]
    assert seconds.value == 12 and 12 in [value for _label, value in seconds.choices]
    assert video.limits_for("comet", "veo3-fast", "720x1280", None, "4")[0].value == 8  # not made: its first


def test_a_first_frame_put_in_sets_the_size_of_its_shape(studio, tmp_path):
    """A portrait phone photo (stored sideways, as iPhones do) makes Size the model's portrait size, as the video
    it asks for would otherwise be cropped to a strip of it; a square picture keeps the size chosen."""
    from PIL import Image

    from masuka.picture_formats import read_heif
    from masuka.ui import video
    from masuka.ui.common import UIContext
    from tests.photos import SIDEWAYS_HEIC
    from tests.video.test_inputs import PROMPT

    read_heif()  # as the app does when it is built, so that Gradio's image box reads a HEIC
    with gr.Blocks() as demo:
        video.build(UIContext(studio))
    form = {field_name(b): getattr(b, "value", None) for b in demo.blocks.values()}
    frame = "First frame (optional: image-to-video)"
    phone = tmp_path / "IMG_0001.HEIC"
    phone.write_bytes(SIDEWAYS_HEIC.read_bytes())
    form.update({"Prompt": PROMPT, "Provider": "gemini", "Model": "veo-3.1-generate-001", "Seconds": 6,
                 "Size": "1280x720",
                 frame: {"path": str(phone), "meta": {"_type": "gradio.FileData"}}})
    fire(demo, form, frame, "upload")
    assert form["Size"] == "720x1280" and form["Seconds"] == 6
    assert "at 720x1280" in form["video-cost"]
    Image.new("RGB", (64, 64)).save(tmp_path / "square.png")
    form[frame] = {"path": str(tmp_path / "square.png"), "meta": {"_type": "gradio.FileData"}}
    fire(demo, form, frame, "upload")
    assert form["Size"] == "720x1280"


def test_the_cost_line_says_how_a_long_video_is_made(studio, monkeypatch):
    from masuka.ui.video import price

    for name in ("GEMINI_API_KEY", "RUNWAYML_API_SECRET"):  # with no key the line says a job would be refused
        monkeypatch.setenv(name, "key")
    assert price(studio, "gemini", "veo-3.1-generate-001", 20, "1280x720", None, [], "a fox") == (
        "**Estimated cost: $8.80** for 22 s at 1280x720 (one 8 s clip extended 2 times: 8 s + 7 s + 7 s)")
    assert "(one 8 s clip extended once: 8 s + 7 s)" in price(studio, "gemini", "veo-3.1-fast-generate-001", 15,
                                                               "1280x720", None, [], "a fox")
    assert "for 15 s at 1280x720 (2 clips chained: 10 s + 5 s)" in price(studio, "runway", "gen4.5", 15, "1280x720",
                                                                        None, [], "a fox")


def test_a_kling_job_from_a_first_frame_names_the_image_to_video_route(studio, fake, first_frame, tmp_path,
                                                                          monkeypatch):
    """fal's Kling is listed by its text-to-video route; a job from a first frame goes to its image-to-video
    route, and the started line, the jobs table and the newest-job line say so."""
    import shutil

    from masuka.ui.video import generate_video, video_status
    from masuka.video.jobs import wait_video

    server = fake("fal")
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path / "uploads"))  # where the page's uploads are
    upload = tmp_path / "uploads" / "up" / "first.png"
    upload.parent.mkdir(parents=True)
    shutil.copy(first_frame, upload)
    kling = "fal-ai/kling-video/v2.1/master/"
    job_id, message = generate_video(studio, "a fox turns", "fal", kling + "text-to-video", 5, "1920x1080",
                                     str(upload))
    assert message.startswith(f"Job {job_id} started with fal {kling}image-to-video (estimated $1.40)")
    assert wait_video(studio, job_id, timeout=60)["status"] == "completed"
    assert [r.path for r in server.requests if r.method == "POST"] == [f"/{kling}image-to-video"]
    table, _gallery, _latest, _health, line = video_status(studio)
    assert table["data"][0][6] == f"{kling}image-to-video"
    assert line == f"Job {job_id} (fal {kling}image-to-video) is done."


def test_the_api_takes_a_fallback_model_typed_as_the_cli_takes_it(app, fake):
    """``provider:model`` as ``--fallback`` takes it, a retired one too (the form offers only active ones): no
    Gemini key, so the job goes to CometAPI's Sora 2."""
    comet = fake("comet")
    client = Client(app.url, verbose=False)
    job, _message = client.predict("a paper boat", "gemini", "veo-3.1-generate-001", 8, "1280x720", None, "",
                                   ["comet:sora-2"], api_name="/generate_video")
    row = follow(client, int(job))[0]
    assert row[2] == "completed" and (row[5], row[6]) == ("comet", "sora-2") and comet.creates == 1
