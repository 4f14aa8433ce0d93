"""The queue through the live app's API: jobs added over HTTP run in the app's background worker, per user; the
Queue tab's handlers and wiring."""

from __future__ import annotations

import time

import gradio as gr
import numpy as np
import pytest
from gradio_client import Client

from masuka.image.generate import ImageRequest
from masuka.queue.jobs import queue_images
from masuka.queue.worker import work_until_empty
from masuka.ui import queue
from masuka.ui.common import bind
from masuka.ui.polls import changed_only

SKIP = gr.skip()


@pytest.fixture
def app(shared_app):
    """One app without sign-in for the module's API tests: each reads only its own jobs and the rows made since
    it started."""
    return shared_app()


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """The app's Blocks built once for the tests that read its wiring (they run no event that writes)."""
    from masuka.config import Config
    from masuka.studio import Studio
    from masuka.ui.app import build_app

    studio = Studio.open(Config.from_env(data_dir=tmp_path_factory.mktemp("queue-ui") / "data", auth=""))
    yield build_app(studio)
    studio.close()


def last_id(app) -> int:
    return max((row["id"] for row in app.studio.store.find("generations", limit=1)), default=0)


def rows_since(app, last: int) -> list[dict]:
    """The history rows made after row ``last``, oldest first."""
    return app.studio.store.find("generations", "id > ?", [last], order_by="id")


def wait_until_done(client: Client, job_id: int) -> dict:
    while True:
        job = next(j for j in client.predict(api_name="/queue_status") if j["id"] == job_id)
        if job["status"] not in ("queued", "running"):
            return job
        time.sleep(0.2)


def test_queue_add_status_and_control_over_the_api(shared_app, tiny_model):
    app = shared_app(auth="ann:pw-ann,bob:pw-bob")
    ann = Client(app.url, auth=("ann", "pw-ann"), verbose=False)
    bob = Client(app.url, auth=("bob", "pw-bob"), verbose=False)
    added = ann.predict(prompt="", model=str(tiny_model("flux")), steps=1, width=64, height=64, seed=5,
                        prompts="a {red|blue} fox", api_name="/queue_add")
    (job_id,) = added["jobs"]
    job = wait_until_done(ann, job_id)
    assert (job["status"], job["done"], len(job["images"])) == ("completed", 2, 2)
    rows = app.studio.store.find("generations", "queue_id = ?", [job_id], order_by="id")
    assert [(r["owner"], r["prompt"]) for r in rows] == [("ann", "a red fox"), ("ann", "a blue fox")]

    assert bob.predict(api_name="/queue_status") == []  # another user's jobs are not shown
    with pytest.raises(Exception, match="no queued job"):
        bob.predict("retry", job_id, api_name="/queue_control")
    with pytest.raises(Exception, match="is completed"):
        ann.predict("retry", job_id, api_name="/queue_control")


def test_grid_over_the_api(app, tiny_model):
    client = Client(app.url, verbose=False)
    last = last_id(app)
    grid, cells = client.predict(prompt="a red fox", model=str(tiny_model("flux")), steps=1, width=64, height=64,
                                 seed=3, x="guidance=1,2", y="prompt=red,blue", api_name="/grid")
    assert len(cells) == 4 and grid
    rows = rows_since(app, last)
    assert [(r["guidance"], r["prompt"]) for r in rows] == [(1.0, "a red fox"), (2.0, "a red fox"),
                                                            (1.0, "a blue fox"), (2.0, "a blue fox")]


def test_a_grid_queued_over_the_api_runs_in_the_background(app, tiny_model):
    client = Client(app.url, verbose=False)
    message = client.predict(prompt="a red fox", model=str(tiny_model("flux")), steps=1, width=64, height=64,
                             seed=3, x="sampler=Euler,Euler Karras", api_name="/queue_grid")
    job_id = int(message.split("job ")[1].split(":")[0])
    job = wait_until_done(client, job_id)
    assert (job["status"], job["task"], len(job["images"])) == ("completed", "grid", 2) and job["grid"]
    with pytest.raises(Exception, match="flow-matching"):
        client.predict(prompt="a fox", model=str(tiny_model("flux")), x="sampler=Euler,DDIM", api_name="/queue_grid")


def test_queue_add_from_a_starting_image(app, tiny_model, tmp_path):
    from gradio_client import handle_file
    from PIL import Image

    picture = tmp_path / "photo.png"
    Image.new("RGB", (64, 64), (30, 90, 200)).save(picture)
    client = Client(app.url, verbose=False)
    added = client.predict(prompt="a blue lake", model=str(tiny_model("flux")), steps=1, width=64, height=64, seed=2,
                           init_image=handle_file(str(picture)), strength=0.5, api_name="/queue_add")
    job = wait_until_done(client, added["jobs"][0])
    assert job["status"] == "completed", job["error"]
    row = app.studio.store.find("generations", "queue_id = ?", [job["id"]])[0]
    assert (row["params"]["task"], row["params"]["strength"]) == ("img2img", 0.5)
    assert row["params"]["init_image"].startswith("outputs/local/inputs/")
    with pytest.raises(Exception, match="uploaded files"):  # a path on the server is not an upload
        client.predict(prompt="a lake", model=str(tiny_model("flux")), init_image=str(picture), api_name="/queue_add")
    mask = tmp_path / "mask.png"  # white on the left: "Inpaint not masked" repaints the right half
    Image.fromarray(np.hstack([np.full((64, 32), 255, np.uint8), np.zeros((64, 32), np.uint8)])).save(mask)
    added = client.predict(prompt="a blue lake", model=str(tiny_model("flux")), steps=1, seed=2,
                           init_image=handle_file(str(picture)), strength=1.0, mask=handle_file(str(mask)),
                           mask_blur=0, mask_mode="Inpaint not masked", masked_content="fill",
                           inpaint_area="Only masked", only_masked_padding=8, api_name="/queue_add")
    job = wait_until_done(client, added["jobs"][0])
    assert job["status"] == "completed", job["error"]
    row = app.studio.store.find("generations", "queue_id = ?", [job["id"]])[0]
    assert row["params"]["task"] == "inpaint" and row["params"]["mask_blur"] == 0
    assert (row["params"]["invert_mask"], row["params"]["fill_masked"], row["params"]["only_masked_padding"]) == \
        (True, True, 8)
    made = np.asarray(Image.open(app.studio.config.absolute(row["output_path"])).convert("RGB")).astype(int)
    assert (made[:, :32] == (30, 90, 200)).all() and not (made[:, 32:] == (30, 90, 200)).all()


def test_queue_add_and_grid_keep_the_image_tabs_sampler(app, tiny_model):
    client = Client(app.url, verbose=False)
    last = last_id(app)
    form = dict(prompt="a red fox", model=str(tiny_model("flux")), steps=1, width=64, height=64, seed=3,
                sampler="Euler Karras")
    job = wait_until_done(client, client.predict(**form, api_name="/queue_add")["jobs"][0])
    assert job["status"] == "completed", job["error"]
    client.predict(**form, x="seed=1,2", api_name="/grid")
    rows = rows_since(app, last)
    assert [r["params"].get("sampler") for r in rows] == ["Euler Karras"] * 3


def test_the_tabs_that_send_the_image_form_send_its_sampler(demo):
    """Add to queue, prompt batches, the Grid tab and Render pairs take the Image tab's Sampler, last (Add to queue,
    which sends the form as Generate does, before the inpaint options)."""
    from masuka.ui.image_modes import INPAINT_FIELDS

    sampler = next(b for b in demo.blocks.values() if isinstance(b, gr.Dropdown) and b.label == "Sampler")
    sending = [fn for fn in demo.fns.values() if fn.name in ("queue_form", "queue_image_form", "make_grid",
                                                             "add_grid", "make")]
    assert sorted(fn.name for fn in sending) == ["add_grid", "make", "make_grid", "queue_form", "queue_image_form"]
    last = {fn.name: fn.inputs[-1 - len(INPAINT_FIELDS) * (fn.name == "queue_image_form")] for fn in sending}
    assert all(field is sampler for field in last.values())


def test_the_chosen_jobs_results_follow_it_as_it_runs(studio, tiny_model):
    """The timer's poll (as ``ctx.poll`` runs it) refreshes the results of the chosen job when it made images since
    they were shown, and leaves the gallery alone (no flicker) when nothing changed."""
    tick = changed_only(bind(queue.poll, studio), 2)
    (job_id,) = queue_images(studio, ImageRequest(prompt="a red fox", model=str(tiny_model("flux")), steps=1,
                                                  width=64, height=64, seed=2, batch=2))
    table, results, sent = tick(job_id, None, None)
    assert table[0][:3] == [job_id, "local", "queued"] and results == [], "no images yet"
    assert tick(job_id, None, sent)[:2] == [SKIP, SKIP], "unchanged: nothing sent"
    work_until_empty(studio)
    table, results, sent = tick(job_id, None, sent)
    assert table[0][2] == "completed" and [caption for _path, caption in results] == ["image 1", "image 2"]
    assert tick(job_id, None, sent)[:2] == [SKIP, SKIP], "unchanged: no new gallery"
    assert tick(None, None, sent)[1] == SKIP, "no job chosen: the gallery stays"


def image_tab_form(**changes) -> list:
    """The Image tab's form in the order its "Add to queue" sends it after the edit images (``GENERATE_FIELDS``)."""
    from masuka.ui.image import GENERATE_FIELDS

    values = dict(prompt="a blue lake", model="", negative="", steps=1, guidance=1.0, width=64, height=64, seed=2,
                  batch=1, loras=[], memory_plan="auto", fast=False, step_cache=0.0, init_image=None, strength=0.75,
                  mask=None, mask_blur=0, outpaint="", mode="Text", canvas=None, optimize_prompt=False,
                  safety_check=False, face_detail=False, face_strength=0.4, control_kind="canny", control_image=None,
                  control_weight=1.0, control_start=0.0, control_end=1.0, reference_image=None, reference_weight=1.0,
                  sampler="", mask_mode="Inpaint masked", masked_content="original", inpaint_area="Whole picture",
                  only_masked_padding=32)
    values.update(changes)
    return [values[name] for name in GENERATE_FIELDS]


def test_add_to_queue_sends_what_generate_takes(demo):
    """The Image tab's "Add to queue" takes Generate's inputs (the mode shown where Generate has the mode chosen),
    after the images an edit takes."""
    generate = next(fn for fn in demo.fns.values() if fn.api_name == "generate_image_streamed")
    queued = next(fn for fn in demo.fns.values() if fn.name == "queue_image_form")
    mode = next(b for b in demo.blocks.values() if isinstance(b, gr.Radio) and b.label == "Mode")
    assert queued.inputs[0].label.startswith("Images to edit")
    assert queued.inputs[1:] == [mode if isinstance(c, gr.State) else c for c in generate.inputs]


def test_add_to_queue_queues_the_prompt_as_generate_runs_it_and_a_batch_expands(studio, tiny_model):
    """The Image tab's Add to queue keeps ``{a|b}``, ``__name__`` and spacing as Generate runs them (one job, one
    prompt); the Queue tab's prompt batch with the same prompt expands it."""
    model = str(tiny_model("flux"))
    (studio.config.wildcards_dir / "animal.txt").parent.mkdir(parents=True, exist_ok=True)
    (studio.config.wildcards_dir / "animal.txt").write_text("cat\nowl\n")
    prompt = "a  {red|blue} __animal__"
    (literal,) = queue.queue_image_form(studio, None, None, *image_tab_form(model=model, prompt=prompt, batch=2))[
        "jobs"]
    assert [item["prompt"] for item in studio.store.get("queue", literal)["params"]["items"]] == [prompt] * 2
    form = ["a blue lake", model, "", 1, 1.0, 64, 64, 2, 1, [], "auto", False, 0.0]  # queue.FORM
    (batch,) = queue.queue_form(studio, *form, prompt, 0, False, False, False, 0.4)["jobs"]
    assert sorted(item["prompt"] for item in studio.store.get("queue", batch)["params"]["items"]) == [
        "a blue cat", "a blue owl", "a red cat", "a red owl"]


def test_add_to_queue_queues_the_mode_shown(studio, tiny_model, tmp_path):
    """What is queued is what Generate would run: Text ignores a starting image left behind; Inpaint/Outpaint
    queues the canvas's picture with the painted mask (and the inpaint options) or the padding; Edit queues its
    images; Image without a picture, and control images (the queue keeps none), are refused; the jobs run."""
    from PIL import Image, ImageDraw

    from masuka.models.synthetic import save_tiny_pipeline

    model = str(tiny_model("flux"))
    photo, stroke = tmp_path / "photo.png", tmp_path / "stroke.png"
    Image.new("RGB", (64, 64), (30, 90, 200)).save(photo)
    layer = Image.new("RGBA", (64, 64), (0, 0, 0, 0))
    ImageDraw.Draw(layer).rectangle((16, 16, 47, 47), fill=(255, 255, 255, 255))
    layer.save(stroke)
    canvas = {"background": str(photo), "layers": [str(stroke)], "composite": str(photo)}

    def add(references=None, **changes) -> dict:
        (job_id,) = queue.queue_image_form(studio, None, references, *image_tab_form(**{"model": model, **changes}))[
            "jobs"]
        return studio.store.get("queue", job_id)["params"]["request"]

    assert "init" not in add(init_image=str(photo)), "Text mode: the hidden starting image is not used"
    assert add(mode="Image", init_image=str(photo), strength=0.5)["init"]["strength"] == 0.5
    inpaint = add(mode="Inpaint/Outpaint", init_image=str(photo), canvas=canvas, mask_mode="Inpaint not masked",
                  masked_content="fill", inpaint_area="Only masked", only_masked_padding=8)["init"]
    assert inpaint["mask"] and inpaint["outpaint"] is None
    assert (inpaint["invert_mask"], inpaint["fill_masked"], inpaint["only_masked_padding"]) == (True, True, 8)
    outpaint = add(mode="Inpaint/Outpaint", canvas=dict(canvas, layers=[]), outpaint="0,16,0,0", strength=1.0)
    assert outpaint["init"]["outpaint"] == [0, 16, 0, 0] and outpaint["width"] is None
    kontext = save_tiny_pipeline("flux", tmp_path / "kontext", task="edit")
    assert len(add([str(photo)], mode="Edit", model=str(kontext))["references"]) == 1
    for changes, message in ((dict(mode="Image"), "Add the starting image to vary"),
                             (dict(mode="Edit", model=str(kontext)), "Add one or more images to edit"),
                             (dict(control_image=str(photo)), "not pictures")):
        with pytest.raises(gr.Error, match=message):
            add(**changes)

    work_until_empty(studio)
    jobs = queue.queue_status(studio)
    assert [job["status"] for job in jobs] == ["completed"] * 5, [job["error"] for job in jobs]
    rows = studio.store.find("generations", order_by="id")
    assert [row["params"].get("task") for row in rows] == [None, "img2img", "inpaint", "outpaint", "edit"]
    assert {name: rows[2]["params"].get(name) for name in ("invert_mask", "fill_masked", "only_masked_padding")} == {
        "invert_mask": True, "fill_masked": True, "only_masked_padding": 8}
    assert Image.open(studio.config.absolute(rows[3]["output_path"])).size == (80, 64)


def test_add_to_queue_on_the_image_tab_says_so_there(demo, monkeypatch):
    """The Image tab's Add to queue answers with a toast on the tab it was pressed on, as its refusals do, besides
    the Queue tab's message; the Queue tab's own batch box answers there only."""
    toasts: list[str] = []
    monkeypatch.setattr(gr, "Info", toasts.append)
    fns = demo.fns
    answer = {fn.name: next(after for after in fns.values() if after.trigger_after == fn._id)
              for fn in fns.values() if fn.name in ("queue_image_form", "queue_form")}
    message = answer["queue_form"].outputs
    assert answer["queue_image_form"].outputs == message and message[0].label == "Message"
    assert answer["queue_image_form"].fn({"jobs": [46]}) == "Queued job 46." and toasts == ["Queued job 46."]
    assert answer["queue_form"].fn({"jobs": [47, 48]}) == "Queued jobs 47, 48." and toasts == ["Queued job 46."]
